//! End-to-end test of `mamori run` on the real kernel (root only): the real
//! binary loads a rule file, real processes do the watched thing and a benign
//! twin, and the alerts on stdout are checked.
//!
//! Run: `cargo test -p sensor --features e2e --test run -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::Duration,
};

const RULES: &str = r#"
- list: e2e_secret_names
  items: [mamori-e2e-secret.txt]

- macro: e2e_open_read
  condition: evt.type in (open, openat, openat2) and evt.is_open_read=true and fd.typechar='f' and fd.num>=0

- rule: E2E secret read
  desc: a process read the test's secret file
  condition: e2e_open_read and fd.filename in (e2e_secret_names) and proc.name=cat
  output: secret read (file=%fd.name proc=%proc.name cmd=%proc.cmdline parent=%proc.pname)
  priority: WARNING
  tags: [e2e]

- rule: E2E tool exec
  desc: a renamed true ran with a marker argument
  condition: evt.type=execve and proc.args contains "mamori-e2e-marker"
  output: tool ran (cmd=%proc.cmdline exe=%proc.exepath)
  priority: NOTICE
"#;

#[test]
fn run_prints_alerts_for_live_events_and_not_for_benign_twins() {
    let dir = std::env::temp_dir().join(format!("mamori-run-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let secret = dir.join("mamori-e2e-secret.txt");
    let benign = dir.join("mamori-e2e-benign.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    std::fs::write(&benign, "hello").unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    let alert_file = dir.join("alerts.jsonl");
    cmd.args(["run", "--rules"])
        .arg(&rules)
        .arg("-o")
        .arg(format!("outputs.file.path={}", alert_file.display()))
        .args(["--health-addr", "127.0.0.1:0"]);
    let (child, log, _stderr) = common::spawn_until_attached(cmd);
    assert!(log.iter().any(|l| l.contains("2 active rules")), "{log:?}");
    // Attached, so the health endpoint says ready.
    let health = log
        .iter()
        .find_map(|l| l.split("health endpoint on http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/healthz"))
        .unwrap_or_else(|| panic!("no health endpoint line: {log:?}"))
        .to_string();
    let mut conn = std::net::TcpStream::connect(&health).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The watched behaviour and its benign twins.
    for path in [&secret, &benign] {
        let st = Command::new("cat")
            .arg(path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let tool = dir.join("nmap");
    std::fs::copy("/bin/true", &tool).unwrap();
    assert!(Command::new(&tool)
        .args(["-sS", "mamori-e2e-marker"])
        .status()
        .unwrap()
        .success());
    assert!(Command::new(&tool)
        .args(["-sS", "other"])
        .status()
        .unwrap()
        .success());

    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mamori run exited with {}",
        out.status
    );
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is an alert JSON object"))
        .collect();

    let secret_alerts: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "E2E secret read")
        .collect();
    assert_eq!(
        secret_alerts.len(),
        1,
        "exactly the secret read fires: {alerts:#?}"
    );
    let a = secret_alerts[0];
    assert_eq!(a["priority"], "Warning");
    assert_eq!(a["source"], "syscall");
    assert_eq!(a["tags"], serde_json::json!(["e2e"]));
    assert_eq!(a["output_fields"]["fd.name"], secret.to_str().unwrap());
    assert_eq!(a["output_fields"]["proc.name"], "cat");
    assert!(a["output"].as_str().unwrap().contains("secret read (file="));
    assert!(a["time"].as_str().unwrap().ends_with('Z'));
    assert!(a["hostname"].as_str().is_some_and(|h| !h.is_empty()));

    let tool_alerts: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "E2E tool exec")
        .collect();
    assert_eq!(
        tool_alerts.len(),
        1,
        "only the marked exec fires: {alerts:#?}"
    );
    assert_eq!(
        tool_alerts[0]["output_fields"]["proc.cmdline"],
        "nmap -sS mamori-e2e-marker"
    );
    // The file sink got the same alerts as stdout (flushed at shutdown).
    let in_file: Vec<serde_json::Value> = std::fs::read_to_string(&alert_file)
        .expect("the file sink wrote its file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON alert line"))
        .collect();
    assert_eq!(in_file, alerts);
    std::fs::remove_dir_all(&dir).ok();
}

/// Path tricks (issue 13): `.`, `..` and repeated slashes in an absolute
/// path do not hide a shadow-file read from the shipped rule; `fd.name` is
/// the canonical path.
#[test]
fn shadow_read_through_dot_and_slash_tricks_is_caught() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules", shipped]);
    let (child, _log, _stderr) = common::spawn_until_attached(cmd);
    let tricks = [
        "/etc/./shadow",
        "//etc///shadow",
        "/tmp/../etc/shadow",
        "/etc/shadow/.",
    ];
    for t in tricks {
        let st = Command::new("cat")
            .arg(t)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // `/etc/shadow/.` fails (ENOTDIR): not a read, it must not fire.
        assert_eq!(st.success(), t != "/etc/shadow/.", "cat {t}");
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mamori run exited with {}",
        out.status
    );
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut cmdlines: Vec<&str> = alerts
        .iter()
        .filter(|a| a["rule"] == "Shadow File Read by Untrusted Process")
        .inspect(|a| assert_eq!(a["output_fields"]["fd.name"], "/etc/shadow", "{a}"))
        .filter_map(|a| {
            a["output"]
                .as_str()?
                .split(" cmd=")
                .nth(1)?
                .split(" exe=")
                .next()
        })
        .filter(|c| c.starts_with("cat "))
        .collect();
    cmdlines.sort();
    assert_eq!(
        cmdlines,
        [
            "cat //etc///shadow",
            "cat /etc/./shadow",
            "cat /tmp/../etc/shadow"
        ],
        "one alert per successful trick: {alerts:#?}"
    );
}
