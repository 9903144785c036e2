//! Rate limit (per sink, opt-in): at most `per_rule` alerts of one rule per
//! interval pass (after dedup); the rest are counted, and when the interval
//! ends one summary alert of that rule carries the number held back
//! (`output_fields["mamori.rate_limit.suppressed"]`).
//!
//! Like dedup, it only decides; the sink's
//! [`SinkHandle`](super::queue::SinkHandle) queues what passes.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{config::RateLimitConfig, dedup::MAX_DEDUP_KEYS};
use mamori_rules::alert::Alert;

struct RuleWindow {
    start: Instant,
    passed: u32,
    suppressed: u64,
    last: Option<Arc<Alert>>,
}

pub(super) struct RateLimit {
    cfg: RateLimitConfig,
    rules: HashMap<String, RuleWindow>,
}

impl RateLimit {
    pub(super) fn new(cfg: RateLimitConfig) -> Self {
        RateLimit {
            cfg,
            rules: HashMap::new(),
        }
    }

    /// Whether `a` may pass now; if not, it is remembered for the summary.
    pub(super) fn admit(&mut self, a: &Arc<Alert>, now: Instant) -> Admit {
        let interval = self.cfg.interval;
        let mut summary = None;
        if let Some(w) = self.rules.get_mut(&a.rule) {
            if now >= w.start + interval {
                summary = w
                    .last
                    .take()
                    .map(|l| Arc::new(rate_summary(&l, w.suppressed, interval)));
                *w = RuleWindow {
                    start: now,
                    passed: 0,
                    suppressed: 0,
                    last: None,
                };
            }
        } else if self.rules.len() >= MAX_DEDUP_KEYS {
            return Admit::Pass(None);
        }
        let w = self.rules.entry(a.rule.clone()).or_insert(RuleWindow {
            start: now,
            passed: 0,
            suppressed: 0,
            last: None,
        });
        if w.passed < self.cfg.per_rule {
            w.passed += 1;
            Admit::Pass(summary)
        } else {
            w.suppressed += 1;
            w.last = Some(a.clone());
            Admit::Held(summary)
        }
    }

    /// Summaries for intervals over by `now` (all if `everything`).
    pub(super) fn flush(&mut self, now: Instant, everything: bool) -> Vec<Arc<Alert>> {
        let interval = self.cfg.interval;
        let mut out = Vec::new();
        self.rules.retain(|_, w| {
            if everything || now >= w.start + interval {
                if let Some(l) = w.last.take() {
                    out.push(Arc::new(rate_summary(&l, w.suppressed, interval)));
                }
                false
            } else {
                true
            }
        });
        out
    }
}

pub(super) enum Admit {
    /// Send it (and, first, the summary of the rule's previous interval).
    Pass(Option<Arc<Alert>>),
    Held(Option<Arc<Alert>>),
}

/// The alert that reports `n` alerts of a rule held back by the rate limit.
pub fn rate_summary(last: &Alert, n: u64, interval: Duration) -> Alert {
    let mut a = last.clone();
    a.output = format!(
        "{} (rate limit: {n} alerts of this rule held back in {}s; this is the last)",
        a.output,
        interval.as_secs_f64()
    );
    a.output_fields
        .insert("mamori.rate_limit.suppressed".into(), n.into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::{config::SinkCommon, queue::SinkHandle, tests::alert};
    use mamori_rules::alert::Priority;

    #[test]
    fn rate_limit_passes_n_per_rule_then_summarises() {
        let h = SinkHandle::new(
            "t",
            SinkCommon {
                rate_limit: Some(RateLimitConfig {
                    per_rule: 3,
                    interval: Duration::from_secs(60),
                }),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        for i in 0..10 {
            h.submit_at(
                &Arc::new(alert("noisy", Priority::Error, &format!("n{i}"))),
                t0 + Duration::from_secs(i),
            );
        }
        h.submit_at(&Arc::new(alert("quiet", Priority::Error, "q")), t0);
        let outs = |h: &SinkHandle| -> Vec<String> {
            h.lock().queue.iter().map(|a| a.output.clone()).collect()
        };
        assert_eq!(outs(&h), ["n0", "n1", "n2", "q"]);
        assert_eq!(h.stats().rate_limited, 7);
        h.flush_dedup(t0 + Duration::from_secs(59), false);
        assert_eq!(outs(&h).len(), 4, "interval not over");
        h.flush_dedup(t0 + Duration::from_secs(60), false);
        let q = outs(&h);
        assert_eq!(q.len(), 5, "{q:?}");
        assert!(
            q[4].starts_with("n9 (rate limit: 7 alerts of this rule held back in 60s"),
            "{q:?}"
        );
        assert_eq!(
            h.lock().queue[4].output_fields["mamori.rate_limit.suppressed"],
            7
        );
        // A new interval: passes again.
        h.submit_at(
            &Arc::new(alert("noisy", Priority::Error, "again")),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(outs(&h).last().unwrap(), "again");
    }
}
