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
    let text = a["output"].as_str().unwrap();
    assert!(text.contains("secret read (file="));
    // The default `append_output` adds what the rule's output lacks (its
    // own `proc=%proc.name` is not repeated), in the text and the fields.
    let cat_pid = a["output_fields"]["proc.pid"]
        .as_u64()
        .expect("proc.pid appended");
    assert!(text.contains(&format!(" pid={cat_pid} ")), "{text}");
    assert!(text.contains(" container_id=host "), "{text}");
    assert!(text.contains(" k8s_pod=<NA>"), "{text}");
    assert_eq!(a["output_fields"]["container.id"], "host");
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

/// `mamori run` with the shipped rules: attach, run `act`, let the alerts
/// through, stop with SIGINT and return the alerts printed on stdout.
fn shipped_rules_alerts(act: impl FnOnce()) -> Vec<serde_json::Value> {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules", shipped]);
    let (child, _log, _stderr) = common::spawn_until_attached(cmd);
    act();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mamori run exited with {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Path tricks (issue 13): `.`, `..` and repeated slashes, a relative path
/// after `cd`, a relative path from a deep cwd, and an `openat` whose dirfd
/// is closed at once by a process that exits at once — none hides a
/// shadow-file read from the shipped rule; `fd.name` is the canonical path.
#[test]
fn shadow_read_through_path_tricks_is_caught() {
    let deep = std::env::temp_dir().join(format!("mamori-deep-{}/a/b/c", std::process::id()));
    std::fs::create_dir_all(&deep).unwrap();
    let ups = "../".repeat(deep.components().count() + 2);
    let tricks = [
        "cat /etc/./shadow".to_string(),
        "cat //etc///shadow".into(),
        "cat /tmp/../etc/shadow".into(),
        "cd /etc && cat shadow".into(),
        format!("cd {} && cat ./{ups}etc/shadow", deep.display()),
        "python3 -c 'import os; d = os.open(\"/etc\", os.O_RDONLY | os.O_DIRECTORY); \
         f = os.open(\"shadow\", os.O_RDONLY, dir_fd=d); os.close(d); os.read(f, 1)'"
            .into(),
    ];
    let alerts = shipped_rules_alerts(|| {
        for t in &tricks {
            let st = Command::new("sh")
                .args(["-c", t])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "{t}");
        }
        // `/etc/shadow/.` fails (ENOTDIR): not a read, it must not fire.
        let st = Command::new("cat")
            .arg("/etc/shadow/.")
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(!st.success());
    });
    let shadow: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "Shadow File Read by Untrusted Process")
        .collect();
    for a in &shadow {
        assert_eq!(a["output_fields"]["fd.name"], "/etc/shadow", "{a}");
    }
    let cmdline = |a: &&serde_json::Value| -> String {
        let o = a["output"].as_str().unwrap_or_default();
        let c = o.split(" cmd=").nth(1).unwrap_or_default();
        c.split(" exe=").next().unwrap_or_default().to_string()
    };
    let fired: Vec<String> = shadow.iter().map(cmdline).collect();
    let expect = [
        "cat /etc/./shadow".to_string(),
        "cat //etc///shadow".into(),
        "cat /tmp/../etc/shadow".into(),
        "cat shadow".into(),
        format!("cat ./{ups}etc/shadow"),
    ];
    for e in &expect {
        assert!(fired.contains(e), "no alert for `{e}`; fired: {fired:?}");
    }
    assert!(
        fired.iter().any(|c| c.starts_with("python3")),
        "no alert for the openat with a closed dirfd; fired: {fired:?}"
    );
    assert_eq!(
        fired.len(),
        expect.len() + 1,
        "one alert per trick: {fired:?}"
    );
    std::fs::remove_dir_all(deep.ancestors().nth(3).unwrap()).ok();
}

/// Exec tricks (issue 13): a tool run through a symlink with an innocent
/// name (and an argv longer than the capture limit), and a binary run from a
/// memfd, are caught by the shipped rules from the file the kernel loaded
/// (`proc.exepath`), not from the name; the argv's tail is kept.
#[test]
fn renamed_and_fileless_execs_are_caught() {
    let dir = std::env::temp_dir().join(format!("mamori-exec-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tool = dir.join("nmap");
    std::fs::copy("/bin/true", &tool).unwrap();
    std::os::unix::fs::symlink("nmap", dir.join("update-check")).unwrap();
    let alerts = shipped_rules_alerts(|| {
        // An argv longer than the capture limit: its tail still arrives.
        let st = Command::new("./update-check")
            .args(["-sS", &"A".repeat(6000), "--mamori-tail"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success());
        let fileless = "import os\n\
            f = os.memfd_create('payload', 0)\n\
            os.write(f, open('/bin/true', 'rb').read())\n\
            os.execv('/proc/self/fd/%d' % f, ['payload', 'mamori-e2e'])\n";
        let st = Command::new("python3")
            .args(["-c", fileless])
            .status()
            .unwrap();
        assert!(st.success(), "the memfd exec ran /bin/true");
    });
    let named = |rule: &str| -> Vec<&serde_json::Value> {
        alerts.iter().filter(|a| a["rule"] == rule).collect()
    };
    let renamed = named("Known Attack Tool Run Under Another Name");
    assert_eq!(renamed.len(), 1, "{alerts:#?}");
    let f = &renamed[0]["output_fields"];
    assert_eq!(f["proc.name"], "update-check");
    assert_eq!(f["proc.exepath"], tool.to_str().unwrap());
    let cmdline = renamed[0]["output"].as_str().unwrap();
    assert!(
        cmdline.contains(" --mamori-tail"),
        "the argv tail is kept: {cmdline}"
    );
    let memfd = named("Fileless Execution from Memory");
    assert_eq!(memfd.len(), 1, "{alerts:#?}");
    let f = &memfd[0]["output_fields"];
    assert_eq!(f["proc.exepath"], "memfd:payload");
    // proc.name is the comm the kernel derives from `/proc/self/fd/N`.
    let cmdline = f["proc.cmdline"].as_str().unwrap();
    assert!(cmdline.ends_with(" mamori-e2e"), "{cmdline}");
    std::fs::remove_dir_all(&dir).ok();
}
