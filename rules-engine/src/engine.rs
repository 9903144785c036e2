//! The engine: load (reader → collector → compiler) and evaluate, indexed by event type.

use crate::stateful::machine::{Machine, StateStats, StateView};
use crate::{collector, compiler, eval, output, yaml};

use std::sync::Arc;

use crate::compiler::{RuleSummary, Status};
use crate::diag::LoadReport;

use crate::alert::{Alert, Priority};
use crate::event::{Event, EvtType};
use crate::fields;

mod prefetch;
mod state;

use prefetch::{prefetch, prefetch_event};
use state::definition_hash;

use crate::append::{AppendOutput, Appended};

/// Whether an event stops at the first matching rule (Falco's default) or
/// produces an alert for every matching rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuleMatching {
    #[default]
    First,
    All,
}

impl std::str::FromStr for RuleMatching {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(RuleMatching::First),
            "all" => Ok(RuleMatching::All),
            _ => Err(format!("rule_matching must be 'first' or 'all', not '{s}'")),
        }
    }
}

/// Options for loading rules.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub rule_matching: RuleMatching,
    /// Make a Falco field mamori lacks a compile error instead of loading the
    /// rule inactive.
    pub strict_fields: bool,
    /// Hostname put in alerts (default `localhost`; the sensor passes the
    /// node's name).
    pub hostname: Option<String>,
    /// Names for `fd.sip.name` & co. (the sensor passes `/etc/hosts` and the
    /// in-cluster API server, see [`compiler::HostNames`]; default none).
    pub host_names: compiler::HostNames,
    /// Falco's `append_output` entries, applied in order (see [`AppendOutput`]).
    pub append_output: Vec<AppendOutput>,
}

/// Loading failed: the report holds at least one error diagnostic.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} error(s) loading rules:\n{report}", report.errors().count())]
    Invalid { report: LoadReport },
}

struct ActiveRule {
    name: String,
    priority: Priority,
    tags: Vec<String>,
    /// The condition as a tree, evaluated by the reference engine; a fast
    /// engine runs it from its program instead (the tree is emptied).
    node: eval::Node,
    /// Where the condition starts in the engine's program.
    entry: u32,
    /// Where a sequence's earlier steps start in the program.
    step_entries: Vec<u32>,
    output: output::OutputFormat,
    /// What `append_output` adds to this rule's alerts.
    append: Option<Box<Appended>>,
    /// `threshold:` / `sequence:` rules: their memory across events.
    state: Option<Machine>,
    /// Fingerprint of a stateful rule's compiled definition (condition,
    /// steps, window, key, output), so a reload can tell an unchanged rule
    /// from a changed one of the same name; 0 for stateless rules.
    definition: u64,
}

/// The rules of one event type: those that require a process name, by name,
/// and the rest. Both lists are in load order.
#[derive(Default)]
struct TypeIndex {
    generic: Vec<u32>,
    by_name: std::collections::HashMap<String, Vec<u32>, std::hash::BuildHasherDefault<eval::Fnv>>,
}

/// A compiled, indexed rule set.
pub struct Engine {
    rules: Vec<ActiveRule>,
    summaries: Vec<RuleSummary>,
    by_type: Vec<Vec<u32>>,
    index: Vec<TypeIndex>,
    /// Stateful rules by event type (their condition and steps' types); they
    /// see every event of those types, whatever `rule_matching` says.
    stateful_by_type: Vec<Vec<u32>>,
    /// The stateless conditions compiled to jump code (none in the
    /// reference engine, which walks each rule's tree on its own).
    program: Option<eval::Program>,
    matching: RuleMatching,
    hostname: String,
    /// Event types some active rule names (see [`Engine::names_type`]).
    named_types: eval::TypeMask,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active_rules", &self.rules.len())
            .field("matching", &self.matching)
            .finish()
    }
}

