//! Binding a field name (and its `[arg]`) to a registry entry: the one
//! place that tells a typo (an error) from a Falco field mamori does not
//! provide (the rule loads inactive, with the reason), and that turns
//! `evt.arg.flags` / `k8s.pod.label.app` into their argument form.

use super::event::SysArg;
use super::{ArgKind, Field, FIELDS};

/// Falco field names mamori does not provide. A rule using one loads as
/// inactive with that reason (a name in neither table is a typo: an error).
/// Entries ending in `.` or `_` are prefixes covering a family.
pub(crate) static FALCO_ONLY: &[&str] = &[
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
    "proc.is_container_healthcheck",
    "proc.is_container_liveness_probe",
    "proc.is_container_readiness_probe",
    "proc.cmdlenargs",
    "proc.exeline",
    "proc.pid.",
    "proc.aenv",
    "proc.cgroup",
    "proc.pgid",
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

/// A resolved field argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldArg {
    None,
    /// `proc.aname[n]`.
    Index(usize),
    /// `proc.aname` without an index: any ancestor.
    AnyAncestor,
    /// `evt.arg.NAME`: the argument as mamori's fixed events know it, and
    /// its name (interned) for the table-driven syscalls' arguments.
    Arg(SysArg, &'static str),
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

/// Why a field name could not be bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// Not a field mamori or Falco knows (most likely a typo).
    Unknown,
    /// A Falco field mamori does not provide.
    Unsupported,
    /// Known field, wrong argument.
    BadArg(String),
}

/// Look a field up by name and optional `[arg]`.
pub(crate) fn resolve(name: &str, arg: Option<&str>) -> Result<Field, ResolveError> {
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
            } else if a == "ino" {
                // A real argument of the open family that mamori does not capture.
                return Err(ResolveError::Unsupported);
            } else {
                // A table-driven syscall's argument (uid of setuid, oldpath
                // of rename) is looked up by name; absent on other events.
                let known = SysArg::from_name(a).unwrap_or(SysArg::Absent);
                FieldArg::Arg(known, intern(a))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(resolve("thread.cap_effective", None).is_ok());
        assert!(matches!(
            resolve("evt.arg.uid", None).unwrap().arg,
            FieldArg::Arg(SysArg::Absent, "uid")
        ));
        assert_eq!(
            resolve("evt.arg.ino", None).unwrap_err(),
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
}
