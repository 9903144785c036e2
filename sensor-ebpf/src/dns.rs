//! DNS questions: a message sent to port 53 by sendto (and send), sendmsg or
//! sendmmsg (glibc's resolver connects its UDP socket, then sends the A and
//! AAAA questions in one sendmmsg) becomes a `dns` record carrying the first
//! [`DNS_MAX`] bytes of the message, so the question (name and type) can be
//! read by userspace.
//!
//! The kernel only decides *whether* a send is DNS (the destination port,
//! from the address passed or the connected socket) and copies a bounded
//! prefix: parsing names is label-by-label variable-length work that the
//! older verifiers make costly, and userspace does it with a bounds-checked
//! parser. `write` on a connected socket is not looked at: resolvers use the
//! send family, and a `write` check would walk the fd table on every write.

use aya_ebpf::helpers::{bpf_probe_read_user, generated as gen};
use mamori_common::{syscall, DnsBody, EventKind, Header, DNS_MAX};

use crate::{
    current::Current,
    emit::{self, off, offsets},
    syscalls::Regs,
    task,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const DNS_PORT: u16 = 53;
const HDR: usize = core::mem::size_of::<Header>();
const PAYLOAD_AT: usize = HDR + core::mem::size_of::<DnsBody>();

/// `struct msghdr` (x86_64), as far as the address and the first iovec.
#[repr(C)]
#[derive(Clone, Copy)]
struct MsgHdr {
    name: u64,
    namelen: u32,
    _pad: u32,
    iov: u64,
    iovlen: u64,
}

/// `struct iovec`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Iovec {
    base: u64,
    len: u64,
}

/// `struct mmsghdr` size and the offset of its `msg_len`.
const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN_AT: u64 = 56;

/// Where a message went: family, port, address.
struct Dest {
    family: u16,
    port: u16,
    addr: [u8; 16],
}

#[inline(always)]
pub fn on_exit(r: &Regs, ret: i64, sys: u16, cur: &impl Current) -> Result<(), i64> {
    if ret <= 0 {
        return Ok(());
    }
    let Some(pid_tgid) = emit::wanted(EventKind::Dns, cur) else {
        return Ok(());
    };
    let fd = r.args[0] as i32;
    match sys {
        syscall::SENDTO => {
            // sendto(fd, buf, len, flags, addr, addrlen)
            one(fd, sys, r.args[4], r.args[1], ret as u64, pid_tgid, cur);
        }
        syscall::SENDMSG => {
            if let Some((name, base, len)) = msg(r.args[1]) {
                one(fd, sys, name, base, len.min(ret as u64), pid_tgid, cur);
            }
        }
        _ => {
            // sendmmsg(fd, msgvec, vlen, flags) returns the messages sent:
            // the first two (glibc's A and AAAA) are looked at.
            let vec = r.args[1];
            if let Some((name, base, _)) = msg(vec) {
                let len = sent_len(vec);
                one(fd, sys, name, base, len, pid_tgid, cur);
            }
            if ret > 1 {
                let second = vec + MMSGHDR_SIZE;
                if let Some((name, base, _)) = msg(second) {
                    let len = sent_len(second);
                    one(fd, sys, name, base, len, pid_tgid, cur);
                }
            }
        }
    }
    Ok(())
}

/// `msg_len` of one `struct mmsghdr`.
#[inline(always)]
fn sent_len(mmsg: u64) -> u64 {
    // SAFETY: user pointer read through the checked helper.
    unsafe { bpf_probe_read_user((mmsg + MMSG_LEN_AT) as *const u32) }.unwrap_or(0) as u64
}

/// A msghdr's address pointer and its first iovec.
#[inline(always)]
fn msg(uptr: u64) -> Option<(u64, u64, u64)> {
    // SAFETY: user pointer reads through the checked helper.
    let m = unsafe { bpf_probe_read_user(uptr as *const MsgHdr) }.ok()?;
    if m.iovlen == 0 {
        return None;
    }
    // SAFETY: as above.
    let iov = unsafe { bpf_probe_read_user(m.iov as *const Iovec) }.ok()?;
    Some((m.name, iov.base, iov.len))
}

