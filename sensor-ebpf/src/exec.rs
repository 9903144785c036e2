//! execve / execveat.
//!
//! Success is reported from `sched/sched_process_exec`, which fires once the
//! new image is in place: the filename comes from the kernel's own copy (the
//! tracepoint's `filename` field) and argv from the new mm's argument area,
//! which the kernel has just written, so neither read can miss a page.
//! Failure is reported from `sys_exit` (see `syscalls`), reading filename and
//! argv from the caller's (still mapped) memory.
//!
//! `sys_enter_execveat` notes dirfd/flags per thread so the success path can
//! tell execveat from execve.
//!
//! A successful exec also carries what the new image really is and where it
//! starts, read from the task at that moment: the file it was loaded from
//! (`mm->exe_file`) and its cwd (`fs->pwd`), so a process a runtime starts
//! (runc's init changes root and directory between its fork and the exec)
//! shows the container's, not the runtime's. Its parent is
//! `real_parent->tgid` at the exec, so a child reparented before it (runc,
//! conmon double-forks) names its real parent.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        generated::{bpf_probe_read_user as probe_read_user_raw, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use mamori_common::{
    flags, syscall, EventKind, ExecBody, Header, ARGS_HEAD, ARGS_MAX, ARGV_MAX_ENTRIES, DIR_MAX,
    PATH_MAX,
};

use aya_ebpf::EbpfContext;

use crate::{
    current::{Current, Helpers},
    dpath, emit,
    syscalls::Regs,
    task,
};

const HDR: usize = core::mem::size_of::<Header>();
const STR_AT: usize = HDR + core::mem::size_of::<ExecBody>();
const AT_FDCWD: i32 = -100;

#[repr(C)]
#[derive(Clone, Copy)]
struct ExecAt {
    dirfd: i32,
    flags: u32,
}

/// execveat calls in flight, by thread id.
#[map]
static EXECVEAT_CALLS: LruHashMap<u32, ExecAt> = LruHashMap::with_max_entries(1024, 0);

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn mamori_enter_execveat(ctx: TracePointContext) -> u32 {
    // sys_enter_execveat: fd at 16, filename 24, argv 32, envp 40, flags 48.
    // SAFETY: offsets from the stable syscall tracepoint format.
    let dirfd = unsafe { ctx.read_at::<u64>(16) }.unwrap_or(0) as i32;
    let flags = unsafe { ctx.read_at::<u64>(48) }.unwrap_or(0) as u32;
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = EXECVEAT_CALLS.insert(tid, ExecAt { dirfd, flags }, 0);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn mamori_sched_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exec(&ctx);
    0
}

#[inline(always)]
fn try_sched_exec(ctx: &TracePointContext) -> Result<(), i64> {
    // sched_process_exec: __data_loc filename at 8, pid at 12, old_pid at 16.
    // SAFETY: offsets from the tracepoint format, stable since 3.x.
    let loc = unsafe { ctx.read_at::<u32>(8) }.map_err(|e| e as i64)?;
    let old_pid = unsafe { ctx.read_at::<i32>(16) }.map_err(|e| e as i64)? as u32;
    let at = EXECVEAT_CALLS.get_ptr(old_pid).map(|p| unsafe { *p });
    if at.is_some() {
        let _ = EXECVEAT_CALLS.remove(old_pid);
    }
    let Some(pid_tgid) = emit::wanted(EventKind::Exec, &Helpers) else {
        return Ok(());
    };
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Exec, pid_tgid, &Helpers);

    // Filename: the kernel's copy inside the trace record.
    let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
    // SAFETY: STR_AT + PATH_MAX lies inside the scratch buffer.
    let dst = unsafe { core::slice::from_raw_parts_mut(buf.add(STR_AT), PATH_MAX) };
    let name_len = match unsafe { bpf_probe_read_kernel_str_bytes(src, dst) } {
        Ok(s) => s.len() & (PATH_MAX - 1),
        Err(_) => {
            emit::set_flag(buf, flags::PATH_FAULT);
            0
        }
    };

    // argv: the new image's argument area, NUL-separated.
    let t = task::current();
    let mut args_len = 0usize;
    match task::arg_area(t) {
        Some((start, end)) if end > start => {
            // SAFETY: STR_AT + PATH_MAX + 2 * ARGS_MAX fits in the scratch buffer.
            let at = unsafe { buf.add(STR_AT + name_len) };
            let n = (end - start) as usize;
            let r = if n <= ARGS_MAX {
                args_len = n & (2 * ARGS_MAX - 1);
                read_args(at, start, args_len)
            } else {
                // Too long: the head and the tail (where a command line's
                // telling flags often are), not the head alone.
                emit::set_flag(buf, flags::ARGS_TRUNCATED | flags::ARGS_TAIL);
                args_len = 2 * ARGS_HEAD + 1;
                // SAFETY: ARGS_HEAD + ARGS_HEAD + 1 <= 2 * ARGS_MAX after `at`.
                let tail_at = unsafe { at.add(ARGS_HEAD) };
                read_args(at, start, ARGS_HEAD)
                    | read_args(tail_at, end - ARGS_HEAD as u64 - 1, ARGS_HEAD + 1)
            };
            if r != 0 {
                args_len = 0;
                emit::set_flag(buf, flags::ARGS_FAULT);
            }
        }
        _ => emit::set_flag(buf, flags::ARGS_FAULT),
    }

    let call = match at {
        Some(a) => Call {
            ret: 0,
            sys: syscall::EXECVEAT,
            dirfd: a.dirfd,
            at_flags: a.flags,
        },
        None => Call {
            ret: 0,
            sys: syscall::EXECVE,
            dirfd: AT_FDCWD,
            at_flags: 0,
        },
    };
    // The file the image came from, whatever name it was run by (a
    // symlink, a renamed copy, a memfd).
    // SAFETY: name_len < PATH_MAX and args_len < 2 * ARGS_MAX; the scratch
    // buffer has room for the exe path after both (checked in common).
    let exe_at = unsafe { buf.add(STR_AT + name_len + args_len) };
    let exe_len = match dpath::exe_path(t, exe_at) {
        Some(n) => {
            emit::set_flag(buf, flags::EXE_RESOLVED);
            n
        }
        None => 0,
    };
    // The directory the new image starts in, read now: a runtime's init
    // changes directory after its fork, so the cwd copied at fork is the
    // runtime's. The exe path is at most DIR_MAX; one that long leaves no
    // room, and the cwd is left to userspace.
    let cwd_len = if exe_len < DIR_MAX {
        // SAFETY: exe_len < DIR_MAX; the scratch buffer has room for a walk
        // after an exe path that long (checked in common).
        let cwd_at = unsafe { exe_at.add(exe_len & (DIR_MAX - 1)) };
        match dpath::resolve_dir(t, AT_FDCWD, cwd_at) {
            Some(n) => {
                emit::set_flag(buf, flags::CWD_RESOLVED);
                n
            }
            None => 0,
        }
    } else {
        0
    };
    let mut body = exec_body(t, call, name_len, args_len);
    body.exe_len = exe_len as u16;
    body.cwd_len = cwd_len as u16;
    emit::write_body(buf, body);
    let size = STR_AT + name_len + args_len + exe_len + cwd_len;
    emit::submit(buf, size, EventKind::Exec);
    Ok(())
}

