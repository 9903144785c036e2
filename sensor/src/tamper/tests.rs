//! The event-side tamper checks (the kernel-side ones run in
//! `tests/tamper.rs`).

use super::*;

fn open(pid: u32, path: &str, flags: u32) -> Event {
    serde_json::from_value(serde_json::json!({
        "ts": 5, "type": "openat", "res": 3,
        "proc": {"pid": pid, "tid": pid, "name": "vi", "argv": ["/etc/mamori/rules/x.yaml"]},
        "fd": {"type": "file", "num": 3, "name": path},
        "open": {"flags": flags, "path": path}
    }))
    .unwrap()
}

#[test]
fn writes_to_protected_files_alert_with_the_actor_and_reads_do_not() {
    let dir = std::env::temp_dir().join(format!("mamori-tamper-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mamori.yaml");
    std::fs::write(&conf, "").unwrap();
    let p = Protected::new(
        Some("/usr/bin/mamori".into()),
        std::slice::from_ref(&dir),
        Some(&conf),
    );
    let w = Watch::without_kernel(p);
    let rules = format!("{}/r.yaml", dir.display());
    let wr = libc::O_WRONLY as u32;
    let a = w
        .on_event(&open(4242, &rules, wr))
        .expect("a rules file written");
    assert_eq!(a.rule, FILE_WRITTEN);
    assert_eq!(a.priority, Priority::Critical);
    assert_eq!(a.output_fields["actor.pid"], 4242);
    assert_eq!(a.output_fields["actor.name"], "vi");
    assert!(a.output.contains(&rules), "{}", a.output);
    for (path, flags) in [
        ("/usr/bin/mamori", libc::O_RDWR as u32),
        (
            conf.to_str().unwrap(),
            (libc::O_RDONLY | libc::O_TRUNC) as u32,
        ),
    ] {
        assert!(w.on_event(&open(7, path, flags)).is_some(), "{path}");
    }
    // Reads, unrelated files, a temp file beside the rules, a subdirectory,
    // and mamori itself: no alert.
    assert!(w
        .on_event(&open(7, &rules, libc::O_RDONLY as u32))
        .is_none());
    assert!(w.on_event(&open(7, "/etc/passwd", wr)).is_none());
    assert!(w.on_event(&open(7, &format!("{rules}.tmp"), wr)).is_none());
    assert!(w
        .on_event(&open(7, &format!("{}/sub/r.yaml", dir.display()), wr))
        .is_none());
    assert!(w.on_event(&open(std::process::id(), &rules, wr)).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn signal_names() {
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(signal_name(19), "SIGSTOP");
    assert_eq!(signal_name(40), "signal 40");
}