/// The destination given as a user sockaddr.
#[inline(always)]
fn dest_from_user(uaddr: u64) -> Option<Dest> {
    // SAFETY: user pointer reads through the checked helper.
    let sa = unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) }.ok()?;
    let mut d = Dest {
        family: u16::from_ne_bytes([sa[0], sa[1]]),
        port: u16::from_be_bytes([sa[2], sa[3]]),
        addr: [0; 16],
    };
    if d.family == AF_INET {
        d.addr[..4].copy_from_slice(&sa[4..8]);
    } else if d.family == AF_INET6 {
        // SAFETY: as above.
        d.addr = unsafe { bpf_probe_read_user((uaddr + 8) as *const [u8; 16]) }.ok()?;
    }
    Some(d)
}

/// The destination of a connected socket.
#[inline(always)]
fn dest_from_sock(sk: u64) -> Dest {
    let o = offsets();
    let family = task::read::<u16>(sk, off(&o.sock_family)).unwrap_or(0);
    let mut d = Dest {
        family,
        port: u16::from_be(task::read::<u16>(sk, off(&o.sock_dport)).unwrap_or(0)),
        addr: [0; 16],
    };
    if family == AF_INET6 {
        d.addr = task::read(sk, off(&o.sock_v6_daddr)).unwrap_or([0; 16]);
    } else {
        let a: [u8; 4] = task::read(sk, off(&o.sock_daddr)).unwrap_or([0; 4]);
        d.addr[..4].copy_from_slice(&a);
    }
    d
}

/// `fd`'s `struct sock` (the send succeeded, so `fd` is a socket).
#[inline(always)]
fn fd_sock(fd: i32) -> Option<u64> {
    let o = offsets();
    let file = task::fd_file(task::current(), fd)?;
    let socket = task::read::<u64>(file, off(&o.file_private_data))?;
    task::read::<u64>(socket, off(&o.socket_sk))
}

/// One message of `len` bytes at user `base`, sent to `uaddr` (or, when
/// null, to the socket's peer): a record if it went to port 53.
#[inline(always)]
fn one(fd: i32, sys: u16, uaddr: u64, base: u64, len: u64, pid_tgid: u64, cur: &impl Current) {
    let dest = if uaddr != 0 {
        match dest_from_user(uaddr) {
            Some(d) => d,
            None => return,
        }
    } else {
        match fd_sock(fd) {
            Some(s) => dest_from_sock(s),
            None => return,
        }
    };
    if dest.port != DNS_PORT || (dest.family != AF_INET && dest.family != AF_INET6) {
        return;
    }
    let Some(buf) = emit::scratch() else {
        return;
    };
    emit::write_header(buf, EventKind::Dns, pid_tgid, cur);
    let mut body = DnsBody {
        ret: len as i64,
        fd,
        syscall: sys,
        family: dest.family,
        dport: dest.port,
        daddr: dest.addr,
        ..DnsBody::default()
    };
    if let Some(s) = task::socket_info(task::current(), fd) {
        body.sock_type = s.sock_type;
        body.sport = s.sport;
        if dest.family == AF_INET6 {
            body.saddr = s.saddr6;
        } else {
            body.saddr[..4].copy_from_slice(&s.saddr4);
        }
    }
    let want = if len > DNS_MAX as u64 {
        DNS_MAX as u64
    } else {
        len
    };
    // Masked right next to the call (older verifiers lose spilled bounds).
    let n = (want as usize) & (2 * DNS_MAX - 1);
    // SAFETY: PAYLOAD_AT + 2 * DNS_MAX fits in the scratch buffer (checked
    // in common); `base` is a user pointer read through the checked helper.
    let rc =
        unsafe { gen::bpf_probe_read_user(buf.add(PAYLOAD_AT).cast(), n as u32, base as *const _) };
    let copied = if rc == 0 { n } else { 0 };
    body.payload_len = copied as u16;
    emit::write_body(buf, body);
    emit::submit(buf, PAYLOAD_AT + copied, EventKind::Dns);
}
