//! Table-driven syscall records: network (`socket`, `bind`, `listen`,
//! `accept*`, `sendto`/`sendmsg`/`sendmmsg` to an address, `shutdown`), fd
//! duplication, identity, injection/kernel, file tampering and `chdir`.
//!
//! Why a table: some fifty syscalls differ only in which arguments are
//! pointers to read. Userspace fills the `SYSCALLS` map (indexed by syscall
//! number) with a [`SysDesc`] for each syscall a loaded rule needs, so one
//! small program body records them all, and a syscall no rule needs costs
//! the `sys_exit` program one array lookup. Each record carries the result,
//! the six argument registers, the task's capabilities, up to three
//! variable parts (user strings, a sockaddr, an fd's path) and what the
//! kernel knows about one fd (its file type, and a socket's addresses).

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_buf, generated::bpf_probe_read_user_str},
    macros::map,
    maps::{Array, PerCpuArray},
};
use mamori_common::{
    desc_flags, flags, part, FdInfo, Header, SysBody, SysDesc, FD_RET, PARTS, PART_MAX,
    SOCKADDR_MAX, SYS_NR_MAX,
};

use crate::{
    current::Current,
    dpath,
    emit::{self, off, offsets},
    syscalls::Regs,
    task,
};

/// Per-syscall descriptors, filled by the loader from the rules' needs.
#[map]
static SYSCALLS: Array<SysDesc> = Array::with_max_entries(SYS_NR_MAX, 0);

/// The bytes of parts written so far, kept in map memory rather than a
/// register (as dpath.rs's walk length): loaded back it is an unknown
/// scalar to the verifier, so the states after each part's kinds compare
/// equal and are pruned instead of multiplying per part.
#[map]
static PARTS_LEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const HDR: usize = core::mem::size_of::<Header>();
const PARTS_AT: usize = HDR + core::mem::size_of::<SysBody>();
const S_IFSOCK: u16 = 12;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;

/// The descriptor of syscall `nr`, if a rule needs it.
#[inline(always)]
pub fn wanted(nr: u64) -> Option<&'static SysDesc> {
    if nr >= SYS_NR_MAX as u64 {
        return None;
    }
    SYSCALLS.get(nr as u32).filter(|d| d.id != 0)
}

/// Argument `i` of the syscall, read from the record's copy of the
/// arguments with the index masked (one load, no branch per index: a
/// `match` multiplies the verifier's paths). Indices 6 and 7 read the
/// capabilities after them; descriptors never use them.
#[inline(always)]
fn arg(args: *const u64, i: u8) -> u64 {
    // SAFETY: `args` points at `SysBody::args` in the scratch buffer; eight
    // u64s from there lie inside the body.
    unsafe { core::ptr::read_volatile(args.add((i & 7) as usize)) }
}

/// Argument `i` of the registers (for the checks made before the record).
#[inline(always)]
fn reg_arg(r: &Regs, i: u8) -> u64 {
    match i {
        0 => r.args[0],
        1 => r.args[1],
        2 => r.args[2],
        3 => r.args[3],
        4 => r.args[4],
        5 => r.args[5],
        _ => 0,
    }
}

