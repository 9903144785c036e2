// Over 600 lines: the registry is one table by design (names, types, docs).
//! The field registry: every field a rule condition or output may name, with
//! its type, its description and how it is read from an [`Event`].
//!
//! One static table drives three things, so they cannot drift apart: the rule
//! compiler's type checks (which operators and values a field accepts), the
//! `%field` rendering of alert outputs, and `mamori fields`. Names and
//! meanings follow Falco's field classes (`evt.*`, `proc.*`, `fd.*`, …) so
//! Falco rules load unchanged; where mamori captures less than Falco, the
//! field is either absent (and listed in [`FALCO_ONLY`], so a rule using it
//! loads inactive with a precise reason instead of failing as a typo) or
//! returns "missing", which renders as `<NA>` and makes every comparison
//! false — Falco's behaviour for a value it cannot extract.
//!
//! Extraction borrows from the event where it can; only composed values
//! (`proc.cmdline`, rendered open flags, …) allocate.
//!
//! The registry table and the dispatch live here; reading a field is done
//! per Falco field class, one module each: `event` (`evt.*`), `process`
//! (`proc.*`, `thread.*`, `user.*`, `group.*`), `fd` (`fd.*`, files and
//! sockets) and `container` (`container.*`, `k8s.*`). `resolve` binds a
//! name to its entry, `value` is what extraction returns, `errno` names
//! syscall errors.

use std::borrow::Cow;

use serde::Serialize;

use crate::event::Event;

mod container;
mod ctx;
mod errno;
mod event;
mod fd;
mod net;
mod process;
mod resolve;
mod sysargs;
mod value;

pub(crate) use ctx::EvalCtx;
pub(crate) use errno::errno_name;
pub(crate) use resolve::{resolve, FieldArg, ResolveError};
pub use sysargs::cap_names;
pub(crate) use value::Value;

use process::{ancestor_value, Anc};

/// Value types of fields (Falco's names in [`FieldType::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Int,
    Bool,
    Ip,
    IpNet,
    Port,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "CHARBUF",
            FieldType::Int => "INT64",
            FieldType::Bool => "BOOL",
            FieldType::Ip => "IPADDR",
            FieldType::IpNet => "IPNET",
            FieldType::Port => "PORT",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Int | FieldType::Port)
    }
}

/// What goes inside `[...]` (or after `evt.arg.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgKind {
    None,
    /// Optional ancestor index: `proc.aname[2]`; without it, any ancestor.
    Ancestor,
    /// Required syscall argument name or index: `evt.arg.flags`, `evt.arg[3]`.
    SyscallArg,
    /// Required key: `k8s.pod.label[app]` or `k8s.pod.label.app`.
    Key,
}

