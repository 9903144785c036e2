//! Reads of kernel structs through offsets resolved from the running kernel's
//! BTF (see `KernelOffsets`). Every read goes through `bpf_probe_read_kernel`
//! and yields `None` when an offset is unknown or the read fails, so a kernel
//! lacking a member degrades a field to "unknown" instead of failing to load.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use mamori_common::NO_OFFSET;

use crate::emit::{off, offsets};

/// Read a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: u64, offset: u32) -> Option<T> {
    if offset == NO_OFFSET || base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel validates the address; a bad one is an error.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T).ok() }
}

#[inline(always)]
pub fn current() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
pub fn tid(task: u64) -> Option<u32> {
    read::<i32>(task, off(&offsets().task_pid)).map(|v| v as u32)
}

#[inline(always)]
pub fn tgid(task: u64) -> Option<u32> {
    read::<i32>(task, off(&offsets().task_tgid)).map(|v| v as u32)
}

/// `task->real_parent->tgid`.
#[inline(always)]
pub fn ppid(task: u64) -> u32 {
    read::<u64>(task, off(&offsets().task_real_parent))
        .and_then(tgid)
        .unwrap_or(0)
}

#[inline(always)]
pub fn start_boot_ns(task: u64) -> u64 {
    read::<u64>(task, off(&offsets().task_start_boottime)).unwrap_or(0)
}

/// Audit login uid; `u32::MAX` when unset or not compiled in.
#[inline(always)]
pub fn loginuid(task: u64) -> u32 {
    read::<u32>(task, off(&offsets().task_loginuid)).unwrap_or(u32::MAX)
}

#[inline(always)]
pub fn exit_code(task: u64) -> i32 {
    read::<i32>(task, off(&offsets().task_exit_code)).unwrap_or(0)
}

/// Controlling terminal as /proc/<pid>/stat's `tty_nr`
/// (`new_encode_dev(MKDEV(driver->major, driver->minor_start + index))`), 0 if none.
#[inline(always)]
pub fn tty_nr(task: u64) -> u32 {
    let o = offsets();
    let Some(signal) = read::<u64>(task, off(&o.task_signal)) else {
        return 0;
    };
    let Some(tty) = read::<u64>(signal, off(&o.signal_tty)) else {
        return 0;
    };
    let Some(driver) = read::<u64>(tty, off(&o.tty_driver)) else {
        return 0;
    };
    let index = read::<i32>(tty, off(&o.tty_index)).unwrap_or(0) as u32;
    let major = read::<i32>(driver, off(&o.driver_major)).unwrap_or(0) as u32;
    let minor = read::<i32>(driver, off(&o.driver_minor_start)).unwrap_or(0) as u32 + index;
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// User address range of the argument strings of `task`'s current image.
#[inline(always)]
pub fn arg_area(task: u64) -> Option<(u64, u64)> {
    let o = offsets();
    let mm = read::<u64>(task, off(&o.task_mm))?;
    let start = read::<u64>(mm, off(&o.mm_arg_start))?;
    let end = read::<u64>(mm, off(&o.mm_arg_end))?;
    Some((start, end))
}

/// `current->files->fdt->fd[fd]`: the `struct file` of an open fd.
#[inline(always)]
pub fn fd_file(task: u64, fd: i32) -> Option<u64> {
    let o = offsets();
    if fd < 0 {
        return None;
    }
    let files = read::<u64>(task, off(&o.task_files))?;
    let fdt = read::<u64>(files, off(&o.files_fdt))?;
    let max_fds = read::<u32>(fdt, off(&o.fdtable_max_fds))?;
    if fd as u32 >= max_fds {
        return None;
    }
    let fd_array = read::<u64>(fdt, off(&o.fdtable_fd))?;
    read::<u64>(fd_array, (fd as u32) * 8)
}

/// What the kernel's socket for an fd says about itself.
#[derive(Default, Clone, Copy)]
pub struct SockInfo {
    pub sock_type: u16,
    pub protocol: u16,
    pub family: u16,
    pub sport: u16,
    pub saddr4: [u8; 4],
    pub saddr6: [u8; 16],
}

/// Walk `current->files->fdt->fd[fd]->private_data` to the `struct sock` of a
/// socket fd. Only call for fds known to be sockets (connect did not fail with
/// EBADF/ENOTSOCK).
#[inline(always)]
pub fn socket_info(task: u64, fd: i32) -> Option<SockInfo> {
    let o = offsets();
    if fd < 0 {
        return None;
    }
    let file = fd_file(task, fd)?;
    let socket = read::<u64>(file, off(&o.file_private_data))?;
    let mut info = SockInfo {
        sock_type: read::<i16>(socket, off(&o.socket_type)).unwrap_or(0) as u16,
        ..SockInfo::default()
    };
    let sk = read::<u64>(socket, off(&o.socket_sk))?;
    info.protocol = read::<u16>(sk, off(&o.sock_protocol)).unwrap_or(0);
    info.family = read::<u16>(sk, off(&o.sock_family)).unwrap_or(0);
    info.sport = read::<u16>(sk, off(&o.sock_num)).unwrap_or(0);
    info.saddr4 = read::<[u8; 4]>(sk, off(&o.sock_rcv_saddr)).unwrap_or([0; 4]);
    info.saddr6 = read::<[u8; 16]>(sk, off(&o.sock_v6_rcv_saddr)).unwrap_or([0; 16]);
    Some(info)
}
