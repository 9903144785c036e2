//! connect: destination (IPv4, IPv6, unix), local address/port and socket
//! type/protocol from the kernel socket, and the result (EINPROGRESS included).

use aya_ebpf::helpers::{bpf_probe_read_user, bpf_probe_read_user_buf};
use mamori_common::{flags, ConnectBody, EventKind, Header, UNIX_PATH_MAX};

use crate::{current::Current, emit, syscalls::Regs, task};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const EBADF: i64 = 9;
const EFAULT: i64 = 14;
const ENOTSOCK: i64 = 88;

const HDR: usize = core::mem::size_of::<Header>();
const PATH_AT: usize = HDR + core::mem::size_of::<ConnectBody>();

#[inline(always)]
pub fn on_exit(r: &Regs, ret: i64, cur: &impl Current) -> Result<(), i64> {
    let Some(pid_tgid) = emit::wanted(EventKind::Connect, cur) else {
        return Ok(());
    };
    let fd = r.args[0] as i32;
    let uaddr = r.args[1];
    let addrlen = r.args[2] as u32;
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Connect, pid_tgid, cur);
    let mut body = ConnectBody {
        ret,
        fd,
        addrlen,
        ..ConnectBody::default()
    };
    // sockaddr_in6 is the largest inet form (28 bytes); sockaddr_in is 16.
    // SAFETY: user pointer reads through the checked helper.
    match unsafe { bpf_probe_read_user(uaddr as *const [u8; 16]) } {
        Ok(sa) => {
            body.family = u16::from_ne_bytes([sa[0], sa[1]]);
            body.dport = u16::from_be_bytes([sa[2], sa[3]]);
            if body.family == AF_INET {
                body.daddr[..4].copy_from_slice(&sa[4..8]);
            } else if body.family == AF_INET6 {
                match unsafe { bpf_probe_read_user((uaddr + 8) as *const [u8; 16]) } {
                    Ok(a6) => body.daddr = a6,
                    Err(_) => emit::set_flag(buf, flags::ADDR_FAULT),
                }
            }
        }
        Err(_) => emit::set_flag(buf, flags::ADDR_FAULT),
    }
    let mut tail = 0usize;
    if body.family == AF_UNIX && addrlen > 2 {
        let mut n = (addrlen as usize - 2) & 0x7f;
        if n > UNIX_PATH_MAX {
            n = UNIX_PATH_MAX;
        }
        // SAFETY: PATH_AT + 128 lies inside the scratch buffer.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf.add(PATH_AT), n) };
        if unsafe { bpf_probe_read_user_buf((uaddr + 2) as *const u8, dst) }.is_ok() {
            tail = n;
        } else {
            emit::set_flag(buf, flags::ADDR_FAULT);
        }
    }
    body.unix_path_len = tail as u16;
    if ret != -EBADF && ret != -ENOTSOCK && ret != -EFAULT {
        if let Some(s) = task::socket_info(task::current(), fd) {
            body.sock_type = s.sock_type;
            body.protocol = s.protocol;
            body.sport = s.sport;
            if s.family == AF_INET6 {
                body.saddr = s.saddr6;
            } else {
                body.saddr[..4].copy_from_slice(&s.saddr4);
            }
        }
    }
    emit::write_body(buf, body);
    emit::submit(buf, PATH_AT + tail, EventKind::Connect);
    Ok(())
}