/// Field identities; the registry maps names to these.
///
/// Variants are grouped by field class, in the order [`FieldId::class`]
/// relies on (a test checks it against every registry name): `evt.*`
/// first, then `proc.*`/`thread.*`/`user.*`/`group.*` from [`FieldId::ProcPid`],
/// `fd.*` from [`FieldId::FdNum`], `container.*`/`k8s.*` from
/// [`FieldId::ContainerId`], mamori's `flow.*`/`dns.*` from
/// [`FieldId::FlowBytesOut`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldId {
    EvtType,
    EvtDir,
    EvtCategory,
    EvtRes,
    EvtRawRes,
    EvtFailed,
    EvtTime,
    EvtTimeIso,
    EvtRawTime,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    EvtIsOpenCreate,
    EvtArg,
    EvtRawArg,
    EvtNum,
    SyscallType,
    ProcPid,
    ProcPpid,
    ProcName,
    ProcExe,
    ProcExePath,
    ProcCmdline,
    ProcArgs,
    ProcCmdNArgs,
    ProcCwd,
    ProcTty,
    ProcIsExeFromMemfd,
    ProcDuration,
    ProcPName,
    ProcPExe,
    ProcPExePath,
    ProcPCmdline,
    ProcAName,
    ProcAPid,
    ProcAExe,
    ProcAExePath,
    ProcACmdline,
    ProcLoginShellId,
    ThreadTid,
    ThreadCapEffective,
    ThreadCapPermitted,
    ThreadCapInheritable,
    UserUid,
    UserName,
    UserLoginUid,
    GroupGid,
    FdNum,
    FdType,
    FdTypeChar,
    FdName,
    FdNameRaw,
    FdConnected,
    FdNameChanged,
    FdSipName,
    FdRipName,
    FdCipName,
    FdLipName,
    FdDirectory,
    FdFilename,
    FdSockFamily,
    FdL4Proto,
    FdCip,
    FdSip,
    FdLip,
    FdRip,
    FdCport,
    FdSport,
    FdLport,
    FdRport,
    FdIp,
    FdPort,
    FdNet,
    FdCnet,
    FdSnet,
    FdLnet,
    FdRnet,
    ContainerId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerPrivileged,
    ContainerType,
    ContainerFullId,
    ContainerStartTs,
    K8sNsName,
    K8sPodName,
    K8sPodUid,
    K8sPodLabels,
    K8sPodLabel,
    K8sWorkloadKind,
    K8sWorkloadName,
    K8sSaName,
    FlowBytesOut,
    FlowBytesIn,
    FlowBytes,
    FlowDuration,
    FlowState,
    DnsQname,
    DnsQtype,
    DnsDomain,
    DnsServer,
    DnsLabels,
    DnsLongestLabel,
    DnsEntropy,
}

/// Falco field classes, each read by its own module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Event,
    Process,
    Fd,
    Container,
    Net,
}

impl FieldId {
    /// The class of a field, from its position in the enum (see [`FieldId`]).
    #[inline]
    fn class(self) -> Class {
        let i = self as u8;
        if i < FieldId::ProcPid as u8 {
            Class::Event
        } else if i < FieldId::FdNum as u8 {
            Class::Process
        } else if i < FieldId::ContainerId as u8 {
            Class::Fd
        } else if i < FieldId::FlowBytesOut as u8 {
            Class::Container
        } else {
            Class::Net
        }
    }
}

/// One registry entry.
#[derive(Debug, Clone, Serialize)]
pub struct FieldInfo {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub arg: ArgKind,
    pub desc: &'static str,
    #[serde(skip)]
    pub id: FieldId,
}

macro_rules! f {
    ($name:literal, $ty:ident, $arg:ident, $id:ident, $desc:literal) => {
        FieldInfo {
            name: $name,
            ty: FieldType::$ty,
            arg: ArgKind::$arg,
            id: FieldId::$id,
            desc: $desc,
        }
    };
}

