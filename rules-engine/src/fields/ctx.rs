//! What one event's evaluation remembers while the rules run over it: the
//! composed string fields (`proc.args`, `proc.cmdline`, `proc.pcmdline`,
//! the rendered `evt.arg.flags` of an open),
//! built at most once per event and only when a rule reads them, the truth
//! of the sub-conditions rules share (`eval::Memo`) and the merged-list rows
//! (`eval::sets`). The composed strings are written into buffers reused
//! from one event to the next (a small per-thread pool), so evaluating an
//! event allocates nothing once the first few events have sized them.

use std::cell::{Cell, OnceCell, RefCell};

use crate::event::Event;

/// Buffers kept per thread (a context uses at most four).
const POOL_MAX: usize = 8;
/// A buffer grown past this (a huge command line) is freed, not kept.
const KEEP_MAX_BYTES: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> String {
    POOL.try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn give_buf(mut s: String) {
    if s.capacity() > KEEP_MAX_BYTES {
        return;
    }
    s.clear();
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(s);
        }
    });
}

/// `name` followed by `argv[1..]`, space separated (Falco's cmdline).
pub(super) fn write_cmdline(out: &mut String, name: &str, argv: &[String]) {
    out.push_str(name);
    for a in argv.iter().skip(1) {
        out.push(' ');
        out.push_str(a);
    }
}

/// `argv[1..]` joined with spaces (`proc.args`).
fn write_args(out: &mut String, argv: &[String]) {
    for (i, a) in argv.iter().skip(1).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(a);
    }
}

/// One event's evaluation context (see the module docs).
pub(crate) struct EvalCtx<'e> {
    pub ev: &'e Event,
    args: OnceCell<String>,
    cmdline: OnceCell<String>,
    pcmdline: OnceCell<Option<String>>,
    open_flags: OnceCell<String>,
    /// Truth of the sub-conditions rules share, decided once per event.
    pub memo: crate::eval::Memo,
    /// Per merged list group (see `eval::sets`): the row of this event's
    /// value, looked up once.
    pub set_rows: [Cell<u32>; crate::eval::MAX_GROUPS],
}

impl<'e> EvalCtx<'e> {
    pub(crate) fn new(ev: &'e Event) -> Self {
        EvalCtx {
            ev,
            args: OnceCell::new(),
            cmdline: OnceCell::new(),
            pcmdline: OnceCell::new(),
            open_flags: OnceCell::new(),
            memo: crate::eval::Memo::new(),
            set_rows: [const { Cell::new(crate::eval::ROW_UNKNOWN) }; crate::eval::MAX_GROUPS],
        }
    }

    /// `proc.args`.
    pub(crate) fn args(&self) -> &str {
        self.args.get_or_init(|| {
            let mut s = take_buf();
            write_args(&mut s, &self.ev.proc.argv);
            s
        })
    }

    /// `proc.cmdline`.
    pub(crate) fn cmdline(&self) -> &str {
        self.cmdline.get_or_init(|| {
            let mut s = take_buf();
            write_cmdline(&mut s, &self.ev.proc.name, &self.ev.proc.argv);
            s
        })
    }

    /// `evt.arg.flags` of an open-family event, rendered (`O_RDONLY|...`).
    pub(crate) fn open_flags(&self, flags: u32) -> &str {
        self.open_flags.get_or_init(|| {
            let mut s = take_buf();
            super::event::write_open_flags(&mut s, flags);
            s
        })
    }

    /// `proc.pcmdline` (missing without a parent).
    pub(crate) fn pcmdline(&self) -> Option<&str> {
        self.pcmdline
            .get_or_init(|| {
                self.ev.proc.ancestors.first().map(|a| {
                    let mut s = take_buf();
                    write_cmdline(&mut s, &a.name, &a.argv);
                    s
                })
            })
            .as_deref()
    }
}

impl Drop for EvalCtx<'_> {
    fn drop(&mut self) {
        let bufs = [
            self.args.take(),
            self.cmdline.take(),
            self.pcmdline.take().flatten(),
            self.open_flags.take(),
        ];
        for s in bufs.into_iter().flatten() {
            give_buf(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Ancestor, EvtType, Process};

    #[test]
    fn composed_fields_are_built_into_reused_buffers() {
        let proc = Process {
            name: "cat".into(),
            argv: vec!["cat".into(), "-n".into(), "/etc/hosts".into()],
            ancestors: vec![Ancestor {
                name: "bash".into(),
                argv: vec!["-bash".into(), "-i".into()],
                ..Default::default()
            }]
            .into(),
            ..Default::default()
        };
        let ev = Event::new(0, EvtType::Execve, 0, proc);
        for _ in 0..3 {
            let cx = EvalCtx::new(&ev);
            assert_eq!(cx.args(), "-n /etc/hosts");
            assert_eq!(cx.cmdline(), "cat -n /etc/hosts");
            assert_eq!(cx.pcmdline(), Some("bash -i"));
        }
        let mut bare = ev.clone();
        bare.proc.argv.clear();
        bare.proc.ancestors = Default::default();
        let cx = EvalCtx::new(&bare);
        assert_eq!((cx.args(), cx.cmdline(), cx.pcmdline()), ("", "cat", None));
    }
}
