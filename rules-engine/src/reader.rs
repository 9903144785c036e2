//! Stage 2a, the reader: one YAML item → a typed info ([`ListInfo`],
//! [`MacroInfo`], [`RuleInfo`]) keeping the `line:col` of every value, with
//! each key's type checked where it is written. A malformed item becomes a
//! `Fail` naming the item and the exact position; the collector records it
//! and skips the item.
//!
//! Nothing here parses conditions; a condition stays text plus a map from
//! offsets to file positions ([`CondText`]) so the compiler can point at the
//! exact line and column of a problem, even inside appended text.

use std::sync::Arc;

use crate::alert::Priority;
use crate::diag::{Code, Diagnostic, ItemRef};
use crate::stateful::read::{read_stateful, StatefulInfo};
use crate::yaml::{Mark, Node, NodeKind, ScalarSource, SourceFile, Style};

/// Condition text assembled from one or more YAML scalars.
#[derive(Debug, Clone)]
pub(crate) struct CondText {
    pub text: String,
    pieces: Vec<(usize, usize, ScalarSource)>,
    fallback: (Arc<SourceFile>, Mark),
}

impl CondText {
    pub(crate) fn from_scalar(file: &Arc<SourceFile>, node: &Node, value: &str) -> CondText {
        let style = match &node.kind {
            NodeKind::Scalar(_, st) => *st,
            _ => Style::Plain,
        };
        CondText {
            text: value.to_string(),
            pieces: vec![(
                0,
                value.len(),
                ScalarSource {
                    file: file.clone(),
                    mark: node.mark,
                    style,
                },
            )],
            fallback: (file.clone(), node.mark),
        }
    }

    /// A condition with no text of its own (generated from exceptions): every
    /// offset maps to `mark`.
    pub(crate) fn synthetic(file: &Arc<SourceFile>, mark: Mark) -> CondText {
        CondText {
            text: String::new(),
            pieces: Vec::new(),
            fallback: (file.clone(), mark),
        }
    }

    pub(crate) fn append(&mut self, other: &CondText) {
        let base = self.text.len() + 1;
        self.text.push(' ');
        self.text.push_str(&other.text);
        for (off, len, src) in &other.pieces {
            self.pieces.push((base + off, *len, src.clone()));
        }
    }

    /// File and position of a byte offset of `text`.
    pub(crate) fn position(&self, offset: usize) -> (&str, Mark) {
        for (off, len, src) in &self.pieces {
            if offset >= *off && offset <= off + len {
                let value = &self.text[*off..off + len];
                return (&src.file.name, src.position(value, offset - off));
            }
        }
        (&self.fallback.0.name, self.fallback.1)
    }
}

/// Where an item was defined.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub file: Arc<SourceFile>,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub(crate) struct ListInfo {
    pub name: String,
    pub items: Vec<String>,
    pub ctx: Ctx,
    pub index: usize,
    pub visibility: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct MacroInfo {
    pub name: String,
    pub cond: CondText,
    pub ctx: Ctx,
    pub index: usize,
    pub visibility: usize,
}

/// An exception value: a scalar or a (nested) list of scalars.
#[derive(Debug, Clone)]
pub(crate) enum ExValue {
    Scalar(String),
    List(Vec<ExValue>, Mark),
}

#[derive(Debug, Clone)]
pub(crate) struct ExceptionInfo {
    pub name: String,
    /// `Ok(single field)` or `Err(list of fields)`.
    pub fields: Option<ExFields>,
    pub comps: Option<ExFields>,
    pub values: Vec<ExValue>,
    pub ctx: Ctx,
}

#[derive(Debug, Clone)]
pub(crate) enum ExFields {
    One(String, Mark),
    Many(Vec<(String, Mark)>),
}