/// Copy `len` bytes of the new image's argument area at `src` to `dst`; 0 or
/// the helper's error.
#[inline(always)]
fn read_args(dst: *mut u8, src: u64, len: usize) -> i64 {
    // SAFETY: callers keep `dst + len` inside the scratch buffer; the helper
    // checks the user address.
    unsafe { probe_read_user_raw(dst.cast(), len as u32, src as *const _) }
}

/// A failed execve/execveat, seen at syscall exit in the caller's image.
#[inline(always)]
pub fn on_failed_exit(r: &Regs, ret: i64, sys: u16, cur: &impl Current) -> Result<(), i64> {
    let tid = cur.pid_tgid() as u32;
    let _ = EXECVEAT_CALLS.remove(tid);
    let Some(pid_tgid) = emit::wanted(EventKind::Exec, cur) else {
        return Ok(());
    };
    let a = r.args;
    let (dirfd, filename, argv, at_flags) = if sys == syscall::EXECVEAT {
        (a[0] as i32, a[1], a[2], a[4] as u32)
    } else {
        (AT_FDCWD, a[0], a[1], 0)
    };
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Exec, pid_tgid, cur);
    // SAFETY: STR_AT + PATH_MAX lies inside the scratch buffer.
    let n = unsafe {
        bpf_probe_read_user_str(
            buf.add(STR_AT).cast(),
            PATH_MAX as u32,
            filename as *const _,
        )
    };
    let name_len = if n > 0 {
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        emit::set_flag(buf, flags::PATH_FAULT);
        0
    };
    let args_at = STR_AT + name_len;
    let mut used = 0usize;
    for i in 0..ARGV_MAX_ENTRIES {
        // SAFETY: user pointer read through the checked helper.
        let p = match unsafe { bpf_probe_read_user((argv + 8 * i as u64) as *const u64) } {
            Ok(p) => p,
            Err(_) => {
                emit::set_flag(buf, flags::ARGS_FAULT);
                break;
            }
        };
        if p == 0 {
            break;
        }
        if i == ARGV_MAX_ENTRIES - 1 || used >= ARGS_MAX {
            emit::set_flag(buf, flags::ARGS_TRUNCATED);
            break;
        }
        let u = used & (ARGS_MAX - 1);
        let room = ARGS_MAX - u;
        // SAFETY: args_at + ARGS_MAX fits in the scratch buffer.
        let n = unsafe {
            bpf_probe_read_user_str(buf.add(args_at + u).cast(), room as u32, p as *const _)
        };
        if n <= 0 {
            emit::set_flag(buf, flags::ARGS_FAULT);
            break;
        }
        used = u + n as usize;
        if n as usize >= room {
            emit::set_flag(buf, flags::ARGS_TRUNCATED);
            break;
        }
    }
    let args_len = used & (2 * ARGS_MAX - 1);
    let call = Call {
        ret,
        sys,
        dirfd,
        at_flags,
    };
    emit::write_body(buf, exec_body(task::current(), call, name_len, args_len));
    emit::submit(buf, args_at + args_len, EventKind::Exec);
    Ok(())
}

/// Which exec call a record reports, and its result.
struct Call {
    ret: i64,
    sys: u16,
    dirfd: i32,
    at_flags: u32,
}

/// The body both paths send: the call, the filename and argv lengths
/// copied, and what the task `t` says.
#[inline(always)]
fn exec_body(t: u64, call: Call, name_len: usize, args_len: usize) -> ExecBody {
    ExecBody {
        ret: call.ret,
        start_boot_ns: task::start_boot_ns(t),
        ppid: task::ppid(t),
        loginuid: task::loginuid(t),
        syscall: call.sys,
        filename_len: name_len as u16,
        args_len: args_len as u16,
        exe_len: 0,
        dirfd: call.dirfd,
        at_flags: call.at_flags,
        tty: task::tty_nr(t),
        cwd_len: 0,
        _pad1: 0,
    }
}
