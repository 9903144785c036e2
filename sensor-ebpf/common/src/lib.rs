// Over 600 lines: every wire layout lives here, once, by design (the kernel
// programs and the decoder must agree byte for byte).
//! Wire types shared by the kernel programs (`sensor-ebpf`) and the userspace
//! decoder (`sensor::decode`).
//!
//! This is the one place these layouts are defined. Every record in the ring
//! buffer starts with a [`Header`] whose first field is the type tag, followed by
//! a fixed body for that type, followed by variable-length byte strings whose
//! lengths the body carries. All structs are `#[repr(C)]` with explicit padding
//! so that the kernel and userspace agree byte for byte; the size assertions at
//! the bottom fail the build if a field is added without care.
#![no_std]

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Longest path copied for an open or exec filename (PATH_MAX).
pub const PATH_MAX: usize = 4096;
/// Longest argv area copied for an exec (NUL-separated arguments).
pub const ARGS_MAX: usize = 4096;
/// Of a longer argv area, the bytes kept from its start (and, plus one,
/// from its end; see [`flags::ARGS_TAIL`]).
pub const ARGS_HEAD: usize = ARGS_MAX / 2;
/// Most argv entries walked for a failed exec (argv read from user pointers).
pub const ARGV_MAX_ENTRIES: usize = 64;
/// `sockaddr_un::sun_path` size.
pub const UNIX_PATH_MAX: usize = 108;
/// Size of the per-CPU scratch buffer an event is assembled in. Power of two.
pub const SCRATCH_SIZE: usize = 16384;

/// Event type tags, grouped by family (high byte) and never reused.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A completed `execve`/`execveat` (success or failure).
    Exec = 0x0101,
    /// A new process (not a thread) was created.
    Fork = 0x0102,
    /// A process (thread group leader) exited.
    Exit = 0x0103,
    /// `open`, `openat`, `openat2`, `creat` with its result.
    Open = 0x0201,
    /// `connect` with its result.
    Connect = 0x0301,
    /// Other network syscalls (`socket`, `bind`, `listen`, `accept`,
    /// `accept4`, `sendto`/`sendmsg`/`sendmmsg` to an address, `shutdown`):
    /// a [`SysBody`] record.
    Net = 0x0302,
    /// fd duplication (`dup`, `dup2`, `dup3`, `fcntl(F_DUPFD)`): a [`SysBody`].
    Fds = 0x0401,
    /// Identity changes (`setuid` family, `capset`): a [`SysBody`].
    Identity = 0x0501,
    /// Injection and kernel (`ptrace`, `process_vm_writev`, module loads,
    /// `bpf`, `memfd_create`, mounts, namespaces, `chroot`, `pivot_root`):
    /// a [`SysBody`].
    Inject = 0x0601,
    /// File tampering (`unlink*`, `rename*`, `symlink*`, `link*`, `mkdir*`,
    /// `rmdir`, `chmod*`, `chown*`, `truncate`, `ftruncate`): a [`SysBody`].
    FileOp = 0x0701,
    /// `chdir`, `fchdir`: a [`SysBody`].
    Chdir = 0x0801,
    /// A TCP connection's byte counts (at close, and periodically while
    /// open), from per-socket counters in a kernel map.
    Flow = 0x0901,
    /// A DNS question sent to port 53 (`sendto`/`sendmsg`/`sendmmsg`).
    Dns = 0x0902,
}

impl EventKind {
    /// Every kind, in counter-index order.
    pub const ALL: [EventKind; 13] = [
        EventKind::Exec,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Open,
        EventKind::Connect,
        EventKind::Net,
        EventKind::Fds,
        EventKind::Identity,
        EventKind::Inject,
        EventKind::FileOp,
        EventKind::Chdir,
        EventKind::Flow,
        EventKind::Dns,
    ];

    /// Decode a type tag.
    pub const fn from_u16(v: u16) -> Option<EventKind> {
        match v {
            0x0101 => Some(EventKind::Exec),
            0x0102 => Some(EventKind::Fork),
            0x0103 => Some(EventKind::Exit),
            0x0201 => Some(EventKind::Open),
            0x0301 => Some(EventKind::Connect),
            0x0302 => Some(EventKind::Net),
            0x0401 => Some(EventKind::Fds),
            0x0501 => Some(EventKind::Identity),
            0x0601 => Some(EventKind::Inject),
            0x0701 => Some(EventKind::FileOp),
            0x0801 => Some(EventKind::Chdir),
            0x0901 => Some(EventKind::Flow),
            0x0902 => Some(EventKind::Dns),
            _ => None,
        }
    }

