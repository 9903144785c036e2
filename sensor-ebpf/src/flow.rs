//! Bytes per TCP connection, aggregated in a kernel map (no event per send),
//! reported as one `flow` record when the connection closes and, for
//! long-lived ones, at most once per `flow_interval_s` while it is used.
//!
//! Why here: exfiltration by volume is invisible in connect events, and an
//! event per send would cost a ring record per `write`. Counting happens
//! where the kernel says how much a socket moved:
//! - Linux >= 6.3: the `sock:sock_send_length` / `sock_recv_length`
//!   tracepoints (every `sock_sendmsg`/`sock_recvmsg`, whatever syscall or
//!   splice led there);
//! - older kernels (`config_flags::FLOW_SYSCALLS`, chosen by the loader):
//!   the exit of write/writev/send*/sendfile/splice and the reads, on fds
//!   whose inode is a socket ([`on_sys_exit`]).
//!
//! Connections are keyed by their `struct sock`. An entry is made when a
//! connect starts (`inet_sock_set_state` to SYN_SENT, in the connecting
//! process) or at the first counted byte (accepted connections), and the
//! process it was made in owns the flow. `tcp:tcp_destroy_sock` reports and
//! removes it: a connection that reached CLOSE before it was established
//! is a failed connect (refused, reset, timed out; `sk_err` is kept at
//! CLOSE), which is how the result of a non-blocking connect is seen. Only
//! TCP is counted.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns, bpf_probe_read_user,
    },
    macros::{map, raw_tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::RawTracePointContext,
};
use mamori_common::{config_flags, flow_state, EventKind, FlowBody, Header};

use crate::{
    emit::{self, off, offsets},
    syscalls::Regs,
    task,
};

const IPPROTO_TCP: u16 = 6;
const AF_INET6: u16 = 10;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const MSG_PEEK: i32 = 2;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

/// Syscalls counted on kernels without the sock length tracepoints (x86_64
/// numbers): (number, direction, which argument is the fd).
pub const NR_READ: u64 = 0;
pub const NR_WRITE: u64 = 1;
pub const NR_READV: u64 = 19;
pub const NR_WRITEV: u64 = 20;
pub const NR_SENDFILE: u64 = 40;
pub const NR_SENDTO: u64 = 44;
pub const NR_RECVFROM: u64 = 45;
pub const NR_SENDMSG: u64 = 46;
pub const NR_RECVMSG: u64 = 47;
pub const NR_SPLICE: u64 = 275;
pub const NR_RECVMMSG: u64 = 299;
pub const NR_SENDMMSG: u64 = 307;

/// `struct mmsghdr` size and the offset of its `msg_len`.
const MMSGHDR_SIZE: u64 = 64;
const MMSG_LEN_AT: u64 = 56;
/// Messages of one sendmmsg/recvmmsg whose lengths are added up.
const MMSG_COUNTED: u64 = 8;

/// A connection's addresses, kept from its close: a failed blocking
/// connect is disconnected (its remote port zeroed) before the socket dies.
#[repr(C)]
pub struct Tuple {
    family: u16,
    sport: u16,
    dport: u16,
    _pad: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
}

/// One connection's counters and owner.
#[repr(C)]
pub struct FlowState {
    bytes_out: u64,
    bytes_in: u64,
    reported_out: u64,
    reported_in: u64,
    start_ns: u64,
    last_report_ns: u64,
    cgroup_id: u64,
    tid: u32,
    tgid: u32,
    uid: u32,
    gid: u32,
    comm: [u8; 16],
    established: u32,
    /// `sk_err` when the connection closed unestablished.
    err: i32,
    /// Set at the first CLOSE (family 0 until then).
    tuple: Tuple,
}

/// Live connections by `struct sock` address. LRU: a socket whose close was
/// never seen ages out instead of filling the map.
#[map]
static FLOWS: LruHashMap<u64, FlowState> = LruHashMap::with_max_entries(16384, 0);

