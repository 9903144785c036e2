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

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::event::{Event, EvtType, FdType};

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
    ThreadTid,
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
    K8sNsName,
    K8sPodName,
    K8sPodUid,
    K8sPodLabels,
    K8sPodLabel,
    K8sWorkloadKind,
    K8sWorkloadName,
    K8sSaName,
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
    f!("evt.type", String, None, EvtType, "Event type: execve, execveat, open, openat, openat2, creat, connect, clone, procexit, drop."),
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
    f!("evt.arg", String, SyscallArg, EvtArg, "A syscall argument by name (evt.arg.flags) or index (evt.arg[0]), rendered as text. Names: fd, dirfd, name, flags, mode, resolve (open family); res, exe, args, filename, cwd, pid, tid, ptid (exec, clone); res, tuple, fd (connect); status (procexit)."),
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
    f!("thread.tid", Int, None, ThreadTid, "Thread id."),
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
    f!("container.privileged", Bool, None, ContainerPrivileged, "true for a privileged container, when the pod spec is known."),
    f!("container.type", String, None, ContainerType, "Container runtime: containerd, cri-o, docker, podman."),
    f!("container.full_id", String, None, ContainerFullId, "The full (64 hex) container id."),
    f!("k8s.ns.name", String, None, K8sNsName, "Kubernetes namespace of the pod (missing outside Kubernetes)."),
    f!("k8s.pod.name", String, None, K8sPodName, "Kubernetes pod name (missing outside Kubernetes)."),
    f!("k8s.pod.uid", String, None, K8sPodUid, "Kubernetes pod uid."),
    f!("k8s.pod.label", String, Key, K8sPodLabel, "The value of one pod label: k8s.pod.label[app] (or k8s.pod.label.app)."),
    f!("k8s.pod.labels", String, None, K8sPodLabels, "Kubernetes pod labels as key:value pairs, sorted by key, separated by ', '."),
    f!("k8s.workload.kind", String, None, K8sWorkloadKind, "Kind of the workload that owns the pod: Deployment, DaemonSet, StatefulSet, Job, CronJob, ReplicaSet, ..."),
    f!("k8s.workload.name", String, None, K8sWorkloadName, "Name of the workload that owns the pod (the Deployment, not its ReplicaSet)."),
    f!("k8s.sa.name", String, None, K8sSaName, "Service account of the pod."),
];

/// Falco field names mamori does not provide. A rule using one loads as
/// inactive with that reason (a name in neither table is a typo: an error).
/// Entries ending in `.` or `_` are prefixes covering a family.
pub static FALCO_ONLY: &[&str] = &[
    "evt.time.s",
    "evt.datetime",
    "evt.datetime.s",
    "evt.deltatime",
    "evt.deltatime.s",
    "evt.deltatime.ns",
    "evt.outputtime",
    "evt.latency",
    "evt.latency.s",
    "evt.latency.ns",
    "evt.latency.human",
    "evt.cpu",
    "evt.args",
    "evt.info",
    "evt.buffer",
    "evt.buflen",
    "evt.is_io",
    "evt.is_io_read",
    "evt.is_io_write",
    "evt.io_dir",
    "evt.is_wait",
    "evt.wait_latency",
    "evt.is_syslog",
    "evt.count",
    "evt.count.",
    "evt.around",
    "evt.abspath",
    "evt.abspath.",
    "evt.is_open_exec_",
    "evt.plugininfo",
    "evt.source",
    "evt.pluginname",
    "evt.hostname",
    "evt.is_async",
    "evt.asynctype",
    "evt.rawtime.s",
    "evt.rawtime.ns",
    "evt.reltime",
    "evt.reltime.s",
    "evt.reltime.ns",
    "evt.pluginoffset",
    "evt.res_or_fd",
    "proc.env",
    "proc.sname",
    "proc.sid",
    "proc.sid.",
    "proc.vpgid",
    "proc.vpgid.",
    "proc.is_vpgid_leader",
    "proc.is_sid_leader",
    "proc.vpid",
    "proc.pvpid",
    "proc.ppid.duration",
    "proc.pid.ts",
    "proc.ppid.ts",
    "proc.is_exe_writable",
    "proc.is_exe_upper_layer",
    "proc.is_exe_lower_layer",
    "proc.is_exe_from_memfd",
    "proc.exe_ino",
    "proc.exe_ino.",
    "proc.fdopencount",
    "proc.fdopenlimit",
    "proc.fdlimit",
    "proc.fdusage",
    "proc.vmsize",
    "proc.vmrss",
    "proc.vmswap",
    "proc.pfmajor",
    "proc.pfminor",
    "proc.stdin.",
    "proc.stdout.",
    "proc.stderr.",
    "proc.nthreads",
    "proc.nchilds",
    "proc.loginshellid",
    "proc.is_container_healthcheck",
    "proc.is_container_liveness_probe",
    "proc.is_container_readiness_probe",
    "proc.cmdlenargs",
    "proc.exeline",
    "proc.pid.",
    "proc.aenv",
    "proc.cgroup",
    "proc.pgid",
    "thread.cap_",
    "thread.exectime",
    "thread.totexectime",
    "thread.vtid",
    "thread.ismain",
    "thread.nametid",
    "thread.cgroups",
    "thread.cgroup",
    "thread.cgroup.",
    "thread.vmsize",
    "thread.vmrss",
    "thread.pfmajor",
    "thread.pfminor",
    "user.loginname",
    "user.homedir",
    "user.shell",
    "group.name",
    "fd.types",
    "fd.dev",
    "fd.dev.",
    "fd.ino",
    "fd.uid",
    "fd.containername",
    "fd.containerdirectory",
    "fd.cproto",
    "fd.sproto",
    "fd.lproto",
    "fd.rproto",
    "fd.is_server",
    "fd.is_upper_layer",
    "fd.is_lower_layer",
    "fd.open_flags",
    "fd.rawname",
    "fdlist.",
    "fs.path.",
    "container.start_ts",
    "container.image.id",
    "container.mounts",
    "container.mount",
    "container.mount.",
    "container.healthcheck",
    "container.liveness_probe",
    "container.readiness_probe",
    "container.duration",
    "container.ip",
    "container.cni.json",
    "container.host_pid",
    "container.host_network",
    "container.host_ipc",
    "container.label",
    "container.label.",
    "container.labels",
    "container.info",
    "container.user",
    "k8s.",
    "ka.",
    "mesos.",
    "marathon.",
    "span.",
    "evtin.",
    "syslog.",
];