    /// Dense index used for per-kind counters (drops) in kernel maps.
    pub const fn index(self) -> u32 {
        match self {
            EventKind::Exec => 0,
            EventKind::Fork => 1,
            EventKind::Exit => 2,
            EventKind::Open => 3,
            EventKind::Connect => 4,
            EventKind::Net => 5,
            EventKind::Fds => 6,
            EventKind::Identity => 7,
            EventKind::Inject => 8,
            EventKind::FileOp => 9,
            EventKind::Chdir => 10,
            EventKind::Flow => 20,
            EventKind::Dns => 21,
        }
    }

    /// Short lowercase name, used in counters and drop reports.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Open => "open",
            EventKind::Connect => "connect",
            EventKind::Net => "net",
            EventKind::Fds => "fds",
            EventKind::Identity => "identity",
            EventKind::Inject => "inject",
            EventKind::FileOp => "fileop",
            EventKind::Chdir => "chdir",
            EventKind::Flow => "flow",
            EventKind::Dns => "dns",
        }
    }

    /// Whether records of this kind carry a [`SysBody`] (the table-driven
    /// syscalls, see [`SysDesc`]).
    pub const fn is_sys(self) -> bool {
        matches!(
            self,
            EventKind::Net
                | EventKind::Fds
                | EventKind::Identity
                | EventKind::Inject
                | EventKind::FileOp
                | EventKind::Chdir
        )
    }
}

/// Number of per-kind counter slots in the `DROPS` map.
pub const KIND_SLOTS: u32 = 32;

/// The slot of the drop counters that counts open events *shed* under load:
/// not submitted because the ring held more than
/// [`SensorConfig::shed_above`] bytes (see `sensor-ebpf/src/emit.rs`).
pub const SHED_SLOT: u32 = KIND_SLOTS - 1;

/// The syscall an event came from (mamori's own numbering, arch-independent).
pub mod syscall {
    pub const UNKNOWN: u16 = 0;
    pub const OPEN: u16 = 1;
    pub const OPENAT: u16 = 2;
    pub const OPENAT2: u16 = 3;
    pub const CREAT: u16 = 4;
    pub const EXECVE: u16 = 5;
    pub const EXECVEAT: u16 = 6;
    pub const CONNECT: u16 = 7;
    // Network (numbers shared with the flow/DNS hooks).
    pub const SOCKET: u16 = 8;
    pub const BIND: u16 = 9;
    pub const LISTEN: u16 = 10;
    pub const ACCEPT: u16 = 11;
    pub const ACCEPT4: u16 = 12;
    pub const SENDTO: u16 = 13;
    pub const SENDMSG: u16 = 14;
    pub const SENDMMSG: u16 = 15;
    pub const SHUTDOWN: u16 = 16;
    pub const WRITE: u16 = 17;
    pub const WRITEV: u16 = 18;
    pub const SENDFILE: u16 = 19;
    pub const SPLICE: u16 = 20;
    pub const RECVFROM: u16 = 21;
    pub const RECVMSG: u16 = 22;
    // fds.
    pub const DUP: u16 = 30;
    pub const DUP2: u16 = 31;
    pub const DUP3: u16 = 32;
    pub const FCNTL: u16 = 33;
    // Identity.
    pub const SETUID: u16 = 34;
    pub const SETGID: u16 = 35;
    pub const SETRESUID: u16 = 36;
    pub const SETRESGID: u16 = 37;
    pub const SETREUID: u16 = 38;
    pub const SETREGID: u16 = 39;
    pub const CAPSET: u16 = 40;
    // Injection and kernel.
    pub const PTRACE: u16 = 41;
    pub const PROCESS_VM_WRITEV: u16 = 42;
    pub const INIT_MODULE: u16 = 43;
    pub const FINIT_MODULE: u16 = 44;
    pub const BPF: u16 = 45;
    pub const MEMFD_CREATE: u16 = 46;
    pub const MOUNT: u16 = 47;
    pub const UMOUNT2: u16 = 48;
    pub const UNSHARE: u16 = 49;
    pub const SETNS: u16 = 50;
    pub const CHROOT: u16 = 51;
    pub const PIVOT_ROOT: u16 = 52;
    // Files.
    pub const UNLINK: u16 = 53;
    pub const UNLINKAT: u16 = 54;
    pub const RENAME: u16 = 55;
    pub const RENAMEAT: u16 = 56;
    pub const RENAMEAT2: u16 = 57;
    pub const SYMLINK: u16 = 58;
    pub const SYMLINKAT: u16 = 59;
    pub const LINK: u16 = 60;
    pub const LINKAT: u16 = 61;
    pub const MKDIR: u16 = 62;
    pub const MKDIRAT: u16 = 63;
    pub const RMDIR: u16 = 64;
    pub const CHMOD: u16 = 65;
    pub const FCHMOD: u16 = 66;
    pub const FCHMODAT: u16 = 67;
    pub const CHOWN: u16 = 68;
    pub const LCHOWN: u16 = 69;
    pub const FCHOWN: u16 = 70;
    pub const FCHOWNAT: u16 = 71;
    pub const TRUNCATE: u16 = 72;
    pub const FTRUNCATE: u16 = 73;
    pub const CHDIR: u16 = 74;
    pub const FCHDIR: u16 = 75;
    /// One past the largest id (sizes userspace tables).
    pub const END: u16 = 76;
}