impl Engine {
    /// Compile rule files already read into memory (`yaml::SourceFile`s, in
    /// load order); errors fail the load. Reading files is the caller's job:
    /// this crate does no I/O.
    pub fn load(
        files: &[Arc<yaml::SourceFile>],
        opts: &LoadOptions,
    ) -> Result<(Engine, LoadReport), LoadError> {
        let (engine, report) = Engine::compile(files, opts);
        if report.has_errors() {
            return Err(LoadError::Invalid { report });
        }
        Ok((engine, report))
    }

    /// Compile in-memory sources `(name, text)` (tests, fuzzing, embedding).
    pub fn from_sources(sources: &[(&str, &str)], opts: &LoadOptions) -> (Engine, LoadReport) {
        let files: Vec<_> = sources
            .iter()
            .map(|(n, t)| yaml::SourceFile::new(*n, *t))
            .collect();
        Engine::compile(&files, opts)
    }

    /// Load whatever loads: broken rules are reported and skipped. For tools
    /// that want the full report (`rules validate`, `rules list`).
    pub fn compile(files: &[Arc<yaml::SourceFile>], opts: &LoadOptions) -> (Engine, LoadReport) {
        Engine::build(files, opts, true)
    }

    /// The engine as it was before the per-event sharing: each rule's tree
    /// walked on its own, no merged lists, no memo, no program. What the
    /// differential tests and the benchmark compare the fast engine with.
    #[doc(hidden)]
    pub fn compile_reference(
        files: &[Arc<yaml::SourceFile>],
        opts: &LoadOptions,
    ) -> (Engine, LoadReport) {
        Engine::build(files, opts, false)
    }

    fn build(
        files: &[Arc<yaml::SourceFile>],
        opts: &LoadOptions,
        fast: bool,
    ) -> (Engine, LoadReport) {
        let mut col = collector::Collection::default();
        for f in files {
            col.add_file(f);
        }
        let compiled = compiler::compile(
            &col,
            compiler::CompileOptions {
                strict_fields: opts.strict_fields,
                names: opts.host_names.clone(),
            },
        );
        let mut diagnostics = std::mem::take(&mut col.diags);
        diagnostics.extend(compiled.diags);
        let mut rules = Vec::new();
        let mut summaries = Vec::new();
        let mut by_type = vec![Vec::new(); EvtType::ALL.len()];
        let mut stateful_by_type = vec![Vec::new(); EvtType::ALL.len()];
        let mut named_types: eval::TypeMask = 0;
        for r in compiled.rules {
            if let Some(node) = r.node {
                // A mask of at most half the types is one the rule named;
                // a wider one comes from no evt.type or a negation.
                if (r.mask.count_ones() as usize) * 2 <= EvtType::ALL.len() {
                    named_types |= r.mask;
                }
                let idx = rules.len() as u32;
                let list = if r.state.is_some() {
                    &mut stateful_by_type
                } else {
                    &mut by_type
                };
                for (i, t) in EvtType::ALL.iter().enumerate() {
                    if r.mask & eval::type_bit(*t) != 0 {
                        list[i].push(idx);
                    }
                }
                let append = Appended::for_rule(
                    &opts.append_output,
                    &r.summary.name,
                    &r.summary.source,
                    &r.summary.tags,
                    &r.output,
                );
                let definition = r
                    .state
                    .as_ref()
                    .map_or(0, |s| definition_hash(&node, s, &r.output, r.mask));
                rules.push(ActiveRule {
                    definition,
                    name: r.summary.name.clone(),
                    priority: r.summary.priority,
                    tags: r.summary.tags.clone(),
                    node,
                    entry: 0,
                    step_entries: Vec::new(),
                    output: r.output,
                    append,
                    state: r.state.map(|s| Machine::new(&r.summary.name, s)),
                });
            }
            summaries.push(r.summary);
        }
        let count = |f: fn(&Status) -> bool| summaries.iter().filter(|s| f(&s.status)).count();
        let report = LoadReport {
            files: files.iter().map(|f| f.name.clone()).collect(),
            diagnostics,
            rules_total: summaries.len(),
            rules_active: count(|s| matches!(s, Status::Active)),
            rules_inactive: count(|s| matches!(s, Status::Inactive { .. })),
            rules_disabled: count(|s| matches!(s, Status::Disabled)),
        };
        let names: Vec<Option<Vec<String>>> = rules
            .iter()
            .map(|r| eval::required_names(&r.node))
            .collect();
        let index = by_type
            .iter()
            .map(|list| {
                let mut ti = TypeIndex::default();
                for &i in list {
                    match &names[i as usize] {
                        Some(ns) => {
                            for n in ns {
                                let v = ti.by_name.entry(n.clone()).or_default();
                                if v.last() != Some(&i) {
                                    v.push(i);
                                }
                            }
                        }
                        None => ti.generic.push(i),
                    }
                }
                ti
            })
            .collect();
        let program = fast.then(|| share_work(&mut rules));
        let engine = Engine {
            rules,
            summaries,
            by_type,
            index,
            stateful_by_type,
            program,
            matching: opts.rule_matching,
            hostname: opts.hostname.clone().unwrap_or_else(|| "localhost".into()),
            named_types,
        };
        (engine, report)
    }

