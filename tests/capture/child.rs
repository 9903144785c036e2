//! The child side of the capture tests: the real syscalls (opens, execs,
//! connects) the re-executed test binary makes, exactly as written here,
//! while the parent captures them.

use std::{ffi::CString, net::SocketAddr};

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn connect_to(addr: &str) -> i64 {
    let addr: SocketAddr = addr.parse().unwrap();
    // SAFETY: plain socket syscalls on locally owned values.
    unsafe {
        let (family, sa, len) = sockaddr(&addr);
        let fd = libc::socket(family, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let r = libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len);
        let res = if r == 0 {
            0
        } else {
            -(*libc::__errno_location()) as i64
        };
        libc::close(fd);
        res
    }
}

fn sockaddr(addr: &SocketAddr) -> (i32, libc::sockaddr_storage, u32) {
    // SAFETY: zeroed sockaddr_storage is valid; we write the matching variant.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (
                libc::AF_INET,
                ss,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (
                libc::AF_INET6,
                ss,
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        }
    }
}

/// args: write_path, missing_path, open_port, closed_port, unix_path, openat2_path
pub(crate) fn child_basic(args: &[&str]) {
    let (write_path, missing, open_port, closed_port, unix_path, openat2_path) =
        (args[0], args[1], args[2], args[3], args[4], args[5]);
    // SAFETY: raw syscalls with valid, NUL-terminated arguments.
    unsafe {
        let fd = libc::openat(
            libc::AT_FDCWD,
            cstr(write_path).as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        );
        assert!(fd >= 0);
        libc::close(fd);
        let fd = libc::openat(libc::AT_FDCWD, cstr(missing).as_ptr(), libc::O_RDONLY);
        assert_eq!(fd, -1);
        // openat2 with RESOLVE_NO_SYMLINKS (0x04).
        #[repr(C)]
        struct OpenHow {
            flags: u64,
            mode: u64,
            resolve: u64,
        }
        let how = OpenHow {
            flags: libc::O_RDONLY as u64,
            mode: 0,
            resolve: 0x04,
        };
        let p = cstr(openat2_path);
        let fd = libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        );
        assert!(fd >= 0, "openat2 failed");
        libc::close(fd as i32);
    }
    assert_eq!(connect_to(&format!("127.0.0.1:{open_port}")), 0);
    assert_eq!(
        connect_to(&format!("127.0.0.1:{closed_port}")),
        -(libc::ECONNREFUSED as i64)
    );
    // Unix socket connect.
    // SAFETY: socket syscalls on local values.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        let mut sun: libc::sockaddr_un = std::mem::zeroed();
        sun.sun_family = libc::AF_UNIX as u16;
        for (i, b) in unix_path.bytes().enumerate() {
            sun.sun_path[i] = b as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + unix_path.len() + 1) as u32;
        let r = libc::connect(fd, (&sun as *const libc::sockaddr_un).cast(), len);
        assert_eq!(r, 0, "unix connect");
        libc::close(fd);
    }
    // execveat in a grandchild (fork, then execveat /bin/true --at).
    // SAFETY: fork/execveat/waitpid with valid arguments; the child only execs or exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let path = cstr("/bin/true");
            let a0 = cstr("/bin/true");
            let a1 = cstr("--at");
            let argv = [a0.as_ptr(), a1.as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            libc::syscall(
                libc::SYS_execveat,
                libc::AT_FDCWD,
                path.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                0,
            );
            libc::_exit(127);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    // A failed exec, then the real one: replace this image with /bin/true --flag.
    // SAFETY: execv with NUL-terminated argv.
    unsafe {
        let bad = cstr("/nonexistent/mamori-e2e");
        let a0 = cstr("mamori-e2e");
        let argv = [a0.as_ptr(), std::ptr::null()];
        assert_eq!(libc::execv(bad.as_ptr(), argv.as_ptr()), -1);
        let path = cstr("/bin/true");
        let a1 = cstr("--flag");
        let argv = [path.as_ptr(), a1.as_ptr(), std::ptr::null()];
        libc::execv(path.as_ptr(), argv.as_ptr());
    }
    panic!("execv /bin/true failed");
}

/// Connect to non-loopback addresses from inside a fresh, empty network
/// namespace: the syscalls happen, no packet can leave.
pub(crate) fn child_netns() {
    // SAFETY: unshare on the current (single-threaded child) process.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "unshare(CLONE_NEWNET) needs root");
    let r4 = connect_to("192.0.2.1:80");
    let r6 = connect_to("[2001:db8::1]:443");
    assert!(
        r4 < 0 && r6 < 0,
        "connects in an empty netns must fail: {r4} {r6}"
    );
}

/// `n` open+close pairs on `path`.
pub(crate) fn child_burst(n: u64, path: &str) {
    let p = cstr(path);
    for _ in 0..n {
        // SAFETY: valid NUL-terminated path.
        unsafe {
            let fd = libc::openat(libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
}

/// Execs whose process fields only the exec itself can tell: a cwd changed
/// between fork and exec (what runc's init does), a parent that exited
/// before its child's exec (runc and conmon double-fork), and images run
/// through `/dev/fd/N` and a symlink. `dir` is a scratch directory.
pub fn child_exec_fields(dir: &str) {
    // A subreaper, as containerd's shim and conmon are: the orphan below is
    // reparented here.
    // SAFETY: prctl on this process with plain integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    let sh = |script: &str| {
        let st = std::process::Command::new("sh")
            .args(["-c", script, dir])
            .status()
            .unwrap();
        assert!(st.success(), "{script}: {st}");
    };
    sh(r#"cd "$0" && exec /bin/true --cwd-probe"#);
    sh(r#"(sleep 0.3; exec /bin/true --orphan-probe) & exit 0"#);
    // Reap the orphan (ours now), bounded: it exits within a second.
    for _ in 0..50 {
        let mut status = 0;
        // SAFETY: waitpid on our own children, non-blocking.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sh(r#"exec 3</bin/true; exec /dev/fd/3 --fd-probe"#);
    sh(r#"ln -sf /bin/true "$0/probe-link" && exec "$0/probe-link" --link-probe"#);
}
