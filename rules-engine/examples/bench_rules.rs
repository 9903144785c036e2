//! Rule-engine benchmark: evaluate a stream of mixed exec/open/connect events
//! against Falco's stable rules (plus mamori's shipped `rules/`), on one core.
//!
//! `cargo run --release -p sensor --example bench_rules -- [EVENTS] [RULES...]`
//! (default 1,000,000 events; default rules: `../shared/falco-rules/falco_rules.yaml`
//! beside the workspace, and `rules/`). Called by `cargo xtask bench rules`.
//!
//! The events are built in memory before timing: varied process names
//! (shells, interpreters, coreutils, daemons), paths (system files, sensitive
//! files, home directories, /proc, /tmp), ancestors, users, containers and
//! remote addresses, so rules are exercised on both their matching and
//! non-matching paths. Reported: events/s on one core, ns/event, alerts, and
//! the same for the 20% of the stream that each event type makes up.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mamori_rules::event::{
    Ancestor, Container, Event, EvtType, ExecArgs, Fd, FdType, OpenArgs, Process,
};
use mamori_rules::{Engine, LoadOptions};

/// CPU time consumed by this thread, in seconds: unlike wall time it does
/// not count time the scheduler gave to other processes on a shared machine.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux; the call only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

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

fn make_events(n: usize) -> Vec<Event> {
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
        flow: None,
        dns: None,
    }
}

fn main() {
    let (n, rules) = parse_args();
    let engine = load_engine(&rules);
    let events = make_events(n);
    // Warm up, then time one pass over the stream on this thread (= one core).
    let mut idx = Vec::with_capacity(16);
    warm_up(&engine, &events, &mut idx);
    let rate = time_stream(&engine, &events);
    for s in engine.state_stats() {
        println!(
            "  stateful {:<58} alerts {:>6} keys {:>6} evicted {:>6}",
            s.rule, s.alerts, s.keys, s.evicted
        );
    }
    time_per_type(&engine, &events, &mut idx);
    time_hot_set(&engine, &events, &mut idx);
    if std::env::var_os("MAMORI_BENCH_PROFILE").is_some() {
        println!("per-rule cost (every indexed rule evaluated):");
        for (name, n, m, ns) in engine.profile(&events) {
            println!(
                "  {:>7.1} ns/eval {n:>8} evals {m:>7} matches  {name}",
                ns as f64 / n.max(1) as f64
            );
        }
    }
    let target = 2_000_000.0;
    println!(
        "target >= 2,000,000 events/s/core: {}",
        if rate >= target { "met" } else { "NOT met" }
    );
}

/// EVENTS (default 1,000,000) and the rule paths (default: Falco's stable
/// rules beside the workspace, and `rules/`).
fn parse_args() -> (usize, Vec<PathBuf>) {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("EVENTS must be a number"))
        .unwrap_or(1_000_000);
    let mut rules: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if rules.is_empty() {
        let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let falco = ws.join("../shared/falco-rules/falco_rules.yaml");
        assert!(
            falco.is_file(),
            "Falco rules not found at {}",
            falco.display()
        );
        rules.push(falco);
        rules.push(ws.join("rules"));
    }
    (n, rules)
}

/// Load the rules, reporting the time it took and the load summary.
fn load_engine(rules: &[PathBuf]) -> Engine {
    let t = Instant::now();
    let (engine, report) = match Engine::load(&read_rules(rules), &LoadOptions::default()) {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    };
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "bench rules: {} ({}), loaded in {load_ms:.1} ms",
        rules
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        report.summary()
    );
    engine
}

/// Warm up on the first 10,000 events; with MAMORI_BENCH_REPEAT, evaluate the
/// stream that many more times (for profilers).
fn warm_up(engine: &Engine, events: &[Event], idx: &mut Vec<usize>) {
    for ev in events.iter().take(10_000) {
        engine.matching_rules(ev, idx);
    }
    if let Some(r) = std::env::var("MAMORI_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        // For profilers: spend most of the run evaluating.
        for _ in 0..r {
            for ev in events {
                engine.matching_rules(black_box(ev), idx);
            }
        }
    }
}

/// Time one pass over the stream (rules matched and alerts rendered, the
/// stateful ones too) in thread CPU time; prints and returns events/s.
fn time_stream(engine: &Engine, events: &[Event]) -> f64 {
    let n = events.len();
    let mut matched = 0u64;
    let mut alerts = 0u64;
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut last = usize::MAX;
    let mut stateful_alerts = 0u64;
    engine.matching_rules_batch(
        black_box(events),
        |e, r| {
            if e != last {
                matched += 1;
                last = e;
            }
            black_box(engine.alert(r, &events[e]));
            alerts += 1;
        },
        |_, a| {
            black_box(a);
            stateful_alerts += 1;
        },
    );
    let secs = (thread_cpu_secs() - cpu0).max(f64::MIN_POSITIVE);
    let wall = start.elapsed().as_secs_f64();
    let rate = n as f64 / secs;
    println!(
        "{n} events ({matched} matched, {alerts} alerts + {stateful_alerts} stateful alerts rendered): {:.3} s CPU ({wall:.3} s wall) = {:.0} events/s on one core, {:.0} ns/event",
        secs,
        rate,
        secs * 1e9 / n as f64,
    );
    rate
}

/// Match-only cost for each event type's share of the stream.
fn time_per_type(engine: &Engine, events: &[Event], idx: &mut Vec<usize>) {
    for t in [EvtType::Execve, EvtType::Openat, EvtType::Connect] {
        let subset: Vec<&Event> = events.iter().filter(|e| e.evt_type == t).collect();
        let cpu0 = thread_cpu_secs();
        for ev in &subset {
            engine.matching_rules(black_box(ev), idx);
        }
        let secs = thread_cpu_secs() - cpu0;
        println!(
            "  {t:<8} {:>8} events: {:.0} ns/event (match only)",
            subset.len(),
            secs * 1e9 / subset.len().max(1) as f64
        );
    }
}

/// The same evaluation over a 1,000-event working set that stays in cache,
/// as events fresh from the decoder are: separates rule cost from the memory
/// traffic of walking a large recorded stream.
fn time_hot_set(engine: &Engine, events: &[Event], idx: &mut Vec<usize>) {
    let n = events.len();
    let hot = &events[..events.len().min(1000)];
    let rounds = std::env::var("MAMORI_BENCH_HOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((n / hot.len().max(1)).max(1));
    let cpu0 = thread_cpu_secs();
    for _ in 0..rounds {
        for ev in hot {
            engine.matching_rules(black_box(ev), idx);
        }
    }
    let secs = thread_cpu_secs() - cpu0;
    let total = (rounds * hot.len()) as f64;
    println!(
        "hot working set ({} events x {rounds}): {:.0} events/s on one core, {:.0} ns/event",
        hot.len(),
        total / secs.max(f64::MIN_POSITIVE),
        secs * 1e9 / total
    );
}

/// Rule files as the engine takes them: each path a file, or a directory of
/// `*.yaml` files read in name order.
fn read_rules(paths: &[PathBuf]) -> Vec<Arc<mamori_rules::yaml::SourceFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            mamori_rules::yaml::SourceFile::new(f.display().to_string(), text)
        })
        .collect()
}
