//! The compiled form of a condition and its evaluator (the hot path).
//!
//! Everything that can be decided at load time is: field names are bound to
//! registry entries, values are parsed to the field's type, `in`/`intersects`
//! lists are hash sets (with a length filter), `pmatch` lists are prefix sets
//! probed once per path component, globs and regexes are compiled once,
//! `evt.type` checks are bit masks and fold away where the rule's index
//! already decides them, constant fields (`evt.dir`, `evt.num`) fold, and
//! `and`/`or` operands are ordered so selective, cheap checks run first.
//! Checks on plain fields read them through direct accessors. Evaluating a
//! rule extracts each field at most once per check, borrowing from the
//! event; no allocation happens unless a composed field (`proc.cmdline`,
//! rendered flags) is read.
//!
//! This module is the tree and its evaluation; `matchers` holds the compiled
//! right-hand sides (sets, globs, prefixes, networks), `optimise` the
//! load-time rewriting.

use std::net::IpAddr;

use crate::event::EvtType;
use crate::fields::{EvalCtx, Field, IntGetter, StrGetter, Value};
use crate::parser::{Op, Transformer};

mod matchers;
mod memo;
mod optimise;
mod program;
mod sets;

pub(crate) use matchers::{FastSet, Fnv, Glob, IpNet, MatchRegex, PathPrefixes, StrSet, SuffixSet};
pub(crate) use memo::{plan as plan_memo, Memo};
pub(crate) use optimise::{order_by_cost, required_names, simplify, specialize, type_sets};
pub(crate) use program::Program;
pub(crate) use sets::{intern as intern_sets, MAX_GROUPS, ROW_UNKNOWN};

use matchers::{contains_icase, memmem};

/// Bit for an event type in a mask.
pub(crate) fn type_bit(t: EvtType) -> TypeMask {
    1 << (t as u32)
}

/// A set of event types, one bit per [`EvtType`] (at most 128 of them).
pub(crate) type TypeMask = u128;

pub(crate) const ALL_TYPES: TypeMask = TypeMask::MAX >> (128 - EvtType::ALL.len());
const _: () = assert!(EvtType::ALL.len() <= 128);

#[derive(Debug)]
pub(crate) enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `evt.type in (...)` as a bit mask.
    EvtType(TypeMask),
    Check(Box<CheckNode>),
    /// A check on a Falco field mamori lacks; the rule is inactive, never evaluated.
    Unsupported,
    /// A sub-condition several rules share, decided once per event (see
    /// `memo`): its slot in the event's memo, and the condition.
    Memo(u32, Box<Node>),
    /// A membership check answered from its field's merged lists (see `sets`).
    InSet(Box<sets::SetTest>),
}

#[derive(Debug)]
pub(crate) struct Operand {
    pub field: Field,
    /// Applied innermost first.
    pub transforms: Vec<Transformer>,
}

#[derive(Debug)]
pub(crate) struct CheckNode {
    pub lhs: Operand,
    pub op: Op,
    pub rhs: Rhs,
    /// Fast path for plain string / integer fields compared with constants.
    pub fast: Fast,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Fast {
    None,
    Str(StrGetter),
    Int(IntGetter),
    /// Plain field, constant right side: extract and compare, no memo,
    /// no transformers, no ancestor iteration.
    Plain,
    /// Either-end fields (`fd.ip`, `fd.net`, `fd.port`): the client and the
    /// server side read separately, no list built.
    Either(Field, Field),
}

impl CheckNode {
    /// Evaluate against one event (used to fold constant checks at load).
    pub(crate) fn eval_on(&self, ev: &crate::event::Event) -> bool {
        self.eval(&EvalCtx::new(ev))
    }

