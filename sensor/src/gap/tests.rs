use super::*;

fn state(heartbeat: u64, stopped: bool, boot: &str) -> Previous {
    Previous::State(State {
        pid: 42,
        boot_id: boot.into(),
        started: 1,
        heartbeat,
        stopped,
    })
}

const S: u64 = 1_000_000_000;

#[test]
fn first_start_raises_nothing() {
    assert!(gap_alert(&Previous::None, 10 * S, "b", "node").is_none());
}

#[test]
fn a_crash_is_critical_with_the_interval_since_the_last_heartbeat() {
    let a = gap_alert(&state(100 * S, false, "b"), 107 * S + S / 2, "b", "node-1").unwrap();
    assert_eq!(a.rule, GAP_RULE);
    assert_eq!(a.priority, Priority::Critical);
    assert_eq!(a.hostname, "node-1");
    assert_eq!(a.source, "internal");
    assert_eq!(a.output_fields["gap.previous_end"], "crash");
    assert_eq!(a.output_fields["gap.seconds"], 7.5);
    assert_eq!(a.output_fields["gap.previous_pid"], 42);
    assert_eq!(
        a.output_fields["gap.start"],
        "1970-01-01T00:01:40.000000000Z"
    );
    assert!(a.output.contains("kill -9"), "{}", a.output);
}

#[test]
fn a_clean_stop_and_a_reboot_are_told_apart() {
    let a = gap_alert(&state(100 * S, true, "b"), 103 * S, "b", "n").unwrap();
    assert_eq!(a.priority, Priority::Notice);
    assert_eq!(a.output_fields["gap.previous_end"], "clean_stop");
    assert_eq!(a.output_fields["gap.seconds"], 3.0);
    let a = gap_alert(&state(100 * S, false, "old"), 160 * S, "new", "n").unwrap();
    assert_eq!(a.output_fields["gap.previous_end"], "reboot");
    assert_eq!(a.output_fields["gap.node_rebooted"], true);
    // A heartbeat from the future (clock stepped back) is a zero gap, not a panic.
    let a = gap_alert(&state(200 * S, false, "b"), 100 * S, "b", "n").unwrap();
    assert_eq!(a.output_fields["gap.seconds"], 0.0);
}

#[test]
fn the_state_file_round_trips_and_garbage_is_reported() {
    let dir = std::env::temp_dir().join(format!("mamori-gap-{}", std::process::id()));
    let path = dir.join("sub/state.json");
    assert_eq!(read_previous(&path), Previous::None);
    let (k, alert) = Keeper::start(path.clone(), "n");
    assert!(alert.is_none());
    let Previous::State(s) = read_previous(&path) else {
        panic!("state written")
    };
    assert!(!s.stopped && s.pid == std::process::id());
    k.stopped();
    let Previous::State(s) = read_previous(&path) else {
        panic!("state written")
    };
    assert!(s.stopped);
    std::fs::write(&path, "{not json").unwrap();
    let p = read_previous(&path);
    assert!(
        matches!(&p, Previous::Unreadable(w) if w.contains("state.json")),
        "{p:?}"
    );
    let a = gap_alert(&p, S, "b", "n").unwrap();
    assert_eq!(a.output_fields["gap.previous_end"], "unknown");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_bounds_name_the_key() {
    let e = RawGap {
        state_file: Some("relative/state".into()),
        heartbeat: None,
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("gap.state_file"), "{e}");
    let e = RawGap {
        state_file: None,
        heartbeat: Some(Dur(Duration::from_millis(1))),
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("gap.heartbeat"), "{e}");
}
