//! The compiled form of a condition and its evaluator (the hot path).
//!
//! Everything that can be decided at load time is: field names are bound to
//! registry entries, values are parsed to the field's type, `in`/`intersects`
//! lists are hash sets (with a length filter), `pmatch` lists are prefix sets
//! probed once per path component, globs and regexes are compiled once,
//! `evt.type` checks are bit masks and fold away where the rule's index
//! already decides them, constant fields (`evt.dir`, `evt.num`) fold, and
//! `and`/`or` operands are ordered so selective, cheap checks run first.
//! Checks on plain fields read them through direct accessors. Evaluating a rule extracts each field at most once per check,
//! borrowing from the event; no allocation happens unless a composed field
//! (`proc.cmdline`, rendered flags) is read.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::event::EvtType;
use crate::fields::{EvalCtx, Field, IntGetter, StrGetter, Value};

use super::parser::{Op, Transformer};

/// A word-at-a-time multiplicative hash (the Fx scheme): set members are
/// short strings from rule files, probed with process names and paths; this
/// is several times faster than SipHash for them, and the sets are built from
/// operator-controlled rule files, so flooding resistance is not needed.
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub type FastSet<T> = HashSet<T, BuildHasherDefault<Fnv>>;

/// Bit for an event type in a mask.
pub fn type_bit(t: EvtType) -> u16 {
    1 << (t as u16)
}

pub const ALL_TYPES: u16 = (1 << EvtType::ALL.len()) - 1;

#[derive(Debug)]
pub enum Node {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    /// `evt.type in (...)` as a bit mask.
    EvtType(u16),
    Check(Box<CheckNode>),
    /// A check on a Falco field mamori lacks; the rule is inactive, never evaluated.
    Unsupported,
}

#[derive(Debug)]
pub struct Operand {
    pub field: Field,
    /// Applied innermost first.
    pub transforms: Vec<Transformer>,
}

#[derive(Debug)]
pub struct CheckNode {
    pub lhs: Operand,
    pub op: Op,
    pub rhs: Rhs,
    /// Fast path for plain string / integer fields compared with constants.
    pub fast: Fast,
}

#[derive(Debug, Clone, Copy)]
pub enum Fast {
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
    pub fn eval_on(&self, ev: &crate::event::Event) -> bool {
        self.eval(&EvalCtx::new(ev))
    }

