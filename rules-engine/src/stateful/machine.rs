//! The state machine of one stateful rule: per key, the window of a
//! `threshold:` or the progress of a `sequence:`, held in an LRU capped at
//! `max_keys`, with counters ([`StateStats`]) for what the cap pushed out.
//! The engine feeds it every event of the rule's types ([`Machine::observe`])
//! and renders the returned [`StateView`] into the alert.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use serde::Serialize;

use super::{SequenceSpec, Spec, ThresholdSpec, MAX_STEPS};
use crate::eval::{Node, Operand};
use crate::event::Event;
use crate::fields::{EvalCtx, Value};

/// What a firing stateful rule adds to its alert (`%threshold.*`, `%seq.*`).
#[derive(Debug, Clone, Default)]
pub(crate) struct StateView {
    /// Threshold: events or distinct values counted in the window (with
    /// `sum`, the sum).
    pub count: usize,
    /// Threshold with `distinct`: the values, in natural order.
    pub values: Vec<Value<'static>>,
    pub window_ns: u64,
    /// From the first counted event (or first step) to the firing event.
    pub elapsed_ns: u64,
    /// Sequence: per earlier step, the values its event had for the fields
    /// the output names (`%seq.<step>.<field>`), in output order.
    pub steps: Vec<Vec<Value<'static>>>,
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
    /// Matching events of a key that alerted less than a window ago.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct Window {
    /// Distinct value (by hash) → (first seen, last seen, value); used with
    /// `distinct`.
    values: HashMap<u64, (u64, u64, Value<'static>)>,
    /// Event times; used without `distinct`.
    times: std::collections::VecDeque<u64>,
    /// (time, amount) of each event; used with `sum`.
    amounts: std::collections::VecDeque<(u64, u64)>,
    /// The sum of `amounts`.
    total: u64,
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
    captured: Vec<Vec<Value<'static>>>,
}

#[derive(Debug)]
enum Keys {
    Threshold(LruCache<u64, Window>),
    Sequence(LruCache<u64, Progress>),
}

#[derive(Debug)]
struct Inner {
    keys: Keys,
    stats: StateStats,
}

/// The state of one stateful rule (interior mutability, so the engine stays
/// `&self` and `Sync`). Keys and distinct values are kept as 64-bit keyed
/// hashes (random per process, so they cannot be steered into collisions),
/// which keeps the per-event path free of allocation.
#[derive(Debug)]
pub(crate) struct Machine {
    pub spec: Spec,
    hasher: std::collections::hash_map::RandomState,
    inner: Mutex<Inner>,
}

/// Feed a value into a hasher without rendering it.
fn hash_value(h: &mut impl Hasher, v: &Value<'_>) {
    match v {
        Value::Missing => 0u8.hash(h),
        Value::Str(s) => {
            1u8.hash(h);
            s.as_ref().hash(h);
        }
        Value::Int(n) => {
            2u8.hash(h);
            n.hash(h);
        }
        Value::Bool(b) => {
            3u8.hash(h);
            b.hash(h);
        }
        Value::Ip(ip) => {
            4u8.hash(h);
            ip.hash(h);
        }
        Value::List(items) => {
            5u8.hash(h);
            items.len().hash(h);
            for x in items {
                hash_value(h, x);
            }
        }
    }
}

/// Natural order for listing values: numbers and addresses by value.
fn value_order(a: &Value<'_>, b: &Value<'_>) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Ip(x), Value::Ip(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::List(x), Value::List(y)) => x
            .iter()
            .zip(y.iter())
            .map(|(p, q)| value_order(p, q))
            .find(|o| o.is_ne())
            .unwrap_or(x.len().cmp(&y.len())),
        _ => {
            let (mut p, mut q) = (String::new(), String::new());
            a.render(&mut p);
            b.render(&mut q);
            p.cmp(&q)
        }
    }
}

fn cache<V>(n: usize) -> LruCache<u64, V> {
    LruCache::new(NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN))
}

