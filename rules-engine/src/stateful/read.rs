//! Reading a rule's `threshold:` / `sequence:` block: keys checked, bounds
//! enforced ([`super::MAX_STEPS`] & co.), each problem reported at its
//! `line:col` like any other rule key (the reader calls `read_stateful`).

use std::sync::Arc;

use super::{DEFAULT_MAX_KEYS, MAX_STEPS, MAX_THRESHOLD_COUNT, MAX_THRESHOLD_SUM, MAX_WINDOW_NS};
use crate::diag::Code;
use crate::reader::{CondText, Ctx, ItemCx, R};
use crate::yaml::{Mark, Node, NodeKind, SourceFile};

/// A rule's `threshold:` or `sequence:` block, as read (semantics in
/// `rules/README.md`, evaluation in [`super::machine`]).
#[derive(Debug, Clone)]
pub(crate) enum StatefulInfo {
    Threshold(ThresholdInfo),
    Sequence(SequenceInfo),
}

/// `threshold: {by, distinct | sum, count, within, max_keys}`.
#[derive(Debug, Clone)]
pub(crate) struct ThresholdInfo {
    pub by: Vec<(String, Mark)>,
    pub distinct: Vec<(String, Mark)>,
    /// A numeric field whose values are added up; `count` is then the sum
    /// that fires.
    pub sum: Option<(String, Mark)>,
    pub count: u64,
    pub within_ns: u64,
    pub max_keys: usize,
    pub ctx: Ctx,
}

/// `sequence: {by, tree, within, steps, max_keys}`; the rule's own
/// condition is the last step.
#[derive(Debug, Clone)]
pub(crate) struct SequenceInfo {
    pub by: Vec<(String, Mark)>,
    pub tree: bool,
    pub within_ns: u64,
    pub steps: Vec<StepInfo>,
    pub max_keys: usize,
    pub ctx: Ctx,
}

#[derive(Debug, Clone)]
pub(crate) struct StepInfo {
    pub name: String,
    pub cond: CondText,
}