    pub fn new(lhs: Operand, op: Op, rhs: Rhs) -> CheckNode {
        let plain =
            lhs.transforms.is_empty() && op != Op::Exists && !matches!(rhs, Rhs::Operand(_));
        let memoized = matches!(
            lhs.field.id(),
            crate::fields::FieldId::ProcArgs
                | crate::fields::FieldId::ProcCmdline
                | crate::fields::FieldId::ProcPCmdline
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
pub enum Rhs {
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

/// A string set for `in`/`intersects`, with a length filter in front of the
/// hash lookup: most probes (a process name against a list of 40 others) are
/// rejected by their length alone.
#[derive(Debug, Default)]
pub struct StrSet {
    set: FastSet<String>,
    /// Bit `i` set if a member has length `i` (bit 63: length >= 63).
    lens: u64,
}

impl StrSet {
    fn len_bit(n: usize) -> u64 {
        1u64 << n.min(63)
    }

    pub fn insert(&mut self, s: String) {
        self.lens |= Self::len_bit(s.len());
        self.set.insert(s);
    }

    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        self.lens & Self::len_bit(s.len()) != 0 && self.set.contains(s)
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.set.iter()
    }
}

/// An IPv4/IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

/// `pmatch` set: a path matches if it equals an entry or lies below it.
#[derive(Debug, Default)]
pub struct PathPrefixes {
    set: FastSet<String>,
    root: bool,
}

impl PathPrefixes {
    pub fn insert(&mut self, p: &str) {
        let t = p.trim_end_matches('/');
        if t.is_empty() && p.starts_with('/') {
            self.root = true;
        } else {
            self.set.insert(t.to_string());
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        if self.root && path.starts_with('/') {
            return true;
        }
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if self.set.contains(path) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| i > 0 && self.set.contains(&path[..i]))
    }
}

/// A compiled shell glob (`*`, `?`, `[...]`, `\` escape); `*` also matches `/`
/// (fnmatch without FNM_PATHNAME, as Falco uses it).
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<GlobTok>,
    icase: bool,
}

#[derive(Debug, Clone)]
enum GlobTok {
    Char(char),
    Any,
    Star,
    Class(bool, Vec<(char, char)>),
}

impl Glob {
    pub fn new(pat: &str, icase: bool) -> Glob {
        let mut toks = Vec::new();
        let chars: Vec<char> = pat.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' => {
                    if !matches!(toks.last(), Some(GlobTok::Star)) {
                        toks.push(GlobTok::Star);
                    }
                }
                '?' => toks.push(GlobTok::Any),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    toks.push(GlobTok::Char(fold(chars[i], icase)));
                }
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(chars.get(j), Some('!' | '^'));
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    while j < chars.len() && (chars[j] != ']' || first) {
                        let lo = chars[j];
                        if chars.get(j + 1) == Some(&'-')
                            && chars.get(j + 2).is_some_and(|c| *c != ']')
                        {
                            ranges.push((fold(lo, icase), fold(chars[j + 2], icase)));
                            j += 3;
                        } else {
                            ranges.push((fold(lo, icase), fold(lo, icase)));
                            j += 1;
                        }
                        first = false;
                    }
                    if j < chars.len() {
                        toks.push(GlobTok::Class(neg, ranges));
                        i = j;
                    } else {
                        toks.push(GlobTok::Char('['));
                    }
                }
                _ => toks.push(GlobTok::Char(fold(c, icase))),
            }
            i += 1;
        }
        Glob { toks, icase }
    }

    /// Iterative matcher with single-star backtracking: O(len(s) * len(pattern)).
    /// ASCII input (nearly every path) is matched in place, without allocating.
    pub fn matches(&self, s: &str) -> bool {
        if s.is_ascii() {
            let b = s.as_bytes();
            self.match_with(b.len(), |i| fold(b[i] as char, self.icase))
        } else {
            let chars: Vec<char> = s.chars().map(|c| fold(c, self.icase)).collect();
            self.match_with(chars.len(), |i| chars[i])
        }
    }

    fn match_with(&self, len: usize, at: impl Fn(usize) -> char) -> bool {
        let (mut si, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < len {
            let c = at(si);
            let ok = match self.toks.get(pi) {
                Some(GlobTok::Char(p)) => *p == c,
                Some(GlobTok::Any) => true,
                Some(GlobTok::Class(neg, r)) => {
                    r.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *neg
                }
                Some(GlobTok::Star) => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                None => false,
            };
            if ok {
                si += 1;
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        self.toks[pi..].iter().all(|t| matches!(t, GlobTok::Star))
    }
}

fn fold(c: char, icase: bool) -> char {
    if icase {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

fn contains_icase(hay: &str, needle_lower: &str) -> bool {
    let h = hay.as_bytes();
    let n = needle_lower.as_bytes();
    if n.is_empty() {
        return true;
    }
    if n.len() > h.len() {
        return false;
    }
    (0..=h.len() - n.len()).any(|i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
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
    pub fn get<'c>(&self, cx: &'c EvalCtx<'_>) -> Value<'c> {
        let mut v = self.field.extract_in(cx);
        for t in &self.transforms {
            v = apply_transform(*t, v);
        }
        v
    }
}

impl Node {
    pub fn eval(&self, cx: &EvalCtx<'_>) -> bool {
        match self {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| n.eval(cx)),
            Node::Or(v) => v.iter().any(|n| n.eval(cx)),
            Node::Not(n) => !n.eval(cx),
            Node::EvtType(mask) => mask & type_bit(cx.ev.evt_type) != 0,
            Node::Check(c) => c.eval(cx),
            Node::Unsupported => false,
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

/// Fold constants: `and` with a false operand is false, true operands drop
/// out; `or` dually; `not` of a constant is a constant.
pub fn simplify(n: Node) -> Node {
    match n {
        Node::Not(inner) => match simplify(*inner) {
            Node::Const(b) => Node::Const(!b),
            Node::Not(x) => *x,
            x => Node::Not(Box::new(x)),
        },
        Node::And(v) => {
            let mut out = Vec::with_capacity(v.len());
            for c in v.into_vec() {
                match simplify(c) {
                    Node::Const(true) => {}
                    Node::Const(false) => return Node::Const(false),
                    Node::And(inner) => out.extend(inner.into_vec()),
                    x => out.push(x),
                }
            }
            match out.len() {
                0 => Node::Const(true),
                1 => out.pop().unwrap_or(Node::Const(true)),
                _ => Node::And(out.into_boxed_slice()),
            }
        }
        Node::Or(v) => {
            let mut out = Vec::with_capacity(v.len());
            for c in v.into_vec() {
                match simplify(c) {
                    Node::Const(false) => {}
                    Node::Const(true) => return Node::Const(true),
                    Node::Or(inner) => out.extend(inner.into_vec()),
                    x => out.push(x),
                }
            }
            let mut out = merge_suffixes(out);
            match out.len() {
                0 => Node::Const(false),
                1 => out.pop().unwrap_or(Node::Const(false)),
                _ => Node::Or(out.into_boxed_slice()),
            }
        }
        x => x,
    }
}

/// A Falco `regex` check: the pattern must match the whole value. An
/// unanchored search for the same pattern runs first: a whole-value match
/// is also a match somewhere, and the unanchored search can skip ahead on
/// the pattern's literals (`s3api `, `/dev/`), so most values are rejected
/// without running the anchored automaton over them.
#[derive(Debug)]
pub struct MatchRegex {
    pub whole: regex::Regex,
    pub somewhere: regex::Regex,
}

impl MatchRegex {
    #[inline]
    pub fn is_match(&self, s: &str) -> bool {
        self.somewhere.is_match(s) && self.whole.is_match(s)
    }
}

/// A plain `field endswith "literal"` check: its field and suffix.
fn plain_suffix(n: &Node) -> Option<(crate::fields::FieldId, crate::fields::FieldArg, &str)> {
    match n {
        Node::Check(c)
            if c.op == Op::EndsWith
                && c.lhs.transforms.is_empty()
                && matches!(c.fast, Fast::Str(_)) =>
        {
            match &c.rhs {
                Rhs::Str(r) => Some((c.lhs.field.id(), c.lhs.field.arg, r.as_str())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Merge the `or` operands that are `endswith` checks of the same plain
/// string field into one check against a [`SuffixSet`] (credential-file
/// macros list a dozen path endings of `fd.name`). Same truth, one field
/// read and one hash probe instead of a dozen comparisons.
fn merge_suffixes(nodes: Vec<Node>) -> Vec<Node> {
    let mut groups: Vec<(crate::fields::FieldId, crate::fields::FieldArg, Vec<usize>)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if let Some((id, arg, _)) = plain_suffix(n) {
            match groups.iter_mut().find(|g| g.0 == id && g.1 == arg) {
                Some(g) => g.2.push(i),
                None => groups.push((id, arg, vec![i])),
            }
        }
    }
    groups.retain(|g| g.2.len() >= 3);
    if groups.is_empty() {
        return nodes;
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for (_, _, members) in &groups {
        let mut set = SuffixSet::default();
        let mut first: Option<Box<CheckNode>> = None;
        for &i in members {
            if let Some(Node::Check(c)) = slots[i].take() {
                if let Rhs::Str(r) = &c.rhs {
                    set.insert(r);
                }
                first.get_or_insert(c);
            }
        }
        if let Some(mut c) = first {
            c.rhs = Rhs::Suffixes(set);
            out.push(Node::Check(c));
        }
    }
    out.extend(slots.into_iter().flatten());
    out
}

/// Suffixes of one field. A suffix containing `/` can only match a value
/// whose last path component equals the suffix's last component, so those
/// are found by one hash lookup of the value's last component; the others
/// are compared one by one.
#[derive(Debug, Default)]
pub struct SuffixSet {
    by_last: std::collections::HashMap<String, Vec<String>, std::hash::BuildHasherDefault<Fnv>>,
    other: Vec<String>,
}

impl SuffixSet {
    pub fn insert(&mut self, suffix: &str) {
        match suffix.rfind('/') {
            Some(i) => self
                .by_last
                .entry(suffix[i + 1..].to_string())
                .or_default()
                .push(suffix.to_string()),
            None => self.other.push(suffix.to_string()),
        }
    }

    pub fn matches(&self, s: &str) -> bool {
        let last = s.rfind('/').map_or(s, |i| &s[i + 1..]);
        let by_last = s.contains('/')
            && self
                .by_last
                .get(last)
                .is_some_and(|v| v.iter().any(|suf| s.ends_with(suf.as_str())));
        by_last || self.other.iter().any(|suf| s.ends_with(suf.as_str()))
    }
}

/// Decide `evt.type` checks for a rule indexed under `mask`: a check that
/// every indexed type passes is true, one that none passes is false.
pub fn specialize(n: Node, mask: u16) -> Node {
    let n = match n {
        Node::EvtType(m) if m & mask == mask => Node::Const(true),
        Node::EvtType(m) if m & mask == 0 => Node::Const(false),
        Node::Not(inner) => Node::Not(Box::new(specialize(*inner, mask))),
        Node::And(v) => Node::And(
            v.into_vec()
                .into_iter()
                .map(|c| specialize(c, mask))
                .collect(),
        ),
        Node::Or(v) => Node::Or(
            v.into_vec()
                .into_iter()
                .map(|c| specialize(c, mask))
                .collect(),
        ),
        x => x,
    };
    simplify(n)
}

/// Static evaluation cost estimate, used to order the operands of `and` /
/// `or` so that cheap, selective checks run first (the language has no side
/// effects, so order does not change results).
pub fn cost(n: &Node) -> u32 {
    match n {
        Node::Const(_) | Node::EvtType(_) | Node::Unsupported => 0,
        Node::Not(inner) => cost(inner),
        Node::And(v) | Node::Or(v) => v.iter().map(cost).sum::<u32>() + 1,
        Node::Check(c) => {
            use crate::fields::FieldId as F;
            let field = match c.lhs.field.id() {
                F::ProcCmdline | F::ProcArgs | F::ProcPCmdline | F::ProcACmdline => 6,
                F::EvtArg | F::EvtTime | F::EvtTimeIso | F::ContainerImageRepository => 4,
                F::ProcAName | F::ProcAPid | F::ProcAExe | F::ProcAExePath
                    if matches!(c.lhs.field.arg, crate::fields::FieldArg::AnyAncestor) =>
                {
                    8
                }
                _ => 2,
            } + 3 * c.lhs.transforms.len() as u32;
            let op = match &c.rhs {
                Rhs::None | Rhs::Int(_) | Rhs::Bool(_) | Rhs::Ip(_) => 1,
                Rhs::Str(_) | Rhs::Bytes(_) => 2,
                Rhs::Contains(_) | Rhs::StrSet(_) | Rhs::IntSet(_) | Rhs::IpSet(_) => 3,
                Rhs::Prefixes(_) | Rhs::Nets(_) | Rhs::Suffixes(_) => 4,
                Rhs::StrLower(_) => 6,
                Rhs::Glob(_) => 8,
                Rhs::Regex(_) => 12,
                Rhs::Operand(_) => 6,
            };
            field + op
        }
    }
}

/// Reorder operands (stable, recursively) so evaluation stops early:
/// `and` runs event-type masks first, then positive checks (usually false
/// for a given event: `proc.name in (...)`, `fd.name startswith ...`), then
/// negated ones (the `and not exception` tail, usually true), cheapest first
/// within each group; `or` runs cheapest first.
pub fn order_by_cost(n: &mut Node) {
    match n {
        Node::And(v) => {
            for c in v.iter_mut() {
                order_by_cost(c);
            }
            v.sort_by_key(|c| {
                let class = match c {
                    Node::Const(_) | Node::EvtType(_) => 0,
                    Node::Not(_) => 2,
                    _ => 1,
                };
                (class, cost(c))
            });
        }
        Node::Or(v) => {
            for c in v.iter_mut() {
                order_by_cost(c);
            }
            v.sort_by_key(cost);
        }
        Node::Not(inner) => order_by_cost(inner),
        _ => {}
    }
}

/// Process names a node can only be true for, if its truth requires
/// `proc.name = x` / `proc.name in (...)` (directly, in an `and`, or in every
/// branch of an `or`). The engine indexes such rules by name, so an event
/// only meets the rules that can match its process.
pub fn required_names(n: &Node) -> Option<Vec<String>> {
    match n {
        Node::Check(c)
            if c.lhs.field.id() == crate::fields::FieldId::ProcName
                && c.lhs.transforms.is_empty() =>
        {
            match (c.op, &c.rhs) {
                (Op::Eq, Rhs::Str(s)) => Some(vec![s.clone()]),
                (Op::In | Op::Intersects, Rhs::StrSet(set)) => Some(set.iter().cloned().collect()),
                _ => None,
            }
        }
        Node::And(v) => v.iter().filter_map(required_names).min_by_key(Vec::len),
        Node::Or(v) => {
            let mut all = Vec::new();
            for c in v.iter() {
                all.extend(required_names(c)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// For which event types a node may be true / may be false; a rule is
/// indexed under its `may_true` set.
pub fn type_sets(n: &Node) -> (u16, u16) {
    match n {
        Node::Const(true) => (ALL_TYPES, 0),
        Node::Const(false) => (0, ALL_TYPES),
        Node::EvtType(m) => (*m, ALL_TYPES & !m),
        Node::Not(inner) => {
            let (t, f) = type_sets(inner);
            (f, t)
        }
        Node::And(v) => v.iter().fold((ALL_TYPES, 0), |(t, f), n| {
            let (nt, nf) = type_sets(n);
            (t & nt, f | nf)
        }),
        Node::Or(v) => v.iter().fold((0, ALL_TYPES), |(t, f), n| {
            let (nt, nf) = type_sets(n);
            (t | nt, f & nf)
        }),
        Node::Check(_) | Node::Unsupported => (ALL_TYPES, ALL_TYPES),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn suffix_set_agrees_with_ends_with() {
        let sufs = [
            "/.aws/credentials",
            "/.kube/config",
            "config",
            "/etc/",
            "a/b",
            "/x",
        ];
        let mut set = SuffixSet::default();
        for x in sufs {
            set.insert(x);
        }
        let values = [
            "/root/.aws/credentials",
            "/root/.aws/credentials.bak",
            "/home/u/.kube/config",
            "/home/u/.kubeconfig",
            "kubeconfig",
            "/etc/",
            "/etc",
            "xa/b",
            "/a/b",
            "b",
            "/x",
            "x",
            "",
            "/",
            "/root/.aws/credentials/",
            "credentials",
        ];
        for v in values {
            let naive = sufs.iter().any(|x| v.ends_with(x));
            assert_eq!(set.matches(v), naive, "{v:?}");
        }
    }
    use super::*;

    #[test]
    fn glob_semantics() {
        let g = Glob::new("/etc/*shadow*", false);
        assert!(g.matches("/etc/shadow"));
        assert!(g.matches("/etc/sub/gshadow-"));
        assert!(!g.matches("/tmp/shadow"));
        assert!(Glob::new("a?c", false).matches("abc"));
        assert!(Glob::new("[a-c]x", false).matches("bx"));
        assert!(!Glob::new("[!a-c]x", false).matches("bx"));
        assert!(Glob::new("*.PEM", true).matches("key.pem"));
        assert!(Glob::new("\\*", false).matches("*"));
        assert!(!Glob::new("\\*", false).matches("a"));
        assert!(Glob::new("", false).matches(""));
        // pathological pattern stays fast
        let g = Glob::new(&"*a".repeat(50), false);
        assert!(!g.matches(&"a".repeat(30)));
    }

    #[test]
    fn pmatch_is_component_wise() {
        let mut p = PathPrefixes::default();
        p.insert("/etc");
        p.insert("/usr/lib/");
        assert!(p.matches("/etc"));
        assert!(p.matches("/etc/passwd"));
        assert!(!p.matches("/etcx/passwd"));
        assert!(p.matches("/usr/lib/x.so"));
        assert!(!p.matches("/usr/li"));
        let mut root = PathPrefixes::default();
        root.insert("/");
        assert!(root.matches("/anything"));
    }

    #[test]
    fn ipnet_contains() {
        let n = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(n.contains(&"192.0.2.77".parse().unwrap()));
        assert!(!n.contains(&"192.0.3.1".parse().unwrap()));
        assert!(IpNet::parse("::1/128")
            .unwrap()
            .contains(&"::1".parse().unwrap()));
        assert!(IpNet::parse("1.2.3.4/33").is_none());
    }

    #[test]
    fn b64() {
        assert_eq!(b64_decode("aGVsbG8=").unwrap(), b"hello");
        assert!(b64_decode("!!").is_none());
    }
}