impl Machine {
    pub(crate) fn new(rule: &str, spec: Spec) -> Machine {
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
            hasher: Default::default(),
            spec,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent (if partial) state.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hashed key of `ops` for this event; `None` when a value is
    /// missing (an event that cannot be attributed is not counted).
    fn key(&self, ops: &[Operand], cx: &EvalCtx<'_>) -> Option<u64> {
        let mut h = self.hasher.build_hasher();
        for o in ops {
            let v = o.get(cx);
            if matches!(v, Value::Missing) {
                return None;
            }
            hash_value(&mut h, &v);
        }
        Some(h.finish())
    }

    fn pid_key(&self, pid: u32) -> u64 {
        let mut h = self.hasher.build_hasher();
        hash_value(&mut h, &Value::Int(i64::from(pid)));
        h.finish()
    }

    pub(crate) fn stats(&self) -> StateStats {
        let g = self.lock();
        let mut s = g.stats.clone();
        s.keys = match &g.keys {
            Keys::Threshold(c) => c.len(),
            Keys::Sequence(c) => c.len(),
        };
        s
    }

    /// Forget all state and counters (between `rules test` cases).
    pub(crate) fn reset(&self) {
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

    /// A sequence's earlier steps' conditions (none for a threshold), for
    /// the engine to compile.
    pub(crate) fn step_nodes_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        let steps = match &mut self.spec {
            Spec::Sequence(s) => s.steps.as_mut_slice(),
            Spec::Threshold(_) => &mut [],
        };
        steps.iter_mut().map(|(_, n)| n)
    }

    /// Earlier step `k`'s condition as a tree.
    pub(crate) fn step_node(&self, k: usize) -> Option<&Node> {
        match &self.spec {
            Spec::Sequence(s) => s.steps.get(k).map(|(_, n)| n),
            Spec::Threshold(_) => None,
        }
    }

    /// Feed one event whose type the rule is indexed for; `truth(None)` is
    /// whether the rule's condition holds for it, `truth(Some(k))` whether
    /// earlier step `k`'s does (asked only as needed: a threshold whose
    /// condition is false touches no state); `capture(step, cx)` takes what
    /// the output needs from a sequence step's event. Returns the view when
    /// it fires.
    pub(crate) fn observe(
        &self,
        truth: impl Fn(Option<usize>) -> bool,
        cx: &EvalCtx<'_>,
        ev: &Event,
        capture: impl Fn(usize, &EvalCtx<'_>) -> Vec<Value<'static>>,
    ) -> Option<StateView> {
        match &self.spec {
            Spec::Threshold(t) => {
                if !truth(None) {
                    return None;
                }
                let key = self.key(&t.by, cx)?;
                let amount = match &t.sum {
                    None => None,
                    Some(op) => match op.get(cx) {
                        Value::Int(n) if n > 0 => Some(n as u64),
                        _ => return None,
                    },
                };
                let value = match t.distinct.as_slice() {
                    [] => None,
                    [one] => {
                        // Extracted once: hashed and kept from one read.
                        let v = one.get(cx);
                        if matches!(v, Value::Missing) {
                            return None;
                        }
                        let mut h = self.hasher.build_hasher();
                        hash_value(&mut h, &v);
                        Some((h.finish(), v))
                    }
                    many => {
                        let vs: Vec<Value<'_>> = many.iter().map(|o| o.get(cx)).collect();
                        if vs.iter().any(|v| matches!(v, Value::Missing)) {
                            return None;
                        }
                        Some((self.key(many, cx)?, Value::List(vs)))
                    }
                };
                let mut g = self.lock();
                let Inner { keys, stats } = &mut *g;
                let Keys::Threshold(c) = keys else {
                    return None;
                };
                threshold(t, c, stats, key, (value, amount), ev.ts)
            }
            Spec::Sequence(s) => {
                // Evaluate outside the lock; only matching events touch state.
                let last = truth(None);
                let mut hits = [false; MAX_STEPS];
                let mut any = false;
                for (i, hit) in hits.iter_mut().enumerate().take(s.steps.len()) {
                    if truth(Some(i)) {
                        *hit = true;
                        any = true;
                    }
                }
                if !last && !any {
                    return None;
                }
                let own = self.key(&s.by, cx);
                let mut candidates: Vec<u64> = own.into_iter().collect();
                if s.tree {
                    for pid in
                        std::iter::once(ev.proc.pid).chain(ev.proc.ancestors.iter().map(|a| a.pid))
                    {
                        let k = self.pid_key(pid);
                        if !candidates.contains(&k) {
                            candidates.push(k);
                        }
                    }
                }
                let mut g = self.lock();
                let Inner { keys, stats } = &mut *g;
                let Keys::Sequence(c) = keys else {
                    return None;
                };
                let step = Step {
                    candidates: &candidates,
                    own,
                    hits: &hits[..s.steps.len()],
                    last,
                    ts: ev.ts,
                };
                sequence(s, c, stats, step, |i| capture(i, cx))
            }
        }
    }
}

fn push_key<V>(
    c: &mut LruCache<u64, V>,
    stats: &mut StateStats,
    key: u64,
    v: V,
    live: impl Fn(&V) -> bool,
) {
    if let Some((old_key, old)) = c.push(key, v) {
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
    c: &mut LruCache<u64, Window>,
    stats: &mut StateStats,
    key: u64,
    (value, amount): (Option<(u64, Value<'_>)>, Option<u64>),
    ts: u64,
) -> Option<StateView> {
    let within = t.within_ns;
    let horizon = ts.saturating_sub(within);
    if !c.contains(&key) {
        let live = |w: &Window| {
            w.last.saturating_add(within) >= ts
                || w.fired.is_some_and(|f| f.saturating_add(within) > ts)
        };
        // At the cap, the least recently used key makes room: its window's
        // allocations are reused for the new key (no free + malloc per
        // new key under a flood of distinct keys).
        let mut fresh = Window::default();
        if c.len() >= c.cap().get() {
            if let Some((_, mut old)) = c.pop_lru() {
                if live(&old) {
                    stats.evicted += 1;
                } else {
                    stats.expired += 1;
                }
                old.values.clear();
                old.times.clear();
                old.last = 0;
                old.fired = None;
                fresh = old;
            }
        }
        push_key(c, stats, key, fresh, live);
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
    let count = t.count;
    let n = match (value, amount) {
        (_, Some(a)) => {
            w.amounts.push_back((ts, a));
            w.total = w.total.saturating_add(a);
            while w.amounts.front().is_some_and(|&(x, _)| x < horizon) {
                if let Some((_, old)) = w.amounts.pop_front() {
                    w.total -= old;
                }
            }
            if w.amounts.len() > super::MAX_SUM_ENTRIES {
                if let (Some((_, a0)), Some(next)) = (w.amounts.pop_front(), w.amounts.front_mut())
                {
                    next.1 += a0;
                }
            }
            w.total
        }
        (Some((h, v)), None) => {
            match w.values.get_mut(&h) {
                Some(seen) => seen.1 = seen.1.max(ts),
                None => {
                    w.values.insert(h, (ts, ts, v.into_owned()));
                }
            }
            if w.values.len() as u64 >= count {
                w.values.retain(|_, seen| seen.1 >= horizon);
            }
            w.values.len() as u64
        }
        (None, None) => {
            w.times.push_back(ts);
            while w.times.front().is_some_and(|&x| x < horizon) {
                w.times.pop_front();
            }
            w.times.len() as u64
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
        .chain(w.amounts.front().map(|a| a.0))
        .min()
        .unwrap_or(ts)
        .clamp(horizon, ts);
    let mut values: Vec<Value<'static>> = w.values.drain().map(|(_, v)| v.2).collect();
    values.sort_by(value_order);
    w.times.clear();
    w.amounts.clear();
    w.total = 0;
    w.fired = Some(ts);
    stats.alerts += 1;
    Some(StateView {
        count: n.min(usize::MAX as u64) as usize,
        values,
        window_ns: within,
        elapsed_ns: ts - first,
        steps: Vec::new(),
    })
}

/// One event's part in a sequence.
struct Step<'a> {
    /// Keys it can continue: its own, and with `tree: true` its process's
    /// and every ancestor's pid.
    candidates: &'a [u64],
    /// Its own key (where a first step is recorded).
    own: Option<u64>,
    /// Which earlier steps it matches.
    hits: &'a [bool],
    /// Whether it matches the rule's condition (the last step).
    last: bool,
    ts: u64,
}

fn sequence(
    s: &SequenceSpec,
    c: &mut LruCache<u64, Progress>,
    stats: &mut StateStats,
    e: Step<'_>,
    capture: impl Fn(usize) -> Vec<Value<'static>>,
) -> Option<StateView> {
    let ts = e.ts;
    let within = s.within_ns;
    let alive = |p: &Progress| ts.saturating_sub(p.first) <= within;
    // Drop expired progress among the candidates first.
    for k in e.candidates {
        if c.peek(k).is_some_and(|p| !alive(p)) {
            c.pop(k);
            stats.expired += 1;
        }
    }
    let n = s.steps.len();
    let mut fired = None;
    if e.last {
        if let Some(k) = e
            .candidates
            .iter()
            .find(|k| c.peek(*k).is_some_and(|p| p.done == n))
        {
            if let Some(p) = c.pop(k) {
                stats.alerts += 1;
                fired = Some(StateView {
                    window_ns: within,
                    elapsed_ns: ts.saturating_sub(p.first),
                    steps: p.captured,
                    ..Default::default()
                });
            }
        }
    }
    // Later steps first, so one event advances a key by one step at most.
    for i in (0..n).rev().filter(|&i| e.hits[i]) {
        if i == 0 {
            let Some(key) = e.own else { continue };
            if c.peek(&key).is_some_and(|p| p.done > 1) {
                continue; // further along already; keep that progress
            }
            let p = Progress {
                done: 1,
                first: ts,
                captured: vec![capture(0)],
            };
            push_key(c, stats, key, p, alive);
        } else if let Some(k) = e
            .candidates
            .iter()
            .find(|k| c.peek(*k).is_some_and(|p| p.done == i))
        {
            if let Some(p) = c.get_mut(k) {
                p.done = i + 1;
                p.captured.push(capture(i));
            }
        }
    }
    fired
}