    pub(crate) fn new(lhs: Operand, op: Op, rhs: Rhs) -> CheckNode {
        let plain =
            lhs.transforms.is_empty() && op != Op::Exists && !matches!(rhs, Rhs::Operand(_));
        let memoized = matches!(
            lhs.field.id(),
            crate::fields::FieldId::ProcArgs
                | crate::fields::FieldId::ProcCmdline
                | crate::fields::FieldId::ProcPCmdline
                | crate::fields::FieldId::EvtArg
        );
        let any = lhs.field.arg == crate::fields::FieldArg::AnyAncestor;
        let fast = match (plain, lhs.field.str_getter(), lhs.field.int_getter()) {
            (true, Some(g), _) => Fast::Str(g),
            (true, None, Some(g)) => Fast::Int(g),
            (true, None, None) if lhs.field.either_ends().is_some() => {
                let (a, b) = lhs.field.either_ends().unwrap_or((lhs.field, lhs.field));
                Fast::Either(a, b)
            }
            (true, None, None) if !memoized && !any => Fast::Plain,
            _ => Fast::None,
        };
        CheckNode { lhs, op, rhs, fast }
    }
}

#[derive(Debug)]
pub(crate) enum Rhs {
    None,
    Str(String),
    /// `contains` needle with a precompiled substring searcher.
    Contains(Box<memchr::memmem::Finder<'static>>),
    /// Lower-cased needle for `icontains`.
    StrLower(String),
    Bytes(Vec<u8>),
    Glob(Glob),
    Regex(MatchRegex),
    StrSet(StrSet),
    Prefixes(PathPrefixes),
    /// Several `endswith` checks of one field joined by `or`, merged.
    Suffixes(SuffixSet),
    Int(i64),
    IntSet(FastSet<i64>),
    Bool(bool),
    Ip(IpAddr),
    IpSet(FastSet<IpAddr>),
    Nets(Vec<IpNet>),
    Operand(Operand),
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b'\n' | b'\r' => continue,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn apply_transform<'a>(t: Transformer, v: Value<'a>) -> Value<'a> {
    match v {
        Value::List(items) => {
            Value::List(items.into_iter().map(|x| apply_transform(t, x)).collect())
        }
        Value::Str(s) => match t {
            Transformer::ToLower => {
                if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    Value::Str(s.to_ascii_lowercase().into())
                } else {
                    Value::Str(s)
                }
            }
            Transformer::ToUpper => Value::Str(s.to_ascii_uppercase().into()),
            Transformer::Basename => match s.rfind('/') {
                Some(i) => Value::Str(s[i + 1..].to_string().into()),
                None => Value::Str(s),
            },
            Transformer::Len => Value::Int(s.len() as i64),
            Transformer::B64 => match b64_decode(&s) {
                Some(b) => Value::Str(String::from_utf8_lossy(&b).into_owned().into()),
                None => Value::Missing,
            },
        },
        other => other,
    }
}

impl Operand {
    pub(crate) fn get<'c>(&self, cx: &'c EvalCtx<'_>) -> Value<'c> {
        let mut v = self.field.extract_in(cx);
        for t in &self.transforms {
            v = apply_transform(*t, v);
        }
        v
    }
}

impl Node {
    pub(crate) fn eval(&self, cx: &EvalCtx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| n.eval(cx)),
            Node::Or(v) => v.iter().any(|n| n.eval(cx)),
            Node::Not(n) => !n.eval(cx),
            Node::EvtType(mask) => mask & type_bit(cx.ev.evt_type) != 0,
            Node::Check(c) => c.eval(cx),
            Node::Unsupported => false,
            Node::Memo(slot, n) => cx.memo.get_or(*slot, || n.eval(cx)),
            Node::InSet(t) => t.eval(cx),
        }
    }
}

