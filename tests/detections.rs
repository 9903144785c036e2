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
//! ([`cases::more_rules`]: renamed `true` binaries, fake credential files, a fake
//! runtime socket, connects made inside `unshare -n`); issue 18's hands-on
//! detections ([`hands_on::hands_on`]: discovery bursts in a container,
//! credential hunting, staging, exfiltration by everyday tools, pipe-to-shell,
//! history and log wiping); and the network-scan
//! harness of `common/netns.rs` (vertical scan, horizontal
//! sweep, benign client; every connect event checked, and the stateful scan
//! rules' alerts by [`stateful::assert_scan_alerts`]).
//!
//! Network rule: packets go only to 127.0.0.1 or to the test's own network
//! namespace (`common/netns.rs`); the connect to the instance metadata
//! address is made inside `unshare -n` (no route out).
//!
//! Run: `cargo test -p sensor --features e2e --test detections -- --test-threads=1`
//!
//! This file holds the shared context (the rule names, [`Ctx`]) and the one
//! test; `detections/` holds the rest: `harness.rs` (the two `mamori`
//! children and their output files), `http.rs` (a tiny HTTP server),
//! `scenarios.rs` (the hand-written scenarios), `cases.rs` (the table of
//! cases for the other stateless rules), `stateful.rs` (the scan harness
//! and the sequence and threshold rules) and `hands_on.rs` (issue 18).

#[path = "common/mod.rs"]
mod common;
#[path = "common/container.rs"]
mod container;
#[path = "common/netns.rs"]
mod netns;

#[path = "detections/cases.rs"]
mod cases;
#[path = "detections/hands_on.rs"]
mod hands_on;
#[path = "detections/harness.rs"]
mod harness;
#[path = "detections/http.rs"]
mod http;
#[path = "detections/scenarios.rs"]
mod scenarios;
#[path = "detections/stateful.rs"]
mod stateful;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use container::{FakeContainer, InContainer};
use harness::{capture_cmd, run_cmd, run_ok, start_both, tool, Alerts, Events, Lines, TempDir};
use serde_json::Value;

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

// ---------------------------------------------------------- shared context

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

/// An output field as text (strings bare, numbers printed).
fn text(a: &Value, k: &str) -> String {
    match &a["output_fields"][k] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
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

    scenarios::recon_tools(&mut cx);
    scenarios::sa_token(&mut cx);
    scenarios::imds(&mut cx, &ctr);
    scenarios::upload(&mut cx);
    scenarios::remote_shell(&mut cx, &ctr);
    cases::more_rules(&mut cx, &ctr);
    let scan = stateful::scans(&mut cx);
    stateful::stateful_rules(&mut cx, &ctr);
    let extra_containers = hands_on::hands_on(&mut cx, &ctr);

    sentinel(&cx.dir, &mut cx.alerts);
    let all = &cx.alerts.0.items;
    for c in &cx.checks {
        let hits: Vec<&Value> = all.iter().filter(|a| (c.pred)(a)).collect();
        assert_eq!(hits.len(), c.n, "alerts for {}: {hits:#?}", c.what);
    }
    cx.keep.clear();
    drop(extra_containers);
    stateful::assert_scan_alerts(all, &scan);
    let drops: Vec<&Value> = all.iter().filter(|a| a["source"] == "internal").collect();
    eprintln!("kernel drop reports during the run: {}", drops.len());

    let (st, log) = cap.stop();
    assert!(st.success(), "capture exited with {st}: {log:?}");
    let (st, log) = run.stop();
    assert!(st.success(), "run exited with {st}: {log:?}");
    eprintln!("{}", log.last().map(String::as_str).unwrap_or(""));
    eprintln!("detections e2e took {:?}", t0.elapsed());
}