/// Bits of [`Header::flags`].
pub mod flags {
    /// The path/filename was longer than the copy limit.
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    /// Reading the path/filename from user memory failed.
    pub const PATH_FAULT: u16 = 1 << 1;
    /// argv was longer than the copy limit (bytes or entries).
    pub const ARGS_TRUNCATED: u16 = 1 << 2;
    /// Reading argv failed part-way.
    pub const ARGS_FAULT: u16 = 1 << 3;
    /// Reading the sockaddr failed.
    pub const ADDR_FAULT: u16 = 1 << 4;
    /// A relative path's base directory was resolved in the kernel at the
    /// syscall (the cwd, or the dirfd's file): the `dir_len` bytes after the
    /// path are its components, leaf first, each NUL-terminated; none means
    /// the process's root.
    pub const DIR_RESOLVED: u16 = 1 << 5;
    /// A successful exec carries the path of the file its image was loaded
    /// from (`mm->exe_file`, as the process sees it): `exe_len` bytes of
    /// components after argv, leaf (the file's name) first.
    pub const EXE_RESOLVED: u16 = 1 << 6;
    /// argv was longer than [`ARGS_MAX`](super::ARGS_MAX): the record holds
    /// its first [`ARGS_HEAD`](super::ARGS_HEAD) bytes, then its last
    /// `ARGS_HEAD + 1` (the extra byte says whether the tail starts a new
    /// argument), so the flags at the end of a long command line are kept.
    pub const ARGS_TAIL: u16 = 1 << 7;
    /// A successful exec carries the cwd the new image starts in, read from
    /// the task's `fs->pwd` at `sched_process_exec`: `cwd_len` bytes of
    /// components after the exe path, leaf first. A runtime's init (runc,
    /// a shim) changes directory between its fork and the exec, so the cwd
    /// copied at fork is the runtime's, not the container process's.
    pub const CWD_RESOLVED: u16 = 1 << 8;
}

/// Most bytes of directory components a relative open carries
/// ([`flags::DIR_RESOLVED`]). Power of two.
pub const DIR_MAX: usize = 1024;
/// Longest single path component read (NAME_MAX + its NUL).
pub const NAME_MAX: usize = 256;

/// First bytes of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`EventKind`] as `u16`. Must stay first: the decoder dispatches on it.
    pub kind: u16,
    /// [`flags`] bits.
    pub flags: u16,
    /// Total record size in bytes, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the event was produced.
    pub ts_boot_ns: u64,
    /// Kernel thread id (`task_struct::pid`).
    pub tid: u32,
    /// Kernel process id (`task_struct::tgid`).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id of the task (0 when the unified hierarchy is not in use).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// Body of [`EventKind::Exec`]; followed by `filename_len` bytes of filename,