#[derive(Debug, Clone)]
pub(crate) struct RuleInfo {
    pub name: String,
    pub desc: String,
    pub cond: CondText,
    pub output: String,
    pub output_ctx: Ctx,
    pub priority: Priority,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub exceptions: Vec<ExceptionInfo>,
    pub source: String,
    pub warn_evttypes: bool,
    pub skip_if_unknown_filter: bool,
    /// mamori's stateful extension (`threshold:` / `sequence:`), if any.
    pub stateful: Option<StatefulInfo>,
    pub ctx: Ctx,
    pub index: usize,
}

/// A diagnostic at `mark` of `ctx`'s file, about `item` (kind, name) if any.
pub(crate) fn diag(
    code: Code,
    ctx: &Ctx,
    mark: Mark,
    item: Option<(&'static str, &str)>,
    msg: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity: code.severity(),
        code,
        message: msg.into(),
        file: ctx.file.name.clone(),
        line: mark.line,
        col: mark.col,
        item: item.map(|(kind, name)| ItemRef {
            kind,
            name: name.to_string(),
        }),
    }
}

/// An item-level failure: the item is skipped, the diagnostic recorded.
pub(crate) struct Fail(pub(crate) Diagnostic);

pub(crate) type R<T> = Result<T, Fail>;

/// The item being read: its file, kind (`rule`, `macro`, `list`) and name,
/// for positioned diagnostics.
pub(crate) struct ItemCx<'a> {
    pub(crate) file: &'a Arc<SourceFile>,
    pub(crate) kind: &'static str,
    pub(crate) name: String,
}

impl ItemCx<'_> {
    /// A diagnostic about this item at `mark`.
    pub(crate) fn diag(&self, code: Code, mark: Mark, msg: impl Into<String>) -> Diagnostic {
        let ctx = Ctx {
            file: self.file.clone(),
            mark,
        };
        diag(code, &ctx, mark, Some((self.kind, &self.name)), msg)
    }

    /// The item fails (is skipped) with this diagnostic.
    pub(crate) fn err(&self, code: Code, mark: Mark, msg: impl Into<String>) -> Fail {
        Fail(self.diag(code, mark, msg))
    }

    pub(crate) fn string<'n>(&self, node: &'n Node, key: &str) -> R<&'n str> {
        match &node.kind {
            NodeKind::Scalar(s, _) => Ok(s),
            _ => Err(self.err(
                Code::ErrYamlValidate,
                node.mark,
                format!("'{key}' must be a string, found {}", node.type_name()),
            )),
        }
    }

    pub(crate) fn boolean(&self, node: &Node, key: &str) -> R<bool> {
        match node.as_str() {
            Some("true" | "True" | "TRUE" | "yes") => Ok(true),
            Some("false" | "False" | "FALSE" | "no") => Ok(false),
            _ => Err(self.err(
                Code::ErrYamlValidate,
                node.mark,
                format!("'{key}' must be true or false"),
            )),
        }
    }

    pub(crate) fn string_list(&self, node: &Node, key: &str) -> R<Vec<(String, Mark)>> {
        if node.is_null() {
            return Ok(Vec::new());
        }
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .map(|n| self.string(n, key).map(|s| (s.to_string(), n.mark)))
                .collect(),
            _ => Err(self.err(
                Code::ErrYamlValidate,
                node.mark,
                format!(
                    "'{key}' must be a list of strings, found {}",
                    node.type_name()
                ),
            )),
        }
    }
}

/// How an item changes the earlier item of its name, per key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Append,
    Replace,
}