/// Syscall argument names mamori can answer for `evt.arg.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SysArg {
    Fd,
    Dirfd,
    Name,
    Flags,
    Mode,
    Resolve,
    Res,
    Exe,
    Args,
    Filename,
    Cwd,
    Pid,
    Tid,
    Ptid,
    Tuple,
    Status,
    /// An argument none of mamori's event types has (`oldpath` of rename,
    /// `uid` of setuid): always missing, exactly as Falco sees it on these events.
    Absent,
}

impl SysArg {
    fn from_name(s: &str) -> Option<SysArg> {
        Some(match s {
            "fd" => SysArg::Fd,
            "dirfd" => SysArg::Dirfd,
            "name" | "path" => SysArg::Name,
            "flags" => SysArg::Flags,
            "mode" => SysArg::Mode,
            "resolve" => SysArg::Resolve,
            "res" => SysArg::Res,
            "exe" => SysArg::Exe,
            "args" => SysArg::Args,
            "filename" => SysArg::Filename,
            "cwd" => SysArg::Cwd,
            "pid" => SysArg::Pid,
            "tid" => SysArg::Tid,
            "ptid" => SysArg::Ptid,
            "tuple" => SysArg::Tuple,
            "status" => SysArg::Status,
            _ => return None,
        })
    }

    /// Positional argument `evt.arg[n]` of an exit event, as Falco numbers them.
    fn by_index(t: EvtType, n: usize) -> Option<SysArg> {
        use SysArg::*;
        let table: &[SysArg] = match t {
            EvtType::Open => &[Fd, Name, Flags, Mode],
            EvtType::Openat => &[Fd, Dirfd, Name, Flags, Mode],
            EvtType::Openat2 => &[Fd, Dirfd, Name, Flags, Mode, Resolve],
            EvtType::Creat => &[Fd, Name, Mode],
            EvtType::Execve | EvtType::Execveat | EvtType::Clone => {
                &[Res, Exe, Args, Tid, Pid, Ptid, Cwd]
            }
            EvtType::Connect => &[Res, Tuple, Fd],
            EvtType::Procexit => &[Status],
            EvtType::Drop => &[],
        };
        table.get(n).copied()
    }
}

/// A resolved field argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldArg {
    None,
    /// `proc.aname[n]`.
    Index(usize),
    /// `proc.aname` without an index: any ancestor.
    AnyAncestor,
    Arg(SysArg),
    ArgIndex(usize),
    /// `k8s.pod.label[key]` (interned: a rule file's keys live for the process).
    Key(&'static str),
}

/// Intern a key so [`Field`] stays `Copy`: each distinct key from a rule file
/// is stored once for the life of the process (bounded by the rule files).
fn intern(key: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(k) = set.get(key) {
        return k;
    }
    let k: &'static str = Box::leak(key.to_owned().into_boxed_str());
    set.insert(k);
    k
}

/// A field bound to its argument, ready to extract.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub info: &'static FieldInfo,
    pub arg: FieldArg,
}

/// Why a field name could not be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Not a field mamori or Falco knows (most likely a typo).
    Unknown,
    /// A Falco field mamori does not provide.
    Unsupported,
    /// Known field, wrong argument.
    BadArg(String),
}

/// Look a field up by name and optional `[arg]`.
pub fn resolve(name: &str, arg: Option<&str>) -> Result<Field, ResolveError> {
    // `evt.arg.flags` / `evt.rawarg.flags` carry their argument in the name.
    for (prefix, base) in [
        ("evt.arg.", "evt.arg"),
        ("evt.rawarg.", "evt.rawarg"),
        ("k8s.pod.label.", "k8s.pod.label"),
    ] {
        if let Some(key) = name.strip_prefix(prefix) {
            if arg.is_some() {
                return Err(ResolveError::BadArg(format!("{name} takes no [argument]")));
            }
            return bind(base, Some(key));
        }
    }
    bind(name, arg)
}

