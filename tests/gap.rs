//! End-to-end test of gap accounting (root only): the real binary keeps its
//! state file; after `kill -9` and a restart it raises `mamori internal:
//! sensor gap` (a crash, from the last heartbeat), after a clean stop the
//! same alert says so; internal and rule alerts name the same node.
//!
//! Run: `cargo test -p sensor --features e2e --test gap -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const RULES: &str = r#"
- rule: E2E gap marker read
  desc: cat read the test's marker file
  condition: evt.type in (open, openat, openat2) and fd.filename=mamori-gap-marker.txt and proc.name=cat
  output: marker read (file=%fd.name)
  priority: WARNING
"#;

const NODE: &str = "e2e-gap-node";

fn mamori(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules"])
        .arg(dir.join("rules.yaml"))
        .arg("-o")
        .arg(format!(
            "gap.state_file={}",
            dir.join("state/gap.json").display()
        ))
        .args(["-o", "gap.heartbeat=200ms"])
        .env("NODE_NAME", NODE);
    cmd
}

/// Stop with SIGINT; the alerts printed on stdout.
fn stop(child: std::process::Child) -> Vec<serde_json::Value> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect()
}

fn gap_alert(alerts: &[serde_json::Value]) -> &serde_json::Value {
    let gaps: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "mamori internal: sensor gap")
        .collect();
    assert_eq!(gaps.len(), 1, "one gap alert: {alerts:#?}");
    gaps[0]
}

#[test]
fn kill_9_then_restart_reports_the_gap() {
    let dir = std::env::temp_dir().join(format!("mamori-gap-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), RULES).unwrap();
    let marker = dir.join("mamori-gap-marker.txt");
    std::fs::write(&marker, "x").unwrap();

    // First start: no previous state, no gap alert.
    let (mut first, _, _) = common::spawn_until_attached(mamori(&dir));
    // Let a few heartbeats land, then kill without a chance to clean up.
    std::thread::sleep(Duration::from_millis(800));
    let killed_at = Instant::now();
    first.kill().unwrap(); // SIGKILL
    let out = first.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sensor gap"),
        "no gap on a first start"
    );
    std::thread::sleep(Duration::from_millis(1500));

    let (second, _, rest) = common::spawn_until_attached(mamori(&dir));
    let down = killed_at.elapsed().as_secs_f64();
    // The gap is said on stderr too (right after the attach line).
    let said = rest
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("no line after attach: {e}"));
    assert!(said.contains("sensor gap"), "{said}");
    let st = Command::new("cat")
        .arg(&marker)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(500));
    let alerts = stop(second);
    let gap = gap_alert(&alerts);
    assert_eq!(gap["priority"], "Critical");
    assert_eq!(gap["source"], "internal");
    let f = &gap["output_fields"];
    assert_eq!(f["gap.previous_end"], "crash", "{gap:#}");
    assert_eq!(f["gap.previous_pid"], out_pid(&f["gap.previous_pid"]));
    let secs = f["gap.seconds"].as_f64().unwrap();
    // From the last heartbeat (at most 200 ms before the kill, plus
    // scheduling slack) to the second attach.
    assert!(
        secs >= 1.5 && secs <= down + 0.5,
        "gap {secs}s, down {down}s"
    );
    // Internal and rule alerts name the same node.
    let rule = alerts
        .iter()
        .find(|a| a["rule"] == "E2E gap marker read")
        .unwrap_or_else(|| panic!("the rule alert: {alerts:#?}"));
    assert_eq!(rule["hostname"], NODE);
    assert_eq!(gap["hostname"], NODE);

    // After the clean stop above, a restart reports a clean stop.
    std::thread::sleep(Duration::from_millis(300));
    let (third, _, _) = common::spawn_until_attached(mamori(&dir));
    std::thread::sleep(Duration::from_millis(300));
    let alerts = stop(third);
    let gap = gap_alert(&alerts);
    assert_eq!(gap["priority"], "Notice");
    assert_eq!(gap["output_fields"]["gap.previous_end"], "clean_stop");
    let secs = gap["output_fields"]["gap.seconds"].as_f64().unwrap();
    assert!(secs > 0.2 && secs < 30.0, "{secs}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A pid is a positive integer.
fn out_pid(v: &serde_json::Value) -> serde_json::Value {
    assert!(v.as_u64().is_some_and(|p| p > 1), "{v}");
    v.clone()
}
