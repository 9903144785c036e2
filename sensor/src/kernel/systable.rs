//! The table-driven syscalls: for each, its x86_64 number, Falco event type,
//! wire kind, what the kernel reads ([`SysDesc`]: which arguments are
//! strings, sockaddrs or fds) and where each Falco argument comes from.
//!
//! Why one table: the kernel program (`sensor-ebpf/src/sysrec.rs`) is
//! generic and reads its per-syscall [`SysDesc`] from a map the loader
//! fills from here, and the normaliser turns a record into `evt.arg.*` from
//! the same row, so a syscall is added in one place.

use mamori_common::{
    desc_flags, part, syscall as sc, EventKind, PartDesc, SysDesc, FD_NONE, FD_RET, PARTS,
};
use mamori_rules::event::EvtType;

/// Where a Falco argument's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// Argument register n, as a signed 64-bit number.
    Reg(u8),
    /// Argument register n, as a 32-bit signed number (fds, uids).
    Int(u8),
    /// Variable part n, as a string (or a sockaddr rendered `ip:port`).
    Part(u8),
    /// The syscall result.
    Ret,
    /// The capabilities read after the syscall.
    CapInheritable,
    CapPermitted,
    CapEffective,
    /// The socket's tuple (`local->remote`, from the fd's kernel socket and
    /// the destination sockaddr in part 0 when given).
    Tuple,
}

/// One table-driven syscall.
#[derive(Debug, Clone, Copy)]
pub struct SysRow {
    pub id: u16,
    /// x86_64 syscall number.
    pub nr: u32,
    pub evt: EvtType,
    pub kind: EventKind,
    /// Argument index of the fd described in the record ([`FD_RET`]: the
    /// result; [`FD_NONE`]: none).
    pub fd_arg: u8,
    pub flags: u8,
    pub parts: [(u8, u8, u8); PARTS],
    /// Falco's argument names and sources.
    pub args: &'static [(&'static str, Src)],
    /// The socket is the server side (accept): `fd.cip` is the peer.
    pub server: bool,
}

impl SysRow {
    /// The kernel descriptor of this row.
    pub fn desc(&self) -> SysDesc {
        SysDesc {
            id: self.id,
            kind: self.kind as u16,
            slot: self.kind.index() as u8,
            fd_arg: self.fd_arg,
            flags: self.flags,
            _pad: 0,
            parts: self.parts.map(|(kind, arg, len_arg)| PartDesc {
                kind,
                arg,
                len_arg,
                _pad: 0,
            }),
        }
    }
}

const N: (u8, u8, u8) = (part::NONE, 0, 0);
const fn s(arg: u8) -> (u8, u8, u8) {
    (part::USTR, arg, 0)
}
const fn sa(arg: u8, len: u8) -> (u8, u8, u8) {
    (part::SOCKADDR, arg, len)
}
const fn fdp(arg: u8) -> (u8, u8, u8) {
    (part::FDPATH, arg, 0)
}

use EventKind as K;
use EvtType as E;
use Src::*;

macro_rules! row {
    ($id:expr, $nr:expr, $evt:ident, $kind:ident, $fd:expr, $flags:expr, [$p0:expr, $p1:expr, $p2:expr], [$(($n:literal, $src:expr)),*]) => {
        SysRow { id: $id, nr: $nr, evt: E::$evt, kind: K::$kind, fd_arg: $fd, flags: $flags,
                 parts: [$p0, $p1, $p2], args: &[$(($n, $src)),*], server: false }
    };
}

