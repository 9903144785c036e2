//! One sink's bounded queue: the [`SinkHandle`] that `submit` and the
//! sink's worker share.
//!
//! `submit` filters (priority, rule, tag), asks dedup and the rate limit,
//! then pushes an `Arc<Alert>` under a short mutex; a full queue drops its
//! *oldest* alert and counts it. The worker pops from the front. Counters
//! are atomics, readable at any time.

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
use mamori_rules::alert::Alert;

/// Per-sink counters, readable at any time (for metrics and `-v`).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    /// Given up on: permanent errors and retries exhausted.
    pub failed: AtomicU64,
    /// Retry attempts made.
    pub retried: AtomicU64,
    /// Dropped from a full queue (oldest first).
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

/// A sink's queue and its dedup / rate-limit windows, under one mutex.
pub(super) struct State {
    pub(super) queue: VecDeque<Arc<Alert>>,
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
}

impl SinkHandle {
    pub(super) fn new(name: &str, common: SinkCommon) -> Self {
        let dedup = common.dedup.clone().map(Dedup::new);
        let rate = common.rate_limit.map(RateLimit::new);
        SinkHandle {
            name: name.into(),
            filter: Filter { common },
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: false,
                closed: false,
                dedup,
                rate,
            }),
            notify: Notify::new(),
            counters: Counters::default(),
            reopen: Arc::new(AtomicBool::new(false)),
        }
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
            st.queue.pop_front();
            self.counters.dropped.fetch_add(1, Relaxed);
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
        let st = h.lock();
        let rules: Vec<_> = st.queue.iter().map(|a| a.rule.clone()).collect();
        assert_eq!(rules, ["r7", "r8", "r9"]);
        drop(st);
        assert_eq!(h.stats().dropped, 7);
        assert_eq!(h.stats().pending, 3);
    }
}