impl CheckNode {
    fn eval(&self, cx: &EvalCtx<'_>) -> bool {
        match self.fast {
            Fast::Str(get) => return get(cx).is_some_and(|s| self.apply_str(s)),
            Fast::Int(get) => return get(cx.ev).is_some_and(|n| self.apply_int(n)),
            Fast::Plain => {
                return match self.lhs.field.extract(cx.ev) {
                    Value::Str(s) => self.apply_str(&s),
                    Value::Int(n) => self.apply_int(n),
                    Value::Missing => false,
                    Value::List(items) => self.apply_list(&items, None),
                    v => self.apply(&v, None),
                }
            }
            Fast::Either(a, b) => {
                let (va, vb) = (a.extract(cx.ev), b.extract(cx.ev));
                let present = [&va, &vb]
                    .into_iter()
                    .filter(|v| !matches!(v, Value::Missing));
                return if self.op == Op::Ne {
                    let mut any = false;
                    for v in present {
                        any = true;
                        if !self.apply(v, None) {
                            return false;
                        }
                    }
                    any
                } else {
                    present.into_iter().any(|v| self.apply(v, None))
                };
            }
            Fast::None => {}
        }
        if self.op != Op::Exists && !matches!(self.rhs, Rhs::Operand(_)) {
            // Any-ancestor fields: test each ancestor in place, no list.
            // `!=` means "no ancestor equals" (as Falco negates multi-valued
            // fields); every other operator "some ancestor satisfies".
            let ne = self.op == Op::Ne;
            let hit = self.lhs.field.any_ancestor(cx.ev, |mut v| {
                for t in &self.lhs.transforms {
                    v = apply_transform(*t, v);
                }
                !matches!(v, Value::Missing) && (self.apply(&v, None) != ne)
            });
            let hit = hit.map(|h| {
                if ne {
                    !h && !cx.ev.proc.ancestors.is_empty()
                } else {
                    h
                }
            });
            if let Some(hit) = hit {
                return hit;
            }
        }
        let v = self.lhs.get(cx);
        if self.op == Op::Exists {
            return match &v {
                Value::Missing => false,
                Value::List(l) => !l.is_empty(),
                _ => true,
            };
        }
        let other;
        let rhs_val = if let Rhs::Operand(o) = &self.rhs {
            other = o.get(cx);
            Some(&other)
        } else {
            None
        };
        match &v {
            Value::Missing => false,
            Value::List(items) => self.apply_list(items, rhs_val),
            x => self.apply(x, rhs_val),
        }
    }

    fn apply(&self, v: &Value, rhs_val: Option<&Value>) -> bool {
        if let Some(r) = rhs_val {
            return match r {
                Value::List(items) => items.iter().any(|r| self.apply_value(v, r)),
                r => self.apply_value(v, r),
            };
        }
        match (v, &self.rhs) {
            (Value::Str(s), _) => self.apply_str(s),
            (Value::Int(n), _) => self.apply_int(*n),
            (Value::Bool(b), Rhs::IntSet(set)) => {
                matches!(self.op, Op::In | Op::Intersects) && set.contains(&i64::from(*b))
            }
            (Value::Bool(b), Rhs::Bool(r)) => match self.op {
                Op::Eq | Op::In | Op::Intersects => b == r,
                Op::Ne => b != r,
                _ => false,
            },
            (Value::Ip(ip), rhs) => match (self.op, rhs) {
                (Op::Eq, Rhs::Ip(r)) => ip == r,
                (Op::Ne, Rhs::Ip(r)) => ip != r,
                (Op::In | Op::Intersects, Rhs::IpSet(set)) => set.contains(ip),
                (Op::Eq | Op::In | Op::Intersects, Rhs::Nets(nets)) => {
                    nets.iter().any(|n| n.contains(ip))
                }
                (Op::Ne, Rhs::Nets(nets)) => !nets.iter().any(|n| n.contains(ip)),
                _ => false,
            },
            _ => false,
        }
    }

    /// Multi-valued fields (client-or-server address, any ancestor): `!=`
    /// holds when no value equals (Falco: `fd.net != 127.0.0.0/8` is false
    /// if either end is loopback); other operators when any value matches.
    fn apply_list(&self, items: &[Value], rhs_val: Option<&Value>) -> bool {
        if self.op == Op::Ne {
            !items.is_empty() && items.iter().all(|x| self.apply(x, rhs_val))
        } else {
            items.iter().any(|x| self.apply(x, rhs_val))
        }
    }

