//! End-to-end: `mamori run` under an open flood (root only). Two threads
//! loop `openat`+`close` as fast as they can for a bounded time while the
//! shipped rules and test rules are loaded, and an exec, a connect and a
//! fork storm are planted. No exec, fork, exit or connect event may be lost
//! (the kernel sheds opens first), the planted exec and connect must alert,
//! `/healthz` must answer `200` every time it is asked, SIGTERM must end the
//! process within the grace period, and any loss must raise the drop alert.
//!
//! Run: `cargo test -p sensor --features e2e --test flood -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// The test rules; `PORT` is the planted connect's port.
const RULES: &str = r#"
- rule: E2E flood secret read
  desc: a process read the test's secret file
  condition: evt.type in (open, openat, openat2) and fd.name endswith "mamori-flood-secret.txt" and proc.name=cat
  output: secret read (file=%fd.name proc=%proc.name)
  priority: WARNING

- rule: E2E flood tool exec
  desc: the planted tool ran
  condition: evt.type = execve and proc.args contains "mamori-flood-marker"
  output: tool ran (cmd=%proc.cmdline)
  priority: WARNING

- rule: E2E flood connect
  desc: the planted connect
  condition: evt.type = connect and fd.rip = 127.0.0.1 and fd.rport = PORT
  output: connect (%fd.name)
  priority: WARNING
"#;

/// Forks (each `true`: fork, exec, exit) planted during the flood.
const FORK_STORM: usize = 200;

/// How long the flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(12);
/// The configured grace period, and the slack allowed on top of it for the
/// process to exit (bounded final drain, thread joins).
const GRACE: Duration = Duration::from_secs(3);
const EXIT_SLACK: Duration = Duration::from_secs(2);

/// One `GET /healthz`; the status line, or why there was none.
fn health(addr: &str) -> Result<String, String> {
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    c.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer.lines().next().unwrap_or_default().to_string())
}