/// `args_len` bytes of NUL-separated argv, `exe_len` bytes of the exe path's
/// components ([`flags::EXE_RESOLVED`]) and `cwd_len` bytes of the cwd's
/// components ([`flags::CWD_RESOLVED`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecBody {
    /// Syscall return value (0 on success, -errno on failure).
    pub ret: i64,
    /// `task_struct::start_boottime` of the process (ns since boot), 0 if unknown.
    pub start_boot_ns: u64,
    /// Parent's tgid (`real_parent->tgid`), 0 if unknown.
    pub ppid: u32,
    /// Audit login uid, `u32::MAX` if unset or unknown.
    pub loginuid: u32,
    /// [`syscall`] id (`UNKNOWN` for kernel-initiated execs).
    pub syscall: u16,
    pub filename_len: u16,
    pub args_len: u16,
    /// Bytes of the executable's path components after argv
    /// ([`flags::EXE_RESOLVED`]).
    pub exe_len: u16,
    /// `execveat` dirfd (`AT_FDCWD` otherwise).
    pub dirfd: i32,
    /// `execveat` flags.
    pub at_flags: u32,
    /// Controlling terminal (`tty_nr` encoding of /proc/<pid>/stat), 0 if none.
    pub tty: u32,
    /// Bytes of the cwd's components after the exe path
    /// ([`flags::CWD_RESOLVED`]); was padding before, so the body's size and
    /// every other offset are unchanged.
    pub cwd_len: u16,
    pub _pad1: u16,
}

/// Body of [`EventKind::Open`]; followed by `path_len` bytes of path, then
/// `dir_len` bytes of directory components ([`flags::DIR_RESOLVED`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenBody {
    /// Resulting fd, or -errno.
    pub ret: i64,
    /// `open_how::resolve` for `openat2`, else 0.
    pub resolve: u64,
    pub flags: u32,
    pub mode: u32,
    pub dirfd: i32,
    pub syscall: u16,
    pub path_len: u16,
    /// Bytes of directory components after the path ([`flags::DIR_RESOLVED`]).
    pub dir_len: u16,
    pub _pad0: u16,
    pub _pad1: u32,
}

/// Body of [`EventKind::Connect`]; followed by `unix_path_len` bytes of
/// `sun_path` for `AF_UNIX`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectBody {
    /// 0, or -errno (`-EINPROGRESS` for a non-blocking attempt).
    pub ret: i64,
    pub fd: i32,
    pub addrlen: u32,
    /// `sa_family` of the destination (AF_INET, AF_INET6, AF_UNIX, ...).
    pub family: u16,
    /// Destination port, host byte order.
    pub dport: u16,
    /// Local port, host byte order (0 if not bound or unknown).
    pub sport: u16,
    /// `socket::type` (SOCK_STREAM, SOCK_DGRAM, ...), 0 if unknown.
    pub sock_type: u16,
    /// `sock::sk_protocol` (IPPROTO_TCP, ...), 0 if unknown.
    pub protocol: u16,
    pub unix_path_len: u16,
    pub _pad0: u32,
    /// Destination address: IPv4 in the first 4 bytes, or IPv6.
    pub daddr: [u8; 16],
    /// Local address, same encoding (zero if unknown).
    pub saddr: [u8; 16],
}

/// [`FlowBody::state`] values.
pub mod flow_state {
    /// An interim report of a connection still open (bytes since the
    /// previous report).
    pub const OPEN: u16 = 1;
    /// The connection closed after it was established.
    pub const CLOSED: u16 = 2;
    /// The connection closed without ever being established: a connect
    /// (blocking or not) that was refused, reset or timed out;
    /// [`FlowBody::err`](super::FlowBody) says which.
    pub const FAILED: u16 = 3;
}

/// Body of [`EventKind::Flow`]. The header describes the process that owns
/// the connection (the one that connected, or first sent or received on
/// it), not necessarily the task running when the report was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBody {
    /// Bytes sent since the previous report of this connection.
    pub bytes_out: u64,
    /// Bytes received since the previous report.
    pub bytes_in: u64,
    /// When mamori first saw the connection (boot clock, ns).
    pub start_boot_ns: u64,
    /// `sa_family` (AF_INET, AF_INET6).
    pub family: u16,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order.
    pub dport: u16,
    /// [`flow_state`].
    pub state: u16,
    /// `sock::sk_err` at close (ECONNREFUSED, ETIMEDOUT, ...), 0 if none.
    pub err: i32,
    /// `sock::sk_protocol`.
    pub protocol: u16,
    pub _pad0: u16,
    /// Local address: IPv4 in the first 4 bytes, or IPv6.
    pub saddr: [u8; 16],
    /// Remote address, same encoding.
    pub daddr: [u8; 16],
}