    #[inline]
    fn apply_str(&self, s: &str) -> bool {
        match (self.op, &self.rhs) {
            (Op::Eq, Rhs::Str(r)) => s == r,
            (Op::Ne, Rhs::Str(r)) => s != r,
            (Op::Contains, Rhs::Contains(f)) => f.find(s.as_bytes()).is_some(),
            (Op::IContains, Rhs::StrLower(r)) => contains_icase(s, r),
            (Op::StartsWith, Rhs::Str(r)) => s.starts_with(r.as_str()),
            (Op::EndsWith, Rhs::Str(r)) => s.ends_with(r.as_str()),
            (Op::BContains, Rhs::Bytes(b)) => memmem(s.as_bytes(), b),
            (Op::BStartsWith, Rhs::Bytes(b)) => s.as_bytes().starts_with(b),
            (Op::Glob | Op::IGlob, Rhs::Glob(g)) => g.matches(s),
            (Op::Regex, Rhs::Regex(re)) => re.is_match(s),
            (Op::In | Op::Intersects, Rhs::StrSet(set)) => set.contains(s),
            (Op::PMatch, Rhs::Prefixes(p)) => p.matches(s),
            (Op::EndsWith, Rhs::Suffixes(set)) => set.matches(s),
            _ => false,
        }
    }

    #[inline]
    fn apply_int(&self, n: i64) -> bool {
        match (self.op, &self.rhs) {
            (Op::Eq, Rhs::Int(r)) => n == *r,
            (Op::Ne, Rhs::Int(r)) => n != *r,
            (Op::Lt, Rhs::Int(r)) => n < *r,
            (Op::Le, Rhs::Int(r)) => n <= *r,
            (Op::Gt, Rhs::Int(r)) => n > *r,
            (Op::Ge, Rhs::Int(r)) => n >= *r,
            (Op::In | Op::Intersects, Rhs::IntSet(set)) => set.contains(&n),
            _ => false,
        }
    }

    /// Field-to-field comparison (`val(...)` / transformer on the right).
    fn apply_value(&self, v: &Value, r: &Value) -> bool {
        match (v, r) {
            (Value::Str(a), Value::Str(b)) => {
                let (a, b): (&str, &str) = (a, b);
                match self.op {
                    Op::Eq | Op::In | Op::Intersects => a == b,
                    Op::Ne => a != b,
                    Op::Contains => a.contains(b),
                    Op::IContains => contains_icase(a, &b.to_ascii_lowercase()),
                    Op::StartsWith => a.starts_with(b),
                    Op::EndsWith => a.ends_with(b),
                    Op::BContains => memmem(a.as_bytes(), b.as_bytes()),
                    Op::BStartsWith => a.as_bytes().starts_with(b.as_bytes()),
                    Op::Glob => Glob::new(b, false).matches(a),
                    Op::IGlob => Glob::new(b, true).matches(a),
                    Op::PMatch => {
                        let mut p = PathPrefixes::default();
                        p.insert(b);
                        p.matches(a)
                    }
                    _ => false,
                }
            }
            (Value::Int(a), Value::Int(b)) => match self.op {
                Op::Eq | Op::In | Op::Intersects => a == b,
                Op::Ne => a != b,
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                _ => false,
            },
            (Value::Bool(a), Value::Bool(b)) => match self.op {
                Op::Eq | Op::In | Op::Intersects => a == b,
                Op::Ne => a != b,
                _ => false,
            },
            (Value::Ip(a), Value::Ip(b)) => match self.op {
                Op::Eq | Op::In | Op::Intersects => a == b,
                Op::Ne => a != b,
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64() {
        assert_eq!(b64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(b64_decode("!!").is_none());
    }
}