/// The registry.
pub static FIELDS: &[FieldInfo] = &[
    f!("evt.type", String, None, EvtType, "Event type: execve, execveat, open, openat, openat2, creat, connect, clone, procexit, drop; mamori extensions flow (a TCP connection's bytes) and dns (a DNS question)."),
    f!("evt.dir", String, None, EvtDir, "Event direction. mamori only produces exit events, so always '<'."),
    f!("evt.category", String, None, EvtCategory, "Event category: process, file, net, internal."),
    f!("evt.res", String, None, EvtRes, "Syscall result: SUCCESS, or the errno name (ENOENT, EACCES, ...) on failure."),
    f!("evt.rawres", Int, None, EvtRawRes, "Raw syscall return value (fd or 0 on success, -errno on failure)."),
    f!("evt.failed", Bool, None, EvtFailed, "true if the syscall failed."),
    f!("evt.time", String, None, EvtTime, "Event time of day (UTC), HH:MM:SS.nnnnnnnnn."),
    f!("evt.time.iso8601", String, None, EvtTimeIso, "Event time, RFC 3339 with nanoseconds (UTC)."),
    f!("evt.rawtime", Int, None, EvtRawTime, "Event time in nanoseconds since the Unix epoch."),
    f!("evt.is_open_read", Bool, None, EvtIsOpenRead, "true for an open-family event opened for reading (O_RDONLY or O_RDWR)."),
    f!("evt.is_open_write", Bool, None, EvtIsOpenWrite, "true for an open-family event opened for writing (O_WRONLY or O_RDWR)."),
    f!("evt.is_open_exec", Bool, None, EvtIsOpenExec, "true for an open-family event that created an executable file (O_CREAT with an execute bit in mode)."),
    f!("evt.is_open_create", Bool, None, EvtIsOpenCreate, "true for an open-family event with O_CREAT (creat always)."),
    f!("evt.arg", String, SyscallArg, EvtArg, "A syscall argument by name (evt.arg.flags) or index (evt.arg[0]), rendered as text. Names: fd, dirfd, name, flags, mode, resolve (open family); res, exe, args, filename, cwd, pid, tid, ptid (exec, clone); res, tuple, fd (connect); status (procexit); the other syscalls use Falco's names (domain, type, proto of socket; oldfd, newfd of dup2; request, pid of ptrace; target, linkpath of symlink; oldpath, newpath of rename; ...: see `mamori rules list --events`)."),
    f!("evt.rawarg", Int, SyscallArg, EvtRawArg, "A numeric syscall argument by name, unrendered (evt.rawarg.flags)."),
    f!(
        "evt.num",
        Int,
        None,
        EvtNum,
        "Event sequence number. mamori does not number events: always missing, so every comparison is false (Falco's never_true idiom `evt.num=0` stays never true)."
    ),
    f!("syscall.type", String, None, SyscallType, "The syscall name (same as evt.type for the syscalls mamori captures)."),
    f!("proc.pid", Int, None, ProcPid, "Process id (tgid)."),
    f!("proc.ppid", Int, None, ProcPpid, "Parent process id."),
    f!("proc.name", String, None, ProcName, "Process name (the task comm, at most 15 bytes)."),
    f!("proc.exe", String, None, ProcExe, "First command-line argument (argv[0]); the exe path if argv is empty."),
    f!("proc.exepath", String, None, ProcExePath, "Full path of the executable."),
    f!("proc.cmdline", String, None, ProcCmdline, "proc.name followed by the arguments, space separated."),
    f!("proc.args", String, None, ProcArgs, "Arguments (argv[1..]) joined with spaces."),
    f!("proc.cmdnargs", Int, None, ProcCmdNArgs, "Number of arguments (argv[1..])."),
    f!("proc.cwd", String, None, ProcCwd, "Current working directory, when known."),
    f!("proc.is_exe_from_memfd", Bool, None, ProcIsExeFromMemfd, "true if the process's image was loaded from a memfd (a fileless exec: memfd_create then fexecve); proc.exepath is then memfd:NAME."),
    f!("proc.tty", Int, None, ProcTty, "Controlling terminal of the process (tty_nr device number); 0 if it has none."),
    f!(
        "proc.duration",
        Int,
        None,
        ProcDuration,
        "Nanoseconds since the process started (missing when the start time is unknown)."
    ),
    f!("proc.pname", String, None, ProcPName, "Name of the parent process."),
    f!("proc.pexe", String, None, ProcPExe, "argv[0] of the parent process."),
    f!("proc.pexepath", String, None, ProcPExePath, "Executable path of the parent process."),
    f!("proc.pcmdline", String, None, ProcPCmdline, "Command line of the parent process."),
    f!("proc.aname", String, Ancestor, ProcAName, "Name of an ancestor: [0] is the process itself, [1] the parent, ...; without an index, any ancestor (parent and up)."),
    f!("proc.apid", Int, Ancestor, ProcAPid, "Pid of an ancestor, indexed like proc.aname."),
    f!("proc.aexe", String, Ancestor, ProcAExe, "argv[0] of an ancestor, indexed like proc.aname."),
    f!("proc.aexepath", String, Ancestor, ProcAExePath, "Executable path of an ancestor, indexed like proc.aname."),
    f!("proc.acmdline", String, Ancestor, ProcACmdline, "Command line of an ancestor, indexed like proc.aname."),
    f!("proc.loginshellid", Int, None, ProcLoginShellId, "Pid of the oldest shell (a name ending in `sh`) among the process and its ancestors, as Falco: one value per login session or shell tree; absent when there is none."),
    f!("thread.tid", Int, None, ThreadTid, "Thread id."),
    f!("thread.cap_effective", String, None, ThreadCapEffective, "The thread's effective capabilities after the syscall (CAP_CHOWN CAP_SYS_ADMIN ...), read from its credentials in the kernel; on the table-driven syscalls (socket, dup, ptrace, init_module, ...), missing on other events."),
    f!("thread.cap_permitted", String, None, ThreadCapPermitted, "The thread's permitted capabilities, as thread.cap_effective."),
    f!("thread.cap_inheritable", String, None, ThreadCapInheritable, "The thread's inheritable capabilities, as thread.cap_effective."),
    f!("user.uid", Int, None, UserUid, "User id."),
    f!("user.name", String, None, UserName, "User name (from the host's passwd, when resolved)."),
    f!("user.loginuid", Int, None, UserLoginUid, "Audit login uid; -1 when unset."),
    f!("group.gid", Int, None, GroupGid, "Group id."),
    f!("fd.num", Int, None, FdNum, "File descriptor number (-1 if none)."),
    f!("fd.type", String, None, FdType, "Type of the fd: file, directory, ipv4, ipv6, unix, unknown."),
    f!("fd.typechar", String, None, FdTypeChar, "Type of the fd as one character: f, d, 4, 6, u, ?."),
    f!("fd.name", String, None, FdName, "Full path for files; client_ip:port->server_ip:port for IP sockets; the path for unix sockets."),
    f!(
        "fd.nameraw",
        String,
        None,
        FdNameRaw,
        "The path exactly as passed to the syscall (not made absolute, not normalized)."
    ),
    f!(
        "fd.connected",
        Bool,
        None,
        FdConnected,
        "For sockets: true if the connect succeeded or is in progress (EINPROGRESS)."
    ),
    f!("fd.sip.name", String, None, FdSipName, "Server IP compared by host name: fd.sip.name = \"kubernetes.default.svc.cluster.local\" matches the addresses the name has in /etc/hosts or, in a pod, the API server's service address. mamori sends no DNS queries; the value itself is not rendered (<NA>)."),
    f!("fd.rip.name", String, None, FdRipName, "Remote IP compared by host name (see fd.sip.name)."),
    f!("fd.cip.name", String, None, FdCipName, "Client IP compared by host name (see fd.sip.name)."),
    f!("fd.lip.name", String, None, FdLipName, "Local IP compared by host name (see fd.sip.name)."),
    f!("fd.name_changed", Bool, None, FdNameChanged, "true when the event gave the fd its name: a connect (which sets the socket's tuple); false for other events on an fd."),
    f!("fd.directory", String, None, FdDirectory, "Directory part of fd.name for files."),
    f!("fd.filename", String, None, FdFilename, "File name part of fd.name for files."),
    f!("fd.sockfamily", String, None, FdSockFamily, "ip or unix for sockets."),
    f!("fd.l4proto", String, None, FdL4Proto, "IP protocol: tcp, udp, icmp, raw."),
    f!("fd.cip", Ip, None, FdCip, "Client IP address (for connect: the local side)."),
    f!("fd.sip", Ip, None, FdSip, "Server IP address (for connect: the remote side)."),
    f!("fd.lip", Ip, None, FdLip, "Local IP address."),
    f!("fd.rip", Ip, None, FdRip, "Remote IP address."),
    f!("fd.cport", Port, None, FdCport, "Client port."),
    f!("fd.sport", Port, None, FdSport, "Server port."),
    f!("fd.lport", Port, None, FdLport, "Local port."),
    f!("fd.rport", Port, None, FdRport, "Remote port."),
    f!("fd.ip", Ip, None, FdIp, "Matches either the client or the server IP."),
    f!("fd.port", Port, None, FdPort, "Matches either the client or the server port."),
    f!("fd.net", IpNet, None, FdNet, "Matches the client or server IP against a CIDR (fd.net = 10.0.0.0/8)."),
    f!("fd.cnet", IpNet, None, FdCnet, "Matches the client IP against a CIDR."),
    f!("fd.snet", IpNet, None, FdSnet, "Matches the server IP against a CIDR."),
    f!("fd.lnet", IpNet, None, FdLnet, "Matches the local IP against a CIDR."),
    f!("fd.rnet", IpNet, None, FdRnet, "Matches the remote IP against a CIDR."),
    f!("container.id", String, None, ContainerId, "Container id (12 chars) or 'host'; missing before enrichment."),
    f!("container.name", String, None, ContainerName, "Container name."),
    f!("container.image", String, None, ContainerImage, "Container image (repository:tag)."),
    f!("container.image.repository", String, None, ContainerImageRepository, "Container image repository."),
    f!("container.image.tag", String, None, ContainerImageTag, "Container image tag."),
    f!("container.image.digest", String, None, ContainerImageDigest, "Container image digest (sha256:...), when the runtime reports it."),
    f!("container.privileged", Bool, None, ContainerPrivileged, "true for a privileged container, when its runtime or the pod spec says."),
    f!("container.type", String, None, ContainerType, "Container runtime: containerd, cri-o, docker, podman."),
    f!("container.full_id", String, None, ContainerFullId, "The full (64 hex) container id."),
    f!("container.start_ts", Int, None, ContainerStartTs, "Container start time in nanoseconds since the Unix epoch, as its runtime reports it."),
    f!("k8s.ns.name", String, None, K8sNsName, "Kubernetes namespace of the pod (missing outside Kubernetes)."),
    f!("k8s.pod.name", String, None, K8sPodName, "Kubernetes pod name (missing outside Kubernetes)."),
    f!("k8s.pod.uid", String, None, K8sPodUid, "Kubernetes pod uid."),
    f!("k8s.pod.label", String, Key, K8sPodLabel, "The value of one pod label: k8s.pod.label[app] (or k8s.pod.label.app)."),
    f!("k8s.pod.labels", String, None, K8sPodLabels, "Kubernetes pod labels as key:value pairs, sorted by key, separated by ', '."),
    f!("k8s.workload.kind", String, None, K8sWorkloadKind, "Kind of the workload that owns the pod: Deployment, DaemonSet, StatefulSet, Job, CronJob, ReplicaSet, ..."),
    f!("k8s.workload.name", String, None, K8sWorkloadName, "Name of the workload that owns the pod (the Deployment, not its ReplicaSet)."),
    f!("k8s.sa.name", String, None, K8sSaName, "Service account of the pod."),
    f!("flow.bytes_out", Int, None, FlowBytesOut, "mamori extension (evt.type = flow): bytes the connection sent since its previous flow report (the whole connection when it closed before an interim report)."),
    f!("flow.bytes_in", Int, None, FlowBytesIn, "mamori extension (flow): bytes received since the previous flow report."),
    f!("flow.bytes", Int, None, FlowBytes, "mamori extension (flow): flow.bytes_out + flow.bytes_in."),
    f!("flow.duration", Int, None, FlowDuration, "mamori extension (flow): nanoseconds since mamori first saw the connection (its connect, or its first byte)."),
    f!("flow.state", String, None, FlowState, "mamori extension (flow): open (an interim report of a live connection), closed, or failed (closed without being established: a refused, reset or timed-out connect, blocking or not)."),
    f!("dns.qname", String, None, DnsQname, "mamori extension (evt.type = dns): the question's name, without the final dot; non-printable bytes as \\xNN."),
    f!("dns.qtype", String, None, DnsQtype, "mamori extension (dns): the question's type: A, AAAA, TXT, NULL, MX, ... or TYPEnnn."),
    f!("dns.domain", String, None, DnsDomain, "mamori extension (dns): the last two labels of dns.qname (example.com), what a tunnel varies its subdomains under."),
    f!("dns.server", Ip, None, DnsServer, "mamori extension (dns): the server the question was sent to (fd.rip)."),
    f!("dns.labels", Int, None, DnsLabels, "mamori extension (dns): number of labels in dns.qname."),
    f!("dns.longest_label", Int, None, DnsLongestLabel, "mamori extension (dns): length of the longest label (at most 63)."),
    f!("dns.entropy", Int, None, DnsEntropy, "mamori extension (dns): Shannon entropy of the labels left of dns.domain, in hundredths of a bit per character (0 to ~600): ordinary names score under ~350, base32/base64/hex-encoded data above."),
];

