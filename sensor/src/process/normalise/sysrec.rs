//! Table-driven syscall records → [`Event`]: `evt.arg.*` by Falco's names
//! from the syscall's row in [`systable`], `thread.cap_*` from the
//! capabilities the kernel read, and `fd.*` from what the kernel said about
//! the record's fd (a dup'd socket's tuple, an accepted connection's peer,
//! an fd's file path). A successful `chdir`/`fchdir` also moves the
//! process table's cwd.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mamori_common::{part, ConnectBody, FdInfo, Header, SysBody, PARTS};
use mamori_rules::event::{ArgValue, Caps, Event, EvtType, Fd, FdType};

use super::{connect_fd, join_components, normalize};
use crate::kernel::systable::{self, Src, SysRow};
use crate::process::{lossy, ProcTable};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `S_IFMT >> 12` values of `FdInfo::ftype`.
const FT_DIR: u16 = 4;
const FT_REG: u16 = 8;
const FT_SOCK: u16 = 12;

impl ProcTable {
    /// A table-driven syscall record (the decoder checked its id).
    pub(super) fn apply_sys(
        &mut self,
        hdr: &Header,
        body: &SysBody,
        parts: &[Vec<u8>; PARTS],
    ) -> Event {
        self.entry_for(hdr);
        let row = systable::by_id(body.syscall);
        let evt = row.map_or(EvtType::Drop, |r| r.evt);
        let texts: Vec<String> = (0..PARTS)
            .map(|i| part_text(body.part_kind[i], &parts[i]))
            .collect();
        if body.ret == 0 && matches!(evt, EvtType::Chdir | EvtType::Fchdir) {
            self.moved_to(hdr.tgid, evt, &texts[0]);
        }
        let mut ev = self.base(hdr, evt, body.ret);
        ev.caps = Some(Caps {
            effective: body.cap_effective,
            permitted: body.cap_permitted,
            inheritable: body.cap_inheritable,
        });
        let Some(row) = row else {
            return ev;
        };
        ev.fd = record_fd(row, body, parts, &texts);
        let tuple = ev.fd.as_ref().map(|f| f.name.clone()).unwrap_or_default();
        let mut args = BTreeMap::new();
        for (name, src) in row.args {
            let v = match *src {
                Src::Reg(n) => ArgValue::Int(body.args[n as usize % 6] as i64),
                Src::Int(n) => ArgValue::Int(body.args[n as usize % 6] as i32 as i64),
                Src::Ret => ArgValue::Int(body.ret),
                Src::Part(n) => ArgValue::Str(texts[n as usize % PARTS].clone()),
                Src::CapInheritable => ArgValue::Int(body.cap_inheritable as i64),
                Src::CapPermitted => ArgValue::Int(body.cap_permitted as i64),
                Src::CapEffective => ArgValue::Int(body.cap_effective as i64),
                Src::Tuple => ArgValue::Str(tuple.clone()),
            };
            args.insert((*name).to_string(), v);
        }
        ev.args = Some(args);
        ev
    }

    /// The process's cwd after a successful chdir (`path`, made absolute)
    /// or fchdir (`path`: the directory the kernel resolved).
    fn moved_to(&mut self, pid: u32, evt: EvtType, path: &str) {
        if path.is_empty() {
            return;
        }
        let old = self.procs.get(&pid).and_then(|e| e.cwd.clone());
        let new = match (evt, path.starts_with('/'), old) {
            (EvtType::Fchdir, _, _) | (_, true, _) => normalize(path),
            (_, false, Some(old)) => normalize(&format!("{old}/{path}")),
            (_, false, None) => return,
        };
        if let Some(e) = self.procs.get_mut(&pid) {
            e.cwd = Some(new);
        }
    }
}

/// A part as text: a string as read, a sockaddr as `ip:port` (or a unix
/// path), an fd's path joined from its components.
fn part_text(kind: u8, raw: &[u8]) -> String {
    match kind {
        part::USTR => lossy(raw),
        part::SOCKADDR | part::MSGHDR => sockaddr_text(raw),
        part::FDPATH if !raw.is_empty() => join_components(raw),
        _ => String::new(),
    }
}

/// A sockaddr's address: `ip:port`, a unix path, or empty.
pub fn sockaddr_text(raw: &[u8]) -> String {
    match sockaddr(raw) {
        Some(Addr::Ip(ip, port)) => format!("{ip}:{port}"),
        Some(Addr::Unix(p)) => p,
        None => String::new(),
    }
}