fn bind(name: &str, arg: Option<&str>) -> Result<Field, ResolveError> {
    let Some(info) = FIELDS.iter().find(|f| f.name == name) else {
        return Err(if is_falco_only(name) {
            ResolveError::Unsupported
        } else {
            ResolveError::Unknown
        });
    };
    let arg = match (info.arg, arg) {
        (ArgKind::None, None) => FieldArg::None,
        (ArgKind::None, Some(_)) => {
            return Err(ResolveError::BadArg(format!("{name} takes no [argument]")))
        }
        (ArgKind::Ancestor, None) => FieldArg::AnyAncestor,
        (ArgKind::Ancestor, Some(a)) => match a.trim().parse::<usize>() {
            Ok(n) => FieldArg::Index(n),
            Err(_) => {
                return Err(ResolveError::BadArg(format!(
                    "{name}[{a}]: the index must be a non-negative number"
                )))
            }
        },
        (ArgKind::SyscallArg, None) => {
            return Err(ResolveError::BadArg(format!(
                "{name} needs an argument name or index ({name}.flags, {name}[0])"
            )))
        }
        (ArgKind::Key, Some(a)) if !a.is_empty() => FieldArg::Key(intern(a)),
        (ArgKind::Key, _) => {
            return Err(ResolveError::BadArg(format!(
                "{name} needs a key ({name}[app] or {name}.app)"
            )))
        }
        (ArgKind::SyscallArg, Some(a)) => {
            if let Ok(n) = a.parse::<usize>() {
                FieldArg::ArgIndex(n)
            } else if let Some(s) = SysArg::from_name(a) {
                FieldArg::Arg(s)
            } else if matches!(a, "dev" | "ino") {
                // Real arguments of the open family that mamori does not capture.
                return Err(ResolveError::Unsupported);
            } else {
                // An argument of a syscall mamori does not capture (uid of
                // setuid, oldpath of rename): absent on mamori's events.
                FieldArg::Arg(SysArg::Absent)
            }
        }
    };
    Ok(Field { info, arg })
}

fn is_falco_only(name: &str) -> bool {
    FALCO_ONLY.iter().any(|p| {
        if p.ends_with('.') || p.ends_with('_') {
            name.starts_with(p)
        } else {
            name == *p
        }
    })
}

/// An extracted value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// The field has no value for this event (`<NA>`).
    Missing,
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Several values (any ancestor; client-or-server address): an operator
    /// is true if it is true for any element.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// Append the Falco text rendering (`<NA>` when missing).
    pub fn render(&self, out: &mut String) {
        match self {
            Value::Missing => out.push_str("<NA>"),
            Value::Str(s) => out.push_str(s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Value::List(v) => {
                if v.is_empty() {
                    out.push_str("<NA>");
                }
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.render(out);
                }
            }
        }
    }

    /// Detach from the event it was read from.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Missing => Value::Missing,
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Int(n) => Value::Int(n),
            Value::Bool(b) => Value::Bool(b),
            Value::Ip(ip) => Value::Ip(ip),
            Value::List(v) => Value::List(v.into_iter().map(Value::into_owned).collect()),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Missing => serde_json::Value::Null,
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Ip(ip) => serde_json::Value::String(ip.to_string()),
            Value::List(v) => serde_json::Value::Array(v.iter().map(|x| x.to_json()).collect()),
        }
    }
}

fn s(v: &str) -> Value<'_> {
    Value::Str(Cow::Borrowed(v))
}

fn owned(v: String) -> Value<'static> {
    Value::Str(Cow::Owned(v))
}

fn opt_str(v: Option<&str>) -> Value<'_> {
    v.map(s).unwrap_or(Value::Missing)
}

fn cmdline(name: &str, argv: &[String]) -> String {
    let mut out = name.to_string();
    for a in argv.iter().skip(1) {
        out.push(' ');
        out.push_str(a);
    }
    out
}

/// The n-th process in the ancestry: 0 = the process itself.
enum Anc<'a> {
    Me(&'a crate::event::Process),
    Up(&'a crate::event::Ancestor),
}

impl<'a> Anc<'a> {
    fn name(&self) -> &'a str {
        match self {
            Anc::Me(p) => &p.name,
            Anc::Up(a) => &a.name,
        }
    }
    fn pid(&self) -> u32 {
        match self {
            Anc::Me(p) => p.pid,
            Anc::Up(a) => a.pid,
        }
    }
    fn exepath(&self) -> &'a str {
        match self {
            Anc::Me(p) => &p.exepath,
            Anc::Up(a) => &a.exepath,
        }
    }
    fn argv(&self) -> &'a [String] {
        match self {
            Anc::Me(p) => &p.argv,
            Anc::Up(a) => &a.argv,
        }
    }
    fn exe(&self) -> &'a str {
        self.argv()
            .first()
            .map(String::as_str)
            .unwrap_or_else(|| self.exepath())
    }
}

fn ancestor_value<'a>(a: &Anc<'a>, id: FieldId) -> Value<'a> {
    match id {
        FieldId::ProcAName | FieldId::ProcPName => s(a.name()),
        FieldId::ProcAPid => Value::Int(a.pid() as i64),
        FieldId::ProcAExe | FieldId::ProcPExe => s(a.exe()),
        FieldId::ProcAExePath | FieldId::ProcPExePath => s(a.exepath()),
        _ => owned(cmdline(a.name(), a.argv())),
    }
}

