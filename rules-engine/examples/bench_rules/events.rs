//! The benchmark's synthetic event stream: varied process names (shells,
//! interpreters, coreutils, daemons), paths (system files, sensitive files,
//! home directories, /proc, /tmp), ancestors, users, containers and remote
//! addresses, so rules are exercised on both their matching and
//! non-matching paths. Deterministic: every run evaluates the same stream.

use std::sync::Arc;

use mamori_rules::event::{
    Ancestor, Container, Event, EvtType, ExecArgs, Fd, FdType, OpenArgs, Process,
};

/// Small deterministic PRNG (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, v: &'a [&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

const PROCS: &[&str] = &[
    "bash",
    "sh",
    "python3",
    "node",
    "java",
    "cat",
    "ls",
    "grep",
    "find",
    "curl",
    "wget",
    "nginx",
    "postgres",
    "sshd",
    "systemd",
    "containerd",
    "kubelet",
    "nc",
    "tar",
    "vim",
    "less",
    "sed",
    "awk",
    "git",
    "make",
    "gcc",
    "apt",
    "dpkg",
    "ps",
    "top",
];
const PARENTS: &[&str] = &[
    "bash",
    "sshd",
    "systemd",
    "containerd-shim",
    "runc",
    "node",
    "python3",
    "cron",
];
const PATHS: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ld.so.cache",
    "/etc/sudoers",
    "/etc/pam.d/common-auth",
    "/etc/ssh/sshd_config",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/locale/locale-archive",
    "/proc/self/status",
    "/proc/1/environ",
    "/proc/meminfo",
    "/sys/fs/cgroup/cpu.max",
    "/tmp/build-1234/obj.o",
    "/tmp/.X11-unix/X0",
    "/dev/null",
    "/dev/shm/x",
    "/home/alice/.bashrc",
    "/home/alice/.ssh/authorized_keys",
    "/root/.aws/credentials",
    "/var/log/syslog",
    "/var/lib/dpkg/status",
    "/var/run/secrets/kubernetes.io/serviceaccount/token",
    "/usr/share/zoneinfo/UTC",
    "/opt/app/config.yaml",
    "/srv/data/db.sqlite",
];
const ARGS: &[&str] = &[
    "-la",
    "-c id",
    "--version",
    "-r password /home",
    "install -y curl",
    "-e /bin/sh 127.0.0.1 4444",
    "status",
    "-name id_rsa",
    "http://127.0.0.1:8080/health",
    "main.py --port 8080",
    "-xzf a.tgz",
    "aws_secret_access_key ~/.aws",
    "",
    "-h",
];
const REMOTES: &[&str] = &[
    "127.0.0.1",
    "127.0.0.53",
    "192.0.2.10",
    "198.51.100.7",
    "203.0.113.9",
    "::1",
];
const PORTS: &[u16] = &[22, 53, 80, 443, 2379, 4444, 5432, 6443, 8080, 9090];
const IMAGES: &[&str] = &[
    "docker.io/library/nginx:1.25",
    "registry.k8s.io/pause:3.9",
    "quay.io/app/api:2.1",
];

pub fn make_events(n: usize) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (proc, container) = random_process(&mut rng, i);
        let ts = 1_700_000_000_000_000_000 + i as u64 * 1000;
        let ev = match rng.next() % 5 {
            // 40% opens, 40% execs, 20% connects
            0 | 1 => open_event(&mut rng, ts, proc, container),
            2 | 3 => exec_event(ts, proc, container),
            _ => connect_event(&mut rng, ts, proc, container),
        };
        out.push(ev);
    }
    out
}