/// Every table-driven syscall, one row each (kept on one line: a table).
#[rustfmt::skip]
pub static SYSCALLS: &[SysRow] = &[
    // Network.
    row!(sc::SOCKET, 41, Socket, Net, FD_RET, 0, [N, N, N], [("fd", Ret), ("domain", Int(0)), ("type", Int(1)), ("proto", Int(2))]),
    row!(sc::BIND, 49, Bind, Net, 0, 0, [sa(1, 2), N, N], [("res", Ret), ("addr", Part(0)), ("fd", Int(0))]),
    row!(sc::LISTEN, 50, Listen, Net, 0, 0, [N, N, N], [("res", Ret), ("fd", Int(0)), ("backlog", Int(1))]),
    SysRow { server: true, ..row!(sc::ACCEPT, 43, Accept, Net, FD_RET, 0, [N, N, N], [("fd", Ret), ("tuple", Tuple)]) },
    SysRow { server: true, ..row!(sc::ACCEPT4, 288, Accept4, Net, FD_RET, 0, [N, N, N], [("fd", Ret), ("tuple", Tuple), ("flags", Int(3))]) },
    row!(sc::SENDTO, 44, Sendto, Net, 0, desc_flags::NEED_PART0, [sa(4, 5), N, N], [("res", Ret), ("fd", Int(0)), ("size", Reg(2)), ("tuple", Tuple)]),
    row!(sc::SENDMSG, 46, Sendmsg, Net, 0, desc_flags::NEED_PART0, [(part::MSGHDR, 1, 0), N, N], [("res", Ret), ("fd", Int(0)), ("tuple", Tuple)]),
    row!(sc::SENDMMSG, 307, Sendmmsg, Net, 0, desc_flags::NEED_PART0, [(part::MSGHDR, 1, 0), N, N], [("res", Ret), ("fd", Int(0)), ("tuple", Tuple)]),
    row!(sc::SHUTDOWN, 48, Shutdown, Net, 0, 0, [N, N, N], [("res", Ret), ("fd", Int(0)), ("how", Int(1))]),
    // fds: the new fd's file is the old one's.
    row!(sc::DUP, 32, Dup, Fds, FD_RET, 0, [N, N, N], [("res", Ret), ("oldfd", Int(0))]),
    row!(sc::DUP2, 33, Dup2, Fds, FD_RET, 0, [N, N, N], [("res", Ret), ("oldfd", Int(0)), ("newfd", Int(1))]),
    row!(sc::DUP3, 292, Dup3, Fds, FD_RET, 0, [N, N, N], [("res", Ret), ("oldfd", Int(0)), ("newfd", Int(1)), ("flags", Int(2))]),
    row!(sc::FCNTL, 72, Fcntl, Fds, FD_RET, desc_flags::DUPFD_ONLY, [N, N, N], [("res", Ret), ("fd", Int(0)), ("cmd", Int(1))]),
    // Identity.
    row!(sc::SETUID, 105, Setuid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("uid", Int(0))]),
    row!(sc::SETGID, 106, Setgid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("gid", Int(0))]),
    row!(sc::SETRESUID, 117, Setresuid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("ruid", Int(0)), ("euid", Int(1)), ("suid", Int(2))]),
    row!(sc::SETRESGID, 119, Setresgid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("rgid", Int(0)), ("egid", Int(1)), ("sgid", Int(2))]),
    row!(sc::SETREUID, 113, Setreuid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("ruid", Int(0)), ("euid", Int(1))]),
    row!(sc::SETREGID, 114, Setregid, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("rgid", Int(0)), ("egid", Int(1))]),
    row!(sc::CAPSET, 126, Capset, Identity, FD_NONE, 0, [N, N, N], [("res", Ret), ("cap_inheritable", CapInheritable), ("cap_permitted", CapPermitted), ("cap_effective", CapEffective)]),
    // Injection and kernel.
    row!(sc::PTRACE, 101, Ptrace, Inject, FD_NONE, 0, [N, N, N], [("res", Ret), ("request", Reg(0)), ("pid", Int(1)), ("addr", Reg(2)), ("data", Reg(3))]),
    row!(sc::PROCESS_VM_WRITEV, 311, ProcessVmWritev, Inject, FD_NONE, 0, [N, N, N], [("res", Ret), ("pid", Int(0))]),
    row!(sc::INIT_MODULE, 175, InitModule, Inject, FD_NONE, 0, [s(2), N, N], [("res", Ret), ("length", Reg(1)), ("uargs", Part(0))]),
    row!(sc::FINIT_MODULE, 313, FinitModule, Inject, 0, 0, [fdp(0), s(1), N], [("res", Ret), ("fd", Int(0)), ("uargs", Part(1)), ("flags", Int(2))]),
    row!(sc::BPF, 321, Bpf, Inject, FD_NONE, 0, [N, N, N], [("fd", Ret), ("cmd", Int(0))]),
    row!(sc::MEMFD_CREATE, 319, MemfdCreate, Inject, FD_NONE, 0, [s(0), N, N], [("fd", Ret), ("name", Part(0)), ("flags", Int(1))]),
    row!(sc::MOUNT, 165, Mount, Inject, FD_NONE, 0, [s(0), s(1), s(2)], [("res", Ret), ("dev", Part(0)), ("dir", Part(1)), ("type", Part(2)), ("flags", Reg(3))]),
    row!(sc::UMOUNT2, 166, Umount2, Inject, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("name", Part(0)), ("flags", Int(1))]),
    row!(sc::UNSHARE, 272, Unshare, Inject, FD_NONE, 0, [N, N, N], [("res", Ret), ("flags", Int(0))]),
    row!(sc::SETNS, 308, Setns, Inject, 0, 0, [fdp(0), N, N], [("res", Ret), ("fd", Int(0)), ("nstype", Int(1))]),
    row!(sc::CHROOT, 161, Chroot, Inject, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0))]),
    row!(sc::PIVOT_ROOT, 155, PivotRoot, Inject, FD_NONE, 0, [s(0), s(1), N], [("res", Ret), ("new_root", Part(0)), ("put_old", Part(1))]),
    // Files.
    row!(sc::UNLINK, 87, Unlink, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0))]),
    row!(sc::UNLINKAT, 263, Unlinkat, FileOp, FD_NONE, 0, [s(1), N, N], [("res", Ret), ("dirfd", Int(0)), ("name", Part(0)), ("flags", Int(2))]),
    row!(sc::RENAME, 82, Rename, FileOp, FD_NONE, 0, [s(0), s(1), N], [("res", Ret), ("oldpath", Part(0)), ("newpath", Part(1))]),
    row!(sc::RENAMEAT, 264, Renameat, FileOp, FD_NONE, 0, [s(1), s(3), N], [("res", Ret), ("olddirfd", Int(0)), ("oldpath", Part(0)), ("newdirfd", Int(2)), ("newpath", Part(1))]),
    row!(sc::RENAMEAT2, 316, Renameat2, FileOp, FD_NONE, 0, [s(1), s(3), N], [("res", Ret), ("olddirfd", Int(0)), ("oldpath", Part(0)), ("newdirfd", Int(2)), ("newpath", Part(1)), ("flags", Int(4))]),
    row!(sc::SYMLINK, 88, Symlink, FileOp, FD_NONE, 0, [s(0), s(1), N], [("res", Ret), ("target", Part(0)), ("linkpath", Part(1))]),
    row!(sc::SYMLINKAT, 266, Symlinkat, FileOp, FD_NONE, 0, [s(0), s(2), N], [("res", Ret), ("target", Part(0)), ("linkdirfd", Int(1)), ("linkpath", Part(1))]),
    row!(sc::LINK, 86, Link, FileOp, FD_NONE, 0, [s(0), s(1), N], [("res", Ret), ("oldpath", Part(0)), ("newpath", Part(1))]),
    row!(sc::LINKAT, 265, Linkat, FileOp, FD_NONE, 0, [s(1), s(3), N], [("res", Ret), ("olddir", Int(0)), ("oldpath", Part(0)), ("newdir", Int(2)), ("newpath", Part(1)), ("flags", Int(4))]),
    row!(sc::MKDIR, 83, Mkdir, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0)), ("mode", Int(1))]),
    row!(sc::MKDIRAT, 258, Mkdirat, FileOp, FD_NONE, 0, [s(1), N, N], [("res", Ret), ("dirfd", Int(0)), ("path", Part(0)), ("mode", Int(2))]),
    row!(sc::RMDIR, 84, Rmdir, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0))]),
    row!(sc::CHMOD, 90, Chmod, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("filename", Part(0)), ("mode", Int(1))]),
    row!(sc::FCHMOD, 91, Fchmod, FileOp, 0, 0, [fdp(0), N, N], [("res", Ret), ("fd", Int(0)), ("mode", Int(1))]),
    row!(sc::FCHMODAT, 268, Fchmodat, FileOp, FD_NONE, 0, [s(1), N, N], [("res", Ret), ("dirfd", Int(0)), ("filename", Part(0)), ("mode", Int(2))]),
    row!(sc::CHOWN, 92, Chown, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0)), ("uid", Int(1)), ("gid", Int(2))]),
    row!(sc::LCHOWN, 94, Lchown, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0)), ("uid", Int(1)), ("gid", Int(2))]),
    row!(sc::FCHOWN, 93, Fchown, FileOp, 0, 0, [fdp(0), N, N], [("res", Ret), ("fd", Int(0)), ("uid", Int(1)), ("gid", Int(2))]),
    row!(sc::FCHOWNAT, 260, Fchownat, FileOp, FD_NONE, 0, [s(1), N, N], [("res", Ret), ("dirfd", Int(0)), ("pathname", Part(0)), ("uid", Int(2)), ("gid", Int(3)), ("flags", Int(4))]),
    row!(sc::TRUNCATE, 76, Truncate, FileOp, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0)), ("length", Reg(1))]),
    row!(sc::FTRUNCATE, 77, Ftruncate, FileOp, 0, 0, [fdp(0), N, N], [("res", Ret), ("fd", Int(0)), ("length", Reg(1))]),
    // Working directory.
    row!(sc::CHDIR, 80, Chdir, Chdir, FD_NONE, 0, [s(0), N, N], [("res", Ret), ("path", Part(0))]),
    row!(sc::FCHDIR, 81, Fchdir, Chdir, 0, 0, [fdp(0), N, N], [("res", Ret), ("fd", Int(0))]),
];