/// `threads` threads opening and closing `/etc/hostname` until `stop`.
fn flood(
    threads: usize,
    stop: Arc<AtomicBool>,
    opens: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let (stop, opens) = (stop.clone(), opens.clone());
            std::thread::spawn(move || {
                let path = c"/etc/hostname";
                let deadline = Instant::now() + FLOOD_FOR;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for _ in 0..256 {
                        // SAFETY: a NUL-terminated path; the fd is closed at once.
                        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                        if fd >= 0 {
                            // SAFETY: closing the fd just opened.
                            unsafe { libc::close(fd) };
                        }
                    }
                    n += 256;
                }
                opens.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect()
}

/// The planted behaviour: a sensitive read, a tool exec, a connect and a
/// fork storm, all during the flood.
fn plant(secret: &std::path::Path, tool: &std::path::Path, port: u16) {
    let st = Command::new("cat").arg(secret).output().unwrap();
    assert!(st.status.success());
    let st = Command::new(tool)
        .arg("mamori-flood-marker")
        .status()
        .unwrap();
    assert!(st.success());
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    for _ in 0..FORK_STORM {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
}

#[test]
fn health_answers_and_sigterm_is_honoured_during_an_open_flood() {
    let dir = std::env::temp_dir().join(format!("mamori-flood-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES.replace("PORT", &port.to_string())).unwrap();
    let tool = dir.join("mamori-flood-tool");
    std::fs::copy("/bin/true", &tool).unwrap();
    let secret = dir.join("mamori-flood-secret.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    let alert_file = dir.join("alerts.jsonl");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules", shipped, "--rules"])
        .arg(&rules)
        .args(["-o", "outputs.stdout.enabled=false"])
        .arg("-o")
        .arg(format!("outputs.file.path={}", alert_file.display()))
        .arg("-o")
        .arg(format!("outputs.grace_period={}s", GRACE.as_secs()))
        .args(["--health-addr", "127.0.0.1:0"]);
    let (child, log, stderr_rx) = common::spawn_until_attached(cmd);
    let addr = log
        .iter()
        .find_map(|l| l.split("health endpoint on http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/healthz"))
        .unwrap_or_else(|| panic!("no health endpoint line: {log:?}"))
        .to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let opens = Arc::new(AtomicU64::new(0));
    let flooders = flood(2, stop.clone(), opens.clone());
    let start = Instant::now();
    let mut answers = Vec::new();
    let mut planted = false;
    // Ask every half second while the flood lasts (bounded by FLOOD_FOR).
    while start.elapsed() < FLOOD_FOR - Duration::from_secs(1) {
        let asked = Instant::now();
        answers.push((start.elapsed(), health(&addr), asked.elapsed()));
        if !planted && start.elapsed() > Duration::from_secs(3) {
            plant(&secret, &tool, port);
            planted = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGTERM while the flood still runs.
    let term_at = Instant::now();
    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let took = term_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    // The rest of stderr, up to EOF (the reader thread ends with the child).
    let mut rest = Vec::new();
    while let Ok(line) = stderr_rx.recv_timeout(Duration::from_secs(5)) {
        rest.push(line);
    }
    let stderr = rest.join("\n");
    eprintln!(
        "flood: {} opens by the test; SIGTERM to exit {took:?}; health answers {:?}",
        opens.load(Ordering::Relaxed),
        answers
    );

    assert!(answers.len() >= 10, "asked too few times: {answers:?}");
    for (at, answer, latency) in &answers {
        assert_eq!(
            answer.as_deref(),
            Ok("HTTP/1.1 200 OK"),
            "/healthz at {at:?} into the flood (asked for {latency:?}); stderr: {stderr}"
        );
    }
    assert!(
        out.status.success(),
        "exit {}; stderr: {stderr}",
        out.status
    );
    assert!(
        took < GRACE + EXIT_SLACK,
        "SIGTERM took {took:?} to end mamori (grace {GRACE:?}); stderr: {stderr}"
    );
    let alerts: Vec<serde_json::Value> = std::fs::read_to_string(&alert_file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON alert line"))
        .collect();
    assert!(planted);
    check_losses_and_alerts(&alerts, &stderr);
    std::fs::remove_dir_all(&dir).ok();
}

/// Losses, if any, were reported as drop alerts and counted on the summary
/// line; none of them is an exec, fork, exit or connect; the planted exec and
/// connect alerted (and the planted read too when nothing was lost).
fn check_losses_and_alerts(alerts: &[serde_json::Value], stderr: &str) {
    let summary = stderr
        .lines()
        .find(|l| l.contains(" lost in the kernel"))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let lost: u64 = summary
        .split(" alerts, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the loss count: {summary}"));
    let drops: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "mamori internal: kernel event drop")
        .collect();
    let drop_alerts = drops.len();
    for kind in ["exec", "fork", "exit", "connect"] {
        let lost: u64 = drops
            .iter()
            .map(|a| {
                a["output_fields"][format!("n_drops_{kind}")]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(
            lost, 0,
            "{kind} events lost during an open flood: {summary}"
        );
    }
    let shed: u64 = drops
        .iter()
        .map(|a| {
            a["output_fields"]["n_drops_open_shed"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    for rule in ["E2E flood tool exec", "E2E flood connect"] {
        assert!(
            alerts.iter().any(|a| a["rule"] == rule),
            "the planted {rule:?} did not alert; {summary}"
        );
    }
    if lost > 0 {
        assert!(drop_alerts > 0, "{lost} lost but no drop alert: {summary}");
    } else {
        // Nothing lost: the read planted during the flood must have alerted.
        assert!(
            alerts.iter().any(|a| a["rule"] == "E2E flood secret read"),
            "no loss, yet the planted read did not alert: {alerts:?}"
        );
    }
    eprintln!("flood: {summary}; {drop_alerts} drop alerts, {shed} opens shed");
}