/// Read a rule's `threshold:` or `sequence:` block (at most one of them).
pub(crate) fn read_stateful(
    cx: &ItemCx,
    item: &Node,
    file: &Arc<SourceFile>,
) -> R<Option<StatefulInfo>> {
    let (t, s) = (item.get("threshold"), item.get("sequence"));
    if let (Some(_), Some(n)) = (t, s) {
        return Err(cx.err(
            Code::ErrValidate,
            n.mark,
            "a rule can have 'threshold' or 'sequence', not both",
        ));
    }
    let Some((key, node)) = t.map(|n| ("threshold", n)).or(s.map(|n| ("sequence", n))) else {
        return Ok(None);
    };
    let NodeKind::Map(entries) = &node.kind else {
        return Err(cx.err(
            Code::ErrYamlValidate,
            node.mark,
            format!("'{key}' must be a mapping, found {}", node.type_name()),
        ));
    };
    let known: &[&str] = if key == "threshold" {
        &["by", "distinct", "sum", "count", "within", "max_keys"]
    } else {
        &["by", "tree", "within", "steps", "max_keys"]
    };
    for (k, _) in entries {
        let name = k.as_str().unwrap_or("?");
        if !known.contains(&name) {
            return Err(cx.err(
                Code::ErrYamlValidate,
                k.mark,
                format!(
                    "unknown key '{name}' in '{key}' (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let block = Block { cx, node, key };
    let ctx = Ctx {
        file: file.clone(),
        mark: node.mark,
    };
    let within_ns = block.within()?;
    let max_keys = block
        .number("max_keys", 1, 1_000_000)?
        .map(|n| n as usize)
        .unwrap_or(DEFAULT_MAX_KEYS);
    let mut by = block.fields("by")?;
    if by.is_empty() {
        by = vec![("proc.pid".to_string(), node.mark)];
    }
    if key == "threshold" {
        let sum = block.fields("sum")?;
        let distinct = block.fields("distinct")?;
        if sum.len() > 1 || (!sum.is_empty() && !distinct.is_empty()) {
            return Err(cx.err(
                Code::ErrValidate,
                sum[0].1,
                "'threshold.sum' takes one numeric field, and not together with 'distinct'",
            ));
        }
        let max = if sum.is_empty() {
            u64::from(MAX_THRESHOLD_COUNT)
        } else {
            MAX_THRESHOLD_SUM
        };
        let min = if sum.is_empty() { 2 } else { 1 };
        let count = block.number("count", min, max)?.ok_or_else(|| {
            cx.err(
                Code::ErrValidate,
                node.mark,
                "'threshold' needs 'count' (how many events or distinct values, or the sum, fire it)",
            )
        })?;
        return Ok(Some(StatefulInfo::Threshold(ThresholdInfo {
            by,
            distinct,
            sum: sum.into_iter().next(),
            count,
            within_ns,
            max_keys,
            ctx,
        })));
    }
    let tree = node
        .get("tree")
        .map(|n| cx.boolean(n, "tree"))
        .transpose()?
        .unwrap_or(false);
    Ok(Some(StatefulInfo::Sequence(SequenceInfo {
        by,
        tree,
        within_ns,
        steps: read_steps(cx, node, file)?,
        max_keys,
        ctx,
    })))
}

/// The block being read (`key` is `threshold` or `sequence`).
struct Block<'a> {
    cx: &'a ItemCx<'a>,
    node: &'a Node,
    key: &'static str,
}

impl Block<'_> {
    /// A field list, written as one string or a list of strings.
    fn fields(&self, k: &str) -> R<Vec<(String, Mark)>> {
        match self.node.get(k) {
            None => Ok(Vec::new()),
            Some(n) => match &n.kind {
                NodeKind::Scalar(s, _) if !n.is_null() => Ok(vec![(s.clone(), n.mark)]),
                _ => self.cx.string_list(n, k),
            },
        }
    }

    /// A whole number in `min..=max`, if present.
    fn number(&self, k: &str, min: u64, max: u64) -> R<Option<u64>> {
        let Some(n) = self.node.get(k) else {
            return Ok(None);
        };
        let v = self.cx.string(n, k)?;
        match v.trim().parse::<u64>() {
            Ok(x) if (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(self.cx.err(
                Code::ErrValidate,
                n.mark,
                format!(
                    "'{}.{k}' must be a whole number from {min} to {max}, found '{v}'",
                    self.key
                ),
            )),
        }
    }

    /// The required `within` window, in ns.
    fn within(&self) -> R<u64> {
        let (cx, key) = (self.cx, self.key);
        let Some(n) = self.node.get("within") else {
            return Err(cx.err(
                Code::ErrValidate,
                self.node.mark,
                format!("'{key}' needs 'within' (a window such as 10s, 500ms, 2m)"),
            ));
        };
        let v = cx.string(n, "within")?;
        match crate::duration::parse_ns(v) {
            Some(ns) if ns <= MAX_WINDOW_NS => Ok(ns),
            _ => Err(cx.err(
                Code::ErrValidate,
                n.mark,
                format!("'{key}.within' must be a duration from 1ms to 1h (10s, 500ms, 2m), found '{v}'"),
            )),
        }
    }
}

/// A sequence's `steps:` (1 to [`MAX_STEPS`] of `{name, condition}`).
fn read_steps(cx: &ItemCx, node: &Node, file: &Arc<SourceFile>) -> R<Vec<StepInfo>> {
    let steps_node = node.get("steps").ok_or_else(|| {
        cx.err(
            Code::ErrValidate,
            node.mark,
            "'sequence' needs 'steps' (the earlier steps; the rule's condition is the last)",
        )
    })?;
    let NodeKind::Seq(items) = &steps_node.kind else {
        return Err(cx.err(
            Code::ErrYamlValidate,
            steps_node.mark,
            "'sequence.steps' must be a list of {name, condition}",
        ));
    };
    if items.is_empty() || items.len() > MAX_STEPS {
        return Err(cx.err(
            Code::ErrValidate,
            steps_node.mark,
            format!("'sequence.steps' must have 1 to {MAX_STEPS} steps"),
        ));
    }
    let mut steps: Vec<StepInfo> = Vec::new();
    for st in items {
        let (Some(n), Some(c)) = (st.get("name"), st.get("condition")) else {
            return Err(cx.err(
                Code::ErrYamlValidate,
                st.mark,
                "each sequence step needs 'name' and 'condition'",
            ));
        };
        let name = cx.string(n, "name")?.to_string();
        let ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name.as_bytes()[0].is_ascii_alphabetic();
        if !ok || steps.iter().any(|s| s.name == name) {
            return Err(cx.err(
                Code::ErrValidate,
                n.mark,
                format!("step name '{name}' must be unique, start with a letter and use only letters, digits and '_'"),
            ));
        }
        steps.push(StepInfo {
            name,
            cond: CondText::from_scalar(file, c, cx.string(c, "condition")?),
        });
    }
    Ok(steps)
}
