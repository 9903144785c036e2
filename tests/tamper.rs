//! Tamper alerts, each fired by a real action against a running `mamori
//! run` (root only): signals sent with kill(1), a rules file and the binary
//! opened for writing, and gdb attaching to mamori and closing the link of
//! its `sys_exit` program, which detaches it. Each alert must name the
//! acting process.
//!
//! Run: `cargo test -p sensor --features e2e --test tamper -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const RULES: &str = "- rule: tamper e2e placeholder\n  desc: d\n  condition: evt.type = openat and fd.name = /nonexistent/mamori-tamper\n  output: o\n  priority: INFO\n";

/// The next alert (JSON on stdout) whose rule is `rule` and that satisfies
/// `also`, within 20 s.
fn expect_alert(
    rx: &mpsc::Receiver<String>,
    rule: &str,
    also: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        let a: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        if a["rule"] == rule && also(&a) {
            return a;
        }
        seen.push(l);
    }
    panic!("no '{rule}' alert within 20 s; other alerts: {seen:#?}");
}

fn run(cmd: &mut Command) -> u32 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// mamori's fd holding the link of its `sys_exit` program.
fn sys_exit_link_fd(pid: u32) -> u32 {
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let e = e.unwrap();
        let info = std::fs::read_to_string(e.path()).unwrap_or_default();
        if info.contains("link_type:\traw_tracepoint") && info.contains("sys_exit") {
            return e.file_name().to_string_lossy().parse().unwrap();
        }
    }
    panic!("no raw_tracepoint link fd for sys_exit in /proc/{pid}/fdinfo");
}

/// gdb attaches to mamori and calls `close(fd)` in it; retried (at most 3
/// times) when gdb's inferior call is interrupted. Returns the pid of the
/// gdb that closed it.
fn close_in_mamori(pid: u32, fd: u32) -> u32 {
    let mut errors = Vec::new();
    for _ in 0..3 {
        let gdb = Command::new("gdb")
            .args(["-nx", "-batch", "-p", &pid.to_string(), "-ex"])
            .arg(format!("call (int)close({fd})"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdb is needed for the ptrace test (.ci/run installs it)");
        let gdb_pid = gdb.id();
        let out = gdb.wait_with_output().unwrap();
        let closed = !std::path::Path::new(&format!("/proc/{pid}/fdinfo/{fd}")).exists();
        if out.status.success() && closed {
            return gdb_pid;
        }
        errors.push(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("gdb could not close fd {fd} in mamori: {errors:#?}");
}

#[test]
fn signals_writes_ptrace_and_a_detached_program_each_raise_an_alert_naming_the_actor() {
    let dir = std::env::temp_dir().join(format!("mamori-tamper-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    let rules = rules_dir.join("r.yaml");
    std::fs::write(&rules, RULES).unwrap();

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules"]).arg(&rules_dir);
    let (mut child, _log, _stderr) = common::spawn_until_attached(cmd);
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Let the first check note the programs and links.
    std::thread::sleep(Duration::from_secs(1));

    // A signal mamori handles (SIGHUP: reload) from kill(1).
    let killer = run(Command::new("kill").args(["-HUP", &pid.to_string()]));
    let a = expect_alert(&rx, "mamori internal: tamper: signal sent to mamori", |a| {
        a["output_fields"]["signal"] == "SIGHUP"
    });
    assert_eq!(a["output_fields"]["actor.pid"], killer, "{a}");
    assert_eq!(a["output_fields"]["actor.name"], "kill", "{a}");
    assert_eq!(a["source"], "internal");

    // Stopped and continued: reported once mamori runs again.
    let stopper = run(Command::new("kill").args(["-STOP", &pid.to_string()]));
    std::thread::sleep(Duration::from_millis(300));
    run(Command::new("kill").args(["-CONT", &pid.to_string()]));
    let a = expect_alert(&rx, "mamori internal: tamper: signal sent to mamori", |a| {
        a["output_fields"]["signal"] == "SIGSTOP"
    });
    assert_eq!(a["output_fields"]["actor.pid"], stopper, "{a}");
    assert_eq!(a["priority"], "Critical");

    // A rules file opened for writing (touch: O_WRONLY|O_CREAT).
    let toucher = run(Command::new("touch").arg(&rules));
    let a = expect_alert(
        &rx,
        "mamori internal: tamper: mamori file opened for writing",
        |a| a["output_fields"]["fd.name"] == rules.to_str().unwrap(),
    );
    assert_eq!(a["output_fields"]["actor.pid"], toucher, "{a}");
    assert_eq!(a["output_fields"]["actor.name"], "touch", "{a}");

    // The running binary opened for writing: refused (ETXTBSY), still an
    // attempt to report.
    let bin = std::fs::canonicalize(env!("CARGO_BIN_EXE_mamori")).unwrap();
    let dd = run(Command::new("dd")
        .arg("if=/dev/null")
        .arg(format!("of={}", bin.display()))
        .args(["conv=notrunc", "oflag=append"]));
    let a = expect_alert(
        &rx,
        "mamori internal: tamper: mamori file opened for writing",
        |a| a["output_fields"]["fd.name"] == bin.to_str().unwrap(),
    );
    assert_eq!(a["output_fields"]["actor.pid"], dd, "{a}");
    assert_eq!(a["output_fields"]["evt.res"], -libc::ETXTBSY as i64, "{a}");

    // gdb attaches (ptrace) and closes the sys_exit link in mamori: the
    // program is detached. Both are reported, naming gdb.
    let fd = sys_exit_link_fd(pid);
    let gdb_pid = close_in_mamori(pid, fd);
    // (an earlier, interrupted gdb has its own alert, skipped here)
    let a = expect_alert(&rx, "mamori internal: tamper: ptrace of mamori", |a| {
        a["output_fields"]["actor.pid"] == gdb_pid
    });
    assert_eq!(a["output_fields"]["actor.name"], "gdb", "{a}");
    let a = expect_alert(
        &rx,
        "mamori internal: tamper: kernel program detached",
        |_| true,
    );
    assert_eq!(a["output_fields"]["program"], "mamori_sys_exit", "{a}");
    assert_eq!(a["output_fields"]["actor.pid"], gdb_pid, "{a}");

    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
