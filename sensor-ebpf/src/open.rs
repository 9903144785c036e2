//! open, openat, openat2, creat: path, flags, mode and the resulting fd/error.

use aya_ebpf::helpers::{bpf_probe_read_user, generated::bpf_probe_read_user_str};
use mamori_common::{flags, syscall, EventKind, Header, OpenBody, PATH_MAX};

use crate::{current::Current, dpath, emit, syscalls::Regs, task};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

/// `struct open_how` (openat2).
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const HDR: usize = core::mem::size_of::<Header>();
const PATH_AT: usize = HDR + core::mem::size_of::<OpenBody>();

#[inline(always)]
pub fn on_exit(r: &Regs, ret: i64, sys: u16, cur: &impl Current) -> Result<(), i64> {
    let Some(pid_tgid) = emit::wanted(EventKind::Open, cur) else {
        return Ok(());
    };
    let a = r.args;
    let (dirfd, path, oflags, mode, resolve) = match sys {
        syscall::OPEN => (AT_FDCWD, a[0], a[1] as u32, a[2] as u32, 0),
        syscall::CREAT => (AT_FDCWD, a[0], O_CREAT | O_WRONLY | O_TRUNC, a[1] as u32, 0),
        syscall::OPENAT => (a[0] as i32, a[1], a[2] as u32, a[3] as u32, 0),
        _ => {
            // SAFETY: user pointer read through the checked helper.
            let how = unsafe { bpf_probe_read_user(a[2] as *const OpenHow) }.unwrap_or(OpenHow {
                flags: 0,
                mode: 0,
                resolve: 0,
            });
            (
                a[0] as i32,
                a[1],
                how.flags as u32,
                how.mode as u32,
                how.resolve,
            )
        }
    };
    let buf = emit::scratch().ok_or(0i64)?;
    emit::write_header(buf, EventKind::Open, pid_tgid, cur);
    // SAFETY: the scratch buffer is SCRATCH_SIZE bytes; PATH_AT + PATH_MAX fits.
    let n = unsafe {
        bpf_probe_read_user_str(buf.add(PATH_AT).cast(), PATH_MAX as u32, path as *const _)
    };
    let path_len = if n > 0 {
        if n as usize >= PATH_MAX {
            emit::set_flag(buf, flags::PATH_TRUNCATED);
        }
        (n as usize - 1) & (PATH_MAX - 1)
    } else {
        emit::set_flag(buf, flags::PATH_FAULT);
        0
    };
    // A relative path: its base directory, read now (userspace could only
    // look later, after a chdir, a close of the dirfd or the exit).
    // SAFETY: PATH_AT < SCRATCH_SIZE; the byte was written by the path read
    // when path_len > 0.
    let relative = path_len > 0 && unsafe { *buf.add(PATH_AT) } != b'/';
    let mut dir_len = 0;
    if relative {
        // SAFETY: path_len < PATH_MAX, and the scratch buffer has room for
        // PATH_AT + PATH_MAX + 2 * DIR_MAX + NAME_MAX bytes (checked in common).
        let out = unsafe { buf.add(PATH_AT + path_len) };
        if let Some(n) = dpath::resolve_dir(task::current(), dirfd, out) {
            emit::set_flag(buf, flags::DIR_RESOLVED);
            dir_len = n;
        }
    }
    let body = OpenBody {
        ret,
        resolve,
        flags: oflags,
        mode,
        dirfd,
        syscall: sys,
        path_len: path_len as u16,
        dir_len: dir_len as u16,
        _pad0: 0,
        _pad1: 0,
    };
    emit::write_body(buf, body);
    emit::submit(buf, PATH_AT + path_len + dir_len, EventKind::Open);
    Ok(())
}