    /// Every rule with its status, in load order.
    pub fn rules(&self) -> &[RuleSummary] {
        &self.summaries
    }

    /// Whether an active rule asks for events of type `t` by naming it
    /// (`evt.type = flow`, `evt.type in (dns, connect)`): the costly event
    /// kinds (flow, dns) are captured only then. A rule without `evt.type`,
    /// or one that only excludes types, names none.
    pub fn names_type(&self, t: EvtType) -> bool {
        self.named_types & eval::type_bit(t) != 0
    }

    pub fn active_rules(&self) -> usize {
        self.rules.len()
    }

    /// The event types the active rules need, in `EvtType::ALL` order: what
    /// the sensor selects its table-driven syscalls by (Falco's
    /// "interesting syscalls"). A rule that does not restrict `evt.type`
    /// runs on every event captured but selects nothing by itself (it would
    /// otherwise turn every syscall on; the load warns about such rules).
    pub fn needed_types(&self) -> Vec<EvtType> {
        let mut need = vec![false; EvtType::ALL.len()];
        for s in &self.summaries {
            if !matches!(s.status, Status::Active) || s.evttypes.len() == EvtType::ALL.len() {
                continue;
            }
            for name in &s.evttypes {
                if let Some(t) = EvtType::from_name(name) {
                    need[t as usize] = true;
                }
            }
        }
        EvtType::ALL
            .into_iter()
            .filter(|t| need[*t as usize])
            .collect()
    }

    /// Indices of the active rules matching `ev` (allocation-free once `out`
    /// has capacity); respects `rule_matching`.
    pub fn matching_rules(&self, ev: &Event, out: &mut Vec<usize>) {
        self.matching_in(&fields::EvalCtx::new(ev), out);
    }

    fn matching_in(&self, cx: &fields::EvalCtx<'_>, out: &mut Vec<usize>) {
        out.clear();
        self.candidates(cx.ev, |i| {
            if self.eval_rule(i, cx) {
                out.push(i as usize);
                if self.matching == RuleMatching::First {
                    return false;
                }
            }
            true
        });
    }

    /// The truth of stateless rule `i`'s condition.
    #[inline]
    fn eval_rule(&self, i: u32, cx: &fields::EvalCtx<'_>) -> bool {
        let r = &self.rules[i as usize];
        match &self.program {
            Some(p) => p.run(r.entry, cx),
            None => r.node.eval(cx),
        }
    }

