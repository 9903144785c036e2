//! The normalized event: what every stage after decoding works with.
//!
//! One `Event` is one completed syscall (or lifecycle step) of one process,
//! already joined with what the process table knows about that process and its
//! ancestors. It is also the on-disk format: `mamori capture --json` writes one
//! `Event` per line and `mamori replay` / `mamori rules test` read the same
//! shape back, so rule evaluation never needs a kernel. Field names follow
//! Falco's (`proc.*`, `fd.*`, `evt.*`); the mapping lives in the field registry.
//!
//! Everything here that describes a process (paths, argv, comm) is
//! attacker-controlled data: it is kept as-is (lossy UTF-8) and escaped by each
//! output, never interpreted.

use serde::{Deserialize, Serialize};
use std::{net::IpAddr, sync::Arc};

// `proc.ancestors` written to JSON once per chain, not once per event.
mod ancestors_json;
mod evt_type;

pub use evt_type::EvtType;

// mamori's own event details: `flow` (bytes per connection) and `dns`.
mod net;
pub use net::{Dns, Flow, FlowState};
// `drop` events' loss counts.
mod drops;
pub use drops::Drops;

/// One event. See the module docs; the JSON schema is documented in README.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time of the event, ns since the Unix epoch.
    pub ts: u64,
    /// `evt.type`.
    #[serde(rename = "type")]
    pub evt_type: EvtType,
    /// Raw syscall result (`evt.rawres`): fd / 0 on success, -errno on failure.
    #[serde(default)]
    pub res: i64,
    /// The process that made the syscall.
    pub proc: Process,
    /// The file or socket the event is about (open, connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<Fd>,
    /// Arguments of an open-family syscall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<OpenArgs>,
    /// Arguments of an exec-family syscall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecArgs>,
    /// Child of a `clone` event / exit status of a `procexit` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// Container the process runs in, filled by the enrichment stage
    /// (`id = "host"` for host processes; `None` when enrichment did not run).
    /// Shared: every event of one container points at the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<Container>>,
    /// Loss report (`evt.type = drop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<Drops>,
    /// A connection's byte counts (`evt.type = flow`, `flow.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<Flow>,
    /// A DNS question (`evt.type = dns`, `dns.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<Dns>>,
    /// Arguments of a table-driven syscall (`evt.arg.NAME`), by Falco's
    /// argument names: numbers as passed, strings (paths, names, addresses)
    /// as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<std::collections::BTreeMap<String, ArgValue>>,
    /// The thread's capabilities after the syscall (`thread.cap_*`), when
    /// the kernel record carried them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Caps>,
}

/// One syscall argument value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgValue {
    Int(i64),
    Str(String),
}

/// Capability sets, bit n = capability n.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// The process an event belongs to, as the process table knew it at the time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// `proc.pid` (tgid).
    pub pid: u32,
    /// `thread.tid`.
    #[serde(default)]
    pub tid: u32,
    /// `proc.ppid`.
    #[serde(default)]
    pub ppid: u32,
    /// `proc.name`: the task's comm (at most 15 bytes).
    #[serde(default)]
    pub name: String,
    /// `proc.is_exe_from_memfd`: the image was loaded from a memfd.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exe_from_memfd: bool,
    /// `proc.exepath`: path of the file the image was loaded from (the real
    /// binary, as the kernel names it at exec; `memfd:NAME` for a memfd),
    /// else the filename as exec'd, made absolute.
    #[serde(default)]
    pub exepath: String,
    /// Full argv including `argv[0]` (`proc.exe` is `argv[0]`, `proc.args` the rest).
    #[serde(default)]
    pub argv: Vec<String>,
    /// True if argv was cut at the kernel copy limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
    /// `proc.tty`: controlling terminal (`tty_nr` encoding), 0 if none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tty: u32,
    /// `proc.cwd`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `user.uid`.
    #[serde(default)]
    pub uid: u32,
    /// `group.gid`.
    #[serde(default)]
    pub gid: u32,
    /// `user.loginuid` (-1 when unset).
    #[serde(default = "minus_one")]
    pub loginuid: i64,
    /// `user.name`, resolved from the host's passwd (may be absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Process start time, ns since the Unix epoch (0 if unknown).
    #[serde(default)]
    pub start_ts: u64,
    /// cgroup v2 id (0 if unknown).
    #[serde(default)]
    pub cgroup_id: u64,
    /// Ancestors, nearest first: `[0]` is the parent (`proc.aname[1]`).
    /// Shared: the process table hands every event of a process the same
    /// chain until something in it changes.
    #[serde(
        default,
        skip_serializing_if = "no_ancestors",
        serialize_with = "ancestors_json::serialize"
    )]
    pub ancestors: Arc<Vec<Ancestor>>,
}