/// Most bytes of a DNS message a [`EventKind::Dns`] record carries (the
/// header and the question of any query fit). Power of two.
pub const DNS_MAX: usize = 512;

/// Body of [`EventKind::Dns`]; followed by `payload_len` bytes of the DNS
/// message as sent (for TCP, after its 2-byte length prefix).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsBody {
    /// Bytes sent by the message's send (the syscall's result for one message).
    pub ret: i64,
    pub fd: i32,
    /// [`syscall`] id: SENDTO, SENDMSG or SENDMMSG.
    pub syscall: u16,
    /// `sa_family` of the server.
    pub family: u16,
    /// Server port, host byte order (53).
    pub dport: u16,
    /// Local port, host byte order (0 if unknown).
    pub sport: u16,
    pub payload_len: u16,
    /// `socket::type` (SOCK_DGRAM, SOCK_STREAM), 0 if unknown.
    pub sock_type: u16,
    /// Server address: IPv4 in the first 4 bytes, or IPv6.
    pub daddr: [u8; 16],
    /// Local address, same encoding (zero if unknown).
    pub saddr: [u8; 16],
}

/// Body of [`EventKind::Fork`]. The header describes the parent (current task).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkBody {
    pub child_tid: u32,
    pub child_tgid: u32,
    /// The parent's tgid.
    pub ppid: u32,
    pub _pad0: u32,
    pub child_start_boot_ns: u64,
}

/// Body of [`EventKind::Exit`]. The header describes the exiting task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitBody {
    /// `task_struct::exit_code` (wait status encoding).
    pub exit_code: i32,
    pub _pad0: u32,
    pub start_boot_ns: u64,
}

/// Most bytes of one variable part of a [`SysBody`] record (a path or a
/// string; a sockaddr is at most [`SOCKADDR_MAX`]). Power of two.
pub const PART_MAX: usize = 4096;
/// Most bytes of a sockaddr copied into a [`SysBody`] part.
pub const SOCKADDR_MAX: usize = 128;
/// Variable parts a [`SysBody`] record carries at most.
pub const PARTS: usize = 3;
/// Entries of the per-syscall descriptor map (x86_64 syscall numbers).
pub const SYS_NR_MAX: u32 = 512;

/// What a variable part of a [`SysBody`] record holds ([`SysDesc::parts`]).
pub mod part {
    pub const NONE: u8 = 0;
    /// A NUL-terminated user string at `args[arg]` (a path, a name).
    pub const USTR: u8 = 1;
    /// A sockaddr at `args[arg]`, `args[len_arg]` bytes long (raw bytes).
    pub const SOCKADDR: u8 = 2;
    /// The sockaddr named by the `struct msghdr` at `args[arg]` (sendmsg;
    /// for sendmmsg the first message's).
    pub const MSGHDR: u8 = 3;
    /// The path of the file open at fd `args[arg]`: components leaf first,
    /// each NUL-terminated (as [`flags::DIR_RESOLVED`] directories).
    pub const FDPATH: u8 = 4;
}

/// `SysDesc::fd_arg` for "the fd is the syscall's result" (accept, socket, dup).
pub const FD_RET: u8 = 6;
/// `SysDesc::fd_arg` for "no fd".
pub const FD_NONE: u8 = 0xff;

/// Bits of [`SysDesc::flags`].
pub mod desc_flags {
    /// Skip the syscall when part 0's user pointer is NULL (`sendto` and
    /// `sendmsg` on a connected socket carry no destination).
    pub const NEED_PART0: u8 = 1;
    /// Report only the fd-duplicating commands of `fcntl` (`F_DUPFD`,
    /// `F_DUPFD_CLOEXEC` in `args[1]`).
    pub const DUPFD_ONLY: u8 = 2;
}

/// One variable part's source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartDesc {
    /// [`part`] kind.
    pub kind: u8,
    /// Argument index the pointer (or fd) is in.
    pub arg: u8,
    /// Argument index holding the length (for [`part::SOCKADDR`]).
    pub len_arg: u8,
    pub _pad: u8,
}

