//! mamori's stateful rules: `threshold:` (N events or N distinct values per
//! key within a window) and `sequence:` (earlier steps, then the rule's own
//! condition, for the same key within a window). Falco, Tetragon and Tracee
//! evaluate each event alone; scan fan-out and read-then-send need memory
//! across events, and this module is that memory.
//!
//! Design constraints, because the state is attacker-influenced:
//! * bounded: each rule keeps at most `max_keys` keys (LRU); a threshold key
//!   holds at most `count` values (reaching it fires and clears); a sequence
//!   key holds at most one event per step;
//! * counted: keys evicted while still live, keys expired, alerts and
//!   suppressed repeats are counters ([`StateStats`]) that `mamori run`
//!   reports, so a flood that pushes state out is visible;
//! * event time, not wall time: windows use `evt.rawtime`, so `rules test`
//!   and `replay` give the same answers as the live sensor.
//!
//! Semantics are documented for rule authors in `rules/README.md`.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use serde::Serialize;

use super::eval::{Node, Operand};
use crate::event::Event;
use crate::fields::{EvalCtx, Value};

/// A compiled `threshold:` block.
#[derive(Debug)]
pub struct ThresholdSpec {
    pub by: Vec<Operand>,
    pub distinct: Vec<Operand>,
    pub count: u32,
    pub within_ns: u64,
    pub max_keys: usize,
}

/// A compiled `sequence:` block; `steps` are the earlier steps, the rule's
/// condition is the last.
#[derive(Debug)]
pub struct SequenceSpec {
    pub by: Vec<Operand>,
    pub tree: bool,
    pub within_ns: u64,
    pub steps: Vec<(String, Node)>,
    pub max_keys: usize,
}

#[derive(Debug)]
pub enum Spec {
    Threshold(ThresholdSpec),
    Sequence(SequenceSpec),
}

impl Spec {
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Threshold(_) => "threshold",
            Spec::Sequence(_) => "sequence",
        }
    }

    fn max_keys(&self) -> usize {
        match self {
            Spec::Threshold(t) => t.max_keys,
            Spec::Sequence(s) => s.max_keys,
        }
    }
}

/// What a firing stateful rule adds to its alert (`%threshold.*`, `%seq.*`).
#[derive(Debug, Clone, Default)]
pub struct StateView {
    /// Threshold: events or distinct values counted in the window.
    pub count: usize,
    /// Threshold with `distinct`: the values, sorted.
    pub values: Vec<String>,
    pub window_ns: u64,
    /// From the first counted event (or first step) to the firing event.
    pub elapsed_ns: u64,
    /// Sequence: the earlier steps' events, in step order.
    pub steps: Vec<Arc<Event>>,
}

/// Counters of one stateful rule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StateStats {
    pub rule: String,
    pub kind: &'static str,
    /// Keys tracked now.
    pub keys: usize,
    pub max_keys: usize,
    /// Keys pushed out by the cap while their window was still open: each is
    /// a detection that may have been missed.
    pub evicted: u64,
    /// Keys dropped because their window had passed.
    pub expired: u64,
    pub alerts: u64,
    /// Threshold crossings within a window that already alerted.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct Window {
    /// Distinct value → (first, last) seen (ns); used with `distinct`.
    values: HashMap<String, (u64, u64)>,
    /// Event times; used without `distinct`.
    times: std::collections::VecDeque<u64>,
    /// Latest event time of the key.
    last: u64,
    /// When the key last alerted: quiet until `fired + within`.
    fired: Option<u64>,
}

#[derive(Debug)]
struct Progress {
    /// Steps completed (1..=steps.len()).
    done: usize,
    first: u64,
    events: Vec<Arc<Event>>,
}

#[derive(Debug)]
enum Keys {
    Threshold(LruCache<String, Window>),
    Sequence(LruCache<String, Progress>),
}

#[derive(Debug)]
struct Inner {
    keys: Keys,
    stats: StateStats,
}

/// The state of one stateful rule (interior mutability, so the engine stays
/// `&self` and `Sync`).
#[derive(Debug)]
pub struct Machine {
    pub spec: Spec,
    inner: Mutex<Inner>,
}

/// Render a key from operand values; `None` when one is missing (an event
/// that cannot be attributed is not counted).
fn key_of(ops: &[Operand], cx: &EvalCtx<'_>) -> Option<String> {
    let mut key = String::new();
    for (i, o) in ops.iter().enumerate() {
        let v = o.get(cx);
        if matches!(v, Value::Missing) {
            return None;
        }
        if i > 0 {
            key.push('\u{1f}');
        }
        v.render(&mut key);
    }
    Some(key)
}

