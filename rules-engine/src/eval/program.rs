//! The stateless rules' conditions as one flat program: the hot path.
//!
//! Walking a condition tree costs a recursive call, a jump on the node's
//! kind and a pointer chase per `and`/`or`/`not` node, with the nodes spread
//! over the heap. Here each rule's tree is compiled once, at load, into
//! short-circuit jump code in one contiguous array: every instruction is a
//! test (an event-type mask, a check, a merged-list bit, a memo slot) with
//! the instruction to go to when it is true and when it is false; `and`,
//! `or` and `not` leave no instruction behind, only jump targets. The checks
//! the instructions run live in one array too. Truth is the tree's: the
//! same tests in the same order, stopping at the same point.

use super::memo::Memo;
use super::sets::SetTest;
use super::{type_bit, CheckNode, Node, TypeMask};
use crate::fields::EvalCtx;

const TRUE: u32 = 0;
const FALSE: u32 = 1;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Terminal: the condition's truth.
    End(bool),
    /// `a` is an event-type mask.
    Type,
    /// `a` indexes the program's checks.
    Check,
    /// `a` indexes the program's merged-list tests.
    Set,
    /// Slot decided this event: jump by its truth; else run `a` (the body).
    MemoGet(u32),
    /// Record the body's truth in the slot, then go on (`t` = `f`).
    MemoSet(u32, bool),
}

#[derive(Debug, Clone, Copy)]
struct Ins {
    kind: Kind,
    a: u32,
    t: u32,
    f: u32,
}

/// Compiled conditions; a rule is its entry point.
#[derive(Debug)]
pub(crate) struct Program {
    code: Vec<Ins>,
    checks: Vec<CheckNode>,
    sets: Vec<SetTest>,
    /// Event-type masks of `Kind::Type` instructions (wider than `Ins::a`).
    masks: Vec<TypeMask>,
}

impl Default for Program {
    fn default() -> Self {
        Program {
            code: vec![
                Ins {
                    kind: Kind::End(true),
                    a: 0,
                    t: TRUE,
                    f: TRUE,
                },
                Ins {
                    kind: Kind::End(false),
                    a: 0,
                    t: FALSE,
                    f: FALSE,
                },
            ],
            checks: Vec::new(),
            masks: Vec::new(),
            sets: Vec::new(),
        }
    }
}

impl Program {
    /// Compile a condition (taking its checks); returns its entry point.
    pub(crate) fn add(&mut self, n: Node) -> u32 {
        self.emit(n, TRUE, FALSE)
    }

    fn push(&mut self, kind: Kind, a: u32, t: u32, f: u32) -> u32 {
        self.code.push(Ins { kind, a, t, f });
        (self.code.len() - 1) as u32
    }

    /// Code for `n` that continues at `t` when it is true and at `f` when
    /// it is false; returns where it starts. Operands are emitted last
    /// first, so each one's continuation already exists.
    fn emit(&mut self, n: Node, t: u32, f: u32) -> u32 {
        match n {
            Node::Const(b) => {
                if b {
                    t
                } else {
                    f
                }
            }
            // Inactive rules are never compiled; a stray one never matches.
            Node::Unsupported => f,
            Node::EvtType(m) => {
                let at = match self.masks.iter().position(|x| *x == m) {
                    Some(i) => i,
                    None => {
                        self.masks.push(m);
                        self.masks.len() - 1
                    }
                };
                self.push(Kind::Type, at as u32, t, f)
            }
            Node::Not(x) => self.emit(*x, f, t),
            Node::And(v) => v
                .into_vec()
                .into_iter()
                .rev()
                .fold(t, |next, c| self.emit(c, next, f)),
            Node::Or(v) => v
                .into_vec()
                .into_iter()
                .rev()
                .fold(f, |next, c| self.emit(c, t, next)),
            Node::Check(c) => {
                self.checks.push(*c);
                self.push(Kind::Check, (self.checks.len() - 1) as u32, t, f)
            }
            Node::InSet(s) => {
                self.sets.push(*s);
                self.push(Kind::Set, (self.sets.len() - 1) as u32, t, f)
            }
            Node::Memo(slot, x) => {
                let st = self.push(Kind::MemoSet(slot, true), 0, t, t);
                let sf = self.push(Kind::MemoSet(slot, false), 0, f, f);
                let body = self.emit(*x, st, sf);
                self.push(Kind::MemoGet(slot), body, t, f)
            }
        }
    }

    /// The truth of the condition starting at `entry` for `cx`'s event.
    #[inline]
    pub(crate) fn run(&self, entry: u32, cx: &EvalCtx<'_>) -> bool {
        let memo: &Memo = &cx.memo;
        let mut pc = entry as usize;
        loop {
            let Some(ins) = self.code.get(pc) else {
                return false;
            };
            let hit = match ins.kind {
                Kind::End(b) => return b,
                Kind::Type => self
                    .masks
                    .get(ins.a as usize)
                    .is_some_and(|m| m & type_bit(cx.ev.evt_type) != 0),
                Kind::Check => self.checks.get(ins.a as usize).is_some_and(|c| c.eval(cx)),
                Kind::Set => self.sets.get(ins.a as usize).is_some_and(|s| s.eval(cx)),
                Kind::MemoGet(slot) => match memo.peek(slot) {
                    Some(b) => b,
                    None => {
                        pc = ins.a as usize;
                        continue;
                    }
                },
                Kind::MemoSet(slot, b) => {
                    memo.set(slot, b);
                    b
                }
            };
            pc = if hit { ins.t } else { ins.f } as usize;
        }
    }
}
