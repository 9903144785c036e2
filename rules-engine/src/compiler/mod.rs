//! Stage 4, the compiler: lists, then macros, then rules — as Falco orders it.
//!
//! * Lists (`lists`): items naming an earlier list are replaced by its items.
//! * Macros (`macros`): parsed once (syntax errors reported at the macro);
//!   expanded into each rule that uses them, honouring visibility (a macro
//!   sees only items defined before it) and rejecting cycles.
//! * Rules (here): the condition is parsed, exceptions (`exceptions`) are
//!   added as `and not (...)` terms (built as AST, never as re-parsed text),
//!   and the whole tree is type-checked against the field registry
//!   (`check`) and compiled into an [`eval::Node`]; a `threshold:` /
//!   `sequence:` block is compiled by [`crate::stateful::compile`]. Each rule
//!   ends active, inactive with a precise reason (event types mamori does not
//!   capture, a Falco field mamori lacks, an unknown field under
//!   `skip-if-unknown-filter`), disabled, or invalid with an error diagnostic.

mod bounds;
mod check;
mod exceptions;
mod lists;
mod macros;

use std::collections::{BTreeSet, HashMap};

use crate::collector::Collection;
use crate::diag::{Code, Diagnostic, ItemRef};
use crate::eval::{self, Node};
use crate::event::EvtType;
use crate::output::{OutputFormat, StateFields};
use crate::parser::{self, Expr, Span};
use crate::reader::{CondText, RuleInfo};
use crate::stateful::{self, read::StatefulInfo, Spec};
use crate::yaml::Mark;
use bounds::Size;

/// Load-time options that change compilation.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompileOptions {
    /// Treat Falco fields mamori lacks as errors instead of loading the rule inactive.
    pub strict_fields: bool,
    /// Host names `fd.sip.name` & co. compare against, resolved at load.
    pub names: HostNames,
}

/// Name → addresses table for `fd.sip.name = "host"` checks. mamori never
/// sends DNS queries: names come from `/etc/hosts` and, in a pod, the API
/// server's service address (`KUBERNETES_SERVICE_HOST`) for the
/// `kubernetes.default.svc...` names; a name it cannot resolve matches nothing.
#[derive(Debug, Clone, Default)]
pub struct HostNames(pub HashMap<String, Vec<std::net::IpAddr>>);

impl HostNames {
    pub fn add_hosts_file(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse().ok()) else {
                continue;
            };
            for name in words {
                self.add(name, ip);
            }
        }
    }

    pub fn add_kubernetes_api(&mut self, ip: std::net::IpAddr) {
        for n in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            self.add(n, ip);
        }
    }

    pub fn add(&mut self, name: &str, ip: std::net::IpAddr) {
        let v = self.0.entry(name.to_ascii_lowercase()).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
    }

    fn lookup(&self, name: &str) -> &[std::net::IpAddr] {
        self.0
            .get(&name.trim_end_matches('.').to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Why a rule is not evaluated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive { code: Code, reason: String },
    Disabled,
    Invalid { reason: String },
}

/// What `rules list` shows about a rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleSummary {
    pub name: String,
    pub desc: String,
    pub priority: crate::alert::Priority,
    pub tags: Vec<String>,
    pub source: String,
    pub evttypes: Vec<&'static str>,
    #[serde(flatten)]
    pub status: Status,
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// `threshold` or `sequence` for mamori's stateful rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stateful: Option<&'static str>,
}

pub(crate) struct CompiledRule {
    pub summary: RuleSummary,
    pub node: Option<Node>,
    pub output: OutputFormat,
    /// Event types the rule (with its sequence steps) must see.
    pub mask: eval::TypeMask,
    /// The `threshold:` / `sequence:` block, compiled.
    pub state: Option<Spec>,
}

pub(crate) struct Compiled {
    pub rules: Vec<CompiledRule>,
    pub diags: Vec<Diagnostic>,
}

/// A compile failure inside one rule.
pub(crate) struct Fail(pub(crate) Diagnostic);