fn cache<V>(n: usize) -> LruCache<String, V> {
    LruCache::new(NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN))
}

impl Machine {
    pub fn new(rule: &str, spec: Spec) -> Machine {
        let max = spec.max_keys();
        let keys = match &spec {
            Spec::Threshold(_) => Keys::Threshold(cache(max)),
            Spec::Sequence(_) => Keys::Sequence(cache(max)),
        };
        Machine {
            inner: Mutex::new(Inner {
                keys,
                stats: StateStats {
                    rule: rule.to_string(),
                    kind: spec.kind(),
                    max_keys: max,
                    ..Default::default()
                },
            }),
            spec,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent (if partial) state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> StateStats {
        let g = self.lock();
        let mut s = g.stats.clone();
        s.keys = match &g.keys {
            Keys::Threshold(c) => c.len(),
            Keys::Sequence(c) => c.len(),
        };
        s
    }

    /// Forget all state and counters (between `rules test` cases).
    pub fn reset(&self) {
        let mut g = self.lock();
        match &mut g.keys {
            Keys::Threshold(c) => c.clear(),
            Keys::Sequence(c) => c.clear(),
        }
        let (rule, kind, max) = (g.stats.rule.clone(), g.stats.kind, g.stats.max_keys);
        g.stats = StateStats {
            rule,
            kind,
            max_keys: max,
            ..Default::default()
        };
    }

    /// Feed one event whose type the rule is indexed for; `cond` is the
    /// rule's compiled condition. Returns the view when the rule fires.
    pub fn observe(&self, cond: &Node, cx: &EvalCtx<'_>, ev: &Event) -> Option<StateView> {
        match &self.spec {
            Spec::Threshold(t) => {
                if !cond.eval(cx) {
                    return None;
                }
                let key = key_of(&t.by, cx)?;
                let value = if t.distinct.is_empty() {
                    None
                } else {
                    Some(key_of(&t.distinct, cx)?)
                };
                let mut g = self.lock();
                let Inner { keys, stats } = &mut *g;
                let Keys::Threshold(c) = keys else {
                    return None;
                };
                threshold(t, c, stats, key, value, ev.ts)
            }
            Spec::Sequence(s) => {
                // Evaluate outside the lock; only matching events touch state.
                let last = cond.eval(cx);
                let hits: Vec<usize> = s
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, n))| n.eval(cx))
                    .map(|(i, _)| i)
                    .collect();
                if !last && hits.is_empty() {
                    return None;
                }
                let own = key_of(&s.by, cx);
                let candidates = candidates(s, own.as_deref(), ev);
                let mut g = self.lock();
                let Inner { keys, stats } = &mut *g;
                let Keys::Sequence(c) = keys else {
                    return None;
                };
                sequence(s, c, stats, &candidates, own, &hits, last, ev)
            }
        }
    }
}

fn push_key<V>(
    c: &mut LruCache<String, V>,
    stats: &mut StateStats,
    key: String,
    v: V,
    live: impl Fn(&V) -> bool,
) {
    if let Some((old_key, old)) = c.push(key.clone(), v) {
        if old_key != key {
            if live(&old) {
                stats.evicted += 1;
            } else {
                stats.expired += 1;
            }
        }
    }
}

fn threshold(
    t: &ThresholdSpec,
    c: &mut LruCache<String, Window>,
    stats: &mut StateStats,
    key: String,
    value: Option<String>,
    ts: u64,
) -> Option<StateView> {
    let within = t.within_ns;
    let horizon = ts.saturating_sub(within);
    if !c.contains(&key) {
        let live = |w: &Window| {
            w.last.saturating_add(within) >= ts
                || w.fired.is_some_and(|f| f.saturating_add(within) > ts)
        };
        push_key(c, stats, key.clone(), Window::default(), live);
    }
    let w = c.get_mut(&key)?;
    w.last = w.last.max(ts);
    if let Some(f) = w.fired {
        if f.saturating_add(within) > ts {
            // This key alerted less than a window ago: stay quiet.
            stats.suppressed += 1;
            return None;
        }
        w.fired = None;
    }
    let count = t.count as usize;
    let n = match value {
        Some(v) => {
            let seen = w.values.entry(v).or_insert((ts, ts));
            seen.1 = seen.1.max(ts);
            if w.values.len() >= count {
                w.values.retain(|_, seen| seen.1 >= horizon);
            }
            w.values.len()
        }
        None => {
            w.times.push_back(ts);
            while w.times.front().is_some_and(|&x| x < horizon) {
                w.times.pop_front();
            }
            w.times.len()
        }
    };
    if n < count {
        return None;
    }
    // The earliest counted sighting, but never before the window.
    let first = w
        .values
        .values()
        .map(|s| s.0)
        .chain(w.times.front().copied())
        .min()
        .unwrap_or(ts)
        .clamp(horizon, ts);
    let mut values: Vec<String> = w.values.drain().map(|(v, _)| v).collect();
    values.sort();
    w.times.clear();
    w.fired = Some(ts);
    stats.alerts += 1;
    Some(StateView {
        count: n,
        values,
        window_ns: within,
        elapsed_ns: ts - first,
        steps: Vec::new(),
    })
}

