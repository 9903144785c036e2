//! The child side of the table-driven syscall tests: each syscall made
//! once to succeed and once to fail, through `syscall(2)` so the number the
//! kernel sees is exactly the one named (libc wrappers may use the *at
//! variants). Sockets talk only to loopback listeners made here; mounts
//! happen in a private mount namespace of a forked child; no module is
//! ever loaded (only failing `init_module`/`finit_module` calls).

use std::ffi::CString;

use libc::{c_long, SYS_accept, SYS_accept4, SYS_bind, SYS_bpf, SYS_capget, SYS_capset};

/// `syscall(nr, args...)` as the kernel's result: the value, or -errno.
fn sc(nr: c_long, a: [u64; 6]) -> i64 {
    // SAFETY: each call site passes arguments valid for its syscall (or
    // deliberately invalid ones the kernel rejects without side effects).
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        // SAFETY: errno of this thread.
        -(unsafe { *libc::__errno_location() }) as i64
    } else {
        r
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn p(s: &CString) -> u64 {
    s.as_ptr() as u64
}

/// A loopback IPv4 sockaddr for `port`.
fn sin(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

const SIN_LEN: u64 = std::mem::size_of::<libc::sockaddr_in>() as u64;

fn port_of(fd: i64) -> u16 {
    let mut sa = sin(0);
    let mut len = SIN_LEN as u32;
    // SAFETY: a valid socket fd and a sockaddr_in-sized buffer.
    unsafe {
        libc::getsockname(
            fd as i32,
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    u16::from_be(sa.sin_port)
}

/// Network and fd syscalls; `port` is a UDP port on loopback to send to.
fn network_and_fds(udp_dest: u16) {
    let nr = libc::SYS_socket;
    let udp = sc(nr, [2, libc::SOCK_DGRAM as u64, 0, 0, 0, 0]);
    assert!(udp >= 0);
    assert!(sc(nr, [9999, 1, 0, 0, 0, 0]) < 0);
    // A packet socket (root): visible as AF_PACKET.
    let pkt = sc(
        nr,
        [libc::AF_PACKET as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0],
    );
    assert!(pkt >= 0, "packet socket: {pkt}");
    let a = sin(0);
    let ap = &a as *const _ as u64;
    assert_eq!(sc(SYS_bind, [udp as u64, ap, SIN_LEN, 0, 0, 0]), 0);
    assert!(sc(SYS_bind, [u64::MAX, ap, SIN_LEN, 0, 0, 0]) < 0);
    let d = sin(udp_dest);
    let dp = &d as *const _ as u64;
    let msg = b"mamori-e2e";
    let mp = msg.as_ptr() as u64;
    assert_eq!(
        sc(libc::SYS_sendto, [udp as u64, mp, 10, 0, dp, SIN_LEN]),
        10
    );
    assert!(sc(libc::SYS_sendto, [u64::MAX, mp, 10, 0, dp, SIN_LEN]) < 0);
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut _,
        iov_len: 10,
    };
    // SAFETY: a zeroed msghdr is valid; fields set below.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_name = dp as *mut _;
    mh.msg_namelen = SIN_LEN as u32;
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    let mhp = &mh as *const _ as u64;
    assert_eq!(sc(libc::SYS_sendmsg, [udp as u64, mhp, 0, 0, 0, 0]), 10);
    assert!(sc(libc::SYS_sendmsg, [u64::MAX, mhp, 0, 0, 0, 0]) < 0);
    // SAFETY: a zeroed mmsghdr is valid; its header is the one above.
    let mut mm: libc::mmsghdr = unsafe { std::mem::zeroed() };
    mm.msg_hdr = mh;
    let mmp = &mm as *const _ as u64;
    assert_eq!(sc(libc::SYS_sendmmsg, [udp as u64, mmp, 1, 0, 0, 0]), 1);
    assert!(sc(libc::SYS_sendmmsg, [u64::MAX, mmp, 1, 0, 0, 0]) < 0);
    // A connected UDP socket's sends carry no address: not recorded.
    let conn = sc(nr, [2, libc::SOCK_DGRAM as u64, 0, 0, 0, 0]);
    assert_eq!(
        sc(libc::SYS_connect, [conn as u64, dp, SIN_LEN, 0, 0, 0]),
        0
    );
    assert_eq!(sc(libc::SYS_sendto, [conn as u64, mp, 7, 0, 0, 0]), 7);
    // TCP: listen, connect, accept, shutdown.
    let lst = sc(nr, [2, libc::SOCK_STREAM as u64, 0, 0, 0, 0]);
    assert_eq!(sc(SYS_bind, [lst as u64, ap, SIN_LEN, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_listen, [lst as u64, 7, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_listen, [u64::MAX, 7, 0, 0, 0, 0]) < 0);
    let l = sin(port_of(lst));
    let cli = sc(nr, [2, libc::SOCK_STREAM as u64, 0, 0, 0, 0]);
    assert_eq!(
        sc(
            libc::SYS_connect,
            [cli as u64, &l as *const _ as u64, SIN_LEN, 0, 0, 0]
        ),
        0
    );
    let cli2 = sc(nr, [2, libc::SOCK_STREAM as u64, 0, 0, 0, 0]);
    assert_eq!(
        sc(
            libc::SYS_connect,
            [cli2 as u64, &l as *const _ as u64, SIN_LEN, 0, 0, 0]
        ),
        0
    );
    let srv = sc(SYS_accept, [lst as u64, 0, 0, 0, 0, 0]);
    assert!(srv >= 0);
    assert!(sc(SYS_accept, [udp as u64, 0, 0, 0, 0, 0]) < 0);
    assert!(
        sc(
            SYS_accept4,
            [lst as u64, 0, 0, libc::SOCK_CLOEXEC as u64, 0, 0]
        ) >= 0
    );
    assert!(sc(SYS_accept4, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_shutdown, [srv as u64, 1, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_shutdown, [u64::MAX, 1, 0, 0, 0, 0]) < 0);
    // fds: the TCP client socket duplicated onto fds 100.., never 0-2 here.
    assert!(sc(libc::SYS_dup, [cli as u64, 0, 0, 0, 0, 0]) >= 0);
    assert!(sc(libc::SYS_dup, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_dup2, [cli as u64, 100, 0, 0, 0, 0]), 100);
    assert!(sc(libc::SYS_dup2, [u64::MAX, 100, 0, 0, 0, 0]) < 0);
    assert_eq!(
        sc(
            libc::SYS_dup3,
            [cli as u64, 101, libc::O_CLOEXEC as u64, 0, 0, 0]
        ),
        101
    );
    assert!(sc(libc::SYS_dup3, [cli as u64, 101, 0xdead, 0, 0, 0]) < 0);
    assert!(
        sc(
            libc::SYS_fcntl,
            [cli as u64, libc::F_DUPFD as u64, 200, 0, 0, 0]
        ) >= 200
    );
    assert!(
        sc(
            libc::SYS_fcntl,
            [u64::MAX, libc::F_DUPFD as u64, 200, 0, 0, 0]
        ) < 0
    );
    // Not a dup: not recorded.
    assert!(
        sc(
            libc::SYS_fcntl,
            [cli as u64, libc::F_GETFL as u64, 0, 0, 0, 0]
        ) >= 0
    );
}

/// Injection and kernel syscalls that are safe to make succeed.
fn injection() {
    let me = std::process::id() as u64;
    // ptrace: TRACEME in a forked child succeeds; ATTACH to no process fails.
    // SAFETY: fork in a single-purpose child process; the child only
    // makes a syscall and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let r = sc(
            libc::SYS_ptrace,
            [libc::PTRACE_TRACEME as u64, 0, 0, 0, 0, 0],
        );
        // SAFETY: leaving the forked child without running destructors.
        unsafe { libc::_exit(if r == 0 { 0 } else { 1 }) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0, "PTRACE_TRACEME failed");
    assert!(
        sc(
            libc::SYS_ptrace,
            [libc::PTRACE_ATTACH as u64, 0x7fff_fff0, 0, 0, 0, 0]
        ) < 0
    );
    // process_vm_writev into ourselves succeeds; into no process fails.
    let src = [1u8; 8];
    let mut dst = [0u8; 8];
    let l = libc::iovec {
        iov_base: src.as_ptr() as *mut _,
        iov_len: 8,
    };
    let r = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let (lp, rp) = (&l as *const _ as u64, &r as *const _ as u64);
    assert_eq!(sc(libc::SYS_process_vm_writev, [me, lp, 1, rp, 1, 0]), 8);
    assert!(sc(libc::SYS_process_vm_writev, [0x7fff_fff0, lp, 1, rp, 1, 0]) < 0);
    // Module loads: only failing ones.
    let args = c("mamori_e2e=1");
    assert!(sc(libc::SYS_init_module, [0, 0, p(&args), 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_finit_module, [u64::MAX, p(&args), 0, 0, 0, 0]) < 0);
    // bpf: an array map is created; a bad command fails.
    let mut attr = [0u32; 32];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    let ap = attr.as_ptr() as u64;
    assert!(sc(SYS_bpf, [0, ap, 128, 0, 0, 0]) >= 0);
    assert!(sc(SYS_bpf, [9999, ap, 128, 0, 0, 0]) < 0);
    let name = c("mamori-e2e-memfd");
    assert!(
        sc(
            libc::SYS_memfd_create,
            [p(&name), libc::MFD_CLOEXEC as u64, 0, 0, 0, 0]
        ) >= 0
    );
    assert!(sc(libc::SYS_memfd_create, [p(&name), 0xdead_0000, 0, 0, 0, 0]) < 0);
    // Namespaces: entering our own UTS namespace succeeds.
    let uts = c("/proc/self/ns/uts");
    let nsfd = sc(libc::SYS_open, [p(&uts), libc::O_RDONLY as u64, 0, 0, 0, 0]);
    assert_eq!(
        sc(
            libc::SYS_setns,
            [nsfd as u64, libc::CLONE_NEWUTS as u64, 0, 0, 0, 0]
        ),
        0
    );
    assert!(sc(libc::SYS_setns, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_unshare, [0x1, 0, 0, 0, 0, 0]) < 0);
    let none = c("/mamori-e2e-nonexistent");
    assert!(sc(libc::SYS_chroot, [p(&none), 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_pivot_root, [p(&none), p(&none), 0, 0, 0, 0]) < 0);
    // capset: our own capabilities set again (success), a bad version fails.
    let mut hdr = [0x2008_0522u32, 0];
    let bad = [1u32, 0];
    let mut data = [0u32; 6];
    let (hp, dp) = (hdr.as_mut_ptr() as u64, data.as_mut_ptr() as u64);
    assert_eq!(sc(SYS_capget, [hp, dp, 0, 0, 0, 0]), 0);
    assert_eq!(sc(SYS_capset, [hp, dp, 0, 0, 0, 0]), 0);
    assert!(sc(SYS_capset, [bad.as_ptr() as u64, dp, 0, 0, 0, 0]) < 0);
}

/// Mounts in a forked child's private mount namespace (also `unshare`,
/// `chroot` and `umount2` successes), so nothing outside it changes.
fn mounts(dir: &str) {
    // SAFETY: fork; the child only makes syscalls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = (|| {
            if sc(libc::SYS_unshare, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]) != 0 {
                return false;
            }
            let root = c("/");
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if sc(libc::SYS_mount, [0, p(&root), 0, flags, 0, 0]) != 0 {
                return false;
            }
            let (src, target, fs) = (c("mamori-e2e"), c(dir), c("tmpfs"));
            let ok = sc(libc::SYS_mount, [p(&src), p(&target), p(&fs), 0, 0, 0]) == 0
                && sc(
                    libc::SYS_mount,
                    [p(&src), p(&target), p(&c("nofs")), 0, 0, 0],
                ) < 0
                && sc(libc::SYS_umount2, [p(&target), 0, 0, 0, 0, 0]) == 0
                && sc(libc::SYS_umount2, [p(&target), 0, 0, 0, 0, 0]) < 0;
            ok && sc(libc::SYS_chroot, [p(&root), 0, 0, 0, 0, 0]) == 0
        })();
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(st, 0, "mount child failed");
}

/// File tampering and chdir in `dir`.
fn files(dir: &str) {
    let f = |n: &str| c(&format!("{dir}/{n}"));
    let (a, b, s, h, d, m) = (f("a"), f("b"), f("sym"), f("hard"), f("d"), f("missing"));
    let touch = |x: &CString| {
        let fd = sc(
            libc::SYS_open,
            [
                p(x),
                (libc::O_CREAT | libc::O_WRONLY) as u64,
                0o644,
                0,
                0,
                0,
            ],
        );
        assert!(fd >= 0);
        fd
    };
    let at = libc::AT_FDCWD as i64 as u64;
    touch(&a);
    assert_eq!(sc(libc::SYS_rename, [p(&a), p(&b), 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_rename, [p(&m), p(&b), 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_renameat, [at, p(&b), at, p(&a), 0, 0]), 0);
    assert!(sc(libc::SYS_renameat, [at, p(&m), at, p(&a), 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_renameat2, [at, p(&a), at, p(&b), 0, 0]), 0);
    assert!(sc(libc::SYS_renameat2, [at, p(&m), at, p(&a), 0, 0]) < 0);
    let shadow = c("/etc/shadow");
    assert_eq!(sc(libc::SYS_symlink, [p(&shadow), p(&s), 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_symlink, [p(&shadow), p(&s), 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_unlink, [p(&s), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_unlink, [p(&m), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_symlinkat, [p(&shadow), at, p(&s), 0, 0, 0]), 0);
    assert!(sc(libc::SYS_symlinkat, [p(&shadow), at, p(&s), 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_unlinkat, [at, p(&s), 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_unlinkat, [at, p(&m), 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_link, [p(&b), p(&h), 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_link, [p(&m), p(&h), 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_unlink, [p(&h), 0, 0, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_linkat, [at, p(&b), at, p(&h), 0, 0]), 0);
    assert!(sc(libc::SYS_linkat, [at, p(&m), at, p(&h), 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_mkdir, [p(&d), 0o755, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_mkdir, [p(&d), 0o755, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_rmdir, [p(&d), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_rmdir, [p(&d), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_mkdirat, [at, p(&d), 0o700, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_mkdirat, [at, p(&d), 0o700, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_chmod, [p(&b), 0o755, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_chmod, [p(&m), 0o755, 0, 0, 0, 0]) < 0);
    let bfd = touch(&b);
    assert_eq!(sc(libc::SYS_fchmod, [bfd as u64, 0o700, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_fchmod, [u64::MAX, 0o700, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_fchmodat, [at, p(&b), 0o711, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_fchmodat, [at, p(&m), 0o711, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_chown, [p(&b), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_chown, [p(&m), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_lchown, [p(&b), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_lchown, [p(&m), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_fchown, [bfd as u64, 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_fchown, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_fchownat, [at, p(&b), 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_fchownat, [at, p(&m), 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_truncate, [p(&b), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_truncate, [p(&m), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_ftruncate, [bfd as u64, 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_ftruncate, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
    // chdir / fchdir.
    let dfd = sc(
        libc::SYS_open,
        [
            p(&d),
            libc::O_RDONLY as u64 | libc::O_DIRECTORY as u64,
            0,
            0,
            0,
            0,
        ],
    );
    assert!(dfd >= 0);
    assert_eq!(sc(libc::SYS_chdir, [p(&c(dir)), 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_chdir, [p(&m), 0, 0, 0, 0, 0]) < 0);
    assert_eq!(sc(libc::SYS_fchdir, [dfd as u64, 0, 0, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_fchdir, [u64::MAX, 0, 0, 0, 0, 0]) < 0);
}

/// Identity changes: successes as root, then, with root given up for
/// good, the same calls fail. Last: nothing after it needs root.
fn identity() {
    let keep = u32::MAX as u64; // -1: leave unchanged
    assert_eq!(sc(libc::SYS_setuid, [0, 0, 0, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_setgid, [0, 0, 0, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_setreuid, [keep, keep, 0, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_setregid, [keep, keep, 0, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_setresgid, [65534, 65534, 65534, 0, 0, 0]), 0);
    assert_eq!(sc(libc::SYS_setresuid, [65534, 65534, 65534, 0, 0, 0]), 0);
    assert!(sc(libc::SYS_setuid, [0, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_setgid, [0, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_setreuid, [0, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_setregid, [0, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_setresuid, [0, 0, 0, 0, 0, 0]) < 0);
    assert!(sc(libc::SYS_setresgid, [0, 0, 0, 0, 0, 0]) < 0);
}

/// Every table-driven syscall, succeeding and failing. `args`: the temp
/// dir and a loopback UDP port to send to.
pub fn child_all(args: &[&str]) {
    let (dir, udp_dest) = (args[0], args[1].parse().unwrap());
    network_and_fds(udp_dest);
    injection();
    mounts(&format!("{dir}/mnt"));
    files(dir);
    identity();
}