struct Compiler<'c> {
    col: &'c Collection,
    opts: CompileOptions,
    lists: HashMap<&'c str, lists::ListEntry>,
    list_used: HashMap<&'c str, bool>,
    macros: HashMap<&'c str, usize>,
    macro_asts: Vec<Option<Expr>>,
    macro_used: Vec<bool>,
    /// Each macro's expanded size ([`bounds`]).
    macro_sizes: Vec<Size>,
    /// What all rules' conditions have expanded to so far, and the bound.
    rules_size: Size,
    rules_limit: Size,
    diags: Vec<Diagnostic>,
}

/// Per-rule state while compiling its tree.
struct RuleCx<'r> {
    rule: &'r str,
    skip_unknown: bool,
    /// First Falco field mamori lacks: (field, file, mark).
    unsupported: Option<(String, String, Mark)>,
    /// First unknown field under skip-if-unknown-filter.
    unknown: Option<(String, String, Mark)>,
    evt_names: BTreeSet<String>,
    stack: Vec<usize>,
    /// What the rule's conditions and exceptions expand to so far.
    size: Size,
}

impl<'c> Compiler<'c> {
    fn new(col: &'c Collection, opts: CompileOptions) -> Self {
        let mut c = Compiler {
            col,
            opts,
            lists: HashMap::new(),
            list_used: HashMap::new(),
            macros: HashMap::new(),
            macro_asts: Vec::new(),
            macro_used: vec![false; col.macros.len()],
            macro_sizes: Vec::new(),
            rules_size: Size::default(),
            rules_limit: bounds::total_limit(col.input_bytes),
            diags: Vec::new(),
        };
        c.compile_lists();
        c.parse_macros();
        c.size_macros();
        c
    }

    /// A failure at `span` of `src` (a condition text of rule `rcx.rule`).
    fn fail(
        &self,
        rcx: &RuleCx,
        src: &CondText,
        span: Span,
        code: Code,
        msg: impl Into<String>,
    ) -> Fail {
        let (file, mark) = src.position(span.start);
        rule_fail(rcx.rule, file, mark, code, msg)
    }

    /// Parse and compile a rule's (or a sequence step's) condition text.
    fn condition(&mut self, cond: &CondText, rcx: &mut RuleCx) -> Result<Node, Fail> {
        match parser::parse(&cond.text) {
            Err(e) => Err(self.fail(
                rcx,
                cond,
                Span::new(e.offset, e.offset),
                Code::ErrCompileCondition,
                e.message,
            )),
            Ok(ast) => {
                self.charge(&ast, cond, rcx)?;
                self.expr(&ast, cond, rcx, usize::MAX)
            }
        }
    }

    /// The rule's condition with its exceptions, and its stateful block.
    fn rule_tree(&mut self, r: &RuleInfo, rcx: &mut RuleCx) -> Result<(Node, Option<Spec>), Fail> {
        let cond = self.condition(&r.cond, rcx)?;
        let exc = self.exceptions(r, rcx)?;
        let node = if exc.is_empty() {
            cond
        } else {
            let mut all = vec![cond];
            all.extend(exc);
            Node::And(all.into_boxed_slice())
        };
        let spec = match &r.stateful {
            None => None,
            Some(st) => Some(stateful::compile::spec(st, &r.name, |c| {
                self.condition(c, rcx)
            })?),
        };
        Ok((node, spec))
    }

