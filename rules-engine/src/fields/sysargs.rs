//! `evt.arg.*` of the table-driven syscalls (socket, dup2, ptrace, unlink,
//! ...): arguments are stored by Falco's names as numbers or strings, and
//! rendered here the way Falco prints them (`AF_PACKET`, `PTRACE_ATTACH`,
//! `CLONE_NEWNS|CLONE_NEWPID`, octal modes) so Falco's `contains` checks
//! match. `evt.rawarg.*` is the number itself.

use super::{owned, s, Value};
use crate::event::{ArgValue, Event, EvtType};

/// Capability names, bit n = capability n (`thread.cap_*`, capset).
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set as Falco renders it: names separated by spaces.
pub fn cap_names(set: u64) -> String {
    let mut out = String::new();
    for (i, name) in CAPS.iter().enumerate() {
        if set & (1 << i) != 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(name);
        }
    }
    out
}

const AF: &[(i64, &str)] = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (10, "AF_INET6"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
];

const SOCK: &[(i64, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (10, "SOCK_PACKET"),
];

const PTRACE: &[(i64, &str)] = &[
    (0, "PTRACE_TRACEME"),
    (1, "PTRACE_PEEKTEXT"),
    (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSR"),
    (4, "PTRACE_POKETEXT"),
    (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSR"),
    (7, "PTRACE_CONT"),
    (8, "PTRACE_KILL"),
    (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"),
    (13, "PTRACE_SETREGS"),
    (16, "PTRACE_ATTACH"),
    (17, "PTRACE_DETACH"),
    (24, "PTRACE_SYSCALL"),
    (0x4200, "PTRACE_SETOPTIONS"),
    (0x4204, "PTRACE_SETREGSET"),
    (0x4206, "PTRACE_SEIZE"),
    (0x4207, "PTRACE_INTERRUPT"),
];

const CLONE_NS: &[(i64, &str)] = &[
    (0x0002_0000, "CLONE_NEWNS"),
    (0x0200_0000, "CLONE_NEWCGROUP"),
    (0x0400_0000, "CLONE_NEWUTS"),
    (0x0800_0000, "CLONE_NEWIPC"),
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x0000_0080, "CLONE_NEWTIME"),
];

const FCNTL: &[(i64, &str)] = &[(0, "F_DUPFD"), (1030, "F_DUPFD_CLOEXEC")];

const SHUT: &[(i64, &str)] = &[(0, "SHUT_RD"), (1, "SHUT_WR"), (2, "SHUT_RDWR")];

const BPF_CMD: &[(i64, &str)] = &[
    (0, "BPF_MAP_CREATE"),
    (1, "BPF_MAP_LOOKUP_ELEM"),
    (2, "BPF_MAP_UPDATE_ELEM"),
    (3, "BPF_MAP_DELETE_ELEM"),
    (4, "BPF_MAP_GET_NEXT_KEY"),
    (5, "BPF_PROG_LOAD"),
    (6, "BPF_OBJ_PIN"),
    (7, "BPF_OBJ_GET"),
    (8, "BPF_PROG_ATTACH"),
    (9, "BPF_PROG_DETACH"),
    (17, "BPF_RAW_TRACEPOINT_OPEN"),
    (18, "BPF_BTF_LOAD"),
    (28, "BPF_LINK_CREATE"),
];

const MFD: &[(i64, &str)] = &[
    (1, "MFD_CLOEXEC"),
    (2, "MFD_ALLOW_SEALING"),
    (4, "MFD_HUGETLB"),
];

fn one(table: &[(i64, &str)], v: i64) -> String {
    match table.iter().find(|(n, _)| *n == v) {
        Some((_, name)) => (*name).to_string(),
        None => v.to_string(),
    }
}

fn bits(table: &[(i64, &str)], v: i64) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        v.to_string()
    } else {
        names.join("|")
    }
}

/// Render a numeric argument `name` of `t` as Falco prints it.
fn render(t: EvtType, name: &str, v: i64) -> String {
    match (t, name) {
        (_, "domain") => one(AF, v),
        (EvtType::Socket, "type") => {
            let mut out = one(SOCK, v & 0xf);
            for (bit, flag) in [(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")] {
                if v & bit != 0 {
                    out.push('|');
                    out.push_str(flag);
                }
            }
            out
        }
        (EvtType::Ptrace, "request") => one(PTRACE, v),
        (EvtType::Unshare, "flags") | (EvtType::Setns, "nstype") => bits(CLONE_NS, v),
        (EvtType::Fcntl, "cmd") => one(FCNTL, v),
        (EvtType::Bpf, "cmd") => one(BPF_CMD, v),
        (EvtType::MemfdCreate, "flags") => bits(MFD, v),
        (EvtType::Shutdown, "how") => one(SHUT, v),
        (_, "mode") => format!("0{v:o}"),
        (EvtType::Capset, _) => cap_names(v as u64),
        _ => v.to_string(),
    }
}

/// `evt.arg.NAME` (or `evt.rawarg.NAME` with `raw`) of a table-driven
/// syscall event; `None` when the event is not one.
pub(super) fn arg<'a>(ev: &'a Event, name: &str, raw: bool) -> Option<Value<'a>> {
    let args = ev.args.as_ref()?;
    Some(match args.get(name) {
        Some(ArgValue::Int(v)) if raw => Value::Int(*v),
        Some(ArgValue::Int(v)) => owned(render(ev.evt_type, name, *v)),
        Some(ArgValue::Str(v)) if !raw => s(v),
        _ => Value::Missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falco_renderings() {
        assert_eq!(render(EvtType::Socket, "domain", 17), "AF_PACKET");
        assert_eq!(
            render(EvtType::Socket, "type", 3 | 0o2000000),
            "SOCK_RAW|SOCK_CLOEXEC"
        );
        assert_eq!(render(EvtType::Ptrace, "request", 0x4206), "PTRACE_SEIZE");
        assert_eq!(
            render(EvtType::Unshare, "flags", 0x2002_0000),
            "CLONE_NEWNS|CLONE_NEWPID"
        );
        assert_eq!(render(EvtType::Chmod, "mode", 0o755), "0755");
        assert_eq!(render(EvtType::Setuid, "uid", 0), "0");
        assert_eq!(
            cap_names((1 << 16) | (1 << 21)),
            "CAP_SYS_MODULE CAP_SYS_ADMIN"
        );
        assert_eq!(cap_names(0), "");
    }
}
