//! Work shared across rules, done once per event.
//!
//! Falco's rules are built from the same macros and lists: `spawned_process`,
//! `proc.name in (shell_binaries)`, `container`, `open_read`, the sensitive
//! file checks. Without sharing, an event meets each of them once per rule
//! that uses it. At load, [`plan`] gives every sub-condition a structural key
//! (a check's field, operator and compiled value; an `and`/`or` by its
//! operands' keys); those that occur more than once across the rule set are
//! wrapped in [`Node::Memo`] with a slot. Per event, [`Memo`] remembers each
//! slot's truth the first time it is evaluated, so a shared predicate or
//! macro is decided at most once per event, whatever number of rules use it.
//! The language has no side effects, so reusing a result changes nothing.

use std::cell::Cell;
use std::collections::HashMap;

use super::matchers::sorted_key;
use super::{CheckNode, Fast, Node, Operand, Rhs};

/// Slots a rule set may use (the rest of its shared nodes stay unmemoised).
pub(crate) const MEMO_SLOTS: usize = 1024;
const WORDS: usize = MEMO_SLOTS / 64;

/// One event's memo: per slot, whether it was decided and its truth. Lives
/// on the stack (256 bytes, no allocation).
pub(crate) struct Memo {
    known: [Cell<u64>; WORDS],
    value: [Cell<u64>; WORDS],
}

impl Memo {
    pub(crate) fn new() -> Memo {
        Memo {
            known: Default::default(),
            value: Default::default(),
        }
    }

    /// The slot's truth, if decided this event.
    #[inline]
    pub(crate) fn peek(&self, slot: u32) -> Option<bool> {
        let w = (slot as usize / 64) % WORDS;
        let bit = 1u64 << (slot % 64);
        (self.known[w].get() & bit != 0).then(|| self.value[w].get() & bit != 0)
    }

    /// Record the slot's truth.
    #[inline]
    pub(crate) fn set(&self, slot: u32, b: bool) {
        let w = (slot as usize / 64) % WORDS;
        let bit = 1u64 << (slot % 64);
        self.known[w].set(self.known[w].get() | bit);
        if b {
            self.value[w].set(self.value[w].get() | bit);
        }
    }

    /// The slot's truth, evaluating `f` the first time it is asked for.
    #[inline]
    pub(crate) fn get_or(&self, slot: u32, f: impl FnOnce() -> bool) -> bool {
        let w = (slot as usize / 64) % WORDS;
        let bit = 1u64 << (slot % 64);
        let known = &self.known[w];
        if known.get() & bit != 0 {
            return self.value[w].get() & bit != 0;
        }
        let r = f();
        known.set(known.get() | bit);
        if r {
            let v = &self.value[w];
            v.set(v.get() | bit);
        }
        r
    }
}

fn operand_key(o: &Operand) -> String {
    format!("{}|{:?}|{:?}", o.field.info.name, o.field.arg, o.transforms)
}

fn rhs_key(r: &Rhs) -> String {
    match r {
        Rhs::None => "-".into(),
        Rhs::Str(s) => format!("s{s:?}"),
        Rhs::Contains(f) => format!("c{:?}", f.needle()),
        Rhs::StrLower(s) => format!("l{s:?}"),
        Rhs::Bytes(b) => format!("b{b:?}"),
        Rhs::Glob(g) => format!("g{}", g.key()),
        Rhs::Regex(re) => format!("r{:?}", re.whole.as_str()),
        Rhs::StrSet(s) => format!("S{}", s.key()),
        Rhs::Prefixes(p) => format!("P{}", p.key()),
        Rhs::Suffixes(s) => format!("X{}", s.key()),
        Rhs::Int(n) => format!("i{n}"),
        Rhs::IntSet(s) => format!("I{}", sorted_key(s.iter())),
        Rhs::Bool(b) => format!("B{b}"),
        Rhs::Ip(ip) => format!("p{ip}"),
        Rhs::IpSet(s) => format!("Q{}", sorted_key(s.iter())),
        Rhs::Nets(v) => format!("n{v:?}"),
        Rhs::Operand(o) => format!("o{}", operand_key(o)),
    }
}