/// Read define / append / replace per key from `override` and the
/// deprecated `append: true` (whose warning goes to `warnings`); `None` is a
/// plain definition.
pub(crate) fn read_modes(
    cx: &ItemCx,
    item: &Node,
    entries: &[(Node, Node)],
    warnings: &mut Vec<Diagnostic>,
    appendable: &[&str],
    replaceable: &[&str],
) -> R<Option<Vec<(String, Mode)>>> {
    let append = match item.get("append") {
        Some(n) => cx.boolean(n, "append")?,
        None => false,
    };
    let Some(ov) = item.get("override") else {
        if append {
            warnings.push(cx.diag(
                Code::DeprecatedItem,
                item.mark,
                "'append: true' is deprecated; use 'override: {<key>: append}'",
            ));
            let keys = entries
                .iter()
                .filter_map(|(k, _)| k.as_str())
                .filter(|k| appendable.contains(k))
                .map(|k| (k.to_string(), Mode::Append))
                .collect();
            return Ok(Some(keys));
        }
        return Ok(None);
    };
    if append {
        return Err(cx.err(
            Code::ErrValidate,
            ov.mark,
            "'override' and 'append: true' cannot be used together",
        ));
    }
    let NodeKind::Map(ov_entries) = &ov.kind else {
        return Err(cx.err(
            Code::ErrYamlValidate,
            ov.mark,
            "'override' must be a mapping of key: append|replace",
        ));
    };
    let mut out = Vec::new();
    for (k, v) in ov_entries {
        let key = cx.string(k, "override")?;
        let how = cx.string(v, key)?;
        let mode = match how {
            "append" if appendable.contains(&key) => Mode::Append,
            "replace" if replaceable.contains(&key) => Mode::Replace,
            "append" | "replace" => {
                return Err(cx.err(
                    Code::ErrValidate,
                    k.mark,
                    format!("key '{key}' cannot be overridden with '{how}'"),
                ))
            }
            _ => {
                return Err(cx.err(
                    Code::ErrValidate,
                    v.mark,
                    format!(
                        "override value for '{key}' must be 'append' or 'replace', found '{how}'"
                    ),
                ))
            }
        };
        if item.get(key).is_none() {
            return Err(cx.err(
                Code::ErrValidate,
                k.mark,
                format!("override of '{key}' but the item has no '{key}' key"),
            ));
        }
        out.push((key.to_string(), mode));
    }
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("");
        if !matches!(key, "rule" | "macro" | "list" | "override")
            && !out.iter().any(|(o, _)| o == key)
        {
            return Err(cx.err(
                Code::ErrValidate,
                k.mark,
                format!("key '{key}' is not listed under 'override'"),
            ));
        }
    }
    Ok(Some(out))
}

/// A rule item's keys as written, each read and type-checked; `None` where
/// the item lacks the key (an `override`/`append` item carries only the keys
/// it changes, so defaults are the collector's business).
pub(crate) struct RuleKeys {
    pub(crate) cond: Option<CondText>,
    /// The output text and where it starts.
    pub(crate) output: Option<(String, Mark)>,
    pub(crate) desc: Option<String>,
    pub(crate) priority: Option<Priority>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) enabled: Option<bool>,
    pub(crate) warn_evttypes: Option<bool>,
    pub(crate) skip_if_unknown_filter: Option<bool>,
    pub(crate) exceptions: Option<Vec<ExceptionInfo>>,
    pub(crate) source: Option<String>,
    pub(crate) stateful: Option<StatefulInfo>,
}

