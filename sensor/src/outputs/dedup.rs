//! Dedup (per sink, opt-in): the first alert of a (rule, key fields) pair is
//! sent at once; repeats within the window are counted instead of sent, and
//! when the window ends one summary alert carries the count
//! (`output_fields["mamori.dedup.count"]`).
//!
//! Kept apart from the queue so the window bookkeeping reads on its own; the
//! sink's [`SinkHandle`](super::queue::SinkHandle) asks it before queueing.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use super::config::DedupConfig;
use mamori_rules::alert::Alert;

/// Dedup keys tracked per sink; past this, alerts bypass dedup (never lost).
pub const MAX_DEDUP_KEYS: usize = 10_000;

struct DedupEntry {
    last: Arc<Alert>,
    repeats: u64,
    deadline: Instant,
}

/// One sink's open dedup windows, by key.
pub(super) struct Dedup {
    pub(super) cfg: DedupConfig,
    entries: HashMap<u64, DedupEntry>,
}

/// What dedup says about an alert.
pub(super) enum Seen {
    /// A repeat within its window: counted, not sent.
    Repeat,
    /// Send it, after the summary of the key's previous window (if that
    /// window had repeats).
    New(Option<Arc<Alert>>),
}

impl Dedup {
    pub(super) fn new(cfg: DedupConfig) -> Self {
        Dedup {
            cfg,
            entries: HashMap::new(),
        }
    }

    fn key(&self, a: &Alert) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        a.rule.hash(&mut h);
        if self.cfg.fields.is_empty() {
            for (k, v) in &a.output_fields {
                k.hash(&mut h);
                v.to_string().hash(&mut h);
            }
        } else {
            for k in &self.cfg.fields {
                k.hash(&mut h);
                a.output_fields.get(k).map(|v| v.to_string()).hash(&mut h);
            }
        }
        h.finish()
    }

    /// Record `a` at `now`: a repeat in an open window, or a new window.
    pub(super) fn admit(&mut self, a: &Arc<Alert>, now: Instant) -> Seen {
        let key = self.key(a);
        let window = self.cfg.window;
        let room = self.entries.len() < MAX_DEDUP_KEYS;
        match self.entries.get_mut(&key) {
            Some(e) if now < e.deadline => {
                e.repeats += 1;
                e.last = a.clone();
                Seen::Repeat
            }
            Some(e) => {
                let summary =
                    (e.repeats > 0).then(|| Arc::new(dedup_summary(&e.last, e.repeats, window)));
                *e = DedupEntry {
                    last: a.clone(),
                    repeats: 0,
                    deadline: now + window,
                };
                Seen::New(summary)
            }
            None if room => {
                self.entries.insert(
                    key,
                    DedupEntry {
                        last: a.clone(),
                        repeats: 0,
                        deadline: now + window,
                    },
                );
                Seen::New(None)
            }
            None => Seen::New(None),
        }
    }

    /// Summaries for windows over by `now` (all if `everything`); those keys
    /// are forgotten.
    pub(super) fn flush(&mut self, now: Instant, everything: bool) -> Vec<Arc<Alert>> {
        let window = self.cfg.window;
        let mut summaries = Vec::new();
        self.entries.retain(|_, e| {
            if everything || now >= e.deadline {
                if e.repeats > 0 {
                    summaries.push(Arc::new(dedup_summary(&e.last, e.repeats, window)));
                }
                false
            } else {
                true
            }
        });
        summaries
    }
}

/// The alert that stands for `repeats` suppressed repeats of `last`.
pub fn dedup_summary(last: &Alert, repeats: u64, window: Duration) -> Alert {
    let mut a = last.clone();
    a.output = format!(
        "{} (repeated {repeats} more times in {}s)",
        a.output,
        window.as_secs_f64()
    );
    a.output_fields
        .insert("mamori.dedup.count".into(), repeats.into());
    a.output_fields
        .insert("mamori.dedup.window_s".into(), window.as_secs_f64().into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::{config::SinkCommon, queue::SinkHandle, tests::alert};
    use mamori_rules::alert::Priority;

    #[test]
    fn dedup_sends_first_then_one_summary_with_the_count() {
        let window = Duration::from_secs(10);
        let h = SinkHandle::new(
            "t",
            SinkCommon {
                queue_capacity: 100,
                dedup: Some(DedupConfig {
                    window,
                    fields: vec!["fd.name".into()],
                }),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        let a = Arc::new(alert("r", Priority::Error, "x"));
        let mut other = alert("r", Priority::Error, "y");
        other
            .output_fields
            .insert("fd.name".into(), "/etc/passwd".into());
        let other = Arc::new(other);
        for i in 0..5 {
            h.submit_at(&a, t0 + Duration::from_secs(i));
        }
        h.submit_at(&other, t0 + Duration::from_secs(1));
        assert_eq!(h.lock().queue.len(), 2, "first of each key goes at once");
        assert_eq!(h.stats().deduplicated, 4);
        h.flush_dedup(t0 + Duration::from_secs(9), false);
        assert_eq!(h.lock().queue.len(), 2, "window not over");
        h.flush_dedup(t0 + Duration::from_secs(11), false);
        let st = h.lock();
        assert_eq!(st.queue.len(), 3, "one summary for the repeated key only");
        let s = &st.queue.to_vec()[2];
        assert_eq!(s.output_fields["mamori.dedup.count"], 4);
        assert!(
            s.output.ends_with("(repeated 4 more times in 10s)"),
            "{}",
            s.output
        );
        drop(st);
        // After the window, the same alert goes out again at once.
        h.submit_at(&a, t0 + Duration::from_secs(12));
        assert_eq!(h.lock().queue.len(), 4);
    }
}
