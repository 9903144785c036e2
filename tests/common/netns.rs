//! Network-scan harness for end-to-end tests (root only; included with
//! `#[path = "common/netns.rs"] mod netns;`).
//!
//! [`TestNet::create`] makes a network namespace owned by the test
//! (`mamori-t-<pid>-<tag>`) joined to the host by a veth pair: the host side
//! gets `10.213.<tag>.1/24`, the peer inside the namespace the 20 addresses
//! `10.213.<tag>.10` ..= `.29`. Nothing listens in the namespace, so every
//! TCP connect to a peer address is answered with a RST at once
//! (ECONNREFUSED). Packets only ever go to these addresses, over the veth
//! into the namespace: [`TestNet::create`] checks that the kernel routes the
//! peers through the test's own interface before returning. Dropping the
//! [`TestNet`] deletes the namespace, which deletes the veth pair with it.
//!
//! [`connect_from_child`] makes the connects from a forked child process
//! with a chosen name (comm), one blocking connect after another, each
//! bounded by a send timeout, and returns the child's pid and every result.
//! [`ScanPlan`] builds the usual target lists: a vertical scan (many ports,
//! one host), a horizontal sweep (one port, many hosts) and a benign client.
//!
//! ```ignore
//! let net = netns::TestNet::create(0);
//! let plan = netns::ScanPlan::vertical(&net, 30);
//! let run = plan.run("mamori-vscan");
//! assert!(run.all_refused());
//! ```
#![allow(dead_code)] // each test uses the part it needs

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::Duration,
};

/// Number of peer addresses inside the namespace.
pub const PEERS: usize = 20;
/// Per-connect bound (a RST comes back in well under a millisecond).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most connects one [`connect_from_child`] call may make.
pub const MAX_CONNECTS: usize = 256;