/// How the kernel records one syscall (the `SYSCALLS` map, indexed by the
/// x86_64 syscall number, filled by userspace with the syscalls the loaded
/// rules need; an all-zero entry is not captured).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysDesc {
    /// [`syscall`] id; 0 = not captured.
    pub id: u16,
    /// The [`EventKind`] tag of its records.
    pub kind: u16,
    /// Drop-counter slot ([`EventKind::index`]).
    pub slot: u8,
    /// Argument index of the fd whose kernel file/socket is described in
    /// [`SysBody::fd`] ([`FD_RET`]: the result; [`FD_NONE`]: none).
    pub fd_arg: u8,
    /// [`desc_flags`] bits.
    pub flags: u8,
    pub _pad: u8,
    pub parts: [PartDesc; PARTS],
}

/// What the kernel's `struct file` for an fd says (for [`SysBody::fd`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// `inode->i_mode >> 12` (the `S_IFMT` type: 1 fifo, 2 chr, 4 dir,
    /// 6 blk, 8 reg, 10 lnk, 12 sock); 0 = unknown or no fd.
    pub ftype: u16,
    /// For sockets: `sk_family`, `socket->type`, `sk_protocol`.
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    /// Local and peer port, host byte order.
    pub sport: u16,
    pub dport: u16,
    pub _pad: u32,
    /// Local and peer address: IPv4 in the first 4 bytes, or IPv6.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// Body of the table-driven kinds ([`EventKind::is_sys`]); followed by the
/// variable parts, `part_len[i]` bytes each, in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysBody {
    /// Syscall result (-errno on failure).
    pub ret: i64,
    /// The six argument registers as they were at exit.
    pub args: [u64; 6],
    /// The task's capabilities after the syscall (`cred->cap_*`, bit n =
    /// capability n).
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    /// [`syscall`] id.
    pub syscall: u16,
    pub part_len: [u16; PARTS],
    /// [`part`] kind of each part (copied from the descriptor).
    pub part_kind: [u8; PARTS],
    pub _pad0: u8,
    /// The fd [`FdInfo`] describes (-1: none).
    pub fd_num: i32,
    pub fd: FdInfo,
}

/// Tamper records (`sensor-ebpf/src/tamper.rs`): acts aimed at mamori
/// itself. They travel in their own small ring (`TAMPER`), not the event
/// ring, so a flood of events can never crowd them out.
pub mod tamper {
    /// A signal generated for mamori's thread group (`signal_generate`).
    pub const SIGNAL: u16 = 0x0a01;
    /// A `ptrace(PTRACE_ATTACH | PTRACE_SEIZE, pid)` call (any target: the
    /// reader checks whether `pid` is one of its threads).
    pub const PTRACE: u16 = 0x0a02;
}

/// One tamper record; the acting (current) task is the sender/tracer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TamperRecord {
    /// [`tamper`] kind.
    pub kind: u16,
    pub _pad0: u16,
    /// The signal number, or the ptrace request.
    pub what: u32,
    /// The target thread (signal: the task it was generated for; ptrace:
    /// the `pid` argument).
    pub target: u32,
    /// Signal: the `signal_generate` result (0 delivered, 1 ignored, ...).
    pub result: i32,
    pub actor_tgid: u32,
    pub actor_tid: u32,
    pub actor_uid: u32,
    pub _pad1: u32,
    pub actor_comm: [u8; COMM_LEN],
}

/// Marks a kernel struct offset the running kernel's BTF did not provide.
pub const NO_OFFSET: u32 = u32::MAX;

