//! The `sys_exit` BTF tracepoint: one program for every syscall exit, which
//! reads the syscall number and arguments from the saved user registers and
//! hands the few syscalls mamori watches to their family module. As a
//! `tp_btf` program its `pt_regs` argument is a typed kernel pointer, so the
//! registers are plain loads checked by the verifier against the kernel's
//! BTF, not helper calls: the common case (a syscall mamori ignores) costs
//! one load and a compare.
//!
//! Every other syscall a loaded rule needs (network, fds, identity,
//! injection, files, chdir) is described in a userspace-filled table and
//! recorded by [`sysrec`]: an unneeded one costs an inlined array lookup.
//!
//! Reading arguments at exit (instead of stashing them at entry) means one
//! program run per syscall, no per-thread map traffic, the result in hand, and
//! user memory that the kernel has already faulted in.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use mamori_common::syscall;

use crate::{
    connect,
    current::{BtfTask, Current, Helpers},
    dns, exec, flow, open, sysrec,
};

/// Saved user registers (`struct pt_regs`, x86_64 ABI layout, stable).
#[derive(Clone, Copy)]
pub struct Regs {
    pub args: [u64; 6],
}

// Byte offsets into x86_64 `struct pt_regs`.
const PT_R10: u64 = 56;
const PT_R9: u64 = 64;
const PT_R8: u64 = 72;
const PT_DX: u64 = 96;
const PT_SI: u64 = 104;
const PT_DI: u64 = 112;
const PT_ORIG_AX: u64 = 120;
const PT_CS: u64 = 136;
/// Code segment of 32-bit (ia32 compat) user code: its syscall numbers differ.
const USER32_CS: u64 = 0x23;

// x86_64 syscall numbers.
const NR_OPEN: u64 = 2;
const NR_CONNECT: u64 = 42;
const NR_EXECVE: u64 = 59;
const NR_CREAT: u64 = 85;
const NR_OPENAT: u64 = 257;
const NR_EXECVEAT: u64 = 322;
const NR_OPENAT2: u64 = 437;

/// Load one saved register.
#[inline(always)]
fn reg(regs: *const u8, off: u64) -> u64 {
    // SAFETY: `regs` is the tracepoint's `struct pt_regs *` (a BTF-typed
    // pointer); the verifier checks each load against pt_regs' layout.
    unsafe { core::ptr::read_volatile(regs.add(off as usize).cast::<u64>()) }
}

/// The six syscall arguments from the saved registers.
#[inline(always)]
fn args(regs: *const u8) -> Regs {
    Regs {
        args: [
            reg(regs, PT_DI),
            reg(regs, PT_SI),
            reg(regs, PT_DX),
            reg(regs, PT_R10),
            reg(regs, PT_R8),
            reg(regs, PT_R9),
        ],
    }
}

/// The hot path: task fields read with plain BTF loads (Linux >= 5.11).
#[btf_tracepoint(function = "sys_exit")]
pub fn mamori_sys_exit(ctx: BtfTracePointContext) -> i32 {
    match try_sys_exit::<BtfTask>(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// The same program through helper calls, for kernels without
/// `bpf_get_current_task_btf` (the loader falls back to it).
#[btf_tracepoint(function = "sys_exit")]
pub fn mamori_sys_exit_compat(ctx: BtfTracePointContext) -> i32 {
    match try_sys_exit::<Helpers>(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[inline(always)]
fn try_sys_exit<C: Current>(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct pt_regs *regs, long ret)
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let nr = reg(regs, PT_ORIG_AX);
    let sys = match nr {
        flow::NR_SENDTO => syscall::SENDTO,
        flow::NR_SENDMSG => syscall::SENDMSG,
        flow::NR_SENDMMSG => syscall::SENDMMSG,
        flow::NR_READ
        | flow::NR_WRITE
        | flow::NR_READV
        | flow::NR_WRITEV
        | flow::NR_SENDFILE
        | flow::NR_RECVFROM
        | flow::NR_RECVMSG
        | flow::NR_SPLICE
        | flow::NR_RECVMMSG => {
            // Byte counts at syscall exit only where the kernel lacks the
            // sock length tracepoints (a flag test otherwise).
            if reg(regs, PT_CS) != USER32_CS {
                flow::on_sys_exit(nr, &args(regs), ret);
            }
            return Ok(());
        }
        NR_OPEN => syscall::OPEN,
        NR_OPENAT => syscall::OPENAT,
        NR_OPENAT2 => syscall::OPENAT2,
        NR_CREAT => syscall::CREAT,
        NR_CONNECT => syscall::CONNECT,
        NR_EXECVE => syscall::EXECVE,
        NR_EXECVEAT => syscall::EXECVEAT,
        // Table-driven families: only the syscalls a rule needs.
        _ => {
            let Some(d) = sysrec::wanted(nr) else {
                return Ok(());
            };
            if reg(regs, PT_CS) == USER32_CS {
                return Ok(());
            }
            return sysrec::on_exit(d, &args(regs), ret, &C::get());
        }
    };
    if reg(regs, PT_CS) == USER32_CS {
        return Ok(());
    }
    let r = args(regs);
    if matches!(sys, syscall::SENDTO | syscall::SENDMSG | syscall::SENDMMSG) {
        flow::on_sys_exit(nr, &r, ret);
    }
    // Only now, for the few syscalls mamori reports, look up the task.
    let cur = &C::get();
    match sys {
        syscall::CONNECT => connect::on_exit(&r, ret, cur),
        syscall::SENDTO | syscall::SENDMSG | syscall::SENDMMSG => {
            // The table-driven record (destination of an unconnected send)
            // when a rule selects it, and the DNS question when port 53.
            if let Some(d) = sysrec::wanted(nr) {
                let _ = sysrec::on_exit(d, &r, ret, cur);
            }
            dns::on_exit(&r, ret, sys, cur)
        }
        syscall::EXECVE | syscall::EXECVEAT => {
            // Successful execs are reported from sched_process_exec, where the
            // new image's arguments are readable.
            if ret < 0 {
                exec::on_failed_exit(&r, ret, sys, cur)
            } else {
                Ok(())
            }
        }
        _ => open::on_exit(&r, ret, sys, cur),
    }
}