enum Addr {
    Ip(IpAddr, u16),
    Unix(String),
}

fn sockaddr(raw: &[u8]) -> Option<Addr> {
    let family = u16::from_ne_bytes([*raw.first()?, *raw.get(1)?]);
    let port = || Some(u16::from_be_bytes([*raw.get(2)?, *raw.get(3)?]));
    match family {
        AF_INET => {
            let a: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
            Some(Addr::Ip(IpAddr::V4(Ipv4Addr::from(a)), port()?))
        }
        AF_INET6 => {
            let a: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            let ip = Ipv6Addr::from(a);
            let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
            Some(Addr::Ip(ip, port()?))
        }
        AF_UNIX => {
            let path = raw.get(2..)?;
            let end = path
                .iter()
                .skip(1)
                .position(|&b| b == 0)
                .map_or(path.len(), |i| i + 1);
            let p = &path[..end];
            Some(Addr::Unix(match p.strip_prefix(&[0]) {
                Some(abs) => format!("@{}", lossy(abs)),
                None => lossy(p),
            }))
        }
        _ => None,
    }
}

/// `fd.*` of a record: its socket (with a send's destination as the remote
/// end), or its file; `None` when it has no fd or the kernel could not
/// describe it.
fn record_fd(
    row: &SysRow,
    body: &SysBody,
    parts: &[Vec<u8>; PARTS],
    texts: &[String],
) -> Option<Fd> {
    if body.fd_num < 0 {
        return None;
    }
    // dup family: `fd.num` is the fd duplicated, as in Falco.
    let num = match row.evt {
        EvtType::Dup | EvtType::Dup2 | EvtType::Dup3 | EvtType::Fcntl => body.args[0] as i32 as i64,
        _ => body.fd_num as i64,
    };
    let i = &body.fd;
    let file = |fd_type| Fd {
        fd_type,
        num,
        name: if body.part_kind[0] == part::FDPATH {
            texts[0].clone()
        } else {
            String::new()
        },
        sip: None,
        sport: None,
        rip: None,
        rport: None,
        l4proto: None,
        server: false,
    };
    match i.ftype {
        FT_SOCK => Some(socket_fd(row, i, num, parts)),
        FT_DIR => Some(file(FdType::Directory)),
        FT_REG => Some(file(FdType::File)),
        0 => None,
        _ => Some(file(FdType::Unknown)),
    }
}

