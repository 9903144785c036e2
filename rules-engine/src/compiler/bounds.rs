//! Bounds on what lists and macros may expand to. A few hundred bytes of
//! lists of lists, or of macros that double per level (`e2: (e1 or e1)`),
//! describe trees of billions of terms; expanding them would exhaust memory.
//! So sizes are worked out *before* anything is copied: each list's expanded
//! size as it is built, each macro's in one pass over the macro graph (a
//! macro costs its own checks plus, per reference, the size of the macro or
//! list it names), and each condition's from its parsed tree. Past a bound
//! the load fails with an error naming the list or macro that is too large.
//!
//! A size counts *terms* (checks and list values) and the *bytes* of the
//! list values, so neither many short values nor a few huge ones get
//! through. Falco's own rules stay far below the bounds (all of
//! `falco_rules.yaml`, 129 KB, expands to 2,861 terms; its largest macro to
//! 196).

use std::collections::HashMap;

use super::{Compiler, Fail, RuleCx};
use crate::diag::Code;
use crate::parser::{Expr, Rhs};
use crate::reader::CondText;

/// The expanded size of a list, a macro or a condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Size {
    pub terms: usize,
    pub bytes: usize,
}

impl Size {
    /// One list value (or check operand) of `len` bytes.
    pub(super) fn value(len: usize) -> Size {
        Size {
            terms: 1,
            bytes: len,
        }
    }

    pub(super) fn add(self, o: Size) -> Size {
        Size {
            terms: self.terms.saturating_add(o.terms),
            bytes: self.bytes.saturating_add(o.bytes),
        }
    }

    fn times(self, n: usize) -> Size {
        Size {
            terms: self.terms.saturating_mul(n),
            bytes: self.bytes.saturating_mul(n),
        }
    }

    /// Whether this size is past `limit` in terms or in bytes.
    pub(super) fn over(self, limit: Size) -> bool {
        self.terms > limit.terms || self.bytes > limit.bytes
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} terms, {} bytes", self.terms, self.bytes)
    }
}

/// Most one list may expand to (Falco's largest has a few hundred items).
pub(super) const MAX_LIST: Size = Size {
    terms: 100_000,
    bytes: 8 << 20,
};

/// Most one rule's condition (macros, lists and exceptions expanded) may
/// expand to.
pub(super) const MAX_RULE: Size = Size {
    terms: 100_000,
    bytes: 8 << 20,
};

/// Most all lists, or all rules, of one load may expand to, beyond what the
/// input's own size pays for (see [`total_limit`]).
const MAX_TOTAL_BASE: Size = Size {
    terms: 1_000_000,
    bytes: 64 << 20,
};

/// The bound on the sum over all lists, and over all rules, for an input of
/// `input_bytes`: a fixed allowance plus a few terms per input byte, so that
/// a large but plain rules file (no amplification) always loads.
pub(super) fn total_limit(input_bytes: usize) -> Size {
    MAX_TOTAL_BASE.add(Size {
        terms: input_bytes / 8,
        bytes: input_bytes.saturating_mul(2),
    })
}

/// "within the bound of N terms and M MiB", for messages.
pub(super) fn describe(limit: Size) -> String {
    format!(
        "{} terms (checks and list values) or {} MiB of values",
        limit.terms,
        limit.bytes >> 20
    )
}

/// A parsed condition's parts: the size of its own checks and values, and
/// the macros it names with how often.
#[derive(Default)]
pub(super) struct Parts {
    pub own: Size,
    pub macros: HashMap<String, usize>,
}

