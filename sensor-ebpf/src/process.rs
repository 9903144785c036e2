//! Process lifecycle: fork (new thread groups only) and exit (group leaders),
//! from the scheduler's raw tracepoints, whose arguments are task pointers
//! (stable across kernels, unlike the formatted tracepoint records).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use mamori_common::{EventKind, ExitBody, ForkBody, Header};

use crate::{current::Helpers, emit, task};

const HDR: usize = core::mem::size_of::<Header>();

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn mamori_sched_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

#[inline(always)]
fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(pid_tgid) = emit::wanted(EventKind::Fork, &Helpers) else {
        return Ok(());
    };
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child: u64 = ctx.arg(1);
    let child_tid = task::tid(child).ok_or(0i64)?;
    let child_tgid = task::tgid(child).ok_or(0i64)?;
    if child_tid != child_tgid {
        return Ok(()); // a new thread, not a new process
    }
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Fork, pid_tgid, &Helpers);
    let body = ForkBody {
        child_tid,
        child_tgid,
        ppid: task::ppid(child),
        _pad0: 0,
        child_start_boot_ns: task::start_boot_ns(child),
    };
    emit::write_body(buf, body);
    emit::submit(buf, HDR + core::mem::size_of::<ForkBody>(), EventKind::Fork);
    Ok(())
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn mamori_sched_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(pid_tgid) = emit::wanted(EventKind::Exit, &Helpers) else {
        return Ok(());
    };
    // TP_PROTO(struct task_struct *p): the exiting task, which is current.
    let t: u64 = ctx.arg(0);
    if task::tid(t) != task::tgid(t) {
        return Ok(()); // a thread, not the process
    }
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Exit, pid_tgid, &Helpers);
    let body = ExitBody {
        exit_code: task::exit_code(t),
        _pad0: 0,
        start_boot_ns: task::start_boot_ns(t),
    };
    emit::write_body(buf, body);
    emit::submit(buf, HDR + core::mem::size_of::<ExitBody>(), EventKind::Exit);
    Ok(())
}
