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