impl Compiler<'_> {
    /// Walk `e` into `parts` (lists named in values count their expanded size).
    pub(super) fn parts(&self, e: &Expr, parts: &mut Parts) {
        match e {
            Expr::And(items, _) | Expr::Or(items, _) => {
                for i in items {
                    self.parts(i, parts);
                }
            }
            Expr::Not(inner, _) => self.parts(inner, parts),
            Expr::Macro(name, _) => *parts.macros.entry(name.clone()).or_default() += 1,
            Expr::Check(c) => {
                parts.own = parts.own.add(Size::value(0));
                let values = match &c.rhs {
                    Rhs::Value(v) => std::slice::from_ref(v),
                    Rhs::List(items, _) => items.as_slice(),
                    Rhs::None | Rhs::Operand(_) => &[],
                };
                for v in values {
                    let listed = (!v.quoted)
                        .then(|| self.lists.get(v.text.as_str()))
                        .flatten();
                    parts.own = parts.own.add(match listed {
                        Some(l) => l.size,
                        None => Size::value(v.text.len()),
                    });
                }
            }
        }
    }

    /// The expanded size of `parts`, with the macro sizes worked out so far.
    pub(super) fn size_of(&self, parts: &Parts) -> Size {
        let mut s = parts.own;
        for (name, n) in &parts.macros {
            if let Some(&i) = self.macros.get(name.as_str()) {
                s = s.add(self.macro_sizes[i].times(*n));
            }
        }
        s
    }

    /// Every macro's expanded size, in one depth-first pass over the graph
    /// of macro references (no recursion: chains of thousands of macros are
    /// fine). A reference that closes a cycle counts nothing here; the
    /// expansion reports the cycle.
    pub(super) fn size_macros(&mut self) {
        let n = self.col.macros.len();
        let parts: Vec<Parts> = (0..n)
            .map(|i| {
                let mut p = Parts::default();
                if let Some(ast) = &self.macro_asts[i] {
                    self.parts(ast, &mut p);
                }
                p
            })
            .collect();
        let refs: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| {
                p.macros
                    .keys()
                    .filter_map(|m| self.macros.get(m.as_str()).copied())
                    .collect()
            })
            .collect();
        // 0: not seen, 1: on the stack, 2: sized.
        let mut state = vec![0u8; n];
        self.macro_sizes = vec![Size::default(); n];
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some(&mut (m, ref mut next)) = stack.last_mut() {
                if let Some(&r) = refs[m].get(*next) {
                    *next += 1;
                    if state[r] == 0 {
                        state[r] = 1;
                        stack.push((r, 0));
                    }
                    continue;
                }
                stack.pop();
                state[m] = 2;
                self.macro_sizes[m] = self.size_of(&parts[m]);
            }
        }
    }

    /// The macro to blame for a condition of `parts` being too large: the
    /// largest macro it names, followed down while one it names is itself
    /// past `limit` (so doubling chains name their first oversized level).
    /// Returns (named macro, first macro past the bound).
    pub(super) fn blame(&self, parts: &Parts, limit: Size) -> Option<(String, String)> {
        let biggest = |p: &Parts| {
            p.macros
                .keys()
                .filter_map(|m| self.macros.get(m.as_str()).map(|&i| (m, i)))
                .max_by_key(|&(_, i)| self.macro_sizes[i].terms)
                .map(|(m, i)| (m.clone(), i))
        };
        let (top, mut at) = biggest(parts)?;
        let mut name = top.clone();
        for _ in 0..self.col.macros.len() {
            let mut p = Parts::default();
            if let Some(ast) = &self.macro_asts[at] {
                self.parts(ast, &mut p);
            }
            match biggest(&p) {
                Some((m, i)) if self.macro_sizes[i].over(limit) => {
                    name = m;
                    at = i;
                }
                _ => break,
            }
        }
        Some((top, name))
    }

    /// Count what `ast` (a condition of the rule, or an exception built as
    /// one) expands to against the rule's and the load's bounds, before
    /// expanding it; past a bound, fail naming the macro (or list) to blame.
    pub(super) fn charge(
        &mut self,
        ast: &Expr,
        src: &CondText,
        rcx: &mut RuleCx,
    ) -> Result<(), Fail> {
        let mut parts = Parts::default();
        self.parts(ast, &mut parts);
        let size = self.size_of(&parts);
        let (limit, what) = if rcx.size.add(size).over(MAX_RULE) {
            (MAX_RULE, "the rule's condition expands")
        } else if self.rules_size.add(size).over(self.rules_limit) {
            (self.rules_limit, "the rules of this load together expand")
        } else {
            rcx.size = rcx.size.add(size);
            self.rules_size = self.rules_size.add(size);
            return Ok(());
        };
        let blame = match self.blame(&parts, limit) {
            Some((top, first)) if top == first => format!(
                ": macro '{top}' expands to {}",
                self.macro_sizes[self.macros[top.as_str()]]
            ),
            Some((top, first)) => format!(
                ": macro '{top}' expands to {}; the first macro past the bound is '{first}'",
                self.macro_sizes[self.macros[top.as_str()]]
            ),
            None => String::new(),
        };
        Err(self.fail(
            rcx,
            src,
            ast.span(),
            Code::ErrCompileCondition,
            format!("{what} to more than {}{blame}", describe(limit)),
        ))
    }
}
