//! mamori's kernel side.
//!
//! Programs, one module per family:
//! - [`syscalls`]: one raw tracepoint on `sys_exit` that reads the syscall's
//!   arguments from the saved user registers *at exit*, so every event carries
//!   its result and user memory (paths) is read after the kernel has faulted it
//!   in. It dispatches to [`open`], [`connect`] and (failed) [`exec`];
//!   relative opens get their base directory from [`dpath`].
//! - [`sysrec`]: the table-driven records of every other syscall a loaded
//!   rule needs (network, fds, identity, injection, files, chdir).
//! - [`exec`]: successful execs from `sched_process_exec` (filename from the
//!   kernel's copy, argv from the new mm's argument area).
//! - [`flow`]: bytes per TCP connection (sock length tracepoints, or the
//!   send/receive syscalls' exits on older kernels) and `flow` reports from
//!   `inet_sock_set_state`; [`dns`]: questions sent to port 53.
//! - [`process`]: fork and exit from the scheduler's raw tracepoints.
//! - [`tamper`]: signals sent to mamori and `ptrace` attach requests, in a
//!   ring of their own, for its tamper alerts.
//! - [`current`]: the current task's identity for event headers, read with
//!   plain BTF loads on the `sys_exit` hot path (helper calls elsewhere and
//!   on kernels older than 5.11).
//!
//! Events are assembled in a per-CPU scratch buffer and copied into the ring
//! buffer without waking the reader (see [`emit`]).
#![no_std]
#![no_main]
// Atomic adds for the flow counters: the BPF target has no `fetch_add`.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod connect;
mod current;
mod dns;
mod dpath;
mod emit;
mod exec;
mod flow;
mod open;
mod process;
mod syscalls;
mod sysrec;
mod tamper;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program with a reachable loop, so no
    // panic path survives into a loadable object.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