/// The row of mamori syscall id `id`.
pub fn by_id(id: u16) -> Option<&'static SysRow> {
    SYSCALLS.iter().find(|r| r.id == id)
}

/// The row of Falco event type `t`.
pub fn by_evt(t: EvtType) -> Option<&'static SysRow> {
    SYSCALLS.iter().find(|r| r.evt == t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_agree_with_the_rules_crate() {
        let mut ids = std::collections::HashSet::new();
        let mut nrs = std::collections::HashSet::new();
        for r in SYSCALLS {
            assert!(ids.insert(r.id), "{:?}: id twice", r.evt);
            assert!(nrs.insert(r.nr), "{:?}: nr twice", r.evt);
            assert!(r.nr < mamori_common::SYS_NR_MAX);
            assert!(r.kind.is_sys());
            // Every Falco argument name of the event type has a source, and
            // every source names one of them.
            let names = r.evt.arg_names();
            for (n, _) in r.args {
                assert!(names.contains(n), "{:?}: {n}", r.evt);
            }
            for (i, p) in r.parts.iter().enumerate() {
                assert!(
                    p.0 != part::FDPATH || i == 0,
                    "{:?}: FDPATH only as part 0",
                    r.evt
                );
            }
        }
        // Every table-driven event type has a row.
        for t in EvtType::ALL {
            assert_eq!(t.is_table_driven(), by_evt(t).is_some(), "{t}");
        }
    }
}