/// x86_64 `O_*` flag names, access mode first, as Falco renders them.
const OPEN_FLAGS: &[(u32, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

/// Render open flags the way Falco prints `evt.arg.flags`: `O_RDONLY|O_CLOEXEC`.
pub fn render_open_flags(flags: u32) -> String {
    let mut out = String::from(match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    });
    for (bit, name) in OPEN_FLAGS {
        if flags & bit != 0 {
            out.push('|');
            out.push_str(name);
        }
    }
    out
}

/// Errno name for a positive errno (x86_64 numbering).
pub fn errno_name(e: i64) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "",
        "EPERM",
        "ENOENT",
        "ESRCH",
        "EINTR",
        "EIO",
        "ENXIO",
        "E2BIG",
        "ENOEXEC",
        "EBADF",
        "ECHILD",
        "EAGAIN",
        "ENOMEM",
        "EACCES",
        "EFAULT",
        "ENOTBLK",
        "EBUSY",
        "EEXIST",
        "EXDEV",
        "ENODEV",
        "ENOTDIR",
        "EISDIR",
        "EINVAL",
        "ENFILE",
        "EMFILE",
        "ENOTTY",
        "ETXTBSY",
        "EFBIG",
        "ENOSPC",
        "ESPIPE",
        "EROFS",
        "EMLINK",
        "EPIPE",
        "EDOM",
        "ERANGE",
        "EDEADLK",
        "ENAMETOOLONG",
        "ENOLCK",
        "ENOSYS",
        "ENOTEMPTY",
        "ELOOP",
        "",
        "ENOMSG",
        "EIDRM",
        "ECHRNG",
        "EL2NSYNC",
        "EL3HLT",
        "EL3RST",
        "ELNRNG",
        "EUNATCH",
        "ENOCSI",
        "EL2HLT",
        "EBADE",
        "EBADR",
        "EXFULL",
        "ENOANO",
        "EBADRQC",
        "EBADSLT",
        "",
        "EBFONT",
        "ENOSTR",
        "ENODATA",
        "ETIME",
        "ENOSR",
        "ENONET",
        "ENOPKG",
        "EREMOTE",
        "ENOLINK",
        "EADV",
        "ESRMNT",
        "ECOMM",
        "EPROTO",
        "EMULTIHOP",
        "EDOTDOT",
        "EBADMSG",
        "EOVERFLOW",
        "ENOTUNIQ",
        "EBADFD",
        "EREMCHG",
        "ELIBACC",
        "ELIBBAD",
        "ELIBSCN",
        "ELIBMAX",
        "ELIBEXEC",
        "EILSEQ",
        "ERESTART",
        "ESTRPIPE",
        "EUSERS",
        "ENOTSOCK",
        "EDESTADDRREQ",
        "EMSGSIZE",
        "EPROTOTYPE",
        "ENOPROTOOPT",
        "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT",
        "EOPNOTSUPP",
        "EPFNOSUPPORT",
        "EAFNOSUPPORT",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ENOBUFS",
        "EISCONN",
        "ENOTCONN",
        "ESHUTDOWN",
        "ETOOMANYREFS",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "EALREADY",
        "EINPROGRESS",
        "ESTALE",
        "EUCLEAN",
        "ENOTNAM",
        "ENAVAIL",
        "EISNAM",
        "EREMOTEIO",
        "EDQUOT",
        "ENOMEDIUM",
        "EMEDIUMTYPE",
        "ECANCELED",
        "ENOKEY",
        "EKEYEXPIRED",
        "EKEYREVOKED",
        "EKEYREJECTED",
        "EOWNERDEAD",
        "ENOTRECOVERABLE",
        "ERFKILL",
        "EHWPOISON",
    ];
    usize::try_from(e)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
}

fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' separates the tag (a ':' before it is a registry port).
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// Fast accessor of a plain string field.
pub type StrGetter = for<'c> fn(&'c EvalCtx<'_>) -> Option<&'c str>;
/// Fast accessor of a plain integer field.
pub type IntGetter = fn(&Event) -> Option<i64>;

/// Per-event memo of the composed string fields, so a rule set that reads
/// `proc.args` twenty times (Falco's credential-search macros do) builds it
/// once per event, and not at all for events no rule asks it of.
pub struct EvalCtx<'e> {
    pub ev: &'e Event,
    args: std::cell::OnceCell<String>,
    cmdline: std::cell::OnceCell<String>,
    pcmdline: std::cell::OnceCell<Option<String>>,
}

impl<'e> EvalCtx<'e> {
    pub fn new(ev: &'e Event) -> Self {
        EvalCtx {
            ev,
            args: std::cell::OnceCell::new(),
            cmdline: std::cell::OnceCell::new(),
            pcmdline: std::cell::OnceCell::new(),
        }
    }
}