/// Keys an event of a later step can continue: its own key, and with
/// `tree: true` also its process and every ancestor's pid.
fn candidates(s: &SequenceSpec, own: Option<&str>, ev: &Event) -> Vec<String> {
    let mut out: Vec<String> = own.map(str::to_string).into_iter().collect();
    if s.tree {
        let mut add = |pid: u32| {
            let k = pid.to_string();
            if !out.contains(&k) {
                out.push(k);
            }
        };
        add(ev.proc.pid);
        for a in ev.proc.ancestors.iter() {
            add(a.pid);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn sequence(
    s: &SequenceSpec,
    c: &mut LruCache<String, Progress>,
    stats: &mut StateStats,
    candidates: &[String],
    own: Option<String>,
    hits: &[usize],
    last: bool,
    ev: &Event,
) -> Option<StateView> {
    let ts = ev.ts;
    let within = s.within_ns;
    let alive = |p: &Progress| ts.saturating_sub(p.first) <= within;
    // Drop expired progress among the candidates first.
    for k in candidates {
        if c.peek(k).is_some_and(|p| !alive(p)) {
            c.pop(k);
            stats.expired += 1;
        }
    }
    let n = s.steps.len();
    let mut fired = None;
    if last {
        if let Some(k) = candidates
            .iter()
            .find(|k| c.peek(*k).is_some_and(|p| p.done == n))
        {
            if let Some(p) = c.pop(k) {
                stats.alerts += 1;
                fired = Some(StateView {
                    window_ns: within,
                    elapsed_ns: ts.saturating_sub(p.first),
                    steps: p.events,
                    ..Default::default()
                });
            }
        }
    }
    // Later steps first, so one event advances a key by one step at most.
    for &i in hits.iter().rev() {
        if i == 0 {
            let Some(key) = own.clone() else { continue };
            if c.peek(&key).is_some_and(|p| p.done > 1) {
                continue; // further along already; keep that progress
            }
            let p = Progress {
                done: 1,
                first: ts,
                events: vec![Arc::new(ev.clone())],
            };
            push_key(c, stats, key, p, |p: &Progress| {
                ts.saturating_sub(p.first) <= within
            });
        } else if let Some(k) = candidates
            .iter()
            .find(|k| c.peek(*k).is_some_and(|p| p.done == i))
        {
            if let Some(p) = c.get_mut(k) {
                p.done = i + 1;
                p.events.push(Arc::new(ev.clone()));
            }
        }
    }
    fired
}

#[cfg(test)]
mod tests {
    use crate::rules::{Engine, LoadOptions};

    fn engine(rules: &str) -> Engine {
        let (e, report) = Engine::from_sources(&[("t.yaml", rules)], &LoadOptions::default());
        assert!(!report.has_errors(), "{report:?}");
        assert_eq!(e.active_rules(), 1, "{report:?}");
        e
    }

    fn connect(ts_ms: u64, pid: u32, rip: &str, rport: u16) -> crate::event::Event {
        serde_json::from_value(serde_json::json!({
            "ts": ts_ms * 1_000_000, "type": "connect", "res": -111,
            "proc": {"pid": pid, "name": "scan", "exepath": "/scan"},
            "fd": {"type": "ipv4", "num": 3, "name": "x", "rip": rip, "rport": rport, "l4proto": "tcp"},
        }))
        .expect("event")
    }

    const SCAN: &str = r#"
- rule: scan
  desc: d
  condition: evt.type = connect
  threshold: {by: proc.pid, distinct: fd.rport, count: 3, within: 1s, max_keys: 2}
  output: "n=%threshold.count ports=%threshold.values in %threshold.elapsed"
  priority: WARNING
"#;

    #[test]
    fn threshold_fires_once_per_window_and_counts_suppressed_repeats() {
        let e = engine(SCAN);
        let fired = |ev| e.evaluate(&ev).len();
        assert_eq!(fired(connect(0, 1, "10.0.0.1", 1)), 0);
        assert_eq!(
            fired(connect(10, 1, "10.0.0.1", 1)),
            0,
            "a repeated port is not new"
        );
        assert_eq!(fired(connect(20, 1, "10.0.0.1", 2)), 0);
        let a = e.evaluate(&connect(30, 1, "10.0.0.1", 3));
        assert_eq!(a.len(), 1);
        assert!(
            a[0].output.ends_with("n=3 ports=1,2,3 in 30ms"),
            "{}",
            a[0].output
        );
        assert_eq!(a[0].output_fields["threshold.count"], 3);
        for p in 4..10 {
            assert_eq!(fired(connect(40 + p, 1, "10.0.0.1", p as u16)), 0);
        }
        let s = &e.state_stats()[0];
        assert_eq!((s.alerts, s.suppressed, s.keys), (1, 6, 1));
        // A window after the alert, the key counts afresh.
        for (i, p) in (20..23).enumerate() {
            let n = fired(connect(1100 + i as u64, 1, "10.0.0.1", p));
            assert_eq!(n, usize::from(i == 2));
        }
    }

    #[test]
    fn values_older_than_the_window_do_not_count() {
        let e = engine(SCAN);
        let n: usize = [(0, 1), (600, 2), (1200, 3), (1800, 4)]
            .into_iter()
            .map(|(t, p)| e.evaluate(&connect(t, 1, "10.0.0.1", p)).len())
            .sum();
        assert_eq!(n, 0, "never three ports within one second");
        assert_eq!(e.evaluate(&connect(1900, 1, "10.0.0.1", 5)).len(), 1);
    }

    #[test]
    fn the_key_cap_evicts_and_counts_live_keys_separately_from_expired_ones() {
        let e = engine(SCAN);
        e.evaluate(&connect(0, 1, "10.0.0.1", 1));
        e.evaluate(&connect(0, 2, "10.0.0.1", 1));
        e.evaluate(&connect(0, 3, "10.0.0.1", 1)); // pushes pid 1 out, still live
        let s = &e.state_stats()[0];
        assert_eq!((s.keys, s.max_keys, s.evicted, s.expired), (2, 2, 1, 0));
        e.evaluate(&connect(5000, 4, "10.0.0.1", 1)); // pid 2's window is over
        let s = &e.state_stats()[0];
        assert_eq!((s.keys, s.evicted, s.expired), (2, 1, 1));
        e.reset_state();
        let s = &e.state_stats()[0];
        assert_eq!((s.keys, s.evicted, s.expired, s.alerts), (0, 0, 0, 0));
    }

    #[test]
    fn events_without_a_key_value_are_not_counted() {
        let e = engine(&SCAN.replace("by: proc.pid", "by: container.id"));
        for p in 1..10 {
            assert!(e.evaluate(&connect(p, 1, "10.0.0.1", p as u16)).is_empty());
        }
        assert_eq!(e.state_stats()[0].keys, 0);
    }

    #[test]
    fn counting_without_distinct_counts_events() {
        let e = engine(&SCAN.replace("distinct: fd.rport, ", ""));
        let n: Vec<usize> = (0..3)
            .map(|i| e.evaluate(&connect(i, 1, "10.0.0.1", 1)).len())
            .collect();
        assert_eq!(n, [0, 0, 1]);
    }

    fn exec(ts_ms: u64, pid: u32, ppid: u32, name: &str, ancestors: &[u32]) -> crate::event::Event {
        let anc: Vec<_> = ancestors
            .iter()
            .map(|p| serde_json::json!({"pid": p, "name": "sh", "exepath": "/bin/sh"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "ts": ts_ms * 1_000_000, "type": "execve", "res": 0,
            "proc": {"pid": pid, "ppid": ppid, "name": name, "exepath": "/x", "ancestors": anc},
        }))
        .expect("event")
    }

    const SEQ: &str = r#"
- rule: abc
  desc: d
  condition: evt.type = execve and proc.name = c
  sequence:
    by: proc.pid
    tree: true
    within: 10s
    steps:
      - {name: first, condition: evt.type = execve and proc.name = a}
      - {name: second, condition: evt.type = execve and proc.name = b}
  output: "a=%seq.first.proc.pid b=%seq.second.proc.pid c=%proc.pid after %seq.elapsed of %seq.window"
  priority: WARNING
"#;

    #[test]
    fn sequence_steps_must_come_in_order_within_the_window_in_one_tree() {
        let e = engine(SEQ);
        // b before a does not count; c without a and b does not fire.
        assert!(e.evaluate(&exec(0, 10, 1, "b", &[])).is_empty());
        assert!(e.evaluate(&exec(1, 10, 1, "c", &[])).is_empty());
        assert!(e.evaluate(&exec(2, 10, 1, "a", &[])).is_empty());
        assert!(e.evaluate(&exec(3, 11, 10, "c", &[10])).is_empty());
        assert!(e.evaluate(&exec(4, 12, 10, "b", &[10])).is_empty());
        // An unrelated process's c does not complete it; a grandchild's does.
        assert!(e.evaluate(&exec(5, 20, 1, "c", &[])).is_empty());
        let a = e.evaluate(&exec(6, 13, 12, "c", &[12, 10]));
        assert_eq!(a.len(), 1);
        assert!(
            a[0].output.ends_with("a=10 b=12 c=13 after 4ms of 10s"),
            "{}",
            a[0].output
        );
        // Completed sequences are consumed.
        assert!(e.evaluate(&exec(7, 13, 12, "c", &[12, 10])).is_empty());
        let s = &e.state_stats()[0];
        assert_eq!((s.alerts, s.keys), (1, 0));
    }

    #[test]
    fn sequence_progress_expires() {
        let e = engine(SEQ);
        e.evaluate(&exec(0, 10, 1, "a", &[]));
        e.evaluate(&exec(1, 10, 1, "b", &[]));
        assert!(e.evaluate(&exec(10_002, 10, 1, "c", &[])).is_empty());
        assert_eq!(e.state_stats()[0].expired, 1);
    }

    fn errors(rules: &str) -> Vec<String> {
        let (_, report) = Engine::from_sources(&[("bad.yaml", rules)], &LoadOptions::default());
        report.errors().map(|d| d.to_string()).collect()
    }

    #[test]
    fn broken_stateful_blocks_are_errors_naming_the_place() {
        let base = "- rule: r\n  desc: d\n  condition: evt.type = connect\n  output: o %fd.name\n  priority: INFO\n";
        let cases = [
            ("  threshold: {count: 3}\n", "bad.yaml:6", "needs 'within'"),
            ("  threshold: {count: 1, within: 1s}\n", "bad.yaml:6", "from 2 to"),
            ("  threshold: {count: 3, within: 2d}\n", "bad.yaml:6", "duration"),
            ("  threshold: {count: 3, within: 1s, every: 2}\n", "bad.yaml:6", "unknown key 'every'"),
            ("  threshold: {count: 3, within: 1s, by: proc.nmae}\n", "bad.yaml:6", "proc.nmae"),
            ("  sequence: {within: 1s}\n", "bad.yaml:6", "needs 'steps'"),
            (
                "  sequence: {within: 1s, by: fd.name, tree: true, steps: [{name: a, condition: evt.type = execve}]}\n",
                "bad.yaml:6",
                "tree: true",
            ),
            (
                "  sequence: {within: 1s, steps: [{name: a, condition: evt.type = = execve}]}\n",
                "bad.yaml:6",
                "",
            ),
            (
                "  threshold: {count: 3, within: 1s}\n  sequence: {within: 1s}\n",
                "bad.yaml:7",
                "not both",
            ),
        ];
        for (extra, at, msg) in cases {
            let errs = errors(&format!("{base}{extra}"));
            assert!(
                errs.iter().any(|e| e.contains(at) && e.contains(msg)),
                "{extra}: {errs:?}"
            );
        }
        let errs = errors(&base.replace("o %fd.name", "o %threshold.count"));
        assert!(
            errs.iter().any(|e| e.contains("only exists in rules with")),
            "{errs:?}"
        );
        let errs = errors(&format!(
            "{}  sequence: {{within: 1s, steps: [{{name: a, condition: evt.type = execve}}]}}\n",
            base.replace("o %fd.name", "o %seq.b.fd.name")
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("no sequence step named 'b'")),
            "{errs:?}"
        );
    }
}
