//! One sink's bounded queue: the [`SinkHandle`] that `submit` and the
//! sink's worker share.
//!
//! `submit` filters (priority, rule, tag), asks dedup and the rate limit,
//! then pushes an `Arc<Alert>` under a short mutex. A full queue drops its
//! *least severe* alert, the oldest of those (the new one if it is less
//! severe than everything queued), and counts it: a flood of notices cannot
//! push a critical alert out. The worker still takes alerts in arrival
//! order ([`AlertQueue`]). Counters are atomics, readable at any time.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Instant,
};

use tokio::sync::Notify;

use super::{
    config::SinkCommon,
    dedup::{Dedup, Seen},
    rate_limit::{Admit, RateLimit},
    SinkStats,
};
use mamori_rules::alert::{Alert, Priority};

/// Per-sink counters, readable at any time (for metrics and `-v`).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    /// Given up on: permanent errors and retries exhausted.
    pub failed: AtomicU64,
    /// Retry attempts made.
    pub retried: AtomicU64,
    /// Dropped from a full queue (least severe first, then oldest).
    pub dropped: AtomicU64,
    /// Repeats folded into a dedup summary instead of sent.
    pub deduplicated: AtomicU64,
    /// Not for this sink (priority, rule or tag filter).
    pub filtered: AtomicU64,
    /// Held back by the per-rule rate limit (reported in a summary).
    pub rate_limited: AtomicU64,
}

/// Which alerts a sink wants.
#[derive(Debug, Clone)]
pub(super) struct Filter {
    pub(super) common: SinkCommon,
}

impl Filter {
    pub(super) fn wants(&self, a: &Alert) -> bool {
        let c = &self.common;
        // `Priority` orders most severe first.
        a.priority <= c.minimum_priority
            && (c.rules.is_empty() || c.rules.contains(&a.rule))
            && (c.tags.is_empty() || a.tags.iter().any(|t| c.tags.contains(t)))
    }
}

/// A FIFO that can shed its least severe alert in O(1): one lane per
/// priority, each in arrival order, and a sequence number to merge them.
#[derive(Default)]
pub(super) struct AlertQueue {
    lanes: [VecDeque<(u64, Arc<Alert>)>; Priority::ALL.len()],
    next_seq: u64,
    len: usize,
}

impl AlertQueue {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn push_back(&mut self, a: Arc<Alert>) {
        self.lanes[a.priority as usize].push_back((self.next_seq, a));
        self.next_seq += 1;
        self.len += 1;
    }

    /// The oldest alert, whatever its priority.
    pub(super) fn pop_front(&mut self) -> Option<Arc<Alert>> {
        let lane = self
            .lanes
            .iter_mut()
            .filter(|l| !l.is_empty())
            .min_by_key(|l| l.front().map(|(seq, _)| *seq))?;
        self.len -= 1;
        lane.pop_front().map(|(_, a)| a)
    }

    /// The least severe priority queued.
    fn least_severe(&self) -> Option<usize> {
        self.lanes.iter().rposition(|l| !l.is_empty())
    }

    /// The oldest alert of the least severe priority.
    fn pop_least_severe(&mut self) -> Option<Arc<Alert>> {
        let i = self.least_severe()?;
        self.len -= 1;
        self.lanes[i].pop_front().map(|(_, a)| a)
    }

    /// The queued alerts in arrival order.
    #[cfg(test)]
    pub(super) fn to_vec(&self) -> Vec<Arc<Alert>> {
        let mut all: Vec<_> = self.lanes.iter().flatten().collect();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, a)| a.clone()).collect()
    }
}

/// A sink's queue and its dedup / rate-limit windows, under one mutex.
pub(super) struct State {
    pub(super) queue: AlertQueue,
    /// The worker holds an alert it took from the queue.
    pub(super) in_flight: bool,
    /// Shutdown started: nothing more is queued.
    pub(super) closed: bool,
    dedup: Option<Dedup>,
    rate: Option<RateLimit>,
}

/// One sink's queue, filter and counters, shared by `submit` and its worker.
pub struct SinkHandle {
    pub(super) name: String,
    pub(super) filter: Filter,
    state: Mutex<State>,
    /// Wakes the worker: something was queued, or the queue closed.
    pub(super) notify: Notify,
    pub counters: Counters,
    /// Set by [`Outputs::reopen`](super::Outputs::reopen) (SIGHUP); the file
    /// sink reopens its path.
    pub reopen: Arc<AtomicBool>,
    /// Time of each delivery attempt (`mamori_output_send_duration_seconds`).
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl SinkHandle {
    pub(super) fn new(name: &str, common: SinkCommon) -> Self {
        let dedup = common.dedup.clone().map(Dedup::new);
        let rate = common.rate_limit.map(RateLimit::new);
        SinkHandle {
            name: name.into(),
            filter: Filter { common },
            state: Mutex::new(State {
                queue: AlertQueue::default(),
                in_flight: false,
                closed: false,
                dedup,
                rate,
            }),
            notify: Notify::new(),
            counters: Counters::default(),
            reopen: Arc::new(AtomicBool::new(false)),
            // 1 ms to ~33 s.
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
            ),
        }
    }

