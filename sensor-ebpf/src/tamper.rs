//! Acts aimed at mamori itself, for its tamper alerts: signals generated for
//! its thread group and `ptrace` attach requests. Each fires rarely (a
//! signal to mamori, a debugger attaching anywhere), so a record goes out
//! per call, through a small ring of its own (`TAMPER`) that the event flood
//! cannot fill. The acting task is the current one: the sender of the
//! signal, the caller of `ptrace`.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid},
    macros::{map, raw_tracepoint, tracepoint},
    maps::RingBuf,
    programs::{RawTracePointContext, TracePointContext},
};
use mamori_common::{tamper, TamperRecord};

use crate::{emit, task};

/// `PTRACE_ATTACH` and `PTRACE_SEIZE` (uapi/linux/ptrace.h).
const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;

#[map]
static TAMPER: RingBuf = RingBuf::with_byte_size(16 * 1024, 0);

#[inline(always)]
fn send(kind: u16, what: u32, target: u32, result: i32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let rec = TamperRecord {
        kind,
        what,
        target,
        result,
        actor_tgid: (pid_tgid >> 32) as u32,
        actor_tid: pid_tgid as u32,
        actor_uid: bpf_get_current_uid_gid() as u32,
        actor_comm: bpf_get_current_comm().unwrap_or_default(),
        ..TamperRecord::default()
    };
    let _ = TAMPER.output::<TamperRecord>(&rec, 0);
}

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`: records signals whose target is in mamori's
/// thread group.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn mamori_signal_generate(ctx: RawTracePointContext) -> i32 {
    let me = emit::config().self_tgid;
    let target: u64 = ctx.arg(2);
    if me == 0 || task::tgid(target) != Some(me) {
        return 0;
    }
    let sig: u64 = ctx.arg(0);
    let result: u64 = ctx.arg(4);
    let tid = task::tid(target).unwrap_or(0);
    send(tamper::SIGNAL, sig as u32, tid, result as i32);
    0
}

/// `ptrace(request, pid, ...)` entry: attach requests, whatever the target.
#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn mamori_enter_ptrace(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the stable syscall tracepoint format
    // (`request` at 16, `pid` at 24).
    let request = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0);
    if request != PTRACE_ATTACH && request != PTRACE_SEIZE {
        return 0;
    }
    // SAFETY: as above.
    let pid = unsafe { ctx.read_at::<u64>(24) }.unwrap_or(0);
    send(tamper::PTRACE, request as u32, pid as u32, 0);
    0
}
