//! Normalisation: a raw kernel record ([`RawEvent`]) → a normalized
//! [`Event`], the one place where kernel data becomes Falco field values.
//!
//! [`ProcTable::apply`] dispatches on the record's kind; each kind has its
//! own function here, which updates the table (an exec replaces the image, a
//! fork adds the child, an exit removes the process) and fills the event's
//! parts: an open record becomes `evt.type` (`open`/`openat`/`openat2`/
//! `creat`), `fd.name` (the path made absolute against the cwd or dirfd and
//! collapsed like Falco does), `fd.num`, `fd.type`, and the open's flags;
//! a connect becomes the socket tuple (`fd.name` = `sip:sport->rip:rport`,
//! `fd.l4proto`, ...); an exec becomes `proc.exepath`/`proc.args`. Rules do
//! not read the event's struct fields directly: the rules crate's field
//! registry (`mamori_rules::fields`) reads each Falco field's value from the
//! [`Event`] built here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mamori_common::{
    flags, flow_state, syscall, ConnectBody, DnsBody, ExecBody, ExitBody, FlowBody, ForkBody,
    Header, OpenBody, ARGS_HEAD,
};
use mamori_rules::event::{
    Event, EvtType, ExecArgs, Fd, FdType, Flow, FlowState, Lifecycle, OpenArgs,
};

use super::{loginuid, lossy, split_args, ProcEntry, ProcTable};
use crate::kernel::decode::RawEvent;

const AT_FDCWD: i32 = -100;

impl ProcTable {
    /// Apply a kernel record to the table and return the normalized event.
    pub fn apply(&mut self, raw: &RawEvent) -> Event {
        match raw {
            RawEvent::Exec {
                hdr,
                body,
                filename,
                args,
                exe,
                cwd,
            } => self.apply_exec(hdr, body, filename, args, (exe, cwd)),
            RawEvent::Fork { hdr, body } => self.apply_fork(hdr, body),
            RawEvent::Exit { hdr, body } => self.apply_exit(hdr, body),
            RawEvent::Open {
                hdr,
                body,
                path,
                dir,
            } => self.apply_open(hdr, body, path, dir),
            RawEvent::Connect {
                hdr,
                body,
                unix_path,
            } => self.apply_connect(hdr, body, unix_path),
            RawEvent::Sys { hdr, body, parts } => self.apply_sys(hdr, body, parts),
            RawEvent::Flow { hdr, body } => self.apply_flow(hdr, body),
            RawEvent::Dns { hdr, body, payload } => self.apply_dns(hdr, body, payload),
        }
    }

    /// The event with its process (and ancestors), as of now.
    fn base(&mut self, hdr: &Header, evt_type: EvtType, res: i64) -> Event {
        let proc = self.process(hdr.tgid, hdr.tid);
        Event::new(self.clock.wall(hdr.ts_boot_ns), evt_type, res, proc)
    }

