//! `evt.*` (and `syscall.type`): the syscall itself — its type, result and
//! time, the open-mode tests (`evt.is_open_read`, ...), and its arguments
//! (`evt.arg.*` / `evt.rawarg.*`) rendered the way Falco prints them.

use super::{errno_name, opt_str, owned, s, Field, FieldArg, FieldId, Value};
use crate::event::{Event, EvtType, OpenArgs};

/// Syscall argument names mamori can answer for `evt.arg.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SysArg {
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
    pub(super) fn from_name(s: &str) -> Option<SysArg> {
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
            EvtType::Drop | EvtType::Flow | EvtType::Dns => &[],
        };
        table.get(n).copied()
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
pub(crate) fn render_open_flags(flags: u32) -> String {
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

/// The open-family arguments of an event, if it is an open-family event.
pub(super) fn open_args(ev: &Event) -> Option<&OpenArgs> {
    let is_open = matches!(
        ev.evt_type,
        EvtType::Open | EvtType::Openat | EvtType::Openat2 | EvtType::Creat
    );
    ev.open.as_ref().filter(|_| is_open)
}

/// Read an `evt.*` / `syscall.*` field.
#[inline]
pub(super) fn extract<'a>(field: &Field, ev: &'a Event) -> Value<'a> {
    use FieldId as F;
    match field.info.id {
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
            let Some(o) = open_args(ev) else {
                return Value::Bool(false);
            };
            let acc = o.flags & 0o3;
            Value::Bool(match field.info.id {
                F::EvtIsOpenRead => acc == 0 || acc == 2,
                F::EvtIsOpenWrite => acc == 1 || acc == 2,
                F::EvtIsOpenCreate => o.flags & 0o100 != 0 || ev.evt_type == EvtType::Creat,
                _ => (o.flags & 0o100 != 0 || ev.evt_type == EvtType::Creat) && o.mode & 0o111 != 0,
            })
        }
        F::EvtArg | F::EvtRawArg => {
            let arg = match field.arg {
                FieldArg::Arg(a) => Some(a),
                FieldArg::ArgIndex(n) => SysArg::by_index(ev.evt_type, n),
                _ => None,
            };
            match arg {
                Some(a) => sys_arg(ev, a, field.info.id == F::EvtRawArg),
                None => Value::Missing,
            }
        }
        F::EvtNum => Value::Missing,
        // Other classes' fields: never dispatched here.
        _ => Value::Missing,
    }
}

#[inline]
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
    use super::super::tests::{ev, get};

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
        assert_eq!(
            get("evt.time.iso8601", None, &e),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(get("evt.time", None, &e), "22:13:20.123456789");
    }
}
