//! mamori's stateful rules, the one extension to Falco's rule language:
//! `threshold:` (N events or N distinct values per key within a window) and
//! `sequence:` (earlier steps, then the rule's own condition, for the same
//! key within a window). Falco, Tetragon and Tracee evaluate each event
//! alone; scan fan-out and read-then-send need memory across events.
//!
//! ```yaml
//! - rule: Port scan
//!   condition: evt.type = connect
//!   threshold: {by: proc.pid, distinct: fd.rport, count: 20, within: 10s}
//! - rule: Read then send
//!   condition: evt.type = connect
//!   sequence:
//!     by: proc.pid
//!     within: 30s
//!     steps: [{name: read, condition: evt.type = openat and fd.name = /etc/shadow}]
//! ```
//!
//! * `threshold: {by, distinct, count, within, max_keys}` fires when a key
//!   (`by`, default `proc.pid`) sees `count` matching events — or, with
//!   `distinct`, `count` distinct values; with `sum: FIELD`, when the field's
//!   values add up to `count` (bytes uploaded) — within `within`; the key
//!   then stays quiet for one window.
//! * `sequence: {by, tree, within, steps, max_keys}` fires when a key's events
//!   match each step in order and then the rule's condition, all within
//!   `within` of the first step; with `tree: true` later steps also match in
//!   the key process's descendants (`by` must then be `proc.pid` or
//!   `proc.ppid`).
//!
//! Bounds, because the state is attacker-influenced: a rule keeps at most
//! `max_keys` keys (default [`DEFAULT_MAX_KEYS`], LRU); a threshold key holds at
//! most `count` ≤ [`MAX_THRESHOLD_COUNT`] values; a sequence has at most
//! [`MAX_STEPS`] earlier steps and a key holds one event per step; windows are
//! at most [`MAX_WINDOW_NS`] (1 h). Evictions, expiries, alerts and suppressed
//! repeats are counted ([`machine::StateStats`]). Windows use event time
//! (`evt.rawtime`), so `rules test` and `replay` answer like the live sensor.
//!
//! The stages, in pipeline order: [`read`] (the YAML block → typed info, in
//! the reader), [`compile`] (key fields bound, step conditions compiled, in
//! the compiler) and [`machine`] (the per-rule state the engine feeds).
//! Semantics for rule authors are in `rules/README.md`.

pub(crate) mod compile;
pub(crate) mod machine;
pub(crate) mod read;

#[cfg(test)]
mod tests;

use crate::eval::{Node, Operand};

/// Default cap on the keys a stateful rule tracks.
pub(crate) const DEFAULT_MAX_KEYS: usize = 10_000;
/// Largest `count` of a threshold (state per key grows up to it).
pub(crate) const MAX_THRESHOLD_COUNT: u32 = 10_000;
/// Largest `count` of a threshold with `sum` (a byte count: 1 PB).
pub(crate) const MAX_THRESHOLD_SUM: u64 = 1 << 50;
/// Most (time, amount) entries a `sum` threshold key keeps; past it the
/// two oldest are merged (the sum is kept, the older one's expiry moves
/// to the newer one's time).
pub(crate) const MAX_SUM_ENTRIES: usize = 1024;
/// Longest window of a stateful rule.
pub(crate) const MAX_WINDOW_NS: u64 = 3_600 * 1_000_000_000;
/// Most earlier steps a sequence may have.
pub(crate) const MAX_STEPS: usize = 8;

/// A compiled `threshold:` block.
#[derive(Debug)]
pub(crate) struct ThresholdSpec {
    pub by: Vec<Operand>,
    pub distinct: Vec<Operand>,
    /// Added up per key (`sum:`); `count` is then the sum that fires.
    pub sum: Option<Operand>,
    pub count: u64,
    pub within_ns: u64,
    pub max_keys: usize,
}

/// A compiled `sequence:` block; `steps` are the earlier steps, the rule's
/// condition is the last.
#[derive(Debug)]
pub(crate) struct SequenceSpec {
    pub by: Vec<Operand>,
    pub tree: bool,
    pub within_ns: u64,
    pub steps: Vec<(String, Node)>,
    pub max_keys: usize,
}

#[derive(Debug)]
pub(crate) enum Spec {
    Threshold(ThresholdSpec),
    Sequence(SequenceSpec),
}

impl Spec {
    pub(crate) fn kind(&self) -> &'static str {
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
