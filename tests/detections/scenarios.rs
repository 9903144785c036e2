//! The hand-written scenarios of the detections test: renamed scanners, a
//! service-account token read, the instance metadata address from a
//! container, `curl -T` upload, and ssh/scp in a container; each with its
//! benign twin.

use std::{net::IpAddr, path::Path, process::Command};

use mamori_rules::event::Event;

use crate::container::FakeContainer;
use crate::harness::{run_bounded, run_ok, tool};
use crate::http::HttpServer;
use crate::{field, text, Ctx, IMDS, IMDS_RULE, RECON, REMOTE_SHELL, SA_DIR, SA_TOKEN, UPLOAD};

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
pub(crate) fn recon_tools(cx: &mut Ctx) {
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
pub(crate) fn sa_token(cx: &mut Ctx) {
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
pub(crate) fn imds(cx: &mut Ctx, ctr: &FakeContainer) {
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
pub(crate) fn upload(cx: &mut Ctx) {
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
pub(crate) fn remote_shell(cx: &mut Ctx, ctr: &FakeContainer) {
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