#[inline(always)]
pub fn on_exit(desc: &SysDesc, r: &Regs, ret: i64, cur: &impl Current) -> Result<(), i64> {
    if desc.flags & desc_flags::DUPFD_ONLY != 0 {
        let cmd = r.args[1];
        if cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC {
            return Ok(());
        }
    }
    if desc.flags & desc_flags::NEED_PART0 != 0 && !has_address(desc, r) {
        return Ok(());
    }
    let Some(pid_tgid) = emit::not_self(cur) else {
        return Ok(());
    };
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header_tag(buf, desc.kind, true, pid_tgid, cur);
    let me = task::current();
    // The body is written in place: it and a socket's details would not fit
    // the 512-byte BPF stack next to the rest.
    // SAFETY: the scratch buffer is 8-byte aligned and far larger than a
    // header and a body; HDR is a multiple of SysBody's alignment (common).
    let body = unsafe { &mut *buf.add(HDR).cast::<SysBody>() };
    body.ret = ret;
    body.args = r.args;
    body.syscall = desc.id;
    body._pad0 = 0;
    caps(me, body);
    let args = core::ptr::addr_of!(body.args).cast::<u64>();
    let fd = match desc.fd_arg {
        FD_RET => ret as i32,
        a if a < 6 => arg(args, a) as i32,
        _ => -1,
    };
    body.fd_num = fd;
    fd_info(me, fd, &mut body.fd);
    let slot = PARTS_LEN.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    unsafe { core::ptr::write_volatile(slot, 0) };
    for i in 0..PARTS {
        let p = desc.parts[i];
        body.part_kind[i] = p.kind;
        // The offset is read and masked right where it is used (see dpath.rs).
        // SAFETY: as above.
        let at = unsafe { core::ptr::read_volatile(slot) } as usize & (2 * PART_MAX - 1);
        // SAFETY: PARTS_AT + 2 * PART_MAX + PART_MAX + 2 * DIR_MAX + NAME_MAX
        // fits the scratch buffer (checked in common).
        let out = unsafe { buf.add(PARTS_AT + at) };
        let n = match p.kind {
            part::USTR => ustr(buf, out, arg(args, p.arg)),
            part::SOCKADDR => sockaddr(buf, out, arg(args, p.arg), arg(args, p.len_arg)),
            part::MSGHDR => msghdr_name(buf, out, arg(args, p.arg)),
            part::FDPATH if i == 0 => {
                dpath::resolve_dir(me, arg(args, p.arg) as i32, out).unwrap_or(0)
            }
            _ => 0,
        } & (PART_MAX - 1);
        body.part_len[i] = n as u16;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(slot, (at + n) as u64) };
    }
    // SAFETY: as above.
    let total = unsafe { core::ptr::read_volatile(slot) } as usize & (4 * PART_MAX - 1);
    emit::submit_slot(buf, PARTS_AT + total, desc.slot as u32, false);
    Ok(())
}

/// For `NEED_PART0` syscalls (sendto, sendmsg): whether a destination
/// address was passed (a connected socket's sends carry none).
#[inline(always)]
fn has_address(d: &SysDesc, r: &Regs) -> bool {
    let p = d.parts[0];
    let ptr = reg_arg(r, p.arg);
    match p.kind {
        // SAFETY: user pointer read through the checked helper.
        part::MSGHDR => {
            ptr != 0
                && unsafe { bpf_probe_read_user(ptr as *const u64) }.is_ok_and(|name| name != 0)
        }
        _ => ptr != 0,
    }
}

/// A user string at `ptr` into `out`; its length without the NUL.
#[inline(always)]
fn ustr(buf: *mut u8, out: *mut u8, ptr: u64) -> usize {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: `out` has room for PART_MAX bytes (see the caller).
    let n = unsafe { bpf_probe_read_user_str(out.cast(), PART_MAX as u32, ptr as *const _) };
    if n <= 0 {
        emit::set_flag(buf, flags::PATH_FAULT);
        return 0;
    }
    if n as usize >= PART_MAX {
        emit::set_flag(buf, flags::PATH_TRUNCATED);
    }
    (n as usize - 1) & (PART_MAX - 1)
}

/// `len` bytes of sockaddr at `ptr` (at most [`SOCKADDR_MAX`]).
#[inline(always)]
fn sockaddr(buf: *mut u8, out: *mut u8, ptr: u64, len: u64) -> usize {
    if ptr == 0 || len == 0 {
        return 0;
    }
    let mut n = (len & 0xff) as usize;
    if len > SOCKADDR_MAX as u64 || n > SOCKADDR_MAX {
        n = SOCKADDR_MAX;
    }
    // SAFETY: n <= SOCKADDR_MAX < PART_MAX bytes of room at `out`.
    let dst = unsafe { core::slice::from_raw_parts_mut(out, n) };
    // SAFETY: user pointer read through the checked helper.
    if unsafe { bpf_probe_read_user_buf(ptr as *const u8, dst) }.is_err() {
        emit::set_flag(buf, flags::ADDR_FAULT);
        return 0;
    }
    n
}