/// Read a rule item's keys (in this order, so the first bad key is the one
/// reported).
pub(crate) fn read_rule_keys(cx: &ItemCx, item: &Node) -> R<RuleKeys> {
    let file = cx.file;
    let str_key = |key: &str| -> R<Option<(String, Mark)>> {
        match item.get(key) {
            Some(n) => Ok(Some((cx.string(n, key)?.to_string(), n.mark))),
            None => Ok(None),
        }
    };
    let boolean = |key: &str| item.get(key).map(|n| cx.boolean(n, key)).transpose();
    let cond = match item.get("condition") {
        Some(n) => Some(CondText::from_scalar(file, n, cx.string(n, "condition")?)),
        None => None,
    };
    let output = str_key("output")?;
    let desc = str_key("desc")?.map(|(s, _)| s);
    let priority = match item.get("priority") {
        Some(n) => Some(
            cx.string(n, "priority")?
                .parse::<Priority>()
                .map_err(|e| cx.err(Code::ErrValidate, n.mark, e.to_string()))?,
        ),
        None => None,
    };
    let tags = match item.get("tags") {
        Some(n) => Some(
            cx.string_list(n, "tags")?
                .into_iter()
                .map(|(s, _)| s)
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let enabled = boolean("enabled")?;
    let warn_evttypes = boolean("warn_evttypes")?;
    let skip_if_unknown_filter = boolean("skip-if-unknown-filter")?;
    let exceptions = match item.get("exceptions") {
        Some(n) => Some(read_exceptions(cx, n)?),
        None => None,
    };
    let source = str_key("source")?.map(|(s, _)| s);
    let stateful = read_stateful(cx, item, file)?;
    Ok(RuleKeys {
        cond,
        output,
        desc,
        priority,
        tags,
        enabled,
        warn_evttypes,
        skip_if_unknown_filter,
        exceptions,
        source,
        stateful,
    })
}

/// A rule's `exceptions:` list; values may nest (lists of lists).
fn read_exceptions(cx: &ItemCx, node: &Node) -> R<Vec<ExceptionInfo>> {
    let NodeKind::Seq(items) = &node.kind else {
        if node.is_null() {
            return Ok(Vec::new());
        }
        return Err(cx.err(
            Code::ErrYamlValidate,
            node.mark,
            "'exceptions' must be a list",
        ));
    };
    let mut out = Vec::new();
    for ex in items {
        if !matches!(ex.kind, NodeKind::Map(_)) {
            return Err(cx.err(
                Code::ErrYamlValidate,
                ex.mark,
                "each exception must be a mapping",
            ));
        }
        let name = ex
            .get("name")
            .ok_or_else(|| cx.err(Code::ErrYamlValidate, ex.mark, "exception has no 'name'"))?;
        let name = cx.string(name, "name")?.to_string();
        let fields = ex
            .get("fields")
            .map(|n| read_ex_fields(cx, n, "fields"))
            .transpose()?;
        let comps = ex
            .get("comps")
            .map(|n| read_ex_fields(cx, n, "comps"))
            .transpose()?;
        let values = match ex.get("values") {
            None => Vec::new(),
            Some(n) if n.is_null() => Vec::new(),
            Some(n) => match read_ex_value(cx, n, 0)? {
                ExValue::List(v, _) => v,
                ExValue::Scalar(..) => {
                    return Err(cx.err(
                        Code::ErrYamlValidate,
                        n.mark,
                        "exception 'values' must be a list",
                    ))
                }
            },
        };
        out.push(ExceptionInfo {
            name,
            fields,
            comps,
            values,
            ctx: Ctx {
                file: cx.file.clone(),
                mark: ex.mark,
            },
        });
    }
    Ok(out)
}

fn read_ex_fields(cx: &ItemCx, node: &Node, key: &str) -> R<ExFields> {
    match &node.kind {
        NodeKind::Scalar(s, _) => Ok(ExFields::One(s.clone(), node.mark)),
        NodeKind::Seq(_) => Ok(ExFields::Many(cx.string_list(node, key)?)),
        NodeKind::Map(_) => Err(cx.err(
            Code::ErrYamlValidate,
            node.mark,
            format!("exception '{key}' must be a string or a list of strings"),
        )),
    }
}

fn read_ex_value(cx: &ItemCx, node: &Node, depth: u32) -> R<ExValue> {
    if depth > 8 {
        return Err(cx.err(
            Code::ErrYamlValidate,
            node.mark,
            "exception values nested too deeply",
        ));
    }
    match &node.kind {
        NodeKind::Scalar(s, _) => Ok(ExValue::Scalar(s.clone())),
        NodeKind::Seq(items) => Ok(ExValue::List(
            items
                .iter()
                .map(|n| read_ex_value(cx, n, depth + 1))
                .collect::<R<Vec<_>>>()?,
            node.mark,
        )),
        NodeKind::Map(_) => Err(cx.err(
            Code::ErrYamlValidate,
            node.mark,
            "exception values must be strings or lists of strings",
        )),
    }
}
