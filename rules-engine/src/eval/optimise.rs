//! The load-time optimiser: rewrites a compiled condition once, before any
//! event, so evaluation does less — constants fold, `evt.type` checks are
//! decided for the types a rule is indexed under, `endswith` runs merge into
//! suffix sets, operands are ordered cheapest and most selective first —
//! and derives what the engine indexes rules by (event types, required
//! process names). Nothing here runs per event.

use super::{CheckNode, Fast, Node, Rhs, SuffixSet, ALL_TYPES};
use crate::fields::{FieldArg, FieldId};
use crate::parser::Op;

/// Fold constants: `and` with a false operand is false, true operands drop
/// out; `or` dually; `not` of a constant is a constant.
pub(crate) fn simplify(n: Node) -> Node {
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

/// A plain `field endswith "literal"` check: its field and suffix.
fn plain_suffix(n: &Node) -> Option<(FieldId, FieldArg, &str)> {
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
    let mut groups: Vec<(FieldId, FieldArg, Vec<usize>)> = Vec::new();
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

/// Decide `evt.type` checks for a rule indexed under `mask`: a check that
/// every indexed type passes is true, one that none passes is false.
pub(crate) fn specialize(n: Node, mask: super::TypeMask) -> Node {
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
fn cost(n: &Node) -> u32 {
    match n {
        Node::Const(_) | Node::EvtType(_) | Node::Unsupported => 0,
        Node::InSet(_) => 2,
        Node::Not(inner) | Node::Memo(_, inner) => cost(inner),
        Node::And(v) | Node::Or(v) => v.iter().map(cost).sum::<u32>() + 1,
        Node::Check(c) => {
            use FieldId as F;
            let field = match c.lhs.field.id() {
                F::ProcCmdline | F::ProcArgs | F::ProcPCmdline | F::ProcACmdline => 6,
                F::EvtArg | F::EvtTime | F::EvtTimeIso | F::ContainerImageRepository => 4,
                F::ProcAName | F::ProcAPid | F::ProcAExe | F::ProcAExePath
                    if matches!(c.lhs.field.arg, FieldArg::AnyAncestor) =>
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
pub(crate) fn order_by_cost(n: &mut Node) {
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
pub(crate) fn required_names(n: &Node) -> Option<Vec<String>> {
    match n {
        Node::Check(c) if c.lhs.field.id() == FieldId::ProcName && c.lhs.transforms.is_empty() => {
            match (c.op, &c.rhs) {
                (Op::Eq, Rhs::Str(s)) => Some(vec![s.clone()]),
                (Op::In | Op::Intersects, Rhs::StrSet(set)) => Some(set.iter().cloned().collect()),
                _ => None,
            }
        }
        Node::Memo(_, inner) => required_names(inner),
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
pub(crate) fn type_sets(n: &Node) -> (super::TypeMask, super::TypeMask) {
    match n {
        Node::Const(true) => (ALL_TYPES, 0),
        Node::Const(false) => (0, ALL_TYPES),
        Node::EvtType(m) => (*m, ALL_TYPES & !m),
        Node::Not(inner) => {
            let (t, f) = type_sets(inner);
            (f, t)
        }
        Node::Memo(_, inner) => type_sets(inner),
        Node::And(v) => v.iter().fold((ALL_TYPES, 0), |(t, f), n| {
            let (nt, nf) = type_sets(n);
            (t & nt, f | nf)
        }),
        Node::Or(v) => v.iter().fold((0, ALL_TYPES), |(t, f), n| {
            let (nt, nf) = type_sets(n);
            (t | nt, f & nf)
        }),
        Node::Check(_) | Node::Unsupported | Node::InSet(_) => (ALL_TYPES, ALL_TYPES),
    }
}
