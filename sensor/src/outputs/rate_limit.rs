//! Rate limit (per sink, opt-in): at most `per_rule` alerts of one rule per
//! interval pass (after dedup); the rest are counted, and when the interval
//! ends one summary alert of that rule carries the number held back
//! (`output_fields["mamori.rate_limit.suppressed"]`), the distinct rules and
//! the highest priority among them (`mamori.rate_limit.rules`,
//! `mamori.rate_limit.highest_priority`).
//!
//! The limit must not hide an attack among noise: an alert more severe than
//! every one sent in its window passes anyway (at most one per priority
//! level per window), and the summary carries the *most severe* held alert
//! (the last of those), with its priority, not merely the last one.
//!
//! Like dedup, it only decides; the sink's
//! [`SinkHandle`](super::queue::SinkHandle) queues what passes.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{config::RateLimitConfig, dedup::MAX_DEDUP_KEYS};
use mamori_rules::alert::{Alert, Priority};

struct RuleWindow {
    start: Instant,
    passed: u32,
    /// The most severe priority sent in this window.
    most_severe_sent: Option<Priority>,
    held: Held,
}

/// What the summary of a window says about the alerts it held back.
#[derive(Default)]
struct Held {
    count: u64,
    /// The most severe held alert (the last of equals).
    carried: Option<Arc<Alert>>,
    /// Distinct rules held, sorted (bounded: see [`MAX_RULES_LISTED`]).
    rules: BTreeSet<String>,
}

/// Rules listed in one summary at most.
const MAX_RULES_LISTED: usize = 32;

impl Held {
    fn add(&mut self, a: &Arc<Alert>) {
        self.count += 1;
        if self
            .carried
            .as_ref()
            .is_none_or(|c| a.priority <= c.priority)
        {
            self.carried = Some(a.clone());
        }
        if self.rules.len() < MAX_RULES_LISTED {
            self.rules.insert(a.rule.clone());
        }
    }

    fn summary(&mut self, interval: Duration) -> Option<Arc<Alert>> {
        let held = std::mem::take(self);
        held.carried
            .map(|c| Arc::new(rate_summary(&c, held.count, &held.rules, interval)))
    }
}

impl RuleWindow {
    fn new(start: Instant) -> Self {
        RuleWindow {
            start,
            passed: 0,
            most_severe_sent: None,
            held: Held::default(),
        }
    }
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
                summary = w.held.summary(interval);
                *w = RuleWindow::new(now);
            }
        } else if self.rules.len() >= MAX_DEDUP_KEYS {
            return Admit::Pass(None);
        }
        let w = self
            .rules
            .entry(a.rule.clone())
            .or_insert_with(|| RuleWindow::new(now));
        // More severe than all sent so far (`Priority` orders most severe
        // first): never held back.
        let escalates = w.most_severe_sent.is_some_and(|p| a.priority < p);
        if w.passed < self.cfg.per_rule || escalates {
            w.passed = w.passed.saturating_add(1);
            w.most_severe_sent = Some(w.most_severe_sent.map_or(a.priority, |p| p.min(a.priority)));
            Admit::Pass(summary)
        } else {
            w.held.add(a);
            Admit::Held(summary)
        }
    }

    /// Summaries for intervals over by `now` (all if `everything`).
    pub(super) fn flush(&mut self, now: Instant, everything: bool) -> Vec<Arc<Alert>> {
        let interval = self.cfg.interval;
        let mut out = Vec::new();
        self.rules.retain(|_, w| {
            if everything || now >= w.start + interval {
                out.extend(w.held.summary(interval));
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

/// The alert that reports `n` alerts held back by the rate limit: the most
/// severe of them (`carried`), its text saying so, and the held `rules`.
pub fn rate_summary(
    carried: &Alert,
    n: u64,
    rules: &BTreeSet<String>,
    interval: Duration,
) -> Alert {
    let mut a = carried.clone();
    let listed = rules.iter().map(String::as_str).collect::<Vec<_>>();
    a.output = format!(
        "{} (rate limit: {n} alerts of this rule held back in {}s, most severe {}; this is the last of those; rules: {})",
        a.output,
        interval.as_secs_f64(),
        a.priority,
        listed.join(", ")
    );
    a.output_fields
        .insert("mamori.rate_limit.suppressed".into(), n.into());
    a.output_fields
        .insert("mamori.rate_limit.rules".into(), listed.into());
    a.output_fields.insert(
        "mamori.rate_limit.highest_priority".into(),
        a.priority.as_str().into(),
    );
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
            h.lock()
                .queue
                .to_vec()
                .iter()
                .map(|a| a.output.clone())
                .collect()
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
            h.lock().queue.to_vec()[4].output_fields["mamori.rate_limit.suppressed"],
            7
        );
        // A new interval: passes again.
        h.submit_at(
            &Arc::new(alert("noisy", Priority::Error, "again")),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(outs(&h).last().unwrap(), "again");
    }

    /// An attack alert among noise of the same rule: the more severe one
    /// passes although the limit is reached, and the summary carries the most
    /// severe held alert, not the last one.
    #[test]
    fn rate_limit_never_hides_a_more_severe_alert() {
        let h = SinkHandle::new(
            "t",
            SinkCommon {
                rate_limit: Some(RateLimitConfig {
                    per_rule: 1,
                    interval: Duration::from_secs(60),
                }),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        for (out, p) in [
            ("benign0", Priority::Notice),
            ("benign1", Priority::Notice),
            ("attack2", Priority::Critical),
            ("attack3", Priority::Critical),
            ("benign4", Priority::Notice),
        ] {
            h.submit_at(&Arc::new(alert("r", p, out)), t0);
        }
        let queued = |h: &SinkHandle| h.lock().queue.to_vec();
        let outs: Vec<_> = queued(&h).iter().map(|a| a.output.clone()).collect();
        assert_eq!(
            outs,
            ["benign0", "attack2"],
            "the escalation is sent at once"
        );
        assert_eq!(h.stats().rate_limited, 3);
        h.flush_dedup(t0 + Duration::from_secs(60), false);
        let q = queued(&h);
        let s = &q[2];
        assert_eq!(s.priority, Priority::Critical);
        assert!(
            s.output.starts_with(
                "attack3 (rate limit: 3 alerts of this rule held back in 60s, most severe Critical"
            ),
            "{}",
            s.output
        );
        assert_eq!(s.output_fields["mamori.rate_limit.suppressed"], 3);
        assert_eq!(
            s.output_fields["mamori.rate_limit.highest_priority"],
            "Critical"
        );
        assert_eq!(
            s.output_fields["mamori.rate_limit.rules"],
            serde_json::json!(["r"])
        );
    }
}