    fn rule(&mut self, r: &RuleInfo) -> CompiledRule {
        let state_fields = match &r.stateful {
            None => StateFields::None,
            Some(StatefulInfo::Threshold(_)) => StateFields::Threshold,
            Some(StatefulInfo::Sequence(q)) => {
                StateFields::Sequence(q.steps.iter().map(|s| s.name.clone()).collect())
            }
        };
        let (output, issues) = OutputFormat::compile_with(&r.output, &state_fields);
        let mut out = CompiledRule {
            summary: summary(r),
            node: None,
            output,
            mask: 0,
            state: None,
        };
        if r.source != "syscall" {
            self.diags.push(rule_diag(
                &r.name,
                &r.ctx.file.name,
                r.ctx.mark,
                Code::UnknownSource,
                format!("unknown source '{}', rule skipped", r.source),
            ));
            out.summary.status = Status::Inactive {
                code: Code::UnknownSource,
                reason: format!("source '{}' is not captured by mamori", r.source),
            };
            return out;
        }
        let mut rcx = RuleCx {
            rule: &r.name,
            skip_unknown: r.skip_if_unknown_filter,
            unsupported: None,
            unknown: None,
            evt_names: BTreeSet::new(),
            stack: Vec::new(),
            size: Size::default(),
        };
        let (node, spec) = match self.rule_tree(r, &mut rcx) {
            Ok(x) => x,
            Err(Fail(d)) => {
                out.summary.status = Status::Invalid {
                    reason: d.message.clone(),
                };
                self.diags.push(d);
                return out;
            }
        };
        let mut output_error = false;
        let mut output_warnings = Vec::new();
        for issue in issues {
            let (file, mark) = (&r.output_ctx.file.name, r.output_ctx.mark);
            if issue.unsupported {
                output_warnings.push(rule_diag(
                    &r.name,
                    file,
                    mark,
                    Code::UnsupportedOutputField,
                    issue.message,
                ));
            } else if r.skip_if_unknown_filter {
                // Falco skips such a rule instead of failing the load.
                if rcx.unknown.is_none() {
                    let field = issue.field.clone();
                    rcx.unknown = Some((field, file.clone(), mark));
                }
            } else {
                output_error = true;
                self.diags.push(rule_diag(
                    &r.name,
                    file,
                    mark,
                    Code::ErrCompileOutput,
                    issue.message,
                ));
            }
        }
        let node = eval::simplify(node);
        let (own_mask, _) = eval::type_sets(&node);
        let spec = spec.map(stateful::compile::finish);
        let mask = own_mask | spec.as_ref().map_or(0, |s| s.1);
        let never_step = spec.as_ref().is_some_and(|s| s.2);
        out.summary.evttypes = EvtType::ALL
            .into_iter()
            .filter(|t| mask & eval::type_bit(*t) != 0)
            .map(EvtType::as_str)
            .collect();
        let status = if output_error {
            Status::Invalid {
                reason: "output refers to an unknown field".into(),
            }
        } else {
            self.status(r, &node, mask, never_step, &mut rcx)
        };
        let active = status == Status::Active;
        out.summary.status = status;
        if active {
            // `<NA>` in the output only matters for rules that can fire.
            self.diags.append(&mut output_warnings);
            let mut node = eval::specialize(node, own_mask);
            eval::order_by_cost(&mut node);
            out.node = Some(node);
            out.mask = mask;
            out.state = spec.map(|s| s.0);
        }
        out
    }

    /// Disabled, inactive (the reason also a warning) or active, for a rule
    /// whose tree compiled; `mask` holds the event types it needs.
    fn status(
        &mut self,
        r: &RuleInfo,
        node: &Node,
        mask: eval::TypeMask,
        never_step: bool,
        rcx: &mut RuleCx,
    ) -> Status {
        let (file, mark) = (r.ctx.file.name.as_str(), r.ctx.mark);
        if !r.enabled {
            Status::Disabled
        } else if never_step {
            let reason = "a sequence step can never match any event mamori captures".to_string();
            self.inactive(r, Code::NeverTrue, mark, file, reason)
        } else if matches!(node, Node::Const(false)) {
            let reason = "condition is always false on mamori's events (evt.dir is always '<', evt.num is never set)".to_string();
            self.inactive(r, Code::NeverTrue, mark, file, reason)
        } else if mask == 0 {
            let others: Vec<&str> = rcx
                .evt_names
                .iter()
                .map(String::as_str)
                .filter(|n| EvtType::from_name(n).is_none())
                .collect();
            let reason = if others.is_empty() {
                "condition can never match any event type".to_string()
            } else {
                format!(
                    "only matches event types mamori does not capture: {}",
                    others.join(", ")
                )
            };
            self.inactive(r, Code::UnsupportedEvttype, mark, file, reason)
        } else if let Some((field, f, m)) = rcx.unknown.take() {
            let reason = format!("unknown field '{field}' (skip-if-unknown-filter)");
            self.inactive(r, Code::UnknownFilter, m, &f, reason)
        } else if let Some((field, f, m)) = rcx.unsupported.take() {
            let reason = format!("uses Falco field '{field}' which mamori does not provide");
            self.inactive(r, Code::UnsupportedField, m, &f, reason)
        } else {
            if mask == eval::ALL_TYPES && r.warn_evttypes {
                self.diags.push(rule_diag(
                    &r.name,
                    file,
                    mark,
                    Code::NoEvttype,
                    "condition does not restrict evt.type: the rule runs on every event",
                ));
            }
            Status::Active
        }
    }