fn socket_fd(row: &SysRow, i: &FdInfo, num: i64, parts: &[Vec<u8>; PARTS]) -> Fd {
    let mut c = ConnectBody {
        ret: 0,
        fd: num as i32,
        addrlen: 0,
        family: i.family,
        dport: i.dport,
        sport: i.sport,
        sock_type: i.sock_type,
        protocol: i.protocol,
        unix_path_len: 0,
        _pad0: 0,
        daddr: i.daddr,
        saddr: i.saddr,
    };
    // A send to an address: that address is the remote end.
    let dest = matches!(
        row.evt,
        EvtType::Sendto | EvtType::Sendmsg | EvtType::Sendmmsg
    )
    .then(|| sockaddr(&parts[0]))
    .flatten();
    if let Some(Addr::Ip(ip, port)) = dest {
        c.dport = port;
        match (ip, i.family) {
            (IpAddr::V4(a), AF_INET) => c.daddr[..4].copy_from_slice(&a.octets()),
            (IpAddr::V4(a), _) => c.daddr = a.to_ipv6_mapped().octets(),
            (IpAddr::V6(a), _) => c.daddr = a.octets(),
        }
    }
    let mut fd = connect_fd(&c, &[]);
    fd.server = row.server;
    fd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::decode::RawEvent;
    use crate::process::{Clock, Users};
    use mamori_common::{syscall, EventKind};

    fn hdr(kind: EventKind, pid: u32) -> Header {
        Header {
            kind: kind as u16,
            tid: pid,
            tgid: pid,
            ..Default::default()
        }
    }

    fn sys(
        kind: EventKind,
        id: u16,
        ret: i64,
        args: [u64; 6],
        parts: [&[u8]; PARTS],
        kinds: [u8; PARTS],
    ) -> RawEvent {
        let body = SysBody {
            ret,
            args,
            syscall: id,
            part_kind: kinds,
            part_len: parts.map(|p| p.len() as u16),
            fd_num: -1,
            cap_effective: 1 << 21,
            ..Default::default()
        };
        RawEvent::Sys {
            hdr: hdr(kind, 7),
            body,
            parts: parts.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn sockaddrs_render_as_falco_addresses() {
        let mut v4 = vec![2, 0, 0x11, 0x5c];
        v4.extend([10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(sockaddr_text(&v4), "10.0.0.1:4444");
        let mut v6 = vec![10, 0, 0, 53, 0, 0, 0, 0];
        v6.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        assert_eq!(sockaddr_text(&v6), "192.0.2.1:53", "v4-mapped is IPv4");
        assert_eq!(sockaddr_text(b"\x01\x00/run/x.sock\0junk"), "/run/x.sock");
        assert_eq!(sockaddr_text(b"\x01\x00\0abstract"), "@abstract");
        assert_eq!(sockaddr_text(&[2, 0, 1]), "", "short: nothing, no panic");
        assert_eq!(sockaddr_text(&[]), "");
    }

    #[test]
    fn dup2_of_a_socket_carries_the_socket_as_fd() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::default());
        let RawEvent::Sys {
            hdr,
            mut body,
            parts,
        } = sys(
            EventKind::Fds,
            syscall::DUP2,
            1,
            [3, 1, 0, 0, 0, 0],
            [&[], &[], &[]],
            [0; PARTS],
        )
        else {
            unreachable!()
        };
        body.fd_num = 1;
        body.fd = FdInfo {
            ftype: FT_SOCK,
            family: AF_INET,
            sock_type: 1,
            protocol: 6,
            sport: 51000,
            dport: 4444,
            saddr: [10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            daddr: [10, 0, 0, 66, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        let ev = t.apply(&RawEvent::Sys { hdr, body, parts });
        assert_eq!(ev.evt_type, EvtType::Dup2);
        assert_eq!(ev.res, 1);
        let fd = ev.fd.unwrap();
        assert_eq!((fd.fd_type, fd.num), (FdType::Ipv4, 3));
        assert_eq!(fd.name, "10.0.0.9:51000->10.0.0.66:4444");
        assert_eq!(fd.l4proto.as_deref(), Some("tcp"));
        let args = ev.args.unwrap();
        assert_eq!(args["oldfd"], ArgValue::Int(3));
        assert_eq!(args["newfd"], ArgValue::Int(1));
        assert_eq!(ev.caps.unwrap().effective, 1 << 21);
    }

    #[test]
    fn file_arguments_and_chdir_moves_the_cwd() {
        let mut t = ProcTable::new(Clock::fixed(0), Users::default());
        let ev = t.apply(&sys(
            EventKind::FileOp,
            syscall::SYMLINKAT,
            0,
            [0, (-100i64) as u64, 0, 0, 0, 0],
            [b"/etc/shadow", b"s", &[]],
            [part::USTR, part::USTR, 0],
        ));
        assert_eq!(ev.evt_type, EvtType::Symlinkat);
        let args = ev.args.unwrap();
        assert_eq!(args["target"], ArgValue::Str("/etc/shadow".into()));
        assert_eq!(args["linkpath"], ArgValue::Str("s".into()));
        assert_eq!(args["linkdirfd"], ArgValue::Int(-100));
        assert!(ev.fd.is_none());
        t.apply(&sys(
            EventKind::Chdir,
            syscall::CHDIR,
            0,
            [0; 6],
            [b"/var/log", &[], &[]],
            [part::USTR, 0, 0],
        ));
        t.apply(&sys(
            EventKind::Chdir,
            syscall::CHDIR,
            0,
            [0; 6],
            [b"../tmp", &[], &[]],
            [part::USTR, 0, 0],
        ));
        t.apply(&sys(
            EventKind::Chdir,
            syscall::CHDIR,
            -2,
            [0; 6],
            [b"/nope", &[], &[]],
            [part::USTR, 0, 0],
        ));
        let ev = t.apply(&sys(
            EventKind::Chdir,
            syscall::FCHDIR,
            -9,
            [0; 6],
            [&[], &[], &[]],
            [part::FDPATH, 0, 0],
        ));
        assert_eq!(ev.proc.cwd.as_deref(), Some("/var/tmp"));
    }
}