fn check_key(c: &CheckNode) -> String {
    format!("K{}|{:?}|{}", operand_key(&c.lhs), c.op, rhs_key(&c.rhs))
}

/// Whether remembering a node saves more than the lookup costs: a plain
/// integer comparison does not.
fn worth(n: &Node) -> bool {
    match n {
        Node::And(_) | Node::Or(_) => true,
        Node::Check(c) => !matches!(c.fast, Fast::Int(_)),
        _ => false,
    }
}

/// Structural ids of sub-conditions: equal ids, equal truth on every event.
#[derive(Default)]
struct Ids {
    by_key: HashMap<String, u32>,
    /// Checks are boxed: their ids are cached by address, so a large list
    /// is rendered to its key once.
    checks: HashMap<*const CheckNode, u32>,
}

impl Ids {
    fn intern(&mut self, key: String) -> u32 {
        let next = self.by_key.len() as u32;
        *self.by_key.entry(key).or_insert(next)
    }

    fn id(&mut self, n: &Node) -> u32 {
        let key = match n {
            Node::Const(b) => format!("C{b}"),
            Node::EvtType(m) => format!("T{m}"),
            Node::Unsupported => "U".into(),
            Node::Memo(_, inner) => return self.id(inner),
            Node::InSet(t) => format!("M{}", check_key(&t.orig)),
            Node::Not(x) => format!("N{}", self.id(x)),
            Node::And(v) | Node::Or(v) => {
                let mut k = String::from(if matches!(n, Node::And(_)) { "A" } else { "O" });
                for c in v.iter() {
                    k.push_str(&self.id(c).to_string());
                    k.push(',');
                }
                k
            }
            Node::Check(c) => {
                let p: *const CheckNode = &**c;
                if let Some(&id) = self.checks.get(&p) {
                    return id;
                }
                let id = self.intern(check_key(c));
                self.checks.insert(p, id);
                return id;
            }
        };
        self.intern(key)
    }
}

fn children_mut(n: &mut Node) -> &mut [Node] {
    match n {
        Node::And(v) | Node::Or(v) => v,
        Node::Not(x) | Node::Memo(_, x) => std::slice::from_mut(&mut **x),
        _ => &mut [],
    }
}

/// Count occurrences top-down; a repeat is not descended into (its parts
/// are covered by its own memo).
fn count(n: &mut Node, ids: &mut Ids, occ: &mut HashMap<u32, u32>) {
    let id = ids.id(n);
    let o = occ.entry(id).or_default();
    *o += 1;
    if *o == 1 {
        for c in children_mut(n) {
            count(c, ids, occ);
        }
    }
}

struct Wrap<'a> {
    ids: Ids,
    occ: HashMap<u32, u32>,
    slots: &'a mut HashMap<u32, u32>,
}

impl Wrap<'_> {
    fn wrap(&mut self, n: &mut Node) {
        let id = self.ids.id(n);
        for c in children_mut(n) {
            self.wrap(c);
        }
        if self.occ.get(&id).copied().unwrap_or(0) < 2 || !worth(n) {
            return;
        }
        let next = self.slots.len() as u32;
        if next as usize >= MEMO_SLOTS && !self.slots.contains_key(&id) {
            return;
        }
        let slot = *self.slots.entry(id).or_insert(next);
        let inner = std::mem::replace(n, Node::Const(false));
        *n = Node::Memo(slot, Box::new(inner));
    }
}

/// Wrap the sub-conditions that occur in more than one place across
/// `roots` in [`Node::Memo`]; returns the number of slots used.
pub(crate) fn plan(roots: &mut [&mut Node]) -> usize {
    let mut ids = Ids::default();
    let mut occ = HashMap::new();
    for r in roots.iter_mut() {
        count(r, &mut ids, &mut occ);
    }
    let mut slots = HashMap::new();
    let mut w = Wrap {
        ids,
        occ,
        slots: &mut slots,
    };
    for r in roots.iter_mut() {
        w.wrap(r);
    }
    slots.len()
}