    /// An inactive rule always says why, as a warning at its position.
    fn inactive(
        &mut self,
        r: &RuleInfo,
        code: Code,
        at: Mark,
        file: &str,
        reason: String,
    ) -> Status {
        self.diags
            .push(rule_diag(&r.name, file, at, code, reason.clone()));
        Status::Inactive { code, reason }
    }
}

/// What `rules list` shows before compiling (status and event types follow).
fn summary(r: &RuleInfo) -> RuleSummary {
    RuleSummary {
        name: r.name.clone(),
        desc: r.desc.clone(),
        priority: r.priority,
        tags: r.tags.clone(),
        source: r.source.clone(),
        evttypes: Vec::new(),
        status: Status::Active,
        file: r.ctx.file.name.clone(),
        line: r.ctx.mark.line,
        col: r.ctx.mark.col,
        stateful: r.stateful.as_ref().map(|s| match s {
            StatefulInfo::Threshold(_) => "threshold",
            StatefulInfo::Sequence(_) => "sequence",
        }),
    }
}

/// A diagnostic about rule `rule` at `file:mark`.
fn rule_diag(rule: &str, file: &str, mark: Mark, code: Code, msg: impl Into<String>) -> Diagnostic {
    item_diag("rule", rule, file, mark, code, msg)
}

/// A diagnostic about the `kind` (rule, macro, list) named `name` at
/// `file:mark`.
pub(crate) fn item_diag(
    kind: &'static str,
    name: &str,
    file: &str,
    mark: Mark,
    code: Code,
    msg: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity: code.severity(),
        code,
        message: msg.into(),
        file: file.to_string(),
        line: mark.line,
        col: mark.col,
        item: Some(ItemRef {
            kind,
            name: name.to_string(),
        }),
    }
}

/// A compile failure of rule `rule` at `file:mark`.
pub(crate) fn rule_fail(
    rule: &str,
    file: &str,
    mark: Mark,
    code: Code,
    msg: impl Into<String>,
) -> Fail {
    Fail(rule_diag(rule, file, mark, code, msg))
}

/// Compile a collection.
pub(crate) fn compile(col: &Collection, opts: CompileOptions) -> Compiled {
    let mut c = Compiler::new(col, opts);
    let mut rules = Vec::with_capacity(col.rules.len());
    for r in &col.rules {
        rules.push(c.rule(r));
    }
    c.check_unused_macro_refs();
    for (i, m) in col.macros.iter().enumerate() {
        if !c.macro_used[i] {
            c.diags.push(Diagnostic {
                severity: Code::UnusedMacro.severity(),
                code: Code::UnusedMacro,
                message: "macro not referred to by any rule/macro".into(),
                file: m.ctx.file.name.clone(),
                line: m.ctx.mark.line,
                col: m.ctx.mark.col,
                item: Some(ItemRef {
                    kind: "macro",
                    name: m.name.clone(),
                }),
            });
        }
    }
    for l in &col.lists {
        if !c.list_used.get(l.name.as_str()).copied().unwrap_or(false) {
            c.diags.push(item_diag(
                "list",
                &l.name,
                &l.ctx.file.name,
                l.ctx.mark,
                Code::UnusedList,
                "list not referred to by any rule/macro/list",
            ));
        }
    }
    Compiled {
        rules,
        diags: c.diags,
    }
}
