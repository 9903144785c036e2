//! List membership decided once per event and field, for every list at once.
//!
//! A rule set compares the same few string fields (`proc.name`,
//! `proc.pname`, `user.name`, `container.id`, ...) with dozens of different
//! lists: `proc.name in (shell_binaries)`, `proc.name in
//! (package_mgmt_binaries)`, `proc.name = socat`. At load, [`intern`]
//! gathers every such plain check on one field into a [`SetGroup`]: a map
//! from each string any of those lists holds to a bit row (bit `k` set when
//! the string satisfies check `k`). Per event the field is looked up once
//! (the row is kept in the event's [`EvalCtx`]); each check is then a bit
//! test ([`SetTest`]). The original check stays beside it: it is what the
//! naive evaluator runs, so the differential test compares the two.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::matchers::Fnv;
use super::{CheckNode, Fast, Node, Rhs};
use crate::fields::{EvalCtx, StrGetter};
use crate::parser::Op;

/// Fields grouped at most (the rest keep their per-check sets).
pub(crate) const MAX_GROUPS: usize = 16;
/// Row cache states in [`EvalCtx`].
pub(crate) const ROW_UNKNOWN: u32 = u32::MAX;
const ROW_NONE: u32 = u32::MAX - 1;
const ROW_MISSING: u32 = u32::MAX - 2;

/// The lists of one field, merged.
pub(crate) struct SetGroup {
    getter: StrGetter,
    /// Its index in the event's row cache.
    slot: usize,
    rows: HashMap<Box<str>, u32, BuildHasherDefault<Fnv>>,
    /// Bit `i` set when a member has length `i` (63: 63 or more).
    lens: u64,
    words: usize,
    bits: Vec<u64>,
}

impl std::fmt::Debug for SetGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetGroup")
            .field("members", &self.rows.len())
            .field("words", &self.words)
            .finish()
    }
}

impl SetGroup {
    /// The row of this event's value (or why there is none), once per event.
    #[inline]
    fn row(&self, cx: &EvalCtx<'_>) -> u32 {
        let cell = &cx.set_rows[self.slot % MAX_GROUPS];
        let r = cell.get();
        if r != ROW_UNKNOWN {
            return r;
        }
        let r = match (self.getter)(cx) {
            None => ROW_MISSING,
            Some(s) if self.lens & (1u64 << s.len().min(63)) == 0 => ROW_NONE,
            Some(s) => self.rows.get(s).copied().unwrap_or(ROW_NONE),
        };
        cell.set(r);
        r
    }
}

/// One membership check answered from its field's group.
#[derive(Debug)]
pub(crate) struct SetTest {
    group: Arc<SetGroup>,
    word: usize,
    mask: u64,
    /// `!=`: true when the field is present and not equal.
    ne: bool,
    /// The check it stands for (evaluated by the naive path).
    pub orig: Box<CheckNode>,
}

impl SetTest {
    #[inline]
    pub(crate) fn eval(&self, cx: &EvalCtx<'_>) -> bool {
        match self.group.row(cx) {
            ROW_MISSING => false,
            ROW_NONE => self.ne,
            r => {
                let w = self.group.bits[r as usize * self.group.words + self.word];
                (w & self.mask != 0) != self.ne
            }
        }
    }
}

/// The members a check compares with, if it is a plain membership check
/// (`=`, `!=`, `in`, `intersects` of a plain string field).
fn members(c: &CheckNode) -> Option<(StrGetter, bool, Vec<&str>)> {
    let Fast::Str(get) = c.fast else {
        return None;
    };
    match (c.op, &c.rhs) {
        (Op::Eq, Rhs::Str(s)) => Some((get, false, vec![s.as_str()])),
        (Op::Ne, Rhs::Str(s)) => Some((get, true, vec![s.as_str()])),
        (Op::In | Op::Intersects, Rhs::StrSet(set)) => {
            Some((get, false, set.iter().map(String::as_str).collect()))
        }
        _ => None,
    }
}

fn visit(n: &mut Node, f: &mut impl FnMut(&mut Node)) {
    match n {
        Node::And(v) | Node::Or(v) => v.iter_mut().for_each(|c| visit(c, f)),
        Node::Not(x) | Node::Memo(_, x) => visit(x, f),
        _ => f(n),
    }
}

/// Group the plain membership checks of `roots` by field (fields with at
/// least two such checks) and replace each with a [`SetTest`].
pub(crate) fn intern(roots: &mut [&mut Node]) {
    // Field name → (getter, member → bits, checks); a check's bit is its
    // position in the field's list of checks.
    type Draft<'a> = (StrGetter, HashMap<String, Vec<usize>>, usize);
    let mut drafts: Vec<(&'static str, Draft<'_>)> = Vec::new();
    for r in roots.iter_mut() {
        visit(r, &mut |n| {
            let Node::Check(c) = n else { return };
            let Some((get, _, ms)) = members(c) else {
                return;
            };
            let name = c.lhs.field.info.name;
            let i = match drafts.iter().position(|d| d.0 == name) {
                Some(i) => i,
                None => {
                    drafts.push((name, (get, HashMap::new(), 0)));
                    drafts.len() - 1
                }
            };
            let d = &mut drafts[i].1;
            for m in ms {
                d.1.entry(m.to_string()).or_default().push(d.2);
            }
            d.2 += 1;
        });
    }
    let mut groups: Vec<(&'static str, Arc<SetGroup>)> = Vec::new();
    for (name, (getter, members, checks)) in drafts {
        if checks < 2 || groups.len() >= MAX_GROUPS {
            continue;
        }
        let words = checks.div_ceil(64);
        let mut g = SetGroup {
            getter,
            slot: groups.len(),
            rows: HashMap::default(),
            lens: 0,
            words,
            bits: vec![0; members.len() * words],
        };
        for (row, (m, ks)) in members.into_iter().enumerate() {
            g.lens |= 1u64 << m.len().min(63);
            for k in ks {
                g.bits[row * words + k / 64] |= 1u64 << (k % 64);
            }
            g.rows.insert(m.into_boxed_str(), row as u32);
        }
        groups.push((name, Arc::new(g)));
    }
    // Second pass, in the same order: each check's bit is its position.
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for r in roots.iter_mut() {
        visit(r, &mut |n| {
            let Node::Check(c) = n else { return };
            let Some((_, ne, _)) = members(c) else {
                return;
            };
            let name = c.lhs.field.info.name;
            let k = seen.entry(name).or_default();
            let bit = *k;
            *k += 1;
            let Some((_, g)) = groups.iter().find(|g| g.0 == name) else {
                return;
            };
            let Node::Check(orig) = std::mem::replace(n, Node::Const(false)) else {
                return;
            };
            *n = Node::InSet(Box::new(SetTest {
                group: g.clone(),
                word: bit / 64,
                mask: 1u64 << (bit % 64),
                ne,
                orig,
            }));
        });
    }
}