/// A field bound to its argument, ready to extract.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub info: &'static FieldInfo,
    pub arg: FieldArg,
}

// Value constructors the class modules share.

#[inline]
fn s(v: &str) -> Value<'_> {
    Value::Str(Cow::Borrowed(v))
}

#[inline]
fn owned(v: String) -> Value<'static> {
    Value::Str(Cow::Owned(v))
}

#[inline]
fn opt_str(v: Option<&str>) -> Value<'_> {
    v.map(s).unwrap_or(Value::Missing)
}

/// Fast accessor of a plain string field.
pub(crate) type StrGetter = for<'c> fn(&'c EvalCtx<'_>) -> Option<&'c str>;
/// Fast accessor of a plain integer field.
pub(crate) type IntGetter = fn(&Event) -> Option<i64>;

impl Field {
    pub(crate) fn ty(&self) -> FieldType {
        self.info.ty
    }

    pub(crate) fn id(&self) -> FieldId {
        self.info.id
    }

    /// A direct accessor for plain string fields (no transformer, no list):
    /// the evaluator's fast path, skipping [`Value`] construction.
    pub(crate) fn str_getter(&self) -> Option<StrGetter> {
        use FieldId as F;
        let g: StrGetter = match (self.info.id, self.arg) {
            (F::ProcName, _) => |cx| Some(&cx.ev.proc.name),
            (F::ProcExe, _) => |cx| Some(cx.ev.proc.exe()),
            (F::ProcExePath, _) => |cx| Some(&cx.ev.proc.exepath),
            (F::ProcCwd, _) => |cx| cx.ev.proc.cwd.as_deref(),
            (F::ProcArgs, _) => |cx| Some(cx.args()),
            (F::ProcCmdline, _) => |cx| Some(cx.cmdline()),
            (F::ProcPName, _) => |cx| cx.ev.proc.ancestors.first().map(|a| a.name.as_str()),
            (F::ProcPExePath, _) => |cx| cx.ev.proc.ancestors.first().map(|a| a.exepath.as_str()),
            (F::FdName, _) => |cx| cx.ev.fd.as_ref().map(|f| f.name.as_str()),
            (F::ContainerId, _) => |cx| cx.ev.container.as_ref().map(|c| c.id.as_str()),
            (F::UserName, _) => |cx| cx.ev.proc.user.as_deref(),
            (F::EvtType | F::SyscallType, _) => |cx| Some(cx.ev.evt_type.as_str()),
            _ => return None,
        };
        Some(g)
    }