fn no_ancestors(a: &Arc<Vec<Ancestor>>) -> bool {
    a.is_empty()
}

fn minus_one() -> i64 {
    -1
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Event {
    /// An event of `proc` with nothing else attached yet (no fd, open, exec,
    /// lifecycle, container or drop details).
    pub fn new(ts: u64, evt_type: EvtType, res: i64, proc: Process) -> Event {
        Event {
            ts,
            evt_type,
            res,
            proc,
            fd: None,
            open: None,
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
}

impl Process {
    /// `proc.exe`: `argv[0]` (falls back to the exe path).
    pub fn exe(&self) -> &str {
        self.argv
            .first()
            .map(String::as_str)
            .unwrap_or(&self.exepath)
    }

    /// `proc.args`: argv without `argv[0]`, joined with spaces.
    pub fn args(&self) -> String {
        self.argv.get(1..).map(|a| a.join(" ")).unwrap_or_default()
    }

    /// `proc.cmdline`: `proc.name` followed by `proc.args`, as Falco renders it.
    pub fn cmdline(&self) -> String {
        let args = self.args();
        if args.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, args)
        }
    }
}

/// An ancestor of the event's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub exepath: String,
    #[serde(default)]
    pub argv: Vec<String>,
}

/// `fd.type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdType {
    File,
    Directory,
    Ipv4,
    Ipv6,
    Unix,
    Unknown,
}

impl FdType {
    /// `fd.type` as Falco names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            FdType::File => "file",
            FdType::Directory => "directory",
            FdType::Ipv4 => "ipv4",
            FdType::Ipv6 => "ipv6",
            FdType::Unix => "unix",
            FdType::Unknown => "unknown",
        }
    }

    /// `fd.typechar` as Falco renders it.
    pub const fn typechar(self) -> char {
        match self {
            FdType::File => 'f',
            FdType::Directory => 'd',
            FdType::Ipv4 => '4',
            FdType::Ipv6 => '6',
            FdType::Unix => 'u',
            FdType::Unknown => '?',
        }
    }
}

/// The file or socket an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fd {
    #[serde(rename = "type")]
    pub fd_type: FdType,
    /// `fd.num`: the fd (the result of an open; the socket of a connect), -1 if none.
    #[serde(default = "minus_one")]
    pub num: i64,
    /// `fd.name`: the path for files (as passed to the syscall, made absolute
    /// with the cwd when known), `sip:sport->rip:rport` for IP sockets, the
    /// path for unix sockets.
    pub name: String,
    /// Client (local) address and port of a socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Server (remote) address and port of a socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rport: Option<u16>,
    /// `fd.l4proto`: `tcp`, `udp`, `icmp`, `raw`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4proto: Option<String>,
    /// The local side is the server (an accepted connection, a bound or
    /// listening socket): `fd.cip` is then the remote address. False for
    /// connect, where the local side is the client.
    #[serde(default, skip_serializing_if = "is_false")]
    pub server: bool,
}

/// Arguments of an open-family call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenArgs {
    /// Raw `O_*` flags as passed (for `creat`, `O_CREAT|O_WRONLY|O_TRUNC`).
    pub flags: u32,
    /// Creation mode.
    #[serde(default)]
    pub mode: u32,
    /// Directory fd (`AT_FDCWD` = -100 for path-relative-to-cwd).
    #[serde(default = "at_fdcwd")]
    pub dirfd: i32,
    /// `open_how.resolve` for openat2.
    #[serde(default)]
    pub resolve: u64,
    /// The path exactly as passed to the syscall.
    pub path: String,
    /// The path was cut at the kernel copy limit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub path_truncated: bool,
}

