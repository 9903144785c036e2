//! The harness of the detections test: temp directories, bounded helper
//! processes, the two `mamori` children (`run` with alerts to a file,
//! `capture` with connect events to a file) and incremental readers of their
//! JSON-lines outputs.

use std::{
    io::Read,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mamori_rules::event::{Event, EvtType};
use serde_json::Value;

use crate::common;

/// How long an expected alert or event may take to show up.
const WAIT: Duration = Duration::from_secs(20);
/// Bound on every helper process the scenarios run.
const CMD_LIMIT: Duration = Duration::from_secs(20);

/// A temp directory removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("mamori-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of `/bin/true` (or `src`) named `name` in `dir`.
pub(crate) fn tool(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(src, &p).unwrap_or_else(|e| panic!("copy {src} to {}: {e}", p.display()));
    p
}

/// Run `cmd` to completion within [`CMD_LIMIT`] (killed after it); its pid
/// and output.
pub(crate) fn run_bounded(mut cmd: Command) -> (u32, Output) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let deadline = Instant::now() + CMD_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {CMD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (pid, child.wait_with_output().unwrap())
}

/// [`run_bounded`] and require success; its pid and stdout.
pub(crate) fn run_ok(cmd: Command) -> (u32, String) {
    let shown = format!("{cmd:?}");
    let (pid, out) = run_bounded(cmd);
    assert!(
        out.status.success(),
        "{shown} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `mamori` child: interrupted (then killed, if need be) on drop.
pub(crate) struct Mamori {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    pub(crate) log: Vec<String>,
}

impl Mamori {
    pub(crate) fn start(cmd: Command) -> Mamori {
        let (child, log, stderr) = common::spawn_until_attached(cmd);
        Mamori {
            child: Some(child),
            stderr,
            log,
        }
    }

    /// SIGINT, then wait (bounded); the exit status and all of stderr.
    pub(crate) fn stop(&mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mamori did not stop within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.log.extend(self.stderr.try_iter());
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for Mamori {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            for _ in 0..500 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mamori run` on the shipped rules, alerts (every priority) to `file`.
pub(crate) fn run_cmd(file: &Path) -> Command {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.arg("run")
        .arg("--rules")
        .arg(rules)
        .arg("-o")
        .arg(format!("outputs.file.path={}", file.display()))
        .args(["-o", "outputs.file.minimum_priority=debug"])
        .args(["-o", "outputs.stdout.enabled=false"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG");
    cmd
}

/// `mamori capture` of connect and exec events, JSON lines to `file`.
pub(crate) fn capture_cmd(file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    // Exec events too, so the enricher knows the parents of processes gone
    // before their connect is handled.
    cmd.args(["capture", "--json", "--events", "connect,exec", "-o"])
        .arg(file)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG");
    cmd
}

/// Start `mamori run` and `mamori capture` side by side (attaching takes
/// seconds each); neither is leaked if the other fails.
pub(crate) fn start_both(run: Command, capture: Command) -> (Mamori, Mamori) {
    let (r, c) = std::thread::scope(|s| {
        let r = s.spawn(move || Mamori::start(run));
        let c = s.spawn(move || Mamori::start(capture));
        (r.join(), c.join())
    });
    match (r, c) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
    }
}

/// A JSON-lines file another process appends to, read incrementally.
pub(crate) struct Lines<T> {
    path: PathBuf,
    offset: u64,
    pub(crate) items: Vec<T>,
}

impl<T: serde::de::DeserializeOwned> Lines<T> {
    pub(crate) fn new(path: &Path) -> Self {
        Lines {
            path: path.to_path_buf(),
            offset: 0,
            items: Vec::new(),
        }
    }

    /// Parse the complete lines appended since the last call.
    pub(crate) fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(self.offset)).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let v = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "bad line in {}: {e}: {}",
                    self.path.display(),
                    String::from_utf8_lossy(line)
                )
            });
            self.items.push(v);
        }
        self.offset += complete as u64;
    }
}

/// The alert file of `mamori run`.
pub(crate) struct Alerts(pub(crate) Lines<Value>);

impl Alerts {
    /// Wait (bounded) until `n` alerts of `rule` satisfy `pred`; returns them.
    fn wait_n(&mut self, rule: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.0.poll();
            let hits: Vec<Value> = self
                .0
                .items
                .iter()
                .filter(|a| a["rule"] == rule && pred(a))
                .cloned()
                .collect();
            if hits.len() >= n || Instant::now() > deadline {
                assert_eq!(
                    hits.len(),
                    n,
                    "alerts of {rule:?} matching the scenario; all alerts so far: {:#?}",
                    self.0.items
                );
                return hits;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn wait_one(&mut self, rule: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_n(rule, 1, pred).remove(0)
    }
}

/// The event file of `mamori capture`. It is flushed when an event arrives
/// 200 ms after the last flush, so polls nudge it with a loopback connect to
/// a closed port.
pub(crate) struct Events {
    lines: Lines<Event>,
    closed_port: u16,
}

impl Events {
    pub(crate) fn new(path: &Path) -> Events {
        let closed_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Events {
            lines: Lines::new(path),
            closed_port,
        }
    }

    /// Connect events of process `pid` matching `pred`, waiting (bounded)
    /// until there are at least `n`.
    pub(crate) fn connects_of(
        &mut self,
        pid: u32,
        n: usize,
        pred: impl Fn(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.lines.poll();
            let mine: Vec<Event> = self
                .lines
                .items
                .iter()
                .filter(|e| e.evt_type == EvtType::Connect && e.proc.pid == pid && pred(e))
                .cloned()
                .collect();
            if mine.len() >= n {
                return mine;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} connect events of pid {pid} captured",
                mine.len()
            );
            let _ = std::net::TcpStream::connect_timeout(
                &(Ipv4Addr::LOCALHOST, self.closed_port).into(),
                Duration::from_millis(200),
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
