//! Stage 2b, the collector: gathers the reader's typed items from all files
//! and applies Falco's ordering rules across them:
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

use std::collections::HashMap;
use std::sync::Arc;

use crate::diag::{Code, Diagnostic};
use crate::reader::{
    self, CondText, Ctx, ExceptionInfo, Fail, ItemCx, ListInfo, MacroInfo, Mode, RuleInfo,
    RuleKeys, R,
};
use crate::yaml::{Mark, Node, NodeKind, SourceFile};

/// Everything collected from all files, in definition order.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    pub lists: Vec<ListInfo>,
    pub macros: Vec<MacroInfo>,
    pub rules: Vec<RuleInfo>,
    pub diags: Vec<Diagnostic>,
    /// Bytes of rule text read, which the expansion bounds scale with.
    pub input_bytes: usize,
    next_index: usize,
    /// Where each name sits in `lists`, `macros` and `rules`: every lookup
    /// by name is a hash lookup, so loading stays linear in the item count.
    list_pos: HashMap<String, usize>,
    macro_pos: HashMap<String, usize>,
    rule_pos: HashMap<String, usize>,
}

impl Collection {
    fn next(&mut self) -> usize {
        self.next_index += 1;
        self.next_index
    }

    /// Read one file's text and collect its items.
    pub(crate) fn add_file(&mut self, file: &Arc<SourceFile>) {
        self.input_bytes = self.input_bytes.saturating_add(file.text.len());
        let docs = match crate::yaml::parse(&file.text) {
            Ok(d) => d,
            Err(e) => {
                let ctx = Ctx {
                    file: file.clone(),
                    mark: e.mark,
                };
                self.diags.push(reader::diag(
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
                self.diags.push(reader::diag(
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
                let pre = ItemCx {
                    file,
                    kind,
                    name: String::new(),
                };
                let name = pre.string(n, kind)?.to_string();
                if name.is_empty() {
                    return Err(pre.err(
                        Code::ErrYamlValidate,
                        n.mark,
                        format!("'{kind}' name is empty"),
                    ));
                }
                let cx = ItemCx { file, kind, name };
                return match kind {
                    "rule" => self.add_rule(&cx, item, entries, ctx),
                    "macro" => self.add_macro(&cx, item, entries, ctx),
                    _ => self.add_list(&cx, item, entries, ctx),
                };
            }
        }
        let top = ItemCx {
            file,
            kind: "item",
            name: String::new(),
        };
        if let Some(v) = item.get("required_engine_version") {
            return crate::versions::check_engine_version(&top, v);
        }
        if let Some(v) = item.get("required_plugin_versions") {
            // Shape only: mamori loads no plugins, and the one Falco's own
            // files name (`container`) provides fields mamori has natively.
            return crate::versions::check_plugin_versions(&top, v).map(drop);
        }
        let key = entries
            .first()
            .and_then(|(k, _)| k.as_str())
            .unwrap_or("?")
            .to_string();
        self.diags.push(reader::diag(
            Code::UnknownItem,
            &ctx,
            item.mark,
            None,
            format!("unknown item '{key}' ignored"),
        ));
        Ok(())
    }

    fn add_list(&mut self, cx: &ItemCx, item: &Node, entries: &[(Node, Node)], ctx: Ctx) -> R<()> {
        self.warn_unknown_keys(cx, entries, &["list", "items", "append", "override"]);
        let modes = reader::read_modes(cx, item, entries, &mut self.diags, &["items"], &["items"])?;
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
                define(&mut self.lists, &mut self.list_pos, info, |l| {
                    (&l.name, &mut l.index)
                });
            }
            Some(mode) => {
                let prev = find(&mut self.lists, &self.list_pos, &cx.name)
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
        let modes = reader::read_modes(
            cx,
            item,
            entries,
            &mut self.diags,
            &["condition"],
            &["condition"],
        )?;
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
                define(&mut self.macros, &mut self.macro_pos, info, |m| {
                    (&m.name, &mut m.index)
                });
            }
            Some(mode) => {
                let prev = find(&mut self.macros, &self.macro_pos, &cx.name)
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
                self.diags.push(cx.diag(
                    Code::UnknownItem,
                    k.mark,
                    format!("unknown key '{key}' ignored"),
                ));
            }
        }
    }

    /// A rule item: read its keys, then define it, toggle it (`rule` +
    /// `enabled` only) or modify the earlier rule (`override` / `append`).
    fn add_rule(&mut self, cx: &ItemCx, item: &Node, entries: &[(Node, Node)], ctx: Ctx) -> R<()> {
        self.warn_unknown_keys(cx, entries, RULE_KEYS);
        let modes = reader::read_modes(
            cx,
            item,
            entries,
            &mut self.diags,
            RULE_APPENDABLE,
            RULE_REPLACEABLE,
        )?;
        let keys = reader::read_rule_keys(cx, item)?;
        let id = self.next();
        let Some(modes) = modes else {
            // A bare `rule` + `enabled` item toggles an existing rule.
            let only_enabled = entries
                .iter()
                .all(|(k, _)| matches!(k.as_str(), Some("rule" | "enabled")));
            if let Some(enabled) = keys.enabled.filter(|_| only_enabled) {
                return self.toggle_rule(cx, item, enabled);
            }
            return self.define_rule(cx, item, keys, ctx, id);
        };
        self.modify_rule(cx, item, keys, &modes)
    }

    fn toggle_rule(&mut self, cx: &ItemCx, item: &Node, enabled: bool) -> R<()> {
        let prev = find(&mut self.rules, &self.rule_pos, &cx.name).ok_or_else(|| {
            cx.err(
                Code::ErrValidate,
                item.mark,
                "rule has only an 'enabled' key but no rule by that name exists",
            )
        })?;
        prev.enabled = enabled;
        Ok(())
    }

    /// A full rule definition (or a redefinition, replacing in place).
    fn define_rule(
        &mut self,
        cx: &ItemCx,
        item: &Node,
        keys: RuleKeys,
        ctx: Ctx,
        id: usize,
    ) -> R<()> {
        let missing = |k: &str| {
            cx.err(
                Code::ErrYamlValidate,
                item.mark,
                format!("rule has no '{k}'"),
            )
        };
        let cond = keys.cond.ok_or_else(|| missing("condition"))?;
        let (output, output_mark) = keys.output.ok_or_else(|| missing("output"))?;
        let priority = keys.priority.ok_or_else(|| missing("priority"))?;
        let exceptions = keys.exceptions.unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        for ex in &exceptions {
            if !seen.insert(ex.name.clone()) {
                self.diags.push(cx.diag(
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
            desc: keys.desc.unwrap_or_default(),
            cond,
            output,
            output_ctx: Ctx {
                file: ctx.file.clone(),
                mark: output_mark,
            },
            priority,
            tags: keys.tags.unwrap_or_default(),
            enabled: keys.enabled.unwrap_or(true),
            exceptions,
            source: keys.source.unwrap_or_else(|| "syscall".into()),
            warn_evttypes: keys.warn_evttypes.unwrap_or(true),
            skip_if_unknown_filter: keys.skip_if_unknown_filter.unwrap_or(false),
            stateful: keys.stateful,
            ctx,
            index: id,
        };
        if let Some(prev) = self.rule_pos.get(&info.name).map(|&i| &self.rules[i]) {
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
                .push(cx.diag(Code::RuleRedefined, item.mark, msg));
        }
        define(&mut self.rules, &mut self.rule_pos, info, |r| {
            (&r.name, &mut r.index)
        });
        Ok(())
    }

    /// Apply an `override` / `append` rule item to the earlier rule.
    fn modify_rule(
        &mut self,
        cx: &ItemCx,
        item: &Node,
        keys: RuleKeys,
        modes: &[(String, Mode)],
    ) -> R<()> {
        let prev = find(&mut self.rules, &self.rule_pos, &cx.name).ok_or_else(|| {
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
        for (key, mode) in modes {
            let app = *mode == Mode::Append;
            match key.as_str() {
                "condition" => {
                    if let Some(c) = &keys.cond {
                        if app {
                            prev.cond.append(c);
                        } else {
                            prev.cond = c.clone();
                        }
                    }
                }
                "output" => {
                    if let Some((o, _)) = &keys.output {
                        join_text(&mut prev.output, o, app);
                    }
                }
                "desc" => {
                    if let Some(d) = &keys.desc {
                        join_text(&mut prev.desc, d, app);
                    }
                }
                "tags" => {
                    if let Some(t) = &keys.tags {
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
                    if let Some(exs) = &keys.exceptions {
                        if app {
                            append_exceptions(cx, &mut prev.exceptions, exs)?;
                        } else {
                            prev.exceptions = exs.clone();
                        }
                    }
                }
                "priority" => {
                    if let Some(p) = keys.priority {
                        prev.priority = p;
                    }
                }
                "enabled" => {
                    if let Some(e) = keys.enabled {
                        prev.enabled = e;
                    }
                }
                "warn_evttypes" => {
                    if let Some(w) = keys.warn_evttypes {
                        prev.warn_evttypes = w;
                    }
                }
                "skip-if-unknown-filter" => {
                    if let Some(s) = keys.skip_if_unknown_filter {
                        prev.skip_if_unknown_filter = s;
                    }
                }
                "threshold" | "sequence" if keys.stateful.is_some() => {
                    prev.stateful = keys.stateful.clone();
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Every key a rule item may have (others draw an "unknown key" warning).
const RULE_KEYS: &[&str] = &[
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

/// Rule keys `override: {key: append}` accepts.
const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];

/// Rule keys `override: {key: replace}` accepts.
const RULE_REPLACEABLE: &[&str] = &[
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

/// Append `add` to `dst` after a space, or replace `dst` with it.
fn join_text(dst: &mut String, add: &str, append: bool) {
    if append {
        dst.push(' ');
        dst.push_str(add);
    } else {
        *dst = add.to_string();
    }
}

/// `override: {exceptions: append}`: values join an existing exception of
/// the same name; a new name must bring its `fields`.
fn append_exceptions(cx: &ItemCx, prev: &mut Vec<ExceptionInfo>, exs: &[ExceptionInfo]) -> R<()> {
    for ex in exs {
        match prev.iter_mut().find(|p| p.name == ex.name) {
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
                prev.push(ex.clone());
            }
        }
    }
    Ok(())
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

/// The item named `name`, through its position map.
fn find<'v, T>(v: &'v mut [T], pos: &HashMap<String, usize>, name: &str) -> Option<&'v mut T> {
    pos.get(name).map(|&i| &mut v[i])
}

/// Define or redefine in place (keeping the first definition's index);
/// `parts` gives an item's name and index.
fn define<T>(
    v: &mut Vec<T>,
    pos: &mut HashMap<String, usize>,
    mut info: T,
    parts: impl Fn(&mut T) -> (&String, &mut usize),
) {
    let name = parts(&mut info).0.clone();
    match pos.get(&name) {
        Some(&i) => {
            let first = *parts(&mut v[i]).1;
            *parts(&mut info).1 = first;
            v[i] = info;
        }
        None => {
            pos.insert(name, v.len());
            v.push(info);
        }
    }
}