    /// For either-end fields (`fd.ip`, `fd.net`, `fd.port`): the client-side
    /// and server-side fields they combine.
    pub(crate) fn either_ends(&self) -> Option<(Field, Field)> {
        let (a, b) = match self.info.id {
            FieldId::FdIp => ("fd.cip", "fd.sip"),
            FieldId::FdNet => ("fd.cnet", "fd.snet"),
            FieldId::FdPort => ("fd.cport", "fd.sport"),
            _ => return None,
        };
        Some((resolve(a, None).ok()?, resolve(b, None).ok()?))
    }

    /// A direct accessor for plain integer fields (the fast path).
    pub(crate) fn int_getter(&self) -> Option<IntGetter> {
        use FieldId as F;
        let g: IntGetter = match self.info.id {
            F::ProcPid => |ev| Some(ev.proc.pid as i64),
            F::ProcPpid => |ev| Some(ev.proc.ppid as i64),
            F::UserUid => |ev| Some(ev.proc.uid as i64),
            F::UserLoginUid => |ev| Some(ev.proc.loginuid),
            F::GroupGid => |ev| Some(ev.proc.gid as i64),
            F::EvtRawRes => |ev| Some(ev.res),
            F::FdNum => |ev| ev.fd.as_ref().map(|f| f.num),
            F::ProcTty => |ev| Some(ev.proc.tty as i64),
            _ => return None,
        };
        Some(g)
    }