    /// execve/execveat: a successful one replaces the process's image (exe
    /// path, argv, ...); a failed one leaves it and shows the tried argv.
    fn apply_exec(
        &mut self,
        hdr: &Header,
        body: &ExecBody,
        filename: &[u8],
        args: &[u8],
        (exe, cwd): (&[u8], &[u8]),
    ) -> Event {
        let evt_type = if body.syscall == syscall::EXECVEAT {
            EvtType::Execveat
        } else {
            EvtType::Execve
        };
        let filename = lossy(filename);
        let argv = if hdr.flags & flags::ARGS_TAIL != 0 {
            head_and_tail_args(args)
        } else {
            split_args(args)
        };
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
            // `proc.exepath`: the file the image was loaded from, as the
            // kernel read it (a symlink, a renamed copy or a memfd cannot
            // hide it); without that, the filename made absolute against
            // the cwd (or execveat's dirfd).
            let (exepath, memfd) = if hdr.flags & flags::EXE_RESOLVED != 0 {
                exe_identity(&join_components(exe))
            } else {
                (self.resolve_path(hdr.tgid, body.dirfd, &filename), false)
            };
            let e = self.entry_for(hdr);
            e.exepath = exepath;
            e.exe_from_memfd = memfd;
            e.argv = argv;
            e.argv_truncated = truncated;
            if body.ppid != 0 {
                e.ppid = body.ppid;
            }
            e.loginuid = loginuid(body.loginuid);
            e.tty = body.tty;
            // Where the new image starts, read at the exec: the cwd copied
            // at fork is the runtime's when its init changed directory
            // before exec'ing the container's process.
            if hdr.flags & flags::CWD_RESOLVED != 0 {
                e.cwd = Some(join_components(cwd));
            }
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

    /// clone/fork: the child starts as a copy of its parent.
    fn apply_fork(&mut self, hdr: &Header, body: &ForkBody) -> Event {
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

    /// procexit: the event still shows the process; then it is forgotten.
    fn apply_exit(&mut self, hdr: &Header, body: &ExitBody) -> Event {
        self.entry_for(hdr);
        let mut ev = self.base(hdr, EvtType::Procexit, 0);
        ev.lifecycle = Some(Lifecycle {
            child_pid: None,
            exit_status: Some(body.exit_code),
        });
        self.remove(hdr.tgid);
        ev
    }

    /// open/openat/openat2/creat: `fd.name` is the absolute, collapsed path;
    /// the raw path and flags stay in `OpenArgs`.
    fn apply_open(&mut self, hdr: &Header, body: &OpenBody, path: &[u8], dir: &[u8]) -> Event {
        self.entry_for(hdr);
        let evt_type = match body.syscall {
            syscall::OPEN => EvtType::Open,
            syscall::OPENAT2 => EvtType::Openat2,
            syscall::CREAT => EvtType::Creat,
            _ => EvtType::Openat,
        };
        let raw_path = lossy(path);
        let name = if hdr.flags & flags::DIR_RESOLVED != 0 && !raw_path.starts_with('/') {
            // The kernel read the base directory at the syscall.
            let base = join_components(dir);
            if body.dirfd == AT_FDCWD {
                if let Some(e) = self.procs.get_mut(&hdr.tgid) {
                    e.cwd = Some(base.clone());
                }
            }
            normalize(&format!("{base}/{raw_path}"))
        } else {
            self.resolve_path(hdr.tgid, body.dirfd, &raw_path)
        };
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
            server: false,
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

    /// connect: the socket's tuple (`fd.name`, `fd.sip`, `fd.rport`, ...).
    fn apply_connect(&mut self, hdr: &Header, body: &ConnectBody, unix_path: &[u8]) -> Event {
        self.entry_for(hdr);
        let mut ev = self.base(hdr, EvtType::Connect, body.ret);
        ev.fd = Some(connect_fd(body, unix_path));
        ev
    }

    /// flow: the connection's bytes, its tuple as `fd.*`. The header names
    /// the owner, which may have exited before its connection closed: the
    /// table is not touched, and what the header says fills a process the
    /// table no longer knows.
    fn apply_flow(&mut self, hdr: &Header, body: &FlowBody) -> Event {
        let state = match body.state {
            flow_state::OPEN => FlowState::Open,
            flow_state::FAILED => FlowState::Failed,
            _ => FlowState::Closed,
        };
        let res = if state == FlowState::Failed {
            -i64::from(body.err)
        } else {
            0
        };
        let mut ev = self.base(hdr, EvtType::Flow, res);
        if ev.proc.name.is_empty() {
            let end = hdr.comm.iter().position(|&b| b == 0).unwrap_or(16);
            ev.proc.name = lossy(&hdr.comm[..end]);
            ev.proc.uid = hdr.uid;
            ev.proc.gid = hdr.gid;
            ev.proc.cgroup_id = hdr.cgroup_id;
        }
        let tuple = ConnectBody {
            fd: -1,
            family: body.family,
            dport: body.dport,
            sport: body.sport,
            sock_type: SOCK_STREAM,
            protocol: body.protocol,
            daddr: body.daddr,
            saddr: body.saddr,
            ..ConnectBody::default()
        };
        ev.fd = Some(connect_fd(&tuple, &[]));
        ev.flow = Some(Flow {
            bytes_out: body.bytes_out,
            bytes_in: body.bytes_in,
            duration_ns: hdr.ts_boot_ns.saturating_sub(body.start_boot_ns),
            state,
            err: body.err,
        });
        ev
    }

    /// dns: the question (`dns.*`), the server as the socket's remote side.
    fn apply_dns(&mut self, hdr: &Header, body: &DnsBody, payload: &[u8]) -> Event {
        self.entry_for(hdr);
        let mut ev = self.base(hdr, EvtType::Dns, body.ret);
        let tcp = body.sock_type == SOCK_STREAM;
        let tuple = ConnectBody {
            fd: body.fd,
            family: body.family,
            dport: body.dport,
            sport: body.sport,
            sock_type: body.sock_type,
            protocol: if tcp { 6 } else { 17 },
            daddr: body.daddr,
            saddr: body.saddr,
            ..ConnectBody::default()
        };
        ev.fd = Some(connect_fd(&tuple, &[]));
        ev.dns = super::dns::question(payload, tcp).map(|mut d| {
            d.syscall = match body.syscall {
                syscall::SENDMSG => "sendmsg",
                syscall::SENDMMSG => "sendmmsg",
                _ => "sendto",
            }
            .to_string();
            Box::new(d)
        });
        ev
    }

    /// Make an open's path absolute the way Falco shows `fd.name`: relative to
    /// the cwd (AT_FDCWD) or to the directory fd, read from /proc at the time.
    fn resolve_path(&mut self, pid: u32, dirfd: i32, path: &str) -> String {
        if path.is_empty() {
            return String::new();
        }
        if path.starts_with('/') {
            // `/etc/./shadow`, `//etc///shadow` and `/tmp/../etc/shadow` are
            // `/etc/shadow` to a rule (`fd.nameraw` keeps the text). Most
            // paths are normal already: one scan, one copy.
            return if is_normal(path) {
                path.to_string()
            } else {
                normalize(path)
            };
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

/// argv from an area cut in the middle (`flags::ARGS_TAIL`): the head's
/// arguments (the last one cut short), then the tail's, less the one the cut
/// went through.
pub fn head_and_tail_args(area: &[u8]) -> Vec<String> {
    let (head, tail) = area.split_at(ARGS_HEAD.min(area.len()));
    let mut argv = split_args(head);
    // The tail's first byte precedes its first whole argument's start when
    // it is a NUL; otherwise the cut went through an argument: skip it.
    let whole = match tail.split_first() {
        Some((0, rest)) => rest,
        Some((_, rest)) => match rest.iter().position(|&b| b == 0) {
            Some(i) => &rest[i + 1..],
            None => &[],
        },
        None => &[],
    };
    argv.extend(split_args(whole));
    argv
}

/// `proc.exepath` and `proc.is_exe_from_memfd` for an executable's path as
/// the kernel or `/proc/<pid>/exe` names it: a memfd is `memfd:NAME`, as
/// Falco shows it.
pub fn exe_identity(path: &str) -> (String, bool) {
    match path.strip_prefix("/memfd:") {
        Some(rest) => {
            let name = rest.strip_suffix(" (deleted)").unwrap_or(rest);
            (format!("memfd:{name}"), true)
        }
        None => (path.to_string(), false),
    }
}

/// The directory the kernel's components (leaf first, each NUL-terminated;
/// `flags::DIR_RESOLVED`) name: `etc\0` is `/etc`, nothing is `/`.
pub fn join_components(dir: &[u8]) -> String {
    let parts: Vec<String> = dir
        .split(|&b| b == 0)
        .filter(|c| !c.is_empty())
        .map(lossy)
        .collect();
    let mut out = String::with_capacity(dir.len() + 1);
    for p in parts.iter().rev() {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether an absolute path is already what [`normalize`] makes of it: no
/// empty, `.` or `..` component and no trailing slash (one pass, no
/// allocation: this is on every open's path).
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.len() > 1 && b[b.len() - 1] == b'/' {
        return false;
    }
    // Every component starts after a '/': it must not be empty, "." or "..".
    b.iter().enumerate().all(|(i, &c)| {
        if c != b'/' {
            return true;
        }
        let rest = &b[i + 1..];
        !(rest.first() == Some(&b'/')
            || rest == b"."
            || rest.starts_with(b"./")
            || rest == b".."
            || rest.starts_with(b"../"))
    })
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

const SOCK_STREAM: u16 = 1;
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
        server: false,
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

// Table-driven syscall records.
mod sysrec;

#[cfg(test)]
mod tests;