/// A test-owned network namespace with [`PEERS`] addresses, deleted on drop.
pub struct TestNet {
    /// `ip netns` name.
    pub name: String,
    /// Host-side veth interface.
    pub host_if: String,
    /// The host end, `10.213.<tag>.1`.
    pub host_ip: Ipv4Addr,
    /// The peer addresses inside the namespace, `10.213.<tag>.10` ..= `.29`.
    pub peers: Vec<Ipv4Addr>,
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("run ip(8) (package iproute2)")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Delete namespaces `mamori-t-<pid>-*` whose test process is gone (left by
/// a test that was killed before its Drop ran), freeing their subnets.
fn remove_stale() {
    let out = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("mamori-t-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl TestNet {
    /// Create the namespace for subnet `10.213.<tag>.0/24`. Tests that may run
    /// at the same time use different tags. Panics (after cleaning up) if any
    /// step fails or a peer would not be routed through the new interface.
    pub fn create(tag: u8) -> TestNet {
        remove_stale();
        let pid = std::process::id();
        let name = format!("mamori-t-{pid}-{tag}");
        // Interface names: at most 15 bytes.
        let host_if = format!("mt{:x}{tag:02x}h", pid);
        let peer_if = format!("mt{:x}{tag:02x}p", pid);
        let host_ip = Ipv4Addr::new(10, 213, tag, 1);
        let peers: Vec<Ipv4Addr> = (10..10 + PEERS as u8)
            .map(|h| Ipv4Addr::new(10, 213, tag, h))
            .collect();
        // The subnet must be free: a route inside it means another network
        // uses it, and the scan might not stay on our veth.
        let subnet = format!("10.213.{tag}.0/24");
        let taken = ip(&["-4", "route", "show", "root", &subnet]);
        let taken = String::from_utf8_lossy(&taken.stdout);
        assert!(
            taken.trim().is_empty(),
            "subnet {subnet} already routed on this host: {taken}"
        );
        ip_ok(&["netns", "add", &name]);
        // From here on, Drop removes whatever was made.
        let net = TestNet {
            name,
            host_if,
            host_ip,
            peers,
        };
        let ns = net.name.as_str();
        ip_ok(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            ns,
        ]);
        ip_ok(&["addr", "add", &format!("{host_ip}/24"), "dev", &net.host_if]);
        for p in &net.peers {
            ip_ok(&["-n", ns, "addr", "add", &format!("{p}/24"), "dev", &peer_if]);
        }
        ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        ip_ok(&["-n", ns, "link", "set", &peer_if, "up"]);
        ip_ok(&["link", "set", &net.host_if, "up"]);
        for p in &net.peers {
            let out = ip(&["-4", "route", "get", &p.to_string()]);
            let route = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && route.contains(&format!("dev {} ", net.host_if)),
                "{p} is not routed through {}: {route}",
                net.host_if
            );
        }
        net
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the namespace destroys the peer and with it the veth pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// What a child did: its pid and, per target in order, the raw connect
/// result (0, or -errno).
#[derive(Debug, Clone)]
pub struct ConnectRun {
    pub pid: u32,
    pub comm: String,
    pub targets: Vec<SocketAddrV4>,
    pub results: Vec<i64>,
}

impl ConnectRun {
    /// Every connect was refused (the namespace answered with a RST).
    pub fn all_refused(&self) -> bool {
        self.results.len() == self.targets.len()
            && self
                .results
                .iter()
                .all(|&r| r == -(libc::ECONNREFUSED as i64))
    }
}

/// A list of connect targets inside a [`TestNet`].
#[derive(Debug, Clone)]
pub struct ScanPlan {
    pub targets: Vec<SocketAddrV4>,
}

impl ScanPlan {
    /// `ports` different ports (20001, 20002, ...) on the first peer.
    pub fn vertical(net: &TestNet, ports: u16) -> ScanPlan {
        ScanPlan {
            targets: (0..ports)
                .map(|i| SocketAddrV4::new(net.peers[0], 20001 + i))
                .collect(),
        }
    }

    /// One `port` on every peer address.
    pub fn horizontal(net: &TestNet, port: u16) -> ScanPlan {
        ScanPlan {
            targets: net
                .peers
                .iter()
                .map(|&p| SocketAddrV4::new(p, port))
                .collect(),
        }
    }

    /// A client retrying one service: `n` connects to the same host and port.
    pub fn benign(net: &TestNet, n: usize, port: u16) -> ScanPlan {
        ScanPlan {
            targets: vec![SocketAddrV4::new(net.peers[0], port); n],
        }
    }

    /// Make the connects from a child process named `comm`.
    pub fn run(&self, comm: &str) -> ConnectRun {
        connect_from_child(comm, &self.targets)
    }
}

/// Fork a child that renames itself `comm` (at most 15 bytes) and makes one
/// blocking TCP connect to each target in turn (each bounded by
/// [`CONNECT_TIMEOUT`]), reporting each result through a pipe. Returns once
/// the child has exited.
pub fn connect_from_child(comm: &str, targets: &[SocketAddrV4]) -> ConnectRun {
    assert!(comm.len() <= 15 && !comm.contains('\0'), "comm {comm:?}");
    assert!(targets.len() <= MAX_CONNECTS, "too many connects");
    // Everything the child touches is prepared before the fork: after it, the
    // child only makes raw syscalls (no allocation, no locks).
    let name = std::ffi::CString::new(comm).unwrap();
    let addrs: Vec<libc::sockaddr_in> = targets
        .iter()
        .map(|t| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: t.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*t.ip()).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let tv = libc::timeval {
        tv_sec: CONNECT_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: CONNECT_TIMEOUT.subsec_micros() as libc::suseconds_t,
    };
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child only calls async-signal-safe syscalls on memory
    // prepared above, then _exit; it never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; all pointers are to live, initialised values.
        unsafe {
            libc::close(rd);
            libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
            for a in &addrs {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                let mut r: i64 = if fd < 0 { -1 } else { 0 };
                if fd >= 0 {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_SNDTIMEO,
                        (&tv as *const libc::timeval).cast(),
                        std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                    );
                    if libc::connect(
                        fd,
                        (a as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    ) != 0
                    {
                        r = -(*libc::__errno_location() as i64);
                    }
                    libc::close(fd);
                }
                let b = r.to_ne_bytes();
                if libc::write(wr, b.as_ptr().cast(), b.len()) != b.len() as isize {
                    libc::_exit(2);
                }
            }
            libc::_exit(0);
        }
    }
    assert!(pid > 0, "fork failed");
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(wr) };
    let mut results = Vec::with_capacity(targets.len());
    let mut buf = [0u8; 8];
    loop {
        let mut got = 0;
        while got < buf.len() {
            // SAFETY: reading into the rest of a local buffer.
            let n = unsafe { libc::read(rd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        if got < buf.len() {
            break;
        }
        results.push(i64::from_ne_bytes(buf));
    }
    let mut status = 0;
    // SAFETY: closing our read end and reaping our own child.
    unsafe {
        libc::close(rd);
        libc::waitpid(pid, &mut status, 0);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "connect child {comm} failed: status {status:#x}"
    );
    ConnectRun {
        pid: pid as u32,
        comm: comm.to_string(),
        targets: targets.to_vec(),
        results,
    }
}