    /// Call `f` with each stateless rule the index holds for `ev` (its
    /// type's rules that need no process name, and those that need
    /// `ev`'s), in load order, so `first` keeps Falco's order; stop when
    /// `f` returns false.
    #[inline]
    fn candidates(&self, ev: &Event, mut f: impl FnMut(u32) -> bool) {
        let Some(ti) = self.index.get(ev.evt_type as usize) else {
            return;
        };
        let named: &[u32] = if ti.by_name.is_empty() {
            &[]
        } else {
            ti.by_name
                .get(ev.proc.name.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[])
        };
        let (mut g, mut n) = (ti.generic.as_slice(), named);
        loop {
            let i = match (g.first(), n.first()) {
                (Some(&a), Some(&b)) if a < b => {
                    g = &g[1..];
                    a
                }
                (_, Some(&b)) => {
                    n = &n[1..];
                    b
                }
                (Some(&a), None) => {
                    g = &g[1..];
                    a
                }
                (None, None) => return,
            };
            if !f(i) {
                return;
            }
        }
    }

    /// Every rule indexed for the event type, without the name index, each
    /// with a fresh per-event context (for tests that check the index and
    /// the memo change nothing).
    #[doc(hidden)]
    pub fn matching_rules_unindexed(&self, ev: &Event, out: &mut Vec<usize>) {
        out.clear();
        let Some(list) = self.by_type.get(ev.evt_type as usize) else {
            return;
        };
        for &i in list {
            // A fresh context per rule: nothing carries over between rules.
            let cx = fields::EvalCtx::new(ev);
            if self.eval_rule(i, &cx) {
                out.push(i as usize);
                if self.matching == RuleMatching::First {
                    return;
                }
            }
        }
    }