impl Field {
    pub fn name(&self) -> &'static str {
        self.info.name
    }

    pub fn ty(&self) -> FieldType {
        self.info.ty
    }

    pub fn id(&self) -> FieldId {
        self.info.id
    }

    /// A direct accessor for plain string fields (no transformer, no list):
    /// the evaluator's fast path, skipping [`Value`] construction.
    pub fn str_getter(&self) -> Option<StrGetter> {
        use FieldId as F;
        let g: StrGetter = match (self.info.id, self.arg) {
            (F::ProcName, _) => |cx| Some(&cx.ev.proc.name),
            (F::ProcExe, _) => |cx| Some(cx.ev.proc.exe()),
            (F::ProcExePath, _) => |cx| Some(&cx.ev.proc.exepath),
            (F::ProcCwd, _) => |cx| cx.ev.proc.cwd.as_deref(),
            (F::ProcArgs, _) => |cx| Some(cx.args.get_or_init(|| cx.ev.proc.args())),
            (F::ProcCmdline, _) => |cx| {
                Some(
                    cx.cmdline
                        .get_or_init(|| cmdline(&cx.ev.proc.name, &cx.ev.proc.argv)),
                )
            },
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
    pub fn either_ends(&self) -> Option<(Field, Field)> {
        let (a, b) = match self.info.id {
            FieldId::FdIp => ("fd.cip", "fd.sip"),
            FieldId::FdNet => ("fd.cnet", "fd.snet"),
            FieldId::FdPort => ("fd.cport", "fd.sport"),
            _ => return None,
        };
        Some((resolve(a, None).ok()?, resolve(b, None).ok()?))
    }

    /// A direct accessor for plain integer fields (the fast path).
    pub fn int_getter(&self) -> Option<IntGetter> {
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
    pub fn any_ancestor(&self, ev: &Event, mut f: impl FnMut(Value<'_>) -> bool) -> Option<bool> {
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
    pub fn extract_in<'c>(&self, cx: &'c EvalCtx<'_>) -> Value<'c> {
        let p = &cx.ev.proc;
        match self.info.id {
            FieldId::ProcArgs => s(cx.args.get_or_init(|| p.args())),
            FieldId::ProcCmdline => s(cx.cmdline.get_or_init(|| cmdline(&p.name, &p.argv))),
            FieldId::ProcPCmdline => opt_str(
                cx.pcmdline
                    .get_or_init(|| p.ancestors.first().map(|a| cmdline(&a.name, &a.argv)))
                    .as_deref(),
            ),
            _ => self.extract(cx.ev),
        }
    }

    /// Read the field from an event.
    pub fn extract<'a>(&self, ev: &'a Event) -> Value<'a> {
        use FieldId as F;
        let p = &ev.proc;
        let is_open = matches!(
            ev.evt_type,
            EvtType::Open | EvtType::Openat | EvtType::Openat2 | EvtType::Creat
        );
        let fd = ev.fd.as_ref();
        let is_file = || fd.is_some_and(|f| matches!(f.fd_type, FdType::File | FdType::Directory));
        match self.info.id {
            F::EvtType | F::SyscallType => s(ev.evt_type.as_str()),
            F::EvtDir => s("<"),
            F::EvtCategory => s(ev.evt_type.category()),
            F::EvtRes => {
                if ev.res >= 0 {
                    s("SUCCESS")
                } else {
                    errno_name(-ev.res)
                        .map(s)
                        .unwrap_or_else(|| owned(ev.res.to_string()))
                }
            }
            F::EvtRawRes => Value::Int(ev.res),
            F::EvtFailed => Value::Bool(ev.res < 0),
            F::EvtTime => owned(crate::timefmt::time_of_day_ns(ev.ts)),
            F::EvtTimeIso => owned(crate::timefmt::rfc3339_nanos(ev.ts)),
            F::EvtRawTime => Value::Int(ev.ts as i64),
            F::EvtIsOpenRead | F::EvtIsOpenWrite | F::EvtIsOpenExec | F::EvtIsOpenCreate => {
                let Some(o) = ev.open.as_ref().filter(|_| is_open) else {
                    return Value::Bool(false);
                };
                let acc = o.flags & 0o3;
                Value::Bool(match self.info.id {
                    F::EvtIsOpenRead => acc == 0 || acc == 2,
                    F::EvtIsOpenWrite => acc == 1 || acc == 2,
                    F::EvtIsOpenCreate => o.flags & 0o100 != 0 || ev.evt_type == EvtType::Creat,
                    _ => {
                        (o.flags & 0o100 != 0 || ev.evt_type == EvtType::Creat)
                            && o.mode & 0o111 != 0
                    }
                })
            }
            F::EvtArg | F::EvtRawArg => {
                let arg = match self.arg {
                    FieldArg::Arg(a) => Some(a),
                    FieldArg::ArgIndex(n) => SysArg::by_index(ev.evt_type, n),
                    _ => None,
                };
                match arg {
                    Some(a) => sys_arg(ev, a, self.info.id == F::EvtRawArg),
                    None => Value::Missing,
                }
            }
            F::ProcPid => Value::Int(p.pid as i64),
            F::ProcPpid => Value::Int(p.ppid as i64),
            F::ProcName => s(&p.name),
            F::ProcExe => s(p.exe()),
            F::ProcExePath => s(&p.exepath),
            F::ProcCmdline => owned(cmdline(&p.name, &p.argv)),
            F::ProcArgs => match p.argv.len() {
                0 | 1 => s(""),
                2 => s(&p.argv[1]),
                _ => owned(p.args()),
            },
            F::ProcCmdNArgs => Value::Int(p.argv.len().saturating_sub(1) as i64),
            F::ProcCwd => opt_str(p.cwd.as_deref()),
            F::ProcTty => Value::Int(p.tty as i64),
            F::ProcDuration => {
                if p.start_ts > 0 && ev.ts >= p.start_ts {
                    Value::Int((ev.ts - p.start_ts) as i64)
                } else {
                    Value::Missing
                }
            }
            F::EvtNum => Value::Missing,
            F::ProcPName | F::ProcPExe | F::ProcPExePath | F::ProcPCmdline => {
                match p.ancestors.first() {
                    Some(a) => ancestor_value(&Anc::Up(a), self.info.id),
                    None => Value::Missing,
                }
            }
            F::ProcAName | F::ProcAPid | F::ProcAExe | F::ProcAExePath | F::ProcACmdline => {
                match self.arg {
                    FieldArg::Index(0) => ancestor_value(&Anc::Me(p), self.info.id),
                    FieldArg::Index(n) => match p.ancestors.get(n - 1) {
                        Some(a) => ancestor_value(&Anc::Up(a), self.info.id),
                        None => Value::Missing,
                    },
                    _ => {
                        if p.ancestors.is_empty() {
                            Value::Missing
                        } else {
                            Value::List(
                                p.ancestors
                                    .iter()
                                    .map(|a| ancestor_value(&Anc::Up(a), self.info.id))
                                    .collect(),
                            )
                        }
                    }
                }
            }
            F::ThreadTid => Value::Int(if p.tid == 0 { p.pid } else { p.tid } as i64),
            F::UserUid => Value::Int(p.uid as i64),
            F::UserName => opt_str(p.user.as_deref()),
            F::UserLoginUid => Value::Int(p.loginuid),
            F::GroupGid => Value::Int(p.gid as i64),
            F::FdNum => fd.map(|f| Value::Int(f.num)).unwrap_or(Value::Missing),
            F::FdType => fd.map(|f| s(f.fd_type.as_str())).unwrap_or(Value::Missing),
            F::FdTypeChar => fd
                .map(|f| {
                    s(match f.fd_type.typechar() {
                        'f' => "f",
                        'd' => "d",
                        '4' => "4",
                        '6' => "6",
                        'u' => "u",
                        _ => "?",
                    })
                })
                .unwrap_or(Value::Missing),
            F::FdName => fd.map(|f| s(&f.name)).unwrap_or(Value::Missing),
            F::FdNameRaw => match ev.open.as_ref().filter(|_| is_open) {
                Some(o) => s(&o.path),
                None => fd.map(|f| s(&f.name)).unwrap_or(Value::Missing),
            },
            F::FdSipName | F::FdRipName | F::FdCipName | F::FdLipName => Value::Missing,
            F::FdNameChanged => fd
                .map(|_| Value::Bool(ev.evt_type == EvtType::Connect))
                .unwrap_or(Value::Missing),
            F::FdConnected => match fd.map(|f| f.fd_type) {
                Some(FdType::Ipv4 | FdType::Ipv6 | FdType::Unix) => {
                    Value::Bool(ev.evt_type == EvtType::Connect && (ev.res >= 0 || ev.res == -115))
                }
                _ => Value::Missing,
            },
            F::FdDirectory | F::FdFilename => match fd.filter(|_| is_file()) {
                Some(f) => {
                    let name = f.name.as_str();
                    if f.fd_type == FdType::Directory && self.info.id == F::FdDirectory {
                        return s(name);
                    }
                    match name.rfind('/') {
                        Some(i) if self.info.id == F::FdDirectory => {
                            s(if i == 0 { "/" } else { &name[..i] })
                        }
                        Some(i) => s(&name[i + 1..]),
                        None if self.info.id == F::FdFilename => s(name),
                        None => Value::Missing,
                    }
                }
                None => Value::Missing,
            },
            F::FdSockFamily => match fd.map(|f| f.fd_type) {
                Some(FdType::Ipv4 | FdType::Ipv6) => s("ip"),
                Some(FdType::Unix) => s("unix"),
                _ => Value::Missing,
            },
            F::FdL4Proto => opt_str(fd.and_then(|f| f.l4proto.as_deref())),
            F::FdCip
            | F::FdLip
            | F::FdSip
            | F::FdRip
            | F::FdCport
            | F::FdLport
            | F::FdSport
            | F::FdRport
            | F::FdIp
            | F::FdNet
            | F::FdPort
            | F::FdCnet
            | F::FdLnet
            | F::FdSnet
            | F::FdRnet => net_field(self.info.id, fd),
            F::ContainerId => opt_str(ev.container.as_ref().map(|c| c.id.as_str())),
            F::ContainerName => opt_str(ev.container.as_ref().and_then(|c| c.name.as_deref())),
            F::ContainerImage => opt_str(ev.container.as_ref().and_then(|c| c.image.as_deref())),
            F::ContainerImageRepository => opt_str(ev.container.as_ref().and_then(|c| {
                c.image_repository
                    .as_deref()
                    .or_else(|| c.image.as_deref().map(|i| split_image(i).0))
            })),
            F::ContainerImageTag => opt_str(ev.container.as_ref().and_then(|c| {
                c.image_tag
                    .as_deref()
                    .or_else(|| c.image.as_deref().and_then(|i| split_image(i).1))
            })),
            F::ContainerImageDigest => opt_str(
                ev.container
                    .as_ref()
                    .and_then(|c| c.image_digest.as_deref()),
            ),
            F::ContainerPrivileged => ev
                .container
                .as_ref()
                .and_then(|c| c.privileged)
                .map(Value::Bool)
                .unwrap_or(Value::Missing),
            F::ContainerType => opt_str(ev.container.as_ref().and_then(|c| c.runtime.as_deref())),
            F::ContainerFullId => opt_str(
                ev.container
                    .as_ref()
                    .map(|c| c.full_id.as_str())
                    .filter(|s| !s.is_empty()),
            ),
            F::K8sNsName => opt_str(pod(ev).and_then(|p| p.namespace.as_deref())),
            F::K8sPodName => opt_str(pod(ev).and_then(|p| p.name.as_deref())),
            F::K8sPodUid => opt_str(pod(ev).map(|p| p.uid.as_str())),
            F::K8sPodLabel => match (pod(ev), self.arg) {
                (Some(p), FieldArg::Key(k)) => opt_str(p.labels.get(k).map(String::as_str)),
                _ => Value::Missing,
            },
            F::K8sPodLabels => match pod(ev) {
                Some(p) if !p.labels.is_empty() => Value::Str(Cow::Owned(
                    p.labels
                        .iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
                _ => Value::Missing,
            },
            F::K8sWorkloadKind => opt_str(pod(ev).and_then(|p| p.workload_kind.as_deref())),
            F::K8sWorkloadName => opt_str(pod(ev).and_then(|p| p.workload_name.as_deref())),
            F::K8sSaName => opt_str(pod(ev).and_then(|p| p.service_account.as_deref())),
        }
    }
}

fn pod(ev: &Event) -> Option<&crate::event::Pod> {
    ev.container.as_ref().and_then(|c| c.pod.as_deref())
}

/// Address fields of a socket. For a connect, the local side is the client
/// and the remote side the server.
fn net_field(id: FieldId, fd: Option<&crate::event::Fd>) -> Value<'static> {
    use FieldId as F;
    let Some(f) = fd.filter(|f| matches!(f.fd_type, FdType::Ipv4 | FdType::Ipv6)) else {
        return Value::Missing;
    };
    let ip = |a: Option<IpAddr>| a.map(Value::Ip).unwrap_or(Value::Missing);
    let port = |a: Option<u16>| a.map(|x| Value::Int(x as i64)).unwrap_or(Value::Missing);
    let both = |a: Value<'static>, b: Value<'static>| {
        let v: Vec<Value<'static>> = [a, b]
            .into_iter()
            .filter(|x| *x != Value::Missing)
            .collect();
        if v.is_empty() {
            Value::Missing
        } else {
            Value::List(v)
        }
    };
    match id {
        F::FdCip | F::FdLip | F::FdCnet | F::FdLnet => ip(f.sip),
        F::FdSip | F::FdRip | F::FdSnet | F::FdRnet => ip(f.rip),
        F::FdCport | F::FdLport => port(f.sport),
        F::FdSport | F::FdRport => port(f.rport),
        F::FdIp | F::FdNet => both(ip(f.sip), ip(f.rip)),
        F::FdPort => both(port(f.sport), port(f.rport)),
        _ => Value::Missing,
    }
}

fn sys_arg(ev: &Event, a: SysArg, raw: bool) -> Value<'_> {
    let open = ev.open.as_ref();
    let num = |n: i64| {
        if raw {
            Value::Int(n)
        } else {
            owned(n.to_string())
        }
    };
    match a {
        SysArg::Fd => match ev.evt_type {
            EvtType::Connect => ev.fd.as_ref().map(|f| num(f.num)).unwrap_or(Value::Missing),
            _ if open.is_some() => num(ev.res),
            _ => Value::Missing,
        },
        SysArg::Res => num(ev.res),
        SysArg::Dirfd => open.map(|o| num(o.dirfd as i64)).unwrap_or_else(|| {
            ev.exec
                .as_ref()
                .and_then(|e| e.dirfd)
                .map(|d| num(d as i64))
                .unwrap_or(Value::Missing)
        }),
        SysArg::Name => match open {
            Some(o) if !raw => match ev.fd.as_ref() {
                Some(f) if !f.name.is_empty() => s(&f.name),
                _ => s(&o.path),
            },
            _ => Value::Missing,
        },
        SysArg::Flags => match open {
            Some(o) if raw => Value::Int(o.flags as i64),
            Some(o) => owned(render_open_flags(o.flags)),
            None => match ev.exec.as_ref().and_then(|e| e.flags) {
                Some(f) => num(f as i64),
                None => Value::Missing,
            },
        },
        SysArg::Mode => match open {
            Some(o) if raw => Value::Int(o.mode as i64),
            Some(o) => owned(format!("0{:o}", o.mode)),
            None => Value::Missing,
        },
        SysArg::Resolve => open
            .map(|o| num(o.resolve as i64))
            .unwrap_or(Value::Missing),
        SysArg::Filename if !raw => ev
            .exec
            .as_ref()
            .map(|e| s(&e.filename))
            .unwrap_or(Value::Missing),
        SysArg::Exe if !raw && is_proc_event(ev) => s(ev.proc.exe()),
        SysArg::Args if !raw && is_proc_event(ev) => owned(ev.proc.args()),
        SysArg::Cwd if !raw && is_proc_event(ev) => opt_str(ev.proc.cwd.as_deref()),
        SysArg::Pid if is_proc_event(ev) => num(ev.proc.pid as i64),
        SysArg::Tid if is_proc_event(ev) => num(ev.proc.tid as i64),
        SysArg::Ptid if is_proc_event(ev) => num(ev.proc.ppid as i64),
        SysArg::Tuple if !raw && ev.evt_type == EvtType::Connect => {
            ev.fd.as_ref().map(|f| s(&f.name)).unwrap_or(Value::Missing)
        }
        SysArg::Status => ev
            .lifecycle
            .as_ref()
            .and_then(|l| l.exit_status)
            .map(|x| num(x as i64))
            .unwrap_or(Value::Missing),
        _ => Value::Missing,
    }
}

fn is_proc_event(ev: &Event) -> bool {
    matches!(
        ev.evt_type,
        EvtType::Execve | EvtType::Execveat | EvtType::Clone
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Ancestor, Fd, OpenArgs, Process};

    fn ev() -> Event {
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
        }
    }

    fn get(name: &str, arg: Option<&str>, e: &Event) -> String {
        let mut out = String::new();
        resolve(name, arg).unwrap().extract(e).render(&mut out);
        out
    }

    #[test]
    fn falco_semantics() {
        let e = ev();
        assert_eq!(get("evt.res", None, &e), "ENOENT");
        assert_eq!(get("evt.rawres", None, &e), "-2");
        assert_eq!(get("evt.failed", None, &e), "true");
        assert_eq!(get("evt.dir", None, &e), "<");
        assert_eq!(get("evt.arg.flags", None, &e), "O_RDONLY|O_CLOEXEC");
        assert_eq!(get("evt.arg", Some("3"), &e), "O_RDONLY|O_CLOEXEC");
        assert_eq!(get("evt.is_open_read", None, &e), "true");
        assert_eq!(get("evt.is_open_write", None, &e), "false");
        assert_eq!(get("proc.aname", Some("0"), &e), "cat");
        assert_eq!(get("proc.aname", Some("1"), &e), "bash");
        assert_eq!(get("proc.aname", Some("2"), &e), "sshd");
        assert_eq!(get("proc.aname", Some("3"), &e), "<NA>");
        assert_eq!(get("proc.aname", None, &e), "bash,sshd");
        assert_eq!(get("proc.pname", None, &e), "bash");
        assert_eq!(get("proc.pcmdline", None, &e), "bash");
        assert_eq!(get("proc.cmdline", None, &e), "cat /etc/shadow");
        assert_eq!(get("fd.directory", None, &e), "/etc");
        assert_eq!(get("fd.filename", None, &e), "shadow");
        assert_eq!(get("fd.typechar", None, &e), "f");
        assert_eq!(get("container.id", None, &e), "<NA>");
        assert_eq!(get("user.loginuid", None, &e), "0");
        assert_eq!(
            get("evt.time.iso8601", None, &e),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(get("evt.time", None, &e), "22:13:20.123456789");
    }

    #[test]
    fn connect_client_is_local_server_is_remote() {
        let mut e = ev();
        e.evt_type = EvtType::Connect;
        e.res = 0;
        e.open = None;
        e.fd = Some(Fd {
            fd_type: FdType::Ipv4,
            num: 3,
            name: "127.0.0.1:40000->127.0.0.2:443".into(),
            sip: Some("127.0.0.1".parse().unwrap()),
            sport: Some(40000),
            rip: Some("127.0.0.2".parse().unwrap()),
            rport: Some(443),
            l4proto: Some("tcp".into()),
        });
        assert_eq!(get("fd.sip", None, &e), "127.0.0.2");
        assert_eq!(get("fd.cip", None, &e), "127.0.0.1");
        assert_eq!(get("fd.sport", None, &e), "443");
        assert_eq!(get("fd.lport", None, &e), "40000");
        assert_eq!(get("fd.rport", None, &e), "443");
        assert_eq!(get("fd.sockfamily", None, &e), "ip");
        assert_eq!(get("fd.port", None, &e), "40000,443");
        assert_eq!(get("evt.res", None, &e), "SUCCESS");
        assert_eq!(
            get("evt.arg.tuple", None, &e),
            "127.0.0.1:40000->127.0.0.2:443"
        );
        assert_eq!(get("fd.directory", None, &e), "<NA>");
    }

    #[test]
    fn resolve_distinguishes_typos_from_falco_only_fields() {
        assert!(resolve("proc.name", None).is_ok());
        assert_eq!(
            resolve("proc.nmae", None).unwrap_err(),
            ResolveError::Unknown
        );
        assert_eq!(
            resolve("prc.name", None).unwrap_err(),
            ResolveError::Unknown
        );
        assert_eq!(
            resolve("thread.cap_effective", None).unwrap_err(),
            ResolveError::Unsupported
        );
        assert!(matches!(
            resolve("evt.arg.uid", None).unwrap().arg,
            FieldArg::Arg(SysArg::Absent)
        ));
        assert_eq!(
            resolve("evt.arg.dev", None).unwrap_err(),
            ResolveError::Unsupported
        );
        assert!(matches!(
            resolve("proc.aname", Some("x")),
            Err(ResolveError::BadArg(_))
        ));
        assert!(matches!(
            resolve("proc.name", Some("1")),
            Err(ResolveError::BadArg(_))
        ));
        assert!(matches!(
            resolve("evt.arg", None),
            Err(ResolveError::BadArg(_))
        ));
    }

    #[test]
    fn image_split() {
        assert_eq!(
            split_image("docker.io/library/nginx:1.25"),
            ("docker.io/library/nginx", Some("1.25"))
        );
        assert_eq!(
            split_image("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(split_image("app@sha256:abc"), ("app", None));
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = FIELDS.iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
    }

    #[test]
    fn k8s_pod_labels_workload_and_service_account() {
        let mut e = ev();
        assert_eq!(get("k8s.pod.labels", None, &e), "<NA>");
        assert_eq!(get("k8s.workload.kind", None, &e), "<NA>");
        let pod = crate::event::Pod {
            uid: "u".into(),
            labels: [("tier", "web"), ("app", "api")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload_kind: Some("Deployment".into()),
            workload_name: Some("api".into()),
            service_account: Some("api-sa".into()),
            ..Default::default()
        };
        e.container = Some(std::sync::Arc::new(crate::event::Container {
            id: "0123456789ab".into(),
            pod: Some(std::sync::Arc::new(pod)),
            ..Default::default()
        }));
        assert_eq!(get("k8s.pod.labels", None, &e), "app:api, tier:web");
        assert_eq!(get("k8s.workload.kind", None, &e), "Deployment");
        assert_eq!(get("k8s.workload.name", None, &e), "api");
        assert_eq!(get("k8s.sa.name", None, &e), "api-sa");
    }
}