/// Byte offsets of kernel struct members, resolved by userspace from
/// `/sys/kernel/btf/vmlinux` at load time and passed in as a global, so the
/// programs run unchanged on any kernel with BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_mm: u32,
    pub task_start_boottime: u32,
    pub task_loginuid: u32,
    pub task_exit_code: u32,
    pub task_files: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub socket_sk: u32,
    pub sock_protocol: u32,
    pub sock_family: u32,
    pub sock_rcv_saddr: u32,
    pub sock_num: u32,
    pub sock_v6_rcv_saddr: u32,
    pub task_signal: u32,
    pub signal_tty: u32,
    pub tty_driver: u32,
    pub tty_index: u32,
    pub driver_major: u32,
    pub driver_minor_start: u32,
    pub task_cred: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub task_comm: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    // Path walks (relative opens resolved in the kernel, see
    // `sensor-ebpf/src/dpath.rs`).
    pub task_fs: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name: u32,
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub file_path: u32,
    pub mm_exe_file: u32,
    // fd descriptions and capabilities of table-driven records
    // (`sensor-ebpf/src/sysrec.rs`); flows and DNS (`flow.rs`, `dns.rs`).
    pub sock_daddr: u32,
    pub sock_dport: u32,
    pub sock_v6_daddr: u32,
    pub sock_err: u32,
    pub file_inode: u32,
    pub inode_mode: u32,
    pub cred_cap_inheritable: u32,
    pub cred_cap_permitted: u32,
    pub cred_cap_effective: u32,
}

impl KernelOffsets {
    /// All offsets unknown: programs then skip every struct read.
    pub const UNKNOWN: KernelOffsets = KernelOffsets {
        task_pid: NO_OFFSET,
        task_tgid: NO_OFFSET,
        task_real_parent: NO_OFFSET,
        task_mm: NO_OFFSET,
        task_start_boottime: NO_OFFSET,
        task_loginuid: NO_OFFSET,
        task_exit_code: NO_OFFSET,
        task_files: NO_OFFSET,
        mm_arg_start: NO_OFFSET,
        mm_arg_end: NO_OFFSET,
        files_fdt: NO_OFFSET,
        fdtable_fd: NO_OFFSET,
        fdtable_max_fds: NO_OFFSET,
        file_private_data: NO_OFFSET,
        socket_type: NO_OFFSET,
        socket_sk: NO_OFFSET,
        sock_protocol: NO_OFFSET,
        sock_family: NO_OFFSET,
        sock_rcv_saddr: NO_OFFSET,
        sock_num: NO_OFFSET,
        sock_v6_rcv_saddr: NO_OFFSET,
        task_signal: NO_OFFSET,
        signal_tty: NO_OFFSET,
        tty_driver: NO_OFFSET,
        tty_index: NO_OFFSET,
        driver_major: NO_OFFSET,
        driver_minor_start: NO_OFFSET,
        task_cred: NO_OFFSET,
        cred_uid: NO_OFFSET,
        cred_gid: NO_OFFSET,
        task_comm: NO_OFFSET,
        task_cgroups: NO_OFFSET,
        css_set_dfl_cgrp: NO_OFFSET,
        cgroup_kn: NO_OFFSET,
        kernfs_node_id: NO_OFFSET,
        task_fs: NO_OFFSET,
        fs_root: NO_OFFSET,
        fs_pwd: NO_OFFSET,
        path_mnt: NO_OFFSET,
        path_dentry: NO_OFFSET,
        dentry_parent: NO_OFFSET,
        dentry_name: NO_OFFSET,
        vfsmount_root: NO_OFFSET,
        mount_mnt: NO_OFFSET,
        mount_parent: NO_OFFSET,
        mount_mountpoint: NO_OFFSET,
        file_path: NO_OFFSET,
        mm_exe_file: NO_OFFSET,
        sock_daddr: NO_OFFSET,
        sock_dport: NO_OFFSET,
        sock_v6_daddr: NO_OFFSET,
        sock_err: NO_OFFSET,
        file_inode: NO_OFFSET,
        inode_mode: NO_OFFSET,
        cred_cap_inheritable: NO_OFFSET,
        cred_cap_permitted: NO_OFFSET,
        cred_cap_effective: NO_OFFSET,
    };
}

/// Runtime knobs passed in as a global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SensorConfig {
    /// mamori's own tgid: its events are dropped in the kernel.
    pub self_tgid: u32,
    /// Bit `1 << EventKind::index()` set = that kind is captured.
    pub enabled_kinds: u32,
    /// Each CPU wakes the reader once per this many bytes it submits
    /// (submits are otherwise made without wakeup; userspace also polls).
    pub wakeup_bytes: u64,
    /// [`config_flags`] bits.
    pub flags: u32,
    /// Seconds between interim `flow` reports of a connection still open
    /// (made at its next send or receive once due); 0 = only at close.
    pub flow_interval_s: u32,
    /// Open events (the high-volume kind) are shed, not submitted, while
    /// the ring holds more than this many unread bytes, so the rest of the
    /// ring stays free for exec, fork, exit and connect events: a flood of
    /// opens cannot blind the sensor to them. 0 = never shed.
    pub shed_above: u64,
}