/// Where a new entry is assembled (the BPF stack is small, and the
/// `sys_exit` program this is inlined into uses much of it). Only process
/// context makes entries, so nothing nested on this CPU shares it.
#[map]
static FLOW_INIT: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct FlowRecord {
    hdr: Header,
    body: FlowBody,
}

#[inline(always)]
fn enabled() -> bool {
    emit::config().enabled_kinds & (1 << EventKind::Flow.index()) != 0
}

#[inline(always)]
fn is_tcp(sk: u64) -> bool {
    task::read::<u16>(sk, off(&offsets().sock_protocol)) == Some(IPPROTO_TCP)
}

/// A new entry for `sk`, owned by the current task (not mamori itself).
#[inline(always)]
fn new_flow(sk: u64, established: u32) -> Option<*mut FlowState> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == emit::config().self_tgid || tgid == 0 {
        return None;
    }
    let uid_gid = bpf_get_current_uid_gid();
    let now = emit::now(false);
    let st = FLOW_INIT.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of FLOW_INIT (see there); helpers without
    // preconditions.
    unsafe {
        (*st).bytes_out = 0;
        (*st).bytes_in = 0;
        (*st).reported_out = 0;
        (*st).reported_in = 0;
        (*st).start_ns = now;
        (*st).last_report_ns = now;
        (*st).cgroup_id = bpf_get_current_cgroup_id();
        (*st).tid = pid_tgid as u32;
        (*st).tgid = tgid;
        (*st).uid = uid_gid as u32;
        (*st).gid = (uid_gid >> 32) as u32;
        (*st).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*st).established = established;
        (*st).err = 0;
        (*st).tuple.family = 0;
    }
    // Another CPU may have made it meanwhile: keep theirs.
    // SAFETY: as above.
    let _ = FLOWS.insert(sk, unsafe { &*st }, BPF_NOEXIST as u64);
    FLOWS.get_ptr_mut(sk)
}

/// Add `out`/`inb` bytes to `sk`'s counters (a TCP socket gets an entry at
/// its first byte); report it if an interim report is due.
#[inline(always)]
pub fn account(sk: u64, out: u64, inb: u64) {
    if sk == 0 || !enabled() {
        return;
    }
    let st = match FLOWS.get_ptr_mut(sk) {
        Some(p) => p,
        None => {
            if !is_tcp(sk) {
                return;
            }
            match new_flow(sk, 1) {
                Some(p) => p,
                None => return,
            }
        }
    };
    // SAFETY: `st` points at a live, 8-byte aligned map value. The adds are
    // atomic (two CPUs may send on one socket) and their results unused, so
    // they compile to the plain atomic add (BPF_XADD) every kernel's
    // verifier accepts. (The BPF target has no `AtomicU64::fetch_add`.)
    unsafe {
        if out != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*st).bytes_out),
                out,
            );
        }
        if inb != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*st).bytes_in),
                inb,
            );
        }
    }
    let every = emit::config().flow_interval_s as u64 * 1_000_000_000;
    if every == 0 {
        return;
    }
    let now = emit::now(false);
    // SAFETY: as above.
    unsafe {
        if now.wrapping_sub((*st).last_report_ns) < every {
            return;
        }
        (*st).last_report_ns = now;
    }
    report(sk, st, flow_state::OPEN, 0);
}