/// The destination of a `struct msghdr` (`msg_name`, `msg_namelen`).
#[inline(always)]
fn msghdr_name(buf: *mut u8, out: *mut u8, ptr: u64) -> usize {
    // SAFETY: user pointer reads through the checked helper.
    let name = unsafe { bpf_probe_read_user(ptr as *const u64) };
    let len = unsafe { bpf_probe_read_user((ptr + 8) as *const u32) };
    match (name, len) {
        (Ok(name), Ok(len)) => sockaddr(buf, out, name, len as u64),
        _ => {
            emit::set_flag(buf, flags::ADDR_FAULT);
            0
        }
    }
}

/// `cred->cap_{effective,permitted,inheritable}` of the current task
/// (`kernel_cap_t`: one u64, or two u32 words low first before 6.3).
#[inline(always)]
fn caps(me: u64, body: &mut SysBody) {
    let o = offsets();
    body.cap_effective = 0;
    body.cap_permitted = 0;
    body.cap_inheritable = 0;
    let Some(cred) = task::read::<u64>(me, off(&o.task_cred)) else {
        return;
    };
    body.cap_effective = task::read::<u64>(cred, off(&o.cred_cap_effective)).unwrap_or(0);
    body.cap_permitted = task::read::<u64>(cred, off(&o.cred_cap_permitted)).unwrap_or(0);
    body.cap_inheritable = task::read::<u64>(cred, off(&o.cred_cap_inheritable)).unwrap_or(0);
}

/// The file type of fd `fd` into `info`, and for a socket its family,
/// type, protocol and both ends (all zero when unknown).
#[inline(always)]
fn fd_info(me: u64, fd: i32, info: &mut FdInfo) {
    *info = FdInfo::default();
    let o = offsets();
    let Some(file) = task::fd_file(me, fd) else {
        return;
    };
    let mode = task::read::<u64>(file, off(&o.file_inode))
        .and_then(|inode| task::read::<u16>(inode, off(&o.inode_mode)))
        .unwrap_or(0);
    info.ftype = mode >> 12;
    if info.ftype != S_IFSOCK {
        return;
    }
    let Some(sock) = task::read::<u64>(file, off(&o.file_private_data)) else {
        return;
    };
    info.sock_type = task::read::<i16>(sock, off(&o.socket_type)).unwrap_or(0) as u16;
    let Some(sk) = task::read::<u64>(sock, off(&o.socket_sk)) else {
        return;
    };
    info.protocol = task::read::<u16>(sk, off(&o.sock_protocol)).unwrap_or(0);
    info.family = task::read::<u16>(sk, off(&o.sock_family)).unwrap_or(0);
    info.sport = task::read::<u16>(sk, off(&o.sock_num)).unwrap_or(0);
    info.dport = u16::from_be(task::read::<u16>(sk, off(&o.sock_dport)).unwrap_or(0));
    if info.family == AF_INET6 {
        if let Some(a) = task::read::<[u8; 16]>(sk, off(&o.sock_v6_rcv_saddr)) {
            info.saddr = a;
        }
        if let Some(a) = task::read::<[u8; 16]>(sk, off(&o.sock_v6_daddr)) {
            info.daddr = a;
        }
    } else if info.family == AF_INET {
        if let Some(a) = task::read::<[u8; 4]>(sk, off(&o.sock_rcv_saddr)) {
            info.saddr[..4].copy_from_slice(&a);
        }
        if let Some(a) = task::read::<[u8; 4]>(sk, off(&o.sock_daddr)) {
            info.daddr[..4].copy_from_slice(&a);
        }
    }
}