fn at_fdcwd() -> i32 {
    -100
}

/// Arguments of an exec-family call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecArgs {
    /// The filename passed to execve (or the kernel's copy on success).
    pub filename: String,
    /// `execveat` dirfd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirfd: Option<i32>,
    /// `execveat` flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// The argv passed to a *failed* exec (on success it is `proc.argv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

/// Lifecycle details.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// For `clone`: the new process's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// For `procexit`: the wait-status encoded exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
}

/// Container and Kubernetes metadata (filled by the enrichment stage).
///
/// The ids come from the process's cgroup path; everything else from the
/// node's pod watch, so it is absent off Kubernetes or until the watch has
/// delivered the pod. Every field but `id` is optional so that older JSON
/// (and events from bare hosts) still parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// `container.id`: the 12-char short id as Falco prints it, or "host".
    pub id: String,
    /// The full (64-hex) container id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_id: String,
    /// Container runtime seen in the cgroup path: `containerd`, `cri-o`,
    /// `docker`, `podman`, or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// `container.name` (the name in the pod spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `container.image`: the image as written in the pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `container.image.repository`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// `container.image.tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// `container.image.digest` (`sha256:...`), from the running image id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// `container.privileged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// `container.start_ts`: ns since the epoch, from the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ts: Option<u64>,
    /// The pod the container belongs to (Kubernetes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Arc<Pod>>,
}

impl Container {
    /// The value for host processes.
    pub fn host() -> Container {
        Container {
            id: "host".into(),
            ..Default::default()
        }
    }

    /// True for the host pseudo-container.
    pub fn is_host(&self) -> bool {
        self.id == "host"
    }
}

/// Kubernetes pod metadata (`k8s.*` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// `k8s.pod.uid` (from the cgroup path, so known even without the API).
    pub uid: String,
    /// `k8s.pod.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `k8s.ns.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `k8s.pod.labels` / `k8s.pod.label[key]`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `k8s.workload.kind`: Deployment, DaemonSet, StatefulSet, Job, CronJob,
    /// ReplicaSet, or the owner's kind as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    /// `k8s.workload.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    /// `k8s.sa.name`: the pod's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_matches_falco_rendering() {
        let p = Process {
            name: "bash".into(),
            argv: vec!["/bin/bash".into(), "-c".into(), "id".into()],
            ..Default::default()
        };
        assert_eq!(p.exe(), "/bin/bash");
        assert_eq!(p.args(), "-c id");
        assert_eq!(p.cmdline(), "bash -c id");
        let bare = Process {
            name: "sh".into(),
            argv: vec!["sh".into()],
            ..Default::default()
        };
        assert_eq!(bare.cmdline(), "sh");
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let line = r#"{"ts":1,"type":"openat","res":3,"proc":{"pid":10,"name":"cat"},
            "fd":{"type":"file","num":3,"name":"/etc/shadow"},
            "open":{"flags":0,"path":"/etc/shadow"}}"#;
        let ev: Event = serde_json::from_str(line).unwrap();
        assert_eq!(ev.evt_type, EvtType::Openat);
        assert_eq!(ev.proc.loginuid, -1);
        assert_eq!(ev.open.as_ref().unwrap().dirfd, -100);
        let again: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(ev, again);
    }

    #[test]
    fn container_json_old_and_new_shapes() {
        let old = r#"{"ts":1,"type":"execve","proc":{"pid":1},"container":{"id":"abc"}}"#;
        let ev: Event = serde_json::from_str(old).unwrap();
        let c = ev.container.as_deref().unwrap();
        assert_eq!(c.id, "abc");
        assert!(c.pod.is_none() && c.privileged.is_none());
        let full = r#"{"ts":1,"type":"execve","proc":{"pid":1},"container":{"id":"0123456789ab",
            "full_id":"0123456789abcdef","name":"web","privileged":true,
            "pod":{"uid":"u-1","name":"web-1","namespace":"prod","labels":{"app":"web"}}}}"#;
        let ev: Event = serde_json::from_str(full).unwrap();
        let again: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(ev, again);
        let pod = again.container.as_ref().unwrap().pod.as_ref().unwrap();
        assert_eq!(pod.labels["app"], "web");
        assert!(Container::host().is_host());
    }
}