    /// Alerts queued or in flight now.
    pub fn pending(&self) -> u64 {
        let st = self.lock();
        st.queue.len() as u64 + st.in_flight as u64
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking worker must not take detection down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, st: &mut State, a: Arc<Alert>) {
        if st.closed {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        if st.queue.len() >= self.filter.common.queue_capacity {
            self.counters.dropped.fetch_add(1, Relaxed);
            // `Priority` orders most severe first: a larger index is less severe.
            if st
                .queue
                .least_severe()
                .is_some_and(|i| (a.priority as usize) > i)
            {
                return; // less severe than everything queued: it goes
            }
            st.queue.pop_least_severe();
        }
        st.queue.push_back(a);
        self.notify.notify_one();
    }

    pub(super) fn submit_at(&self, a: &Arc<Alert>, now: Instant) {
        if !self.filter.wants(a) {
            self.counters.filtered.fetch_add(1, Relaxed);
            return;
        }
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(d) = &mut st.dedup {
            match d.admit(a, now) {
                Seen::Repeat => {
                    self.counters.deduplicated.fetch_add(1, Relaxed);
                    return;
                }
                Seen::New(summary) => {
                    if let Some(s) = summary {
                        self.push(st, s);
                    }
                }
            }
        }
        self.rate_limited_push(st, a, now);
    }

    fn rate_limited_push(&self, st: &mut State, a: &Arc<Alert>, now: Instant) {
        let Some(r) = &mut st.rate else {
            self.push(st, a.clone());
            return;
        };
        match r.admit(a, now) {
            Admit::Pass(summary) => {
                if let Some(s) = summary {
                    self.push(st, s);
                }
                self.push(st, a.clone());
            }
            Admit::Held(summary) => {
                self.counters.rate_limited.fetch_add(1, Relaxed);
                if let Some(s) = summary {
                    self.push(st, s);
                }
            }
        }
    }

    /// Emit summaries for windows that ended by `now` (all of them if
    /// `everything`) and forget those keys.
    pub(super) fn flush_dedup(&self, now: Instant, everything: bool) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(r) = &mut st.rate {
            for s in r.flush(now, everything) {
                self.push(st, s);
            }
        }
        let Some(d) = &mut st.dedup else { return };
        for s in d.flush(now, everything) {
            self.push(st, s);
        }
    }

    pub fn stats(&self) -> SinkStats {
        let st = self.lock();
        let c = &self.counters;
        SinkStats {
            name: self.name.clone(),
            sent: c.sent.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retried: c.retried.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            deduplicated: c.deduplicated.load(Relaxed),
            filtered: c.filtered.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            pending: st.queue.len() as u64 + st.in_flight as u64,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::alert;
    use mamori_rules::alert::Priority;

    #[test]
    fn filters_by_priority_rule_and_tag() {
        let mut c = SinkCommon {
            minimum_priority: Priority::Warning,
            ..Default::default()
        };
        let f = Filter { common: c.clone() };
        assert!(f.wants(&alert("r", Priority::Critical, "x")));
        assert!(f.wants(&alert("r", Priority::Warning, "x")));
        assert!(!f.wants(&alert("r", Priority::Notice, "x")));
        c.rules = vec!["r".into()];
        c.tags = vec!["network".into(), "filesystem".into()];
        let f = Filter { common: c.clone() };
        assert!(f.wants(&alert("r", Priority::Error, "x")));
        assert!(!f.wants(&alert("other", Priority::Error, "x")));
        c.tags = vec!["network".into()];
        assert!(!Filter { common: c }.wants(&alert("r", Priority::Error, "x")));
    }

    fn handle(cap: usize, dedup: Option<crate::outputs::config::DedupConfig>) -> SinkHandle {
        SinkHandle::new(
            "t",
            SinkCommon {
                queue_capacity: cap,
                dedup,
                ..Default::default()
            },
        )
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let h = handle(3, None);
        let now = Instant::now();
        for i in 0..10 {
            h.submit_at(
                &Arc::new(alert(&format!("r{i}"), Priority::Error, "x")),
                now,
            );
        }
        assert_eq!(rules(&h), ["r7", "r8", "r9"]);
        assert_eq!(h.stats().dropped, 7);
        assert_eq!(h.stats().pending, 3);
    }

    fn rules(h: &SinkHandle) -> Vec<String> {
        h.lock()
            .queue
            .to_vec()
            .iter()
            .map(|a| a.rule.clone())
            .collect()
    }

    /// A flood of low-priority alerts cannot push a severe one out: the
    /// least severe goes first (the oldest of those), and an alert less
    /// severe than everything queued is the one dropped.
    #[test]
    fn full_queue_drops_the_least_severe_first() {
        let h = handle(3, None);
        let now = Instant::now();
        let sub = |rule: &str, p: Priority| h.submit_at(&Arc::new(alert(rule, p, "x")), now);
        sub("crit", Priority::Critical);
        sub("n1", Priority::Notice);
        sub("n2", Priority::Notice);
        for i in 3..10 {
            sub(&format!("n{i}"), Priority::Notice);
        }
        assert_eq!(rules(&h), ["crit", "n8", "n9"]);
        sub("debug", Priority::Debug);
        assert_eq!(
            rules(&h),
            ["crit", "n8", "n9"],
            "less severe than all: dropped"
        );
        sub("err", Priority::Error);
        assert_eq!(rules(&h), ["crit", "n9", "err"]);
        sub("emerg", Priority::Emergency);
        sub("warn", Priority::Warning);
        assert_eq!(rules(&h), ["crit", "err", "emerg"]);
        assert_eq!(h.stats().dropped, 11);
        // Delivered in arrival order.
        let mut st = h.lock();
        let order: Vec<_> = std::iter::from_fn(|| st.queue.pop_front())
            .map(|a| a.rule.clone())
            .collect();
        assert_eq!(order, ["crit", "err", "emerg"]);
    }
}