/// Bits of [`SensorConfig::flags`].
pub mod config_flags {
    /// Read the clock for every open/connect event. Without it those events
    /// carry the CPU's first clock reading of the current scheduler tick
    /// (at most one tick, 1/HZ, early), which saves a clock read per event.
    pub const PRECISE_TIME: u32 = 1;
    /// Count flow bytes at the exit of write/writev/send*/sendfile/splice
    /// (and the reads) on socket fds: for kernels without the
    /// `sock:sock_send_length` / `sock_recv_length` tracepoints (< 6.3).
    pub const FLOW_SYSCALLS: u32 = 2;
}

impl SensorConfig {
    pub const DEFAULT: SensorConfig = SensorConfig {
        self_tgid: 0,
        enabled_kinds: u32::MAX,
        wakeup_bytes: 64 * 1024,
        flags: 0,
        flow_interval_s: 0,
        shed_above: 0,
    };
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data `#[repr(C)]` structs made only of integers with
    // explicit padding fields; every bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SensorConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SysDesc {}
    unsafe impl aya::Pod for super::TamperRecord {}
}

const _: () = {
    // The decoder dispatches on the type tag before it knows the record's
    // type: it must stay the first field.
    assert!(core::mem::offset_of!(Header, kind) == 0);
    assert!(core::mem::size_of::<Header>() == 56);
    // Every body follows the header directly: the header's size keeps each
    // body aligned.
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<ExecBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<OpenBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<ConnectBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<ForkBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<ExitBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<FlowBody>()));
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<DnsBody>()));
    assert!(core::mem::size_of::<FlowBody>() == 72);
    assert!(core::mem::size_of::<DnsBody>() == 56);
    assert!(128 + 2 * DNS_MAX <= SCRATCH_SIZE);
    assert!(DNS_MAX.is_power_of_two());
    // The kernel side stores `comm` as two aligned u64s.
    assert!(core::mem::offset_of!(Header, comm) % 8 == 0);
    assert!(core::mem::size_of::<ExecBody>() == 48);
    assert!(core::mem::size_of::<OpenBody>() == 40);
    assert!(core::mem::size_of::<ConnectBody>() == 64);
    assert!(core::mem::size_of::<ForkBody>() == 24);
    assert!(core::mem::size_of::<ExitBody>() == 16);
    assert!(core::mem::size_of::<KernelOffsets>() == 228);
    assert!(core::mem::size_of::<Header>().is_multiple_of(core::mem::align_of::<SysBody>()));
    assert!(core::mem::size_of::<FdInfo>() == 48);
    assert!(core::mem::size_of::<SysBody>() == 144);
    assert!(core::mem::size_of::<SysDesc>() == 20);
    // A table-driven record: header, body and three parts, each read at an
    // offset masked to 2 * PART_MAX - 1 (room for a path walk's spill too).
    assert!(256 + 2 * PART_MAX + PART_MAX + 2 * DIR_MAX + NAME_MAX <= SCRATCH_SIZE);
    assert!(PART_MAX.is_power_of_two() && SOCKADDR_MAX.is_power_of_two());
    assert!(core::mem::size_of::<TamperRecord>() == 48);
    assert!(core::mem::size_of::<SensorConfig>() == 32);
    // The exec path masks lengths with 2 * ARGS_MAX - 1 for the verifier.
    assert!(128 + PATH_MAX + 2 * ARGS_MAX <= SCRATCH_SIZE);
    // An open: header and body, the path, the directory components and one
    // more component's read.
    assert!(128 + PATH_MAX + 2 * DIR_MAX + NAME_MAX <= SCRATCH_SIZE);
    // An exec: filename, argv (masked to twice its limit) and the exe path
    // (at most DIR_MAX), then the cwd's walk.
    assert!(128 + PATH_MAX + 2 * ARGS_MAX + 2 * DIR_MAX + NAME_MAX <= SCRATCH_SIZE);
    assert!(128 + PATH_MAX + 2 * ARGS_MAX + DIR_MAX + 2 * DIR_MAX + NAME_MAX <= SCRATCH_SIZE);
    assert!(DIR_MAX.is_power_of_two());
};
