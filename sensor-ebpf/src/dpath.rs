//! Paths read in the kernel at the event: the directory a relative path is
//! resolved against (the task's cwd for `AT_FDCWD`, or the dirfd's file),
//! and the file a new image was loaded from (`mm->exe_file`).
//!
//! Why here: userspace can only look at `/proc/<pid>/cwd` or
//! `/proc/<pid>/fd/<dirfd>` later, when the process may have changed
//! directory, closed the fd or exited — so `cd /etc; cat shadow` or an
//! `openat(dirfd, "shadow")` with the dirfd closed at once would report the
//! wrong file. There is no `bpf_d_path` on tracepoints, so this walks the
//! dentries up to the task's root (crossing mount points the way `d_path`
//! does), bounded in depth and bytes, and writes each name leaf first;
//! userspace joins them ([`mamori_common::flags::DIR_RESOLVED`]).

use aya_ebpf::{helpers::generated::bpf_probe_read_kernel_str, macros::map, maps::PerCpuArray};
use mamori_common::{DIR_MAX, NAME_MAX};

use crate::{
    emit::{off, offsets},
    task::{fd_file, read},
};

/// Most directory levels walked (mount crossings count as one).
const MAX_DEPTH: usize = 32;

/// The walk's byte count, kept in map memory rather than a register: a
/// value loaded from a map is an unknown scalar to the verifier, so the
/// states of successive iterations compare equal and are pruned, instead of
/// every iteration multiplying the paths to explore (a register carrying a
/// range that grows per iteration blew the 1M-instruction budget).
#[map]
static WALK_LEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
const AT_FDCWD: i32 = -100;

/// A `struct path`: (vfsmount, dentry).
#[derive(Clone, Copy)]
struct Path {
    mnt: u64,
    dentry: u64,
}

#[inline(always)]
fn path_at(base: u64) -> Option<Path> {
    let o = offsets();
    Some(Path {
        mnt: read::<u64>(base, off(&o.path_mnt))?,
        dentry: read::<u64>(base, off(&o.path_dentry))?,
    })
}

/// The base directory for `dirfd` in `task`: its cwd, or the dirfd's file.
#[inline(always)]
fn base_dir(task: u64, dirfd: i32) -> Option<Path> {
    let o = offsets();
    if dirfd == AT_FDCWD {
        let fs = read::<u64>(task, off(&o.task_fs))?;
        path_at(fs + off(&o.fs_pwd) as u64)
    } else {
        let file = fd_file(task, dirfd)?;
        path_at(file + off(&o.file_path) as u64)
    }
}

/// Write the components of `dirfd`'s directory (as `task` sees it, up to
/// its root), leaf first and NUL-terminated, at `out`. Returns the bytes
/// written when the walk reached the root, `None` when it could not (an
/// offset unknown, a read failed, deeper than [`MAX_DEPTH`] or longer than
/// [`DIR_MAX`]).
///
/// `out` must have room for `2 * DIR_MAX + NAME_MAX` bytes.
#[inline(always)]
pub fn resolve_dir(task: u64, dirfd: i32, out: *mut u8) -> Option<usize> {
    walk(task, base_dir(task, dirfd)?, out)
}

/// Like [`resolve_dir`], for the file `task`'s image was loaded from
/// (`mm->exe_file`): its own name is the first component. A memfd is one
/// component, `memfd:NAME`.
#[inline(always)]
pub fn exe_path(task: u64, out: *mut u8) -> Option<usize> {
    let o = offsets();
    let mm = read::<u64>(task, off(&o.task_mm))?;
    let file = read::<u64>(mm, off(&o.mm_exe_file))?;
    walk(task, path_at(file + off(&o.file_path) as u64)?, out)
}

#[inline(always)]
fn walk(task: u64, start: Path, out: *mut u8) -> Option<usize> {
    let o = offsets();
    let mount_mnt = off(&o.mount_mnt) as u64;
    if off(&o.mount_mnt) == mamori_common::NO_OFFSET
        || off(&o.dentry_name) == mamori_common::NO_OFFSET
    {
        return None;
    }
    let slot = WALK_LEN.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; nothing else runs on this CPU meanwhile.
    unsafe { core::ptr::write_volatile(slot, 0) };
    let fs = read::<u64>(task, off(&o.task_fs))?;
    let root = path_at(fs + off(&o.fs_root) as u64)?;
    let mut at = start;
    for _ in 0..MAX_DEPTH {
        // SAFETY: as above.
        let len = unsafe { core::ptr::read_volatile(slot) } as usize;
        if len > DIR_MAX {
            return None;
        }
        if at.dentry == root.dentry && at.mnt == root.mnt {
            return Some(len);
        }
        let mnt_root = read::<u64>(at.mnt, off(&o.vfsmount_root))?;
        let parent = read::<u64>(at.dentry, off(&o.dentry_parent))?;
        if at.dentry == mnt_root {
            // The top of this mount: continue from where it is mounted.
            let mount = at.mnt - mount_mnt;
            let up = read::<u64>(mount, off(&o.mount_parent))?;
            if up == mount {
                // The namespace's root mount, above the task's root (e.g. a
                // root outside a chroot): the path so far is as good as it gets.
                return Some(len);
            }
            at = Path {
                mnt: up + mount_mnt,
                dentry: read::<u64>(mount, off(&o.mount_mountpoint))?,
            };
            continue;
        }
        let name = read::<u64>(at.dentry, off(&o.dentry_name))?;
        // The offset is read and masked right where it is used: kernels
        // before 5.13 forget a spilled register's bounds, and pointer math
        // with an unbounded offset is refused.
        // SAFETY: this CPU's slot, as above.
        let at_off = unsafe { core::ptr::read_volatile(slot) } as usize & (2 * DIR_MAX - 1);
        // SAFETY: `at_off < 2 * DIR_MAX` and `out` has room for
        // 2 * DIR_MAX + NAME_MAX bytes; the helper reads kernel memory safely
        // and NUL-terminates within NAME_MAX bytes.
        let n = unsafe {
            bpf_probe_read_kernel_str(out.add(at_off).cast(), NAME_MAX as u32, name as *const _)
        };
        if n <= 0 {
            return None;
        }
        let len = len + n as usize;
        if parent == at.dentry {
            // A dentry that is its own parent without being a mount's root:
            // a pseudo file (a memfd's `memfd:NAME`) or a disconnected one.
            // Its name is all there is.
            return (len <= DIR_MAX).then_some(len);
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(slot, len as u64) };
        at.dentry = parent;
    }
    None
}