    /// For "any ancestor" fields (`proc.aname` without index): call `f` on
    /// each ancestor's value, parent first, until it returns true. Returns
    /// `None` for other fields. Avoids building a list per check.
    pub(crate) fn any_ancestor(
        &self,
        ev: &Event,
        mut f: impl FnMut(Value<'_>) -> bool,
    ) -> Option<bool> {
        if self.arg != FieldArg::AnyAncestor {
            return None;
        }
        Some(
            ev.proc
                .ancestors
                .iter()
                .any(|a| f(ancestor_value(&Anc::Up(a), self.info.id))),
        )
    }

    /// Read the field through a per-event memo (see [`EvalCtx`]).
    pub(crate) fn extract_in<'c>(&self, cx: &'c EvalCtx<'_>) -> Value<'c> {
        match self.info.id {
            FieldId::ProcArgs => s(cx.args()),
            FieldId::ProcCmdline => s(cx.cmdline()),
            FieldId::ProcPCmdline => opt_str(cx.pcmdline()),
            FieldId::EvtArg if event::reads_open_flags(self, cx.ev) => match cx.ev.open.as_ref() {
                Some(o) => s(cx.open_flags(o.flags)),
                None => Value::Missing,
            },
            _ => self.extract(cx.ev),
        }
    }

    pub(crate) fn extract<'a>(&self, ev: &'a Event) -> Value<'a> {
        match self.info.id.class() {
            Class::Event => event::extract(self, ev),
            Class::Process => process::extract(self, ev),
            Class::Fd => fd::extract(self, ev),
            Class::Container => container::extract(self, ev),
            Class::Net => net::extract(self, ev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Ancestor, EvtType, Fd, FdType, OpenArgs, Process};

    /// An `openat` of `/etc/shadow` by `cat` under `bash` under `sshd`,
    /// failed with ENOENT: the fixture of every class's tests.
    pub(super) fn ev() -> Event {
        Event {
            ts: 1_700_000_000_123_456_789,
            evt_type: EvtType::Openat,
            res: -2,
            proc: Process {
                pid: 10,
                name: "cat".into(),
                exepath: "/usr/bin/cat".into(),
                argv: vec!["cat".into(), "/etc/shadow".into()],
                ancestors: vec![
                    Ancestor {
                        pid: 9,
                        name: "bash".into(),
                        exepath: "/bin/bash".into(),
                        argv: vec!["-bash".into()],
                    },
                    Ancestor {
                        pid: 1,
                        name: "sshd".into(),
                        ..Default::default()
                    },
                ]
                .into(),
                ..Default::default()
            },
            fd: Some(Fd {
                fd_type: FdType::File,
                num: -1,
                name: "/etc/shadow".into(),
                sip: None,
                sport: None,
                rip: None,
                rport: None,
                l4proto: None,
                server: false,
            }),
            open: Some(OpenArgs {
                flags: 0o2000000,
                path: "/etc/shadow".into(),
                ..Default::default()
            }),
            exec: None,
            lifecycle: None,
            container: None,
            drops: None,
            args: None,
            caps: None,
            flow: None,
            dns: None,
        }
    }

    pub(super) fn get(name: &str, arg: Option<&str>, e: &Event) -> String {
        let mut out = String::new();
        resolve(name, arg).unwrap().extract(e).render(&mut out);
        out
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
    }

    #[test]
    fn field_ids_are_grouped_by_class() {
        for f in FIELDS {
            let class = match f.name.split('.').next() {
                Some("evt" | "syscall") => Class::Event,
                Some("proc" | "thread" | "user" | "group") => Class::Process,
                Some("fd") => Class::Fd,
                Some("container" | "k8s") => Class::Container,
                Some("flow" | "dns") => Class::Net,
                _ => panic!("{}: no class", f.name),
            };
            assert_eq!(f.id.class(), class, "{}", f.name);
        }
    }
}
