//! The process table: what mamori knows about every live process, kept
//! current from fork/exec/exit events and seeded from `/proc` at start-up so
//! that ancestry (`proc.pname`, `proc.aname[N]`) works for processes that
//! started before mamori. It also turns [`RawEvent`]s into normalized
//! [`Event`]s, joining each with its process and ancestors.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use mamori_common::{flags, syscall, ConnectBody, Header};

use crate::kernel::decode::RawEvent;
use mamori_rules::event::{
    Ancestor, Event, EvtType, ExecArgs, Fd, FdType, Lifecycle, OpenArgs, Process,
};

/// Most ancestors attached to an event.
pub const MAX_ANCESTORS: usize = 16;
/// Upper bound on tracked processes; beyond it, exited-but-unseen entries are
/// pruned against `/proc`.
const MAX_PROCS: usize = 65_536;

const AT_FDCWD: i32 = -100;

/// What is known about one process.
#[derive(Debug, Clone, Default)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exepath: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub tty: u32,
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub loginuid: i64,
    pub start_ts: u64,
    pub cgroup_id: u64,
}

/// Converts kernel boot-clock timestamps to wall-clock ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    boot_epoch_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            boot_epoch_ns: real - boot,
        }
    }

    /// For tests and replay: boot happened at `boot_epoch_ns`.
    pub fn fixed(boot_epoch_ns: i128) -> Clock {
        Clock { boot_epoch_ns }
    }

    pub fn wall(&self, boot_ns: u64) -> u64 {
        if boot_ns == 0 {
            return 0;
        }
        (self.boot_epoch_ns + boot_ns as i128).max(0) as u64
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// uid → user name from the host's passwd file.
#[derive(Debug, Default)]
pub struct Users {
    names: HashMap<u32, String>,
}

impl Users {
    pub fn load(passwd: &Path) -> Users {
        let text = std::fs::read_to_string(passwd).unwrap_or_default();
        Users::parse(&text)
    }

    pub fn parse(text: &str) -> Users {
        let names = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect();
        Users { names }
    }

    pub fn name(&self, uid: u32) -> Option<String> {
        self.names.get(&uid).cloned()
    }
}

pub struct ProcTable {
    procs: HashMap<u32, ProcEntry>,
    /// Ancestor chains already built, valid while `generation` is unchanged.
    chains: HashMap<u32, (u64, Arc<Vec<Ancestor>>)>,
    /// Bumped whenever anything an ancestor chain shows may have changed
    /// (exec, exit, comm or parent change). Opens and connects do not bump
    /// it, so a busy process reuses its chain for free.
    generation: u64,
    clock: Clock,
    users: Users,
    /// `/proc` (or a test's stand-in) for lazy look-ups of unknown processes.
    proc_root: Option<PathBuf>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Split a NUL-separated argv area.
pub fn split_args(area: &[u8]) -> Vec<String> {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    if area.is_empty() {
        return Vec::new();
    }
    area.split(|&b| b == 0).map(lossy).collect()
}

impl ProcTable {
    /// An empty table (replay, tests).
    pub fn new(clock: Clock, users: Users) -> ProcTable {
        ProcTable {
            procs: HashMap::new(),
            chains: HashMap::new(),
            generation: 0,
            clock,
            users,
            proc_root: None,
        }
    }

    /// A table seeded from every process under `proc_root` (normally `/proc`),
    /// which is also used later to look up processes not yet seen.
    pub fn seeded(proc_root: &Path, clock: Clock, users: Users) -> ProcTable {
        let mut t = ProcTable::new(clock, users);
        t.proc_root = Some(proc_root.to_path_buf());
        if let Ok(dir) = std::fs::read_dir(proc_root) {
            for entry in dir.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                    if let Some(p) = read_proc(proc_root, pid, &clock) {
                        t.procs.insert(pid, p);
                    }
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.procs.get(&pid)
    }

    /// Insert or replace an entry (tests, replay seeding).
    pub fn insert(&mut self, p: ProcEntry) {
        self.procs.insert(p.pid, p);
    }

    /// The entry for `hdr`'s process, creating it (from /proc, or from the
    /// header alone) if it is unknown, and refreshing what the header says.
    fn entry_for(&mut self, hdr: &Header) -> &mut ProcEntry {
        let pid = hdr.tgid;
        if !self.procs.contains_key(&pid) {
            let found = self
                .proc_root
                .as_deref()
                .and_then(|root| read_proc(root, pid, &self.clock));
            let p = found.unwrap_or_else(|| ProcEntry {
                pid,
                loginuid: -1,
                ..Default::default()
            });
            if self.procs.len() >= MAX_PROCS {
                self.prune();
            }
            self.procs.insert(pid, p);
            // It may be an ancestor some cached chain showed as unknown.
            self.generation += 1;
        }
        let e = self.procs.get_mut(&pid).expect("inserted above");
        let comm = &hdr.comm;
        let end = comm.iter().position(|&b| b == 0).unwrap_or(16);
        if e.comm.as_bytes() != &comm[..end] {
            e.comm = lossy(&comm[..end]);
            self.generation += 1;
        }
        e.uid = hdr.uid;
        e.gid = hdr.gid;
        if hdr.cgroup_id != 0 {
            e.cgroup_id = hdr.cgroup_id;
        }
        e
    }

    /// Drop entries whose process no longer exists.
    fn prune(&mut self) {
        if let Some(root) = self.proc_root.clone() {
            self.procs
                .retain(|pid, _| root.join(pid.to_string()).exists());
        }
    }

    /// The ancestor chain of `pid`, from the cache when still valid.
    fn chain(&mut self, pid: u32, ppid: u32) -> Arc<Vec<Ancestor>> {
        if let Some((gen, chain)) = self.chains.get(&pid) {
            if *gen == self.generation {
                return chain.clone();
            }
        }
        let chain = Arc::new(self.build_chain(ppid));
        if self.chains.len() >= MAX_PROCS {
            self.chains.clear();
        }
        self.chains.insert(pid, (self.generation, chain.clone()));
        chain
    }

    fn build_chain(&self, ppid: u32) -> Vec<Ancestor> {
        let mut ancestors = Vec::new();
        let mut cur = ppid;
        while cur != 0 && ancestors.len() < MAX_ANCESTORS {
            let Some(a) = self.procs.get(&cur) else {
                ancestors.push(Ancestor {
                    pid: cur,
                    ..Default::default()
                });
                break;
            };
            ancestors.push(Ancestor {
                pid: a.pid,
                name: a.comm.clone(),
                exepath: a.exepath.clone(),
                argv: a.argv.clone(),
            });
            if a.ppid == cur {
                break;
            }
            cur = a.ppid;
        }
        ancestors
    }

    /// The `Process` view of `pid` with its ancestor chain.
    fn process(&mut self, pid: u32, tid: u32) -> Process {
        let Some(ppid) = self.procs.get(&pid).map(|e| e.ppid) else {
            return Process {
                pid,
                tid,
                loginuid: -1,
                ..Default::default()
            };
        };
        let ancestors = self.chain(pid, ppid);
        let e = &self.procs[&pid];
        Process {
            pid,
            tid,
            ppid: e.ppid,
            name: e.comm.clone(),
            exepath: e.exepath.clone(),
            argv: e.argv.clone(),
            argv_truncated: e.argv_truncated,
            tty: e.tty,
            cwd: e.cwd.clone(),
            uid: e.uid,
            gid: e.gid,
            loginuid: e.loginuid,
            user: self.users.name(e.uid),
            start_ts: e.start_ts,
            cgroup_id: e.cgroup_id,
            ancestors,
        }
    }

    fn base(&mut self, hdr: &Header, evt_type: EvtType, res: i64) -> Event {
        let proc = self.process(hdr.tgid, hdr.tid);
        Event::new(self.clock.wall(hdr.ts_boot_ns), evt_type, res, proc)
    }

    /// Apply a kernel record to the table and return the normalized event.
    pub fn apply(&mut self, raw: &RawEvent) -> Event {
        match raw {
            RawEvent::Exec {
                hdr,
                body,
                filename,
                args,
            } => {
                let evt_type = if body.syscall == syscall::EXECVEAT {
                    EvtType::Execveat
                } else {
                    EvtType::Execve
                };
                let filename = lossy(filename);
                let argv = split_args(args);
                let truncated = hdr.flags & flags::ARGS_TRUNCATED != 0;
                let mut exec = ExecArgs {
                    filename: filename.clone(),
                    dirfd: (evt_type == EvtType::Execveat).then_some(body.dirfd),
                    flags: (evt_type == EvtType::Execveat).then_some(body.at_flags),
                    argv: Vec::new(),
                };
                if body.ret == 0 {
                    let start_ts = self.clock.wall(body.start_boot_ns);
                    self.generation += 1;
                    // `proc.exepath` is absolute, as Falco shows it: a relative
                    // filename is taken against the cwd (or execveat's dirfd).
                    let exepath = self.resolve_path(hdr.tgid, body.dirfd, &filename);
                    let e = self.entry_for(hdr);
                    e.exepath = exepath;
                    e.argv = argv;
                    e.argv_truncated = truncated;
                    if body.ppid != 0 {
                        e.ppid = body.ppid;
                    }
                    e.loginuid = loginuid(body.loginuid);
                    e.tty = body.tty;
                    if start_ts != 0 {
                        e.start_ts = start_ts;
                    }
                } else {
                    self.entry_for(hdr);
                    exec.argv = argv;
                }
                let mut ev = self.base(hdr, evt_type, body.ret);
                ev.exec = Some(exec);
                ev
            }
            RawEvent::Fork { hdr, body } => {
                let parent = self.entry_for(hdr).clone();
                let child = ProcEntry {
                    pid: body.child_tgid,
                    ppid: if body.ppid != 0 {
                        body.ppid
                    } else {
                        parent.pid
                    },
                    start_ts: self.clock.wall(body.child_start_boot_ns),
                    ..parent
                };
                self.chains.remove(&child.pid);
                self.procs.insert(child.pid, child);
                let mut ev = self.base(hdr, EvtType::Clone, body.child_tgid as i64);
                ev.lifecycle = Some(Lifecycle {
                    child_pid: Some(body.child_tgid),
                    exit_status: None,
                });
                ev
            }
            RawEvent::Exit { hdr, body } => {
                self.entry_for(hdr);
                let mut ev = self.base(hdr, EvtType::Procexit, 0);
                ev.lifecycle = Some(Lifecycle {
                    child_pid: None,
                    exit_status: Some(body.exit_code),
                });
                self.procs.remove(&hdr.tgid);
                self.chains.remove(&hdr.tgid);
                self.generation += 1;
                ev
            }
            RawEvent::Open { hdr, body, path } => {
                self.entry_for(hdr);
                let evt_type = match body.syscall {
                    syscall::OPEN => EvtType::Open,
                    syscall::OPENAT2 => EvtType::Openat2,
                    syscall::CREAT => EvtType::Creat,
                    _ => EvtType::Openat,
                };
                let raw_path = lossy(path);
                let name = self.resolve_path(hdr.tgid, body.dirfd, &raw_path);
                let mut ev = self.base(hdr, evt_type, body.ret);
                let is_dir = body.flags & (libc::O_DIRECTORY as u32) != 0;
                ev.fd = Some(Fd {
                    fd_type: if is_dir {
                        FdType::Directory
                    } else {
                        FdType::File
                    },
                    num: if body.ret >= 0 { body.ret } else { -1 },
                    name,
                    sip: None,
                    sport: None,
                    rip: None,
                    rport: None,
                    l4proto: None,
                });
                ev.open = Some(OpenArgs {
                    flags: body.flags,
                    mode: body.mode,
                    dirfd: body.dirfd,
                    resolve: body.resolve,
                    path: raw_path,
                    path_truncated: hdr.flags & flags::PATH_TRUNCATED != 0,
                });
                ev
            }
            RawEvent::Connect {
                hdr,
                body,
                unix_path,
            } => {
                self.entry_for(hdr);
                let mut ev = self.base(hdr, EvtType::Connect, body.ret);
                ev.fd = Some(connect_fd(body, unix_path));
                ev
            }
        }
    }

    /// Make an open's path absolute the way Falco shows `fd.name`: relative to
    /// the cwd (AT_FDCWD) or to the directory fd, read from /proc at the time.
    fn resolve_path(&mut self, pid: u32, dirfd: i32, path: &str) -> String {
        if path.starts_with('/') || path.is_empty() {
            return path.to_string();
        }
        let live = |rel: String| {
            self.proc_root
                .as_ref()
                .and_then(|root| std::fs::read_link(root.join(rel)).ok())
                .map(|p| p.to_string_lossy().into_owned())
        };
        let base = if dirfd == AT_FDCWD {
            match live(format!("{pid}/cwd")) {
                Some(c) => {
                    if let Some(e) = self.procs.get_mut(&pid) {
                        e.cwd = Some(c.clone());
                    }
                    Some(c)
                }
                // Gone already (short-lived): the last cwd we knew, which a
                // child inherits from its parent at fork.
                None => self.procs.get(&pid).and_then(|e| e.cwd.clone()),
            }
        } else {
            live(format!("{pid}/fd/{dirfd}"))
        };
        match base {
            Some(b) => normalize(&format!("{}/{}", b.trim_end_matches('/'), path)),
            None => path.to_string(),
        }
    }
}

fn loginuid(v: u32) -> i64 {
    if v == u32::MAX {
        -1
    } else {
        v as i64
    }
}

/// Collapse `.` and `..` components lexically (as Falco does for fd.name).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn l4proto(body: &ConnectBody) -> Option<String> {
    let p = match (body.protocol, body.sock_type) {
        (6, _) => "tcp",
        (17, _) => "udp",
        (1, _) | (58, _) => "icmp",
        (_, 1) => "tcp",
        (_, 2) => "udp",
        (_, 3) => "raw",
        _ => return None,
    };
    Some(p.to_string())
}

fn connect_fd(body: &ConnectBody, unix_path: &[u8]) -> Fd {
    let (fd_type, rip, sip) = match body.family {
        AF_INET => {
            let d = Ipv4Addr::new(body.daddr[0], body.daddr[1], body.daddr[2], body.daddr[3]);
            let s = Ipv4Addr::new(body.saddr[0], body.saddr[1], body.saddr[2], body.saddr[3]);
            (FdType::Ipv4, Some(IpAddr::V4(d)), Some(IpAddr::V4(s)))
        }
        AF_INET6 => {
            let (d, s) = (Ipv6Addr::from(body.daddr), Ipv6Addr::from(body.saddr));
            match d.to_ipv4_mapped() {
                // An IPv4 peer of a dual-stack socket (::ffff:a.b.c.d) is an
                // IPv4 connection, as Falco reports it: rules written with
                // IPv4 ranges must see it.
                Some(d4) => {
                    let s4 = s.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED);
                    (FdType::Ipv4, Some(IpAddr::V4(d4)), Some(IpAddr::V4(s4)))
                }
                None => (FdType::Ipv6, Some(IpAddr::V6(d)), Some(IpAddr::V6(s))),
            }
        }
        AF_UNIX => (FdType::Unix, None, None),
        _ => (FdType::Unknown, None, None),
    };
    let name = match fd_type {
        FdType::Ipv4 | FdType::Ipv6 => format!(
            "{}:{}->{}:{}",
            sip.expect("ip family"),
            body.sport,
            rip.expect("ip family"),
            body.dport
        ),
        FdType::Unix => unix_name(unix_path),
        _ => String::new(),
    };
    let is_ip = matches!(fd_type, FdType::Ipv4 | FdType::Ipv6);
    Fd {
        fd_type,
        num: body.fd as i64,
        name,
        sip,
        sport: is_ip.then_some(body.sport),
        rip,
        rport: is_ip.then_some(body.dport),
        l4proto: if is_ip { l4proto(body) } else { None },
    }
}

/// A unix socket path; abstract names (leading NUL) are shown with `@`.
fn unix_name(raw: &[u8]) -> String {
    if let Some(rest) = raw.strip_prefix(&[0]) {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        return format!("@{}", lossy(&rest[..end]));
    }
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    lossy(&raw[..end])
}

/// Read one process from `/proc/<pid>`; `None` if it is gone or unreadable.
pub fn read_proc(root: &Path, pid: u32, clock: &Clock) -> Option<ProcEntry> {
    let dir = root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let tty = rest.get(4).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) as u32;
    let start_ticks: u64 = rest.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let start_boot_ns = start_ticks.saturating_mul(1_000_000_000 / hz);
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let id_of = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let exepath = std::fs::read_link(dir.join("exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cwd = std::fs::read_link(dir.join("cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let login = std::fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map(loginuid)
        .unwrap_or(-1);
    Some(ProcEntry {
        pid,
        ppid,
        comm,
        exepath,
        argv: split_args(&cmdline),
        argv_truncated: false,
        tty,
        cwd,
        uid: id_of("Uid:"),
        gid: id_of("Gid:"),
        loginuid: login,
        start_ts: clock.wall(start_boot_ns),
        cgroup_id: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_common::{EventKind, ExecBody, ExitBody, ForkBody, OpenBody};

    fn hdr(kind: EventKind, pid: u32, comm: &str) -> Header {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        Header {
            kind: kind as u16,
            ts_boot_ns: 1_000,
            tid: pid,
            tgid: pid,
            uid: 0,
            comm: c,
            ..Default::default()
        }
    }

    fn exec(pid: u32, ppid: u32, comm: &str, file: &str, args: &str) -> RawEvent {
        let args = args.replace(' ', "\0") + "\0";
        RawEvent::Exec {
            hdr: hdr(EventKind::Exec, pid, comm),
            body: ExecBody {
                ppid,
                loginuid: u32::MAX,
                syscall: syscall::EXECVE,
                filename_len: file.len() as u16,
                args_len: args.len() as u16,
                dirfd: AT_FDCWD,
                ..Default::default()
            },
            filename: file.as_bytes().to_vec(),
            args: args.into_bytes(),
        }
    }

    fn fork(parent: u32, parent_comm: &str, child: u32) -> RawEvent {
        RawEvent::Fork {
            hdr: hdr(EventKind::Fork, parent, parent_comm),
            body: ForkBody {
                child_tid: child,
                child_tgid: child,
                ppid: parent,
                ..Default::default()
            },
        }
    }

    #[test]
    fn ancestry_follows_fork_and_exec() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::parse("root:x:0:0::/root:/bin/sh\n"));
        t.insert(ProcEntry {
            pid: 1,
            comm: "systemd".into(),
            exepath: "/sbin/init".into(),
            ..Default::default()
        });
        t.apply(&fork(1, "systemd", 100));
        t.apply(&exec(100, 1, "bash", "/bin/bash", "bash -i"));
        t.apply(&fork(100, "bash", 200));
        let ev = t.apply(&exec(200, 100, "nc", "/usr/bin/nc", "nc -l 4444"));
        assert_eq!(ev.evt_type, EvtType::Execve);
        assert_eq!(ev.proc.name, "nc");
        assert_eq!(ev.proc.ppid, 100);
        assert_eq!(ev.proc.cmdline(), "nc -l 4444");
        assert_eq!(ev.proc.user.as_deref(), Some("root"));
        let names: Vec<_> = ev.proc.ancestors.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["bash", "systemd"]);
        let exit = t.apply(&RawEvent::Exit {
            hdr: hdr(EventKind::Exit, 200, "nc"),
            body: ExitBody::default(),
        });
        assert_eq!(exit.evt_type, EvtType::Procexit);
        assert!(t.get(200).is_none());
    }

    fn open(pid: u32, comm: &str) -> RawEvent {
        RawEvent::Open {
            hdr: hdr(EventKind::Open, pid, comm),
            body: OpenBody {
                ret: 3,
                syscall: syscall::OPENAT,
                dirfd: -100,
                path_len: 2,
                ..Default::default()
            },
            path: b"/x".to_vec(),
        }
    }

    #[test]
    fn cached_ancestor_chains_follow_changes() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::default());
        t.apply(&exec(100, 1, "bash", "/bin/bash", "bash"));
        t.apply(&fork(100, "bash", 200));
        t.apply(&exec(200, 100, "worker", "/bin/worker", "worker"));
        let a = t.apply(&open(200, "worker"));
        let b = t.apply(&open(200, "worker"));
        assert!(
            Arc::ptr_eq(&a.proc.ancestors, &b.proc.ancestors),
            "chain reused"
        );
        assert_eq!(a.proc.ancestors[0].name, "bash");
        // The parent execs something else: the child's chain shows it at once.
        t.apply(&exec(100, 1, "python3", "/usr/bin/python3", "python3 x.py"));
        let c = t.apply(&open(200, "worker"));
        assert_eq!(c.proc.ancestors[0].name, "python3");
        assert_eq!(c.proc.ancestors[0].argv, ["python3", "x.py"]);
        // The parent renames itself (prctl): seen on the child's next event.
        t.apply(&open(100, "renamed"));
        let d = t.apply(&open(200, "worker"));
        assert_eq!(d.proc.ancestors[0].name, "renamed");
    }

    #[test]
    fn failed_exec_keeps_the_old_image() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::default());
        t.apply(&exec(300, 1, "sh", "/bin/sh", "sh"));
        let mut failed = exec(300, 1, "sh", "/nope", "nope -x");
        if let RawEvent::Exec { body, .. } = &mut failed {
            body.ret = -2;
        }
        let ev = t.apply(&failed);
        assert_eq!(ev.res, -2);
        assert_eq!(ev.proc.exepath, "/bin/sh");
        assert_eq!(ev.exec.as_ref().unwrap().argv, ["nope", "-x"]);
    }

    #[test]
    fn open_and_connect_normalize() {
        let mut t = ProcTable::new(Clock::fixed(10), Users::default());
        let path = b"/etc/../etc/shadow".to_vec();
        let ev = t.apply(&RawEvent::Open {
            hdr: hdr(EventKind::Open, 5, "cat"),
            body: OpenBody {
                ret: 3,
                syscall: syscall::OPENAT,
                dirfd: -100,
                path_len: path.len() as u16,
                ..Default::default()
            },
            path,
        });
        assert_eq!(ev.ts, 1_010);
        let fd = ev.fd.unwrap();
        assert_eq!((fd.fd_type, fd.num), (FdType::File, 3));
        assert_eq!(ev.open.unwrap().path, "/etc/../etc/shadow");
        let ev = t.apply(&RawEvent::Connect {
            hdr: hdr(EventKind::Connect, 5, "cat"),
            body: ConnectBody {
                ret: -111,
                fd: 4,
                family: AF_INET,
                dport: 8080,
                sport: 0,
                protocol: 6,
                daddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..Default::default()
            },
            unix_path: Vec::new(),
        });
        let fd = ev.fd.unwrap();
        assert_eq!(fd.name, "0.0.0.0:0->127.0.0.1:8080");
        assert_eq!(fd.l4proto.as_deref(), Some("tcp"));
        assert_eq!(fd.rport, Some(8080));
        // A dual-stack socket's IPv4 peer is reported as IPv4, as Falco does.
        let mapped = |a: [u8; 4]| {
            let mut v = [0u8; 16];
            v[10] = 0xff;
            v[11] = 0xff;
            v[12..].copy_from_slice(&a);
            v
        };
        let ev = t.apply(&RawEvent::Connect {
            hdr: hdr(EventKind::Connect, 5, "java"),
            body: ConnectBody {
                ret: 0,
                fd: 5,
                family: AF_INET6,
                dport: 5432,
                sport: 40000,
                protocol: 6,
                daddr: mapped([10, 0, 3, 7]),
                saddr: mapped([10, 0, 3, 2]),
                ..Default::default()
            },
            unix_path: Vec::new(),
        });
        let fd = ev.fd.unwrap();
        assert_eq!(fd.fd_type, FdType::Ipv4);
        assert_eq!(fd.name, "10.0.3.2:40000->10.0.3.7:5432");
        assert_eq!(fd.rip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 7))));
        assert_eq!(unix_name(b"\0hidden\0\0"), "@hidden");
        assert_eq!(unix_name(b"/run/x.sock\0junk"), "/run/x.sock");
    }

    #[test]
    fn relative_paths_use_the_last_known_cwd_when_proc_is_gone() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::default());
        t.proc_root = Some(PathBuf::from("/nonexistent-proc"));
        t.insert(ProcEntry {
            pid: 100,
            comm: "bash".into(),
            cwd: Some("/srv/app".into()),
            ..Default::default()
        });
        t.apply(&fork(100, "bash", 200));
        let ev = t.apply(&exec(200, 100, "true", "./bin/../true", "true"));
        assert_eq!(ev.proc.exepath, "/srv/app/true");
        assert_eq!(ev.exec.unwrap().filename, "./bin/../true");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("/a/./b/../c//d"), "/a/c/d");
        assert_eq!(normalize("/../x"), "/x");
        assert_eq!(split_args(b"a\0b c\0\0"), ["a", "b c", ""]);
        assert!(split_args(b"").is_empty());
    }

    #[test]
    fn seeds_from_proc_including_self() {
        let t = ProcTable::seeded(Path::new("/proc"), Clock::now(), Users::default());
        let me = std::process::id();
        let e = t.get(me).expect("own process seeded");
        assert_eq!(e.pid, me);
        assert!(e.ppid > 0);
        assert!(!e.argv.is_empty());
        assert!(e.start_ts > 0);
        // pid 1 has no controlling terminal.
        assert_eq!(t.get(1).map(|p| p.tty), Some(0));
    }
}
