//! Stage 2: the reader turns each YAML item into a typed info (keeping its
//! position), and the collector applies Falco's ordering rules across files:
//!
//! * files load in the order given; a directory contributes its `*.yaml` /
//!   `*.yml` files in name order;
//! * a second definition of a list, macro or rule with the same name replaces
//!   the first *in place* (it keeps the first one's position in the order);
//! * `override: {key: append|replace}` (and the deprecated `append: true`)
//!   modify an earlier item and are an error if there is none; appended
//!   conditions are joined with a single space, as Falco does;
//! * a rule item with only `rule` and `enabled` toggles an existing rule;
//! * macros (and lists inside lists) only see items defined before their
//!   last definition or modification ("visibility"); rule conditions see all.
//!
//! Nothing here parses conditions; a condition stays text plus a map from
//! offsets to file positions ([`CondText`]) so the compiler can point at the
//! exact line and column of a problem, even inside appended text.

use std::sync::Arc;

use super::diag::{Code, Diagnostic, ItemRef};
use super::yaml::{Mark, Node, NodeKind, ScalarSource, SourceFile, Style};
use crate::alert::Priority;

/// Condition text assembled from one or more YAML scalars.
#[derive(Debug, Clone)]
pub struct CondText {
    pub text: String,
    pieces: Vec<(usize, usize, ScalarSource)>,
    fallback: (Arc<SourceFile>, Mark),
}