    /// Time each active rule over `events` (every rule the index hands the
    /// event to is evaluated, ignoring `rule_matching`; the first rule to
    /// need a shared sub-condition pays for it): `(rule, evaluations,
    /// matches, total ns)`, most expensive first. For benchmarks and rule
    /// authors.
    pub fn profile(&self, events: &[Event]) -> Vec<(String, u64, u64, u128)> {
        let mut acc = vec![(0u64, 0u64, 0u128); self.rules.len()];
        for ev in events {
            let cx = fields::EvalCtx::new(ev);
            self.candidates(ev, |i| {
                let t = std::time::Instant::now();
                let hit = self.eval_rule(i, &cx);
                let a = &mut acc[i as usize];
                a.2 += t.elapsed().as_nanos();
                a.0 += 1;
                a.1 += u64::from(hit);
                true
            });
        }
        let mut out: Vec<_> = self
            .rules
            .iter()
            .zip(acc)
            .map(|(r, (n, m, ns))| (r.name.clone(), n, m, ns))
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.3));
        out
    }

    /// Evaluate a batch (a ring-buffer drain, a replayed file): calls
    /// `on_match(event_index, rule_index)` for each match. While one event is
    /// evaluated, the heap data the rules read first (names, paths, the
    /// parent) of the next events is prefetched, so a stream that does not fit
    /// in cache is not bound by memory latency.
    ///
    /// Stateful rules run on each event right after the stateless ones
    /// (while it is in cache); `on_stateful(event_index, alert)` gets what
    /// they fire.
    pub fn matching_rules_batch(
        &self,
        events: &[Event],
        mut on_match: impl FnMut(usize, usize),
        mut on_stateful: impl FnMut(usize, Alert),
    ) {
        let mut idx = Vec::with_capacity(8);
        let mut fired = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            // Three stages, so each prefetch reads only pointers an earlier
            // stage already brought in: shared blocks and vectors first, then
            // the strings they point to, then the parent's name.
            if let Some(far) = events.get(i + 12) {
                prefetch(std::sync::Arc::as_ptr(&far.proc.ancestors));
                prefetch(far.proc.argv.as_ptr());
                if let Some(c) = &far.container {
                    prefetch(std::sync::Arc::as_ptr(c));
                }
            }
            if let Some(mid) = events.get(i + 6) {
                prefetch(mid.proc.ancestors.as_ptr());
                prefetch_event(mid);
            }
            if let Some(near) = events.get(i + 3) {
                if let Some(a) = near.proc.ancestors.first() {
                    prefetch(a.name.as_ptr());
                }
            }
            // One context for both: shared sub-conditions, merged lists and
            // composed fields are decided once for the stateless and the
            // stateful rules.
            let cx = fields::EvalCtx::new(ev);
            self.matching_in(&cx, &mut idx);
            for &r in &idx {
                on_match(i, r);
            }
            self.stateful_in(&cx, &mut fired);
            for a in fired.drain(..) {
                on_stateful(i, a);
            }
        }
    }

    /// Evaluate one event; returns one alert per matching rule: the
    /// stateless ones (per `rule_matching`), then any stateful rule it makes
    /// fire.
    pub fn evaluate(&self, ev: &Event) -> Vec<Alert> {
        let mut idx = Vec::new();
        let cx = fields::EvalCtx::new(ev);
        self.matching_in(&cx, &mut idx);
        let mut alerts: Vec<Alert> = idx.into_iter().map(|i| self.alert(i, ev)).collect();
        self.stateful_in(&cx, &mut alerts);
        alerts
    }

    /// Feed `ev` to the stateful rules of its type; push an alert for each
    /// that fires.
    pub fn stateful_alerts(&self, ev: &Event, out: &mut Vec<Alert>) {
        self.stateful_in(&fields::EvalCtx::new(ev), out);
    }

    fn stateful_in(&self, cx: &fields::EvalCtx<'_>, out: &mut Vec<Alert>) {
        let ev = cx.ev;
        let Some(list) = self.stateful_by_type.get(ev.evt_type as usize) else {
            return;
        };
        for &i in list {
            let r = &self.rules[i as usize];
            let Some(m) = &r.state else { continue };
            let capture = |step: usize, cx: &fields::EvalCtx<'_>| r.output.capture_step(step, cx);
            // The condition (`None`) or an earlier step's, from the program
            // when there is one.
            let truth = |step: Option<usize>| match (&self.program, step) {
                (Some(p), None) => p.run(r.entry, cx),
                (Some(p), Some(k)) => r.step_entries.get(k).is_some_and(|&e| p.run(e, cx)),
                (None, None) => r.node.eval(cx),
                (None, Some(k)) => m.step_node(k).is_some_and(|n| n.eval(cx)),
            };
            if let Some(view) = m.observe(truth, cx, ev, capture) {
                out.push(self.alert_with(i as usize, ev, Some(&view)));
            }
        }
    }

    /// Build the alert of active rule `i` for `ev`.
    pub fn alert(&self, i: usize, ev: &Event) -> Alert {
        self.alert_with(i, ev, None)
    }

    fn alert_with(&self, i: usize, ev: &Event, view: Option<&StateView>) -> Alert {
        let r = &self.rules[i];
        let mut text = String::new();
        let mut map = serde_json::Map::new();
        r.output.render_with(ev, view, &mut text, Some(&mut map));
        if let Some(a) = &r.append {
            a.render(ev, view, &mut text, &mut map);
        }
        Alert::new(
            ev.ts,
            r.name.clone(),
            r.priority,
            &text,
            map,
            "syscall",
            r.tags.clone(),
            self.hostname.clone(),
        )
    }
}

/// Share work across rules, once per event: merge list checks by field,
/// memoise the sub-conditions several rules use, then compile every
/// condition (stateful rules' earlier steps too) into one program (the
/// trees move into it). Returns the program; each rule's `entry` and
/// `step_entries` are set.
fn share_work(rules: &mut [ActiveRule]) -> eval::Program {
    let mut roots: Vec<&mut eval::Node> = Vec::new();
    for r in rules.iter_mut() {
        roots.push(&mut r.node);
        if let Some(m) = &mut r.state {
            roots.extend(m.step_nodes_mut());
        }
    }
    eval::intern_sets(&mut roots);
    eval::plan_memo(&mut roots);
    let mut program = eval::Program::default();
    for r in rules.iter_mut() {
        let node = std::mem::replace(&mut r.node, eval::Node::Unsupported);
        r.entry = program.add(node);
        if let Some(m) = &mut r.state {
            for n in m.step_nodes_mut() {
                let node = std::mem::replace(n, eval::Node::Unsupported);
                r.step_entries.push(program.add(node));
            }
        }
    }
    program
}

#[cfg(test)]
mod tests;