/// Read `sk`'s addresses into `t`.
///
/// # Safety
/// `t` must be valid for writes (a map value's field).
#[inline(always)]
unsafe fn fill_tuple(sk: u64, t: *mut Tuple) {
    let o = offsets();
    let family = task::read::<u16>(sk, off(&o.sock_family)).unwrap_or(0);
    (*t).family = family;
    (*t).sport = task::read::<u16>(sk, off(&o.sock_num)).unwrap_or(0);
    (*t).dport = u16::from_be(task::read::<u16>(sk, off(&o.sock_dport)).unwrap_or(0));
    (*t)._pad = 0;
    if family == AF_INET6 {
        (*t).saddr = task::read(sk, off(&o.sock_v6_rcv_saddr)).unwrap_or([0; 16]);
        (*t).daddr = task::read(sk, off(&o.sock_v6_daddr)).unwrap_or([0; 16]);
    } else {
        let s4: [u8; 4] = task::read(sk, off(&o.sock_rcv_saddr)).unwrap_or([0; 4]);
        let d4: [u8; 4] = task::read(sk, off(&o.sock_daddr)).unwrap_or([0; 4]);
        (*t).saddr = [
            s4[0], s4[1], s4[2], s4[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        (*t).daddr = [
            d4[0], d4[1], d4[2], d4[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
    }
}

/// Emit `st`'s bytes since its previous report, with `sk`'s addresses.
#[inline(always)]
fn report(sk: u64, st: *mut FlowState, state: u16, err: i32) {
    // SAFETY: `st` points at a live map value.
    let (out, inb) = unsafe {
        let (out, inb) = ((*st).bytes_out, (*st).bytes_in);
        let d = (
            out.wrapping_sub((*st).reported_out),
            inb.wrapping_sub((*st).reported_in),
        );
        (*st).reported_out = out;
        (*st).reported_in = inb;
        d
    };
    let Some(mut entry) = emit::reserve::<FlowRecord>(EventKind::Flow) else {
        return;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved ring record, sized for a FlowRecord;
    // every byte is written before the commit. `st` is a live map value.
    unsafe {
        let t = core::ptr::addr_of_mut!((*st).tuple);
        if (*t).family == 0 {
            fill_tuple(sk, t);
        }
        let b = core::ptr::addr_of_mut!((*rec).body);
        (*b).bytes_out = out;
        (*b).bytes_in = inb;
        (*b).start_boot_ns = (*st).start_ns;
        (*b).family = (*t).family;
        (*b).sport = (*t).sport;
        (*b).dport = (*t).dport;
        (*b).state = state;
        (*b).err = err;
        (*b).protocol = IPPROTO_TCP;
        (*b)._pad0 = 0;
        (*b).saddr = (*t).saddr;
        (*b).daddr = (*t).daddr;
        let h = core::ptr::addr_of_mut!((*rec).hdr);
        (*h).kind = EventKind::Flow as u16;
        (*h).flags = 0;
        (*h).size = core::mem::size_of::<FlowRecord>() as u32;
        (*h).ts_boot_ns = bpf_ktime_get_boot_ns();
        (*h).tid = (*st).tid;
        (*h).tgid = (*st).tgid;
        (*h).uid = (*st).uid;
        (*h).gid = (*st).gid;
        (*h).cgroup_id = (*st).cgroup_id;
        (*h).comm = (*st).comm;
    }
    emit::commit(entry);
}

/// TCP state changes: a connect starting (the flow's owner), established,
/// closed (its error kept for the final report).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn mamori_sock_set_state(ctx: RawTracePointContext) -> i32 {
    if !enabled() {
        return 0;
    }
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let sk: u64 = ctx.arg(0);
    let new = ctx.arg::<u64>(2) as i32;
    match new {
        TCP_SYN_SENT => {
            if is_tcp(sk) {
                let _ = new_flow(sk, 0);
            }
        }
        TCP_ESTABLISHED => {
            if let Some(p) = FLOWS.get_ptr_mut(sk) {
                // SAFETY: a live map value.
                unsafe { (*p).established = 1 };
            }
        }
        TCP_CLOSE => {
            if let Some(p) = FLOWS.get_ptr_mut(sk) {
                // SAFETY: a live map value.
                unsafe {
                    let t = core::ptr::addr_of_mut!((*p).tuple);
                    if (*t).family == 0 {
                        fill_tuple(sk, t);
                    }
                    if (*p).established == 0 && (*p).err == 0 {
                        // Read now: a getsockopt(SO_ERROR) (how a
                        // non-blocking connect learns its result) clears it.
                        (*p).err = task::read::<i32>(sk, off(&offsets().sock_err)).unwrap_or(0);
                    }
                }
            }
        }
        _ => {}
    }
    0
}

/// The socket is destroyed (its last fd closed, or its orphan done): the
/// final report. Not at TCP_CLOSE: a connection half-closed by its peer
/// goes to CLOSE while its owner can still read what is queued.
#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub fn mamori_tcp_destroy_sock(ctx: RawTracePointContext) -> i32 {
    if !enabled() {
        return 0;
    }
    // TP_PROTO(struct sock *sk)
    let sk: u64 = ctx.arg(0);
    if let Some(p) = FLOWS.get_ptr_mut(sk) {
        // SAFETY: a live map value.
        let (est, err) = unsafe { ((*p).established != 0, (*p).err) };
        let state = if est {
            flow_state::CLOSED
        } else {
            flow_state::FAILED
        };
        report(sk, p, state, err);
        let _ = FLOWS.remove(sk);
    }
    0
}

/// `sock_sendmsg` results (Linux >= 6.3).
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn mamori_sock_send_length(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk, int ret, int flags)
    let ret = ctx.arg::<u64>(1) as i32;
    if ret > 0 {
        account(ctx.arg(0), ret as u64, 0);
    }
    0
}

/// `sock_recvmsg` results (Linux >= 6.3); peeks are not counted.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn mamori_sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let ret = ctx.arg::<u64>(1) as i32;
    let flags = ctx.arg::<u64>(2) as i32;
    if ret > 0 && flags & MSG_PEEK == 0 {
        account(ctx.arg(0), 0, ret as u64);
    }
    0
}

/// The `struct sock` behind `fd` when it is a socket (its inode says so).
#[inline(always)]
fn socket_sk(fd: i32) -> Option<u64> {
    let o = offsets();
    let file = task::fd_file(task::current(), fd)?;
    let inode = task::read::<u64>(file, off(&o.file_inode))?;
    let mode = task::read::<u16>(inode, off(&o.inode_mode))?;
    if mode & S_IFMT != S_IFSOCK {
        return None;
    }
    let socket = task::read::<u64>(file, off(&o.file_private_data))?;
    task::read::<u64>(socket, off(&o.socket_sk))
}

/// Sum of `msg_len` of the first messages of a sendmmsg/recvmmsg vector.
#[inline(always)]
fn mmsg_bytes(vec: u64, n: i64) -> u64 {
    let mut total = 0u64;
    for i in 0..MMSG_COUNTED {
        if i as i64 >= n {
            break;
        }
        let at = vec + i * MMSGHDR_SIZE + MMSG_LEN_AT;
        // SAFETY: user pointer read through the checked helper.
        total += unsafe { bpf_probe_read_user(at as *const u32) }.unwrap_or(0) as u64;
    }
    total
}

/// The fallback count at syscall exit (`config_flags::FLOW_SYSCALLS`); `nr`
/// is one of this module's `NR_*`.
#[inline(always)]
pub fn on_sys_exit(nr: u64, r: &Regs, ret: i64) {
    if ret <= 0 || emit::config().flags & config_flags::FLOW_SYSCALLS == 0 || !enabled() {
        return;
    }
    let a = r.args;
    let (fd, out, inb) = match nr {
        NR_WRITE | NR_WRITEV | NR_SENDTO | NR_SENDMSG | NR_SENDFILE => (a[0], ret as u64, 0),
        NR_READ | NR_READV | NR_RECVFROM | NR_RECVMSG => (a[0], 0, ret as u64),
        NR_SENDMMSG => (a[0], mmsg_bytes(a[1], ret), 0),
        NR_RECVMMSG => (a[0], 0, mmsg_bytes(a[1], ret)),
        NR_SPLICE => {
            // splice(fd_in, off_in, fd_out, off_out, len, flags): into a
            // socket is a send, out of one a receive.
            if let Some(sk) = socket_sk(a[2] as i32) {
                account(sk, ret as u64, 0);
                return;
            }
            (a[0], 0, ret as u64)
        }
        _ => return,
    };
    if let Some(sk) = socket_sk(fd as i32) {
        account(sk, out, inb);
    }
}