impl CondText {
    fn from_scalar(file: &Arc<SourceFile>, node: &Node, value: &str) -> CondText {
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
    pub fn synthetic(file: &Arc<SourceFile>, mark: Mark) -> CondText {
        CondText {
            text: String::new(),
            pieces: Vec::new(),
            fallback: (file.clone(), mark),
        }
    }

    fn append(&mut self, other: &CondText) {
        let base = self.text.len() + 1;
        self.text.push(' ');
        self.text.push_str(&other.text);
        for (off, len, src) in &other.pieces {
            self.pieces.push((base + off, *len, src.clone()));
        }
    }

    /// File and position of a byte offset of `text`.
    pub fn position(&self, offset: usize) -> (&str, Mark) {
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
pub struct Ctx {
    pub file: Arc<SourceFile>,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub struct ListInfo {
    pub name: String,
    pub items: Vec<String>,
    pub ctx: Ctx,
    pub index: usize,
    pub visibility: usize,
}

#[derive(Debug, Clone)]
pub struct MacroInfo {
    pub name: String,
    pub cond: CondText,
    pub ctx: Ctx,
    pub index: usize,
    pub visibility: usize,
}

/// An exception value: a scalar or a (nested) list of scalars.
#[derive(Debug, Clone)]
pub enum ExValue {
    Scalar(String, Mark),
    List(Vec<ExValue>, Mark),
}

#[derive(Debug, Clone)]
pub struct ExceptionInfo {
    pub name: String,
    /// `Ok(single field)` or `Err(list of fields)`.
    pub fields: Option<ExFields>,
    pub comps: Option<ExFields>,
    pub values: Vec<ExValue>,
    pub ctx: Ctx,
}

#[derive(Debug, Clone)]
pub enum ExFields {
    One(String, Mark),
    Many(Vec<(String, Mark)>),
}

#[derive(Debug, Clone)]
pub struct RuleInfo {
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

/// A rule's `threshold:` or `sequence:` block, as read (semantics in
/// `rules/README.md`, evaluation in [`super::state`]).
#[derive(Debug, Clone)]
pub enum StatefulInfo {
    Threshold(ThresholdInfo),
    Sequence(SequenceInfo),
}

/// `threshold: {by, distinct, count, within, max_keys}`.
#[derive(Debug, Clone)]
pub struct ThresholdInfo {
    pub by: Vec<(String, Mark)>,
    pub distinct: Vec<(String, Mark)>,
    pub count: u32,
    pub within_ns: u64,
    pub max_keys: usize,
    pub ctx: Ctx,
}

/// `sequence: {by, tree, within, steps, max_keys}`; the rule's own
/// condition is the last step.
#[derive(Debug, Clone)]
pub struct SequenceInfo {
    pub by: Vec<(String, Mark)>,
    pub tree: bool,
    pub within_ns: u64,
    pub steps: Vec<StepInfo>,
    pub max_keys: usize,
    pub ctx: Ctx,
}

#[derive(Debug, Clone)]
pub struct StepInfo {
    pub name: String,
    pub cond: CondText,
    pub mark: Mark,
}

/// Default cap on the keys a stateful rule tracks.
pub const DEFAULT_MAX_KEYS: usize = 10_000;
/// Largest `count` of a threshold (state per key grows up to it).
pub const MAX_THRESHOLD_COUNT: u32 = 10_000;
/// Longest window of a stateful rule.
pub const MAX_WINDOW_NS: u64 = 3_600 * 1_000_000_000;
/// Most earlier steps a sequence may have.
pub const MAX_STEPS: usize = 8;

/// A duration ([`crate::duration`]'s grammar) in ns; `None` when it does
/// not parse or is shorter than 1 ns.
pub fn parse_duration(s: &str) -> Option<u64> {
    let ns = crate::duration::parse(s).ok()?.as_nanos();
    u64::try_from(ns).ok().filter(|&ns| ns >= 1)
}

/// Everything collected from all files, in definition order.
#[derive(Debug, Default)]
pub struct Collection {
    pub lists: Vec<ListInfo>,
    pub macros: Vec<MacroInfo>,
    pub rules: Vec<RuleInfo>,
    pub diags: Vec<Diagnostic>,
    next_index: usize,
}

fn diag(
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
struct Fail(Diagnostic);

type R<T> = Result<T, Fail>;

struct ItemCx<'a> {
    file: &'a Arc<SourceFile>,
    kind: &'static str,
    name: String,
}

impl ItemCx<'_> {
    fn err(&self, code: Code, mark: Mark, msg: impl Into<String>) -> Fail {
        let ctx = Ctx {
            file: self.file.clone(),
            mark,
        };
        Fail(diag(code, &ctx, mark, Some((self.kind, &self.name)), msg))
    }

    fn string<'n>(&self, node: &'n Node, key: &str) -> R<&'n str> {
        match &node.kind {
            NodeKind::Scalar(s, _) => Ok(s),
            _ => Err(self.err(
                Code::ErrYamlValidate,
                node.mark,
                format!("'{key}' must be a string, found {}", node.type_name()),
            )),
        }
    }

    fn boolean(&self, node: &Node, key: &str) -> R<bool> {
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

    fn string_list(&self, node: &Node, key: &str) -> R<Vec<(String, Mark)>> {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Append,
    Replace,
}

impl Collection {
    fn next(&mut self) -> usize {
        self.next_index += 1;
        self.next_index
    }

    /// Read one file's text and collect its items.
    pub fn add_file(&mut self, file: &Arc<SourceFile>) {
        let docs = match super::yaml::parse(&file.text) {
            Ok(d) => d,
            Err(e) => {
                let ctx = Ctx {
                    file: file.clone(),
                    mark: e.mark,
                };
                self.diags.push(diag(
                    Code::ErrYamlParse,
                    &ctx,
                    e.mark,
                    None,
                    format!("YAML syntax error: {}", e.message),
                ));
                return;
            }
        };
        for doc in &docs {
            if doc.is_null() {
                continue;
            }
            let NodeKind::Seq(items) = &doc.kind else {
                let ctx = Ctx {
                    file: file.clone(),
                    mark: doc.mark,
                };
                self.diags.push(diag(
                    Code::ErrYamlValidate,
                    &ctx,
                    doc.mark,
                    None,
                    format!(
                        "a rules file must be a list of items, found {}",
                        doc.type_name()
                    ),
                ));
                continue;
            };
            for item in items {
                if let Err(Fail(d)) = self.add_item(file, item) {
                    self.diags.push(d);
                }
            }
        }
    }

    fn add_item(&mut self, file: &Arc<SourceFile>, item: &Node) -> R<()> {
        let NodeKind::Map(entries) = &item.kind else {
            let cx = ItemCx {
                file,
                kind: "item",
                name: String::new(),
            };
            return Err(cx.err(
                Code::ErrYamlValidate,
                item.mark,
                format!("each item must be a mapping, found {}", item.type_name()),
            ));
        };
        let ctx = Ctx {
            file: file.clone(),
            mark: item.mark,
        };
        for kind in ["rule", "macro", "list"] {
            if let Some(n) = item.get(kind) {
                let (kind_static, name) = match kind {
                    "rule" => ("rule", n),
                    "macro" => ("macro", n),
                    _ => ("list", n),
                };
                let pre = ItemCx {
                    file,
                    kind: kind_static,
                    name: String::new(),
                };
                let name = pre.string(name, kind)?.to_string();
                if name.is_empty() {
                    return Err(pre.err(
                        Code::ErrYamlValidate,
                        n.mark,
                        format!("'{kind}' name is empty"),
                    ));
                }
                let cx = ItemCx {
                    file,
                    kind: kind_static,
                    name,
                };
                return match kind {
                    "rule" => self.add_rule(&cx, item, entries, ctx),
                    "macro" => self.add_macro(&cx, item, entries, ctx),
                    _ => self.add_list(&cx, item, entries, ctx),
                };
            }
        }
        if item.get("required_engine_version").is_some()
            || item.get("required_plugin_versions").is_some()
        {
            return Ok(());
        }
        let key = entries
            .first()
            .and_then(|(k, _)| k.as_str())
            .unwrap_or("?")
            .to_string();
        self.diags.push(diag(
            Code::UnknownItem,
            &ctx,
            item.mark,
            None,
            format!("unknown item '{key}' ignored"),
        ));
        Ok(())
    }

    /// Work out define / append / replace per key from `override` and `append`.
    fn modes(
        &mut self,
        cx: &ItemCx,
        item: &Node,
        entries: &[(Node, Node)],
        appendable: &[&str],
        replaceable: &[&str],
    ) -> R<Option<Vec<(String, Mode)>>> {
        let append = match item.get("append") {
            Some(n) => cx.boolean(n, "append")?,
            None => false,
        };
        let Some(ov) = item.get("override") else {
            if append {
                self.diags.push(cx_diag(
                    cx,
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

    fn add_list(&mut self, cx: &ItemCx, item: &Node, entries: &[(Node, Node)], ctx: Ctx) -> R<()> {
        self.warn_unknown_keys(cx, entries, &["list", "items", "append", "override"]);
        let modes = self.modes(cx, item, entries, &["items"], &["items"])?;
        let items_node = item
            .get("items")
            .ok_or_else(|| cx.err(Code::ErrYamlValidate, item.mark, "list has no 'items'"))?;
        let items: Vec<String> = cx
            .string_list(items_node, "items")?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let id = self.next();
        match modes.as_deref().and_then(|m| m.first()).map(|(_, m)| *m) {
            None => {
                let info = ListInfo {
                    name: cx.name.clone(),
                    items,
                    ctx,
                    index: id,
                    visibility: id,
                };
                define(
                    &mut self.lists,
                    info,
                    |l| &l.name,
                    |l| &mut l.index,
                    |l| l.index,
                );
            }
            Some(mode) => {
                let prev = self
                    .lists
                    .iter_mut()
                    .find(|l| l.name == cx.name)
                    .ok_or_else(|| no_prev(cx, item.mark, mode))?;
                if mode == Mode::Append {
                    prev.items.extend(items);
                } else {
                    prev.items = items;
                }
                prev.visibility = id;
            }
        }
        Ok(())
    }

    fn add_macro(&mut self, cx: &ItemCx, item: &Node, entries: &[(Node, Node)], ctx: Ctx) -> R<()> {
        self.warn_unknown_keys(cx, entries, &["macro", "condition", "append", "override"]);
        let modes = self.modes(cx, item, entries, &["condition"], &["condition"])?;
        let cnode = item
            .get("condition")
            .ok_or_else(|| cx.err(Code::ErrYamlValidate, item.mark, "macro has no 'condition'"))?;
        let cond = CondText::from_scalar(&ctx.file, cnode, cx.string(cnode, "condition")?);
        let id = self.next();
        match modes.as_deref().and_then(|m| m.first()).map(|(_, m)| *m) {
            None => {
                let info = MacroInfo {
                    name: cx.name.clone(),
                    cond,
                    ctx,
                    index: id,
                    visibility: id,
                };
                define(
                    &mut self.macros,
                    info,
                    |m| &m.name,
                    |m| &mut m.index,
                    |m| m.index,
                );
            }
            Some(mode) => {
                let prev = self
                    .macros
                    .iter_mut()
                    .find(|m| m.name == cx.name)
                    .ok_or_else(|| no_prev(cx, item.mark, mode))?;
                if mode == Mode::Append {
                    prev.cond.append(&cond);
                } else {
                    prev.cond = cond;
                }
                prev.visibility = id;
            }
        }
        Ok(())
    }

    fn warn_unknown_keys(&mut self, cx: &ItemCx, entries: &[(Node, Node)], known: &[&str]) {
        for (k, _) in entries {
            let key = k.as_str().unwrap_or("?");
            if !known.contains(&key) {
                self.diags.push(cx_diag(
                    cx,
                    Code::UnknownItem,
                    k.mark,
                    format!("unknown key '{key}' ignored"),
                ));
            }
        }
    }

    fn add_rule(&mut self, cx: &ItemCx, item: &Node, entries: &[(Node, Node)], ctx: Ctx) -> R<()> {
        const KEYS: &[&str] = &[
            "rule",
            "desc",
            "condition",
            "output",
            "priority",
            "tags",
            "enabled",
            "exceptions",
            "source",
            "warn_evttypes",
            "skip-if-unknown-filter",
            "append",
            "override",
            "required_engine_version",
            "capture",
            "capture_duration",
            "threshold",
            "sequence",
        ];
        self.warn_unknown_keys(cx, entries, KEYS);
        let appendable = ["condition", "output", "desc", "tags", "exceptions"];
        let replaceable = [
            "condition",
            "output",
            "desc",
            "priority",
            "tags",
            "exceptions",
            "enabled",
            "warn_evttypes",
            "skip-if-unknown-filter",
            "threshold",
            "sequence",
        ];
        let modes = self.modes(cx, item, entries, &appendable, &replaceable)?;
        let file = ctx.file.clone();
        let str_key = |key: &str| -> R<Option<(String, &Node)>> {
            match item.get(key) {
                Some(n) => Ok(Some((cx.string(n, key)?.to_string(), n))),
                None => Ok(None),
            }
        };
        let cond = match item.get("condition") {
            Some(n) => Some(CondText::from_scalar(&file, n, cx.string(n, "condition")?)),
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
        let enabled = item
            .get("enabled")
            .map(|n| cx.boolean(n, "enabled"))
            .transpose()?;
        let warn_evttypes = item
            .get("warn_evttypes")
            .map(|n| cx.boolean(n, "warn_evttypes"))
            .transpose()?;
        let skip = item
            .get("skip-if-unknown-filter")
            .map(|n| cx.boolean(n, "skip-if-unknown-filter"))
            .transpose()?;
        let exceptions = match item.get("exceptions") {
            Some(n) => Some(self.read_exceptions(cx, n, &file)?),
            None => None,
        };
        let source = str_key("source")?.map(|(s, _)| s);
        let stateful = read_stateful(cx, item, &file)?;
        let id = self.next();

        let Some(modes) = modes else {
            // A bare `rule` + `enabled` item toggles an existing rule.
            let only_enabled = entries
                .iter()
                .all(|(k, _)| matches!(k.as_str(), Some("rule" | "enabled")));
            if only_enabled && enabled.is_some() {
                let prev = self
                    .rules
                    .iter_mut()
                    .find(|r| r.name == cx.name)
                    .ok_or_else(|| {
                        cx.err(
                            Code::ErrValidate,
                            item.mark,
                            "rule has only an 'enabled' key but no rule by that name exists",
                        )
                    })?;
                prev.enabled = enabled.unwrap_or(true);
                return Ok(());
            }
            let missing = |k: &str| {
                cx.err(
                    Code::ErrYamlValidate,
                    item.mark,
                    format!("rule has no '{k}'"),
                )
            };
            let cond = cond.ok_or_else(|| missing("condition"))?;
            let (output, onode) = output.ok_or_else(|| missing("output"))?;
            let priority = priority.ok_or_else(|| missing("priority"))?;
            let exceptions = exceptions.unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            for ex in &exceptions {
                if !seen.insert(ex.name.clone()) {
                    self.diags.push(cx_diag(
                        cx,
                        Code::ExceptionNameNotUnique,
                        ex.ctx.mark,
                        format!("exception name '{}' is used twice", ex.name),
                    ));
                }
                if ex.fields.is_none() {
                    return Err(cx.err(
                        Code::ErrValidate,
                        ex.ctx.mark,
                        format!("exception '{}' has no 'fields'", ex.name),
                    ));
                }
            }
            let info = RuleInfo {
                name: cx.name.clone(),
                desc: desc.unwrap_or_default(),
                cond,
                output,
                output_ctx: Ctx {
                    file: file.clone(),
                    mark: onode.mark,
                },
                priority,
                tags: tags.unwrap_or_default(),
                enabled: enabled.unwrap_or(true),
                exceptions,
                source: source.unwrap_or_else(|| "syscall".into()),
                warn_evttypes: warn_evttypes.unwrap_or(true),
                skip_if_unknown_filter: skip.unwrap_or(false),
                stateful,
                ctx,
                index: id,
            };
            if let Some(prev) = self.rules.iter().find(|r| r.name == info.name) {
                if prev.source != info.source {
                    return Err(cx.err(
                        Code::ErrValidate,
                        item.mark,
                        "rule has been re-defined with a different source",
                    ));
                }
                let msg = format!(
                    "rule redefined; replaces the definition at {}:{}:{}",
                    prev.ctx.file.name, prev.ctx.mark.line, prev.ctx.mark.col
                );
                self.diags
                    .push(cx_diag(cx, Code::RuleRedefined, item.mark, msg));
            }
            define(
                &mut self.rules,
                info,
                |r| &r.name,
                |r| &mut r.index,
                |r| r.index,
            );
            return Ok(());
        };

        let prev = self
            .rules
            .iter_mut()
            .find(|r| r.name == cx.name)
            .ok_or_else(|| {
                no_prev(
                    cx,
                    item.mark,
                    modes.first().map(|m| m.1).unwrap_or(Mode::Append),
                )
            })?;
        if modes.is_empty() {
            return Err(cx.err(
                Code::ErrValidate,
                item.mark,
                "appended rule must have a condition, output, desc, tags or exceptions",
            ));
        }
        for (key, mode) in &modes {
            let app = *mode == Mode::Append;
            match key.as_str() {
                "condition" => {
                    if let Some(c) = &cond {
                        if app {
                            prev.cond.append(c);
                        } else {
                            prev.cond = c.clone();
                        }
                    }
                }
                "output" => {
                    if let Some((o, _)) = &output {
                        if app {
                            prev.output.push(' ');
                            prev.output.push_str(o);
                        } else {
                            prev.output = o.clone();
                        }
                    }
                }
                "desc" => {
                    if let Some(d) = &desc {
                        if app {
                            prev.desc.push(' ');
                            prev.desc.push_str(d);
                        } else {
                            prev.desc = d.clone();
                        }
                    }
                }
                "tags" => {
                    if let Some(t) = &tags {
                        if app {
                            for tag in t {
                                if !prev.tags.contains(tag) {
                                    prev.tags.push(tag.clone());
                                }
                            }
                        } else {
                            prev.tags = t.clone();
                        }
                    }
                }
                "exceptions" => {
                    let Some(exs) = &exceptions else { continue };
                    if !app {
                        prev.exceptions = exs.clone();
                        continue;
                    }
                    for ex in exs {
                        match prev.exceptions.iter_mut().find(|p| p.name == ex.name) {
                            Some(p) => {
                                if ex.fields.is_some() || ex.comps.is_some() {
                                    return Err(cx.err(
                                        Code::ErrValidate,
                                        ex.ctx.mark,
                                        "can not append exception fields or comps to an existing exception, only values",
                                    ));
                                }
                                p.values.extend(ex.values.iter().cloned());
                            }
                            None => {
                                if ex.fields.is_none() {
                                    return Err(cx.err(
                                        Code::ErrValidate,
                                        ex.ctx.mark,
                                        format!("new exception '{}' has no 'fields'", ex.name),
                                    ));
                                }
                                prev.exceptions.push(ex.clone());
                            }
                        }
                    }
                }
                "priority" => {
                    if let Some(p) = priority {
                        prev.priority = p;
                    }
                }
                "enabled" => {
                    if let Some(e) = enabled {
                        prev.enabled = e;
                    }
                }
                "warn_evttypes" => {
                    if let Some(w) = warn_evttypes {
                        prev.warn_evttypes = w;
                    }
                }
                "skip-if-unknown-filter" => {
                    if let Some(s) = skip {
                        prev.skip_if_unknown_filter = s;
                    }
                }
                "threshold" | "sequence" if stateful.is_some() => {
                    prev.stateful = stateful.clone();
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn read_exceptions(
        &mut self,
        cx: &ItemCx,
        node: &Node,
        file: &Arc<SourceFile>,
    ) -> R<Vec<ExceptionInfo>> {
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
                    file: file.clone(),
                    mark: ex.mark,
                },
            });
        }
        Ok(out)
    }
}

/// Read a rule's `threshold:` or `sequence:` block (at most one of them).
fn read_stateful(cx: &ItemCx, item: &Node, file: &Arc<SourceFile>) -> R<Option<StatefulInfo>> {
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
        &["by", "distinct", "count", "within", "max_keys"]
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
    let ctx = Ctx {
        file: file.clone(),
        mark: node.mark,
    };
    // A field list may be written as one string or a list of strings.
    let fields = |k: &str| -> R<Vec<(String, Mark)>> {
        match node.get(k) {
            None => Ok(Vec::new()),
            Some(n) => match &n.kind {
                NodeKind::Scalar(s, _) if !n.is_null() => Ok(vec![(s.clone(), n.mark)]),
                _ => cx.string_list(n, k),
            },
        }
    };
    let number = |k: &str, min: u64, max: u64| -> R<Option<u64>> {
        let Some(n) = node.get(k) else {
            return Ok(None);
        };
        let v = cx.string(n, k)?;
        match v.trim().parse::<u64>() {
            Ok(x) if (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(cx.err(
                Code::ErrValidate,
                n.mark,
                format!("'{key}.{k}' must be a whole number from {min} to {max}, found '{v}'"),
            )),
        }
    };
    let within = match node.get("within") {
        None => {
            return Err(cx.err(
                Code::ErrValidate,
                node.mark,
                format!("'{key}' needs 'within' (a window such as 10s, 500ms, 2m)"),
            ))
        }
        Some(n) => {
            let v = cx.string(n, "within")?;
            match parse_duration(v) {
                Some(ns) if ns <= MAX_WINDOW_NS => ns,
                _ => {
                    return Err(cx.err(
                        Code::ErrValidate,
                        n.mark,
                        format!("'{key}.within' must be a duration from 1ms to 1h (10s, 500ms, 2m), found '{v}'"),
                    ))
                }
            }
        }
    };
    let max_keys = number("max_keys", 1, 1_000_000)?
        .map(|n| n as usize)
        .unwrap_or(DEFAULT_MAX_KEYS);
    let by = fields("by")?;
    if key == "threshold" {
        let count = number("count", 2, u64::from(MAX_THRESHOLD_COUNT))?.ok_or_else(|| {
            cx.err(
                Code::ErrValidate,
                node.mark,
                "'threshold' needs 'count' (how many events or distinct values fire it)",
            )
        })? as u32;
        return Ok(Some(StatefulInfo::Threshold(ThresholdInfo {
            by: if by.is_empty() {
                vec![("proc.pid".to_string(), node.mark)]
            } else {
                by
            },
            distinct: fields("distinct")?,
            count,
            within_ns: within,
            max_keys,
            ctx,
        })));
    }
    let tree = node
        .get("tree")
        .map(|n| cx.boolean(n, "tree"))
        .transpose()?
        .unwrap_or(false);
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
            mark: st.mark,
        });
    }
    Ok(Some(StatefulInfo::Sequence(SequenceInfo {
        by: if by.is_empty() {
            vec![("proc.pid".to_string(), node.mark)]
        } else {
            by
        },
        tree,
        within_ns: within,
        steps,
        max_keys,
        ctx,
    })))
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
        NodeKind::Scalar(s, _) => Ok(ExValue::Scalar(s.clone(), node.mark)),
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

fn cx_diag(cx: &ItemCx, code: Code, mark: Mark, msg: impl Into<String>) -> Diagnostic {
    let ctx = Ctx {
        file: cx.file.clone(),
        mark,
    };
    diag(code, &ctx, mark, Some((cx.kind, &cx.name)), msg)
}

fn no_prev(cx: &ItemCx, mark: Mark, mode: Mode) -> Fail {
    let what = if mode == Mode::Replace {
        "replace"
    } else {
        "append to"
    };
    cx.err(
        Code::ErrValidate,
        mark,
        format!(
            "cannot {what} {} '{}': no earlier definition (check file order)",
            cx.kind, cx.name
        ),
    )
}

/// Define or redefine in place (keeping the first definition's index).
fn define<T>(
    v: &mut Vec<T>,
    mut info: T,
    name: impl Fn(&T) -> &String,
    index_mut: impl Fn(&mut T) -> &mut usize,
    index: impl Fn(&T) -> usize,
) {
    if let Some(prev) = v.iter_mut().find(|p| name(p) == name(&info)) {
        *index_mut(&mut info) = index(prev);
        *prev = info;
    } else {
        v.push(info);
    }
}
