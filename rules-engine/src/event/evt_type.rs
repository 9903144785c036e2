//! `evt.type`: every event type mamori produces, with its Falco name, its
//! `evt.category` and (for the table-driven syscalls) the names of its
//! exit-event arguments in Falco's order (`evt.arg[n]`).
//!
//! One table, expanded by a macro, so a new syscall is one line here and
//! one in the sensor's capture table (`sensor/src/kernel/systable.rs`).

use serde::{Deserialize, Serialize};

macro_rules! evt_types {
    ($( $(#[$doc:meta])* $v:ident = $name:literal, $cat:literal, [$($arg:literal),*]; )*) => {
        /// `evt.type` values mamori produces.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
        #[serde(rename_all = "snake_case")]
        pub enum EvtType {
            $( $(#[$doc])* #[serde(rename = $name)] $v, )*
        }

        impl EvtType {
            pub const ALL: [EvtType; [$($name),*].len()] = [$(EvtType::$v),*];

            /// The Falco name of this event type (`evt.type`).
            pub const fn as_str(self) -> &'static str {
                match self { $(EvtType::$v => $name,)* }
            }

            /// `evt.category` as Falco names it.
            pub const fn category(self) -> &'static str {
                match self { $(EvtType::$v => $cat,)* }
            }

            /// Falco's argument names of the exit event, in order (`evt.arg[n]`),
            /// for the table-driven syscalls; empty for the others.
            pub const fn arg_names(self) -> &'static [&'static str] {
                match self { $(EvtType::$v => &[$($arg),*],)* }
            }
        }
    };
}

evt_types! {
    Execve = "execve", "process", [];
    Execveat = "execveat", "process", [];
    Open = "open", "file", [];
    Openat = "openat", "file", [];
    Openat2 = "openat2", "file", [];
    Creat = "creat", "file", [];
    Connect = "connect", "net", [];
    /// A new process was created (fork/vfork/clone/clone3 without CLONE_THREAD).
    Clone = "clone", "process", [];
    /// A process exited.
    Procexit = "procexit", "process", [];
    /// mamori's own report that kernel events were lost.
    Drop = "drop", "internal", [];
    /// mamori extension: a TCP connection's bytes (at close, and
    /// periodically while open).
    Flow = "flow", "net", [];
    /// mamori extension: a DNS question sent to port 53.
    Dns = "dns", "net", [];
    // Network.
    Socket = "socket", "net", ["fd", "domain", "type", "proto"];
    Bind = "bind", "net", ["res", "addr", "fd"];
    Listen = "listen", "net", ["res", "fd", "backlog"];
    Accept = "accept", "net", ["fd", "tuple", "queuepct", "queuelen", "queuemax"];
    Accept4 = "accept4", "net", ["fd", "tuple", "queuepct", "queuelen", "queuemax", "flags"];
    Sendto = "sendto", "net", ["res", "data", "fd", "size", "tuple"];
    Sendmsg = "sendmsg", "net", ["res", "data", "fd", "size", "tuple"];
    Sendmmsg = "sendmmsg", "net", ["res", "fd", "size", "data", "tuple"];
    Shutdown = "shutdown", "net", ["res", "fd", "how"];
    // fds.
    Dup = "dup", "io", ["res", "oldfd"];
    Dup2 = "dup2", "io", ["res", "oldfd", "newfd"];
    Dup3 = "dup3", "io", ["res", "oldfd", "newfd", "flags"];
    Fcntl = "fcntl", "io", ["res", "fd", "cmd"];
    // Identity.
    Setuid = "setuid", "user", ["res", "uid"];
    Setgid = "setgid", "user", ["res", "gid"];
    Setresuid = "setresuid", "user", ["res", "ruid", "euid", "suid"];
    Setresgid = "setresgid", "user", ["res", "rgid", "egid", "sgid"];
    Setreuid = "setreuid", "user", ["res", "ruid", "euid"];
    Setregid = "setregid", "user", ["res", "rgid", "egid"];
    Capset = "capset", "process", ["res", "cap_inheritable", "cap_permitted", "cap_effective"];
    // Injection and kernel.
    Ptrace = "ptrace", "process", ["res", "request", "pid", "addr", "data"];
    ProcessVmWritev = "process_vm_writev", "process", ["res", "pid"];
    InitModule = "init_module", "process", ["res", "img", "length", "uargs"];
    FinitModule = "finit_module", "process", ["res", "fd", "uargs", "flags"];
    Bpf = "bpf", "process", ["fd", "cmd"];
    MemfdCreate = "memfd_create", "file", ["fd", "name", "flags"];
    Mount = "mount", "file", ["res", "dev", "dir", "type", "flags"];
    Umount2 = "umount2", "file", ["res", "name", "flags"];
    Unshare = "unshare", "process", ["res", "flags"];
    Setns = "setns", "process", ["res", "fd", "nstype"];
    Chroot = "chroot", "process", ["res", "path"];
    PivotRoot = "pivot_root", "file", ["res", "new_root", "put_old"];
    // Files.
    Unlink = "unlink", "file", ["res", "path"];
    Unlinkat = "unlinkat", "file", ["res", "dirfd", "name", "flags"];
    Rename = "rename", "file", ["res", "oldpath", "newpath"];
    Renameat = "renameat", "file", ["res", "olddirfd", "oldpath", "newdirfd", "newpath"];
    Renameat2 = "renameat2", "file", ["res", "olddirfd", "oldpath", "newdirfd", "newpath", "flags"];
    Symlink = "symlink", "file", ["res", "target", "linkpath"];
    Symlinkat = "symlinkat", "file", ["res", "target", "linkdirfd", "linkpath"];
    Link = "link", "file", ["res", "oldpath", "newpath"];
    Linkat = "linkat", "file", ["res", "olddir", "oldpath", "newdir", "newpath", "flags"];
    Mkdir = "mkdir", "file", ["res", "path", "mode"];
    Mkdirat = "mkdirat", "file", ["res", "dirfd", "path", "mode"];
    Rmdir = "rmdir", "file", ["res", "path"];
    Chmod = "chmod", "file", ["res", "filename", "mode"];
    Fchmod = "fchmod", "file", ["res", "fd", "mode"];
    Fchmodat = "fchmodat", "file", ["res", "dirfd", "filename", "mode"];
    Chown = "chown", "file", ["res", "path", "uid", "gid"];
    Lchown = "lchown", "file", ["res", "path", "uid", "gid"];
    Fchown = "fchown", "file", ["res", "fd", "uid", "gid"];
    Fchownat = "fchownat", "file", ["res", "dirfd", "pathname", "uid", "gid", "flags"];
    Truncate = "truncate", "file", ["res", "path", "length"];
    Ftruncate = "ftruncate", "file", ["res", "fd", "length"];
    Chdir = "chdir", "file", ["res", "path"];
    Fchdir = "fchdir", "file", ["res", "fd"];
}

impl EvtType {
    pub fn from_name(name: &str) -> Option<EvtType> {
        EvtType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// A table-driven syscall (its arguments are in `Event::args`).
    pub const fn is_table_driven(self) -> bool {
        !self.arg_names().is_empty()
    }
}

impl std::fmt::Display for EvtType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serde_uses_them() {
        for t in EvtType::ALL {
            assert_eq!(EvtType::from_name(t.as_str()), Some(t));
            let j = serde_json::to_string(&t).unwrap();
            assert_eq!(j, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<EvtType>(&j).unwrap(), t);
        }
        assert_eq!(EvtType::ALL[EvtType::Fchdir as usize], EvtType::Fchdir);
    }
}