/// The `i`th event's process (name, arguments, ancestors, user) and
/// container, drawn from `rng`.
fn random_process(rng: &mut Rng, i: usize) -> (Process, Option<Arc<Container>>) {
    let name = rng.pick(PROCS).to_string();
    let mut argv = vec![name.clone()];
    let args = rng.pick(ARGS);
    argv.extend(args.split_whitespace().map(str::to_string));
    let ancestors: Vec<Ancestor> = (0..(rng.next() % 4) as usize)
        .map(|k| {
            let p = rng.pick(PARENTS);
            Ancestor {
                pid: 1000 - k as u32,
                name: p.to_string(),
                exepath: format!("/usr/bin/{p}"),
                argv: vec![p.to_string()],
            }
        })
        .collect();
    let container = (rng.next().is_multiple_of(3)).then(|| {
        Container {
            id: format!("{:012x}", rng.next() & 0xffff_ffff_ffff),
            name: Some("app".into()),
            image: Some(rng.pick(IMAGES).to_string()),
            ..Default::default()
        }
        .into()
    });
    let uid = if rng.next().is_multiple_of(4) {
        0
    } else {
        1000
    };
    let proc = Process {
        pid: 2000 + (i % 5000) as u32,
        tid: 2000 + (i % 5000) as u32,
        ppid: 1000,
        name: name.clone(),
        exepath: format!("/usr/bin/{name}"),
        argv,
        cwd: Some("/home/alice".into()),
        uid,
        gid: uid,
        loginuid: if uid == 0 { -1 } else { 1000 },
        user: Some(if uid == 0 { "root" } else { "alice" }.into()),
        start_ts: 1,
        ancestors: ancestors.into(),
        ..Default::default()
    };
    (proc, container)
}

/// An open of a random path with random flags (10% fail with ENOENT).
fn open_event(rng: &mut Rng, ts: u64, proc: Process, container: Option<Arc<Container>>) -> Event {
    let path = rng.pick(PATHS).to_string();
    let flags = match rng.next() % 4 {
        0 => 0o1 | 0o100 | 0o1000,
        1 => 0o2,
        _ => 0o2000000,
    };
    let res = if rng.next().is_multiple_of(10) { -2 } else { 3 };
    Event {
        ts,
        evt_type: EvtType::Openat,
        res,
        proc,
        fd: Some(Fd {
            fd_type: FdType::File,
            num: if res >= 0 { res } else { -1 },
            name: path.clone(),
            sip: None,
            sport: None,
            rip: None,
            rport: None,
            server: false,
            l4proto: None,
        }),
        open: Some(OpenArgs {
            flags,
            path,
            ..Default::default()
        }),
        exec: None,
        lifecycle: None,
        container,
        drops: None,
        args: None,
        caps: None,
        flow: None,
        dns: None,
    }
}

/// A successful execve of the process's own image.
fn exec_event(ts: u64, proc: Process, container: Option<Arc<Container>>) -> Event {
    Event {
        ts,
        evt_type: EvtType::Execve,
        res: 0,
        exec: Some(ExecArgs {
            filename: proc.exepath.clone(),
            ..Default::default()
        }),
        proc,
        fd: None,
        open: None,
        lifecycle: None,
        container,
        drops: None,
        args: None,
        caps: None,
        flow: None,
        dns: None,
    }
}

/// A connect to a random remote address and port (20% UDP).
fn connect_event(
    rng: &mut Rng,
    ts: u64,
    proc: Process,
    container: Option<Arc<Container>>,
) -> Event {
    let rip = rng.pick(REMOTES);
    let rport = PORTS[(rng.next() % PORTS.len() as u64) as usize];
    let v6 = rip.contains(':');
    Event {
        ts,
        evt_type: EvtType::Connect,
        res: 0,
        proc,
        fd: Some(Fd {
            fd_type: if v6 { FdType::Ipv6 } else { FdType::Ipv4 },
            num: 5,
            name: format!("127.0.0.1:40000->{rip}:{rport}"),
            sip: Some(if v6 { "::1" } else { "127.0.0.1" }.parse().expect("ip")),
            sport: Some(40000),
            rip: Some(rip.parse().expect("ip")),
            rport: Some(rport),
            server: false,
            l4proto: Some(
                if rng.next().is_multiple_of(5) {
                    "udp"
                } else {
                    "tcp"
                }
                .into(),
            ),
        }),
        open: None,
        exec: None,
        lifecycle: None,
        container,
        drops: None,
        args: None,
        caps: None,
        flow: None,
        dns: None,
    }
}
