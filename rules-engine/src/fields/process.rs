//! `proc.*`, `thread.*`, `user.*`, `group.*`: the process of the event, its
//! parent and its ancestors (`proc.aname[n]`, or any ancestor without an
//! index), as the process table joined them to the event.

use super::{opt_str, owned, s, Field, FieldArg, FieldId, Value};
use crate::event::Event;

pub(super) fn cmdline(name: &str, argv: &[String]) -> String {
    let mut out = name.to_string();
    for a in argv.iter().skip(1) {
        out.push(' ');
        out.push_str(a);
    }
    out
}

/// The n-th process in the ancestry: 0 = the process itself.
pub(super) enum Anc<'a> {
    Me(&'a crate::event::Process),
    Up(&'a crate::event::Ancestor),
}

impl<'a> Anc<'a> {
    #[inline]
    fn name(&self) -> &'a str {
        match self {
            Anc::Me(p) => &p.name,
            Anc::Up(a) => &a.name,
        }
    }
    #[inline]
    fn pid(&self) -> u32 {
        match self {
            Anc::Me(p) => p.pid,
            Anc::Up(a) => a.pid,
        }
    }
    #[inline]
    fn exepath(&self) -> &'a str {
        match self {
            Anc::Me(p) => &p.exepath,
            Anc::Up(a) => &a.exepath,
        }
    }
    #[inline]
    fn argv(&self) -> &'a [String] {
        match self {
            Anc::Me(p) => &p.argv,
            Anc::Up(a) => &a.argv,
        }
    }
    #[inline]
    fn exe(&self) -> &'a str {
        self.argv()
            .first()
            .map(String::as_str)
            .unwrap_or_else(|| self.exepath())
    }
}

#[inline]
pub(super) fn ancestor_value<'a>(a: &Anc<'a>, id: FieldId) -> Value<'a> {
    match id {
        FieldId::ProcAName | FieldId::ProcPName => s(a.name()),
        FieldId::ProcAPid => Value::Int(a.pid() as i64),
        FieldId::ProcAExe | FieldId::ProcPExe => s(a.exe()),
        FieldId::ProcAExePath | FieldId::ProcPExePath => s(a.exepath()),
        _ => owned(cmdline(a.name(), a.argv())),
    }
}

/// `proc.loginshellid`: the pid of the oldest process, the event's own
/// included, whose name ends in `sh` (Falco's test for a shell).
fn login_shell(p: &crate::event::Process) -> Option<u32> {
    let shell = |name: &str| name.len() >= 2 && name.ends_with("sh");
    let mut found = shell(&p.name).then_some(p.pid);
    for a in p.ancestors.iter() {
        if shell(&a.name) {
            found = Some(a.pid);
        }
    }
    found
}

/// Read a `proc.*` / `thread.*` / `user.*` / `group.*` field.
#[inline]
pub(super) fn extract<'a>(field: &Field, ev: &'a Event) -> Value<'a> {
    use FieldId as F;
    let p = &ev.proc;
    match field.info.id {
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
        F::ProcIsExeFromMemfd => Value::Bool(p.exe_from_memfd),
        F::ProcDuration => {
            if p.start_ts > 0 && ev.ts >= p.start_ts {
                Value::Int((ev.ts - p.start_ts) as i64)
            } else {
                Value::Missing
            }
        }
        F::ProcPName | F::ProcPExe | F::ProcPExePath | F::ProcPCmdline => {
            match p.ancestors.first() {
                Some(a) => ancestor_value(&Anc::Up(a), field.info.id),
                None => Value::Missing,
            }
        }
        F::ProcAName | F::ProcAPid | F::ProcAExe | F::ProcAExePath | F::ProcACmdline => {
            match field.arg {
                FieldArg::Index(0) => ancestor_value(&Anc::Me(p), field.info.id),
                FieldArg::Index(n) => match p.ancestors.get(n - 1) {
                    Some(a) => ancestor_value(&Anc::Up(a), field.info.id),
                    None => Value::Missing,
                },
                _ => {
                    if p.ancestors.is_empty() {
                        Value::Missing
                    } else {
                        Value::List(
                            p.ancestors
                                .iter()
                                .map(|a| ancestor_value(&Anc::Up(a), field.info.id))
                                .collect(),
                        )
                    }
                }
            }
        }
        F::ProcLoginShellId => login_shell(p).map_or(Value::Missing, |pid| Value::Int(pid as i64)),
        F::ThreadTid => Value::Int(if p.tid == 0 { p.pid } else { p.tid } as i64),
        F::ThreadCapEffective | F::ThreadCapPermitted | F::ThreadCapInheritable => match ev.caps {
            Some(c) => owned(super::cap_names(match field.info.id {
                F::ThreadCapEffective => c.effective,
                F::ThreadCapPermitted => c.permitted,
                _ => c.inheritable,
            })),
            None => Value::Missing,
        },
        F::UserUid => Value::Int(p.uid as i64),
        F::UserName => opt_str(p.user.as_deref()),
        F::UserLoginUid => Value::Int(p.loginuid),
        F::GroupGid => Value::Int(p.gid as i64),
        // Other classes' fields: never dispatched here.
        _ => Value::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev, get};

    #[test]
    fn falco_semantics() {
        let e = ev();
        assert_eq!(get("proc.aname", Some("0"), &e), "cat");
        assert_eq!(get("proc.aname", Some("1"), &e), "bash");
        assert_eq!(get("proc.aname", Some("2"), &e), "sshd");
        assert_eq!(get("proc.aname", Some("3"), &e), "<NA>");
        assert_eq!(get("proc.aname", None, &e), "bash,sshd");
        assert_eq!(get("proc.pname", None, &e), "bash");
        assert_eq!(get("proc.pcmdline", None, &e), "bash");
        assert_eq!(get("proc.cmdline", None, &e), "cat /etc/shadow");
        assert_eq!(get("user.loginuid", None, &e), "0");
    }

    #[test]
    fn loginshellid_is_the_oldest_shell_in_the_tree() {
        let mut e = ev();
        // cat (10) <- bash (9) <- sshd (1): the bash.
        assert_eq!(get("proc.loginshellid", None, &e), "9");
        let p = std::sync::Arc::make_mut(&mut e.proc.ancestors);
        p.insert(
            0,
            crate::event::Ancestor {
                pid: 20,
                name: "zsh".into(),
                ..Default::default()
            },
        );
        // cat <- zsh (20) <- bash (9): still the older bash.
        assert_eq!(get("proc.loginshellid", None, &e), "9");
        e.proc.name = "sh".into();
        e.proc.ancestors = Vec::new().into();
        assert_eq!(get("proc.loginshellid", None, &e), "10");
        e.proc.name = "cat".into();
        assert_eq!(get("proc.loginshellid", None, &e), "<NA>");
    }
}
