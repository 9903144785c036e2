//! Retries: each worker sends one alert at a time and retries failures the
//! sink marks retryable (connection errors, HTTP 429/5xx) with exponential
//! backoff and jitter, honouring `Retry-After`, up to `retry.max_attempts`;
//! give-ups are counted and logged at most once per [`LOG_EVERY`] per sink.

use std::{sync::atomic::Ordering::Relaxed, time::Duration};

use super::{config::RetryPolicy, queue::SinkHandle, worker::LOG_EVERY, Output};
use mamori_rules::alert::Alert;

/// The longest `Retry-After` honoured (a server asking for more is capped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The delay before retry number `attempt` (1 = the first retry).
///
/// Exponential (`initial_backoff * 2^(attempt-1)`, capped at `max_backoff`)
/// with "equal jitter": half fixed, half scaled by `jitter` in `[0, 1)`, so
/// many sensors retrying together spread out but never retry at once. A
/// server's `Retry-After` replaces the computed delay (capped at
/// [`MAX_RETRY_AFTER`]).
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_RETRY_AFTER);
    }
    let exp = attempt.saturating_sub(1).min(30);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// xorshift64*: jitter only, no need for a cryptographic generator.
pub(super) struct Jitter(u64);

impl Jitter {
    pub(super) fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }
    pub(super) fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Logs at most once per [`LOG_EVERY`], saying how many were held back.
#[derive(Default)]
pub(super) struct RateLimitedLog {
    last: Option<tokio::time::Instant>,
    held: u64,
}

impl RateLimitedLog {
    fn log(&mut self, sink: &str, msg: &str) {
        let now = tokio::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => self.held += 1,
            _ => {
                if self.held > 0 {
                    log::warn!(
                        "output {sink}: {msg} ({} more failures in the last {}s)",
                        self.held,
                        LOG_EVERY.as_secs()
                    );
                } else {
                    log::warn!("output {sink}: {msg}");
                }
                self.last = Some(now);
                self.held = 0;
            }
        }
    }
}

/// Deliver one alert with retries; returns whether it was delivered.
pub(super) async fn deliver(
    sink: &mut dyn Output,
    h: &SinkHandle,
    alert: &Alert,
    jitter: &mut Jitter,
    log: &mut RateLimitedLog,
) -> bool {
    let policy = h.filter.common.retry;
    let mut attempt = 1u32;
    loop {
        let t0 = std::time::Instant::now();
        let r = sink.send(alert).await;
        h.latency.observe(t0.elapsed().as_secs_f64());
        match r {
            Ok(()) => {
                h.counters.sent.fetch_add(1, Relaxed);
                return true;
            }
            Err(e) if e.retryable && attempt < policy.max_attempts => {
                h.counters.retried.fetch_add(1, Relaxed);
                let d = backoff_delay(&policy, attempt, e.retry_after, jitter.next());
                log::debug!(
                    "output {}: attempt {attempt} failed ({e}); retrying in {d:?}",
                    h.name
                );
                tokio::time::sleep(d).await;
                attempt += 1;
            }
            Err(e) => {
                h.counters.failed.fetch_add(1, Relaxed);
                log.log(
                    &h.name,
                    &format!(
                        "gave up on an alert ({}) after {attempt} attempt(s): {e}",
                        alert.rule
                    ),
                );
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{atomic::AtomicU64, Arc};

    use super::*;
    use crate::outputs::{
        config::SinkCommon, queue::SinkHandle, tests::alert, SendError, SendFuture,
    };
    use mamori_rules::alert::Priority;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        assert_eq!(backoff_delay(&p, 1, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(&p, 1, None, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 3, None, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(&p, 9, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(&p, 40, None, 0.0), Duration::from_secs(1));
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(9999)), 0.3),
            MAX_RETRY_AFTER
        );
        let mut j = Jitter::new(42);
        for _ in 0..1000 {
            let x = j.next();
            assert!((0.0..1.0).contains(&x));
        }
    }

    struct Flaky {
        script: Vec<Result<(), SendError>>,
        calls: Arc<AtomicU64>,
    }

    impl Output for Flaky {
        fn send<'a>(&'a mut self, _a: &'a Alert) -> SendFuture<'a> {
            self.calls.fetch_add(1, Relaxed);
            let r = if self.script.is_empty() {
                Ok(())
            } else {
                self.script.remove(0)
            };
            Box::pin(async move { r })
        }
    }

    /// Retries on the paused tokio clock: the delays are exactly the backoff
    /// schedule, `Retry-After` wins, and exhausted retries count as failed.
    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_schedule_on_a_fake_clock() {
        let retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        };
        let h = SinkHandle::new(
            "flaky",
            SinkCommon {
                retry,
                ..Default::default()
            },
        );
        let calls = Arc::new(AtomicU64::new(0));
        let mut sink = Flaky {
            script: vec![
                Err(SendError {
                    msg: "429".into(),
                    retryable: true,
                    retry_after: Some(Duration::from_secs(7)),
                }),
                Err(SendError::retry("503")),
            ],
            calls: calls.clone(),
        };
        let mut j = Jitter::new(1);
        let mut log = RateLimitedLog {
            last: None,
            held: 0,
        };
        let t0 = tokio::time::Instant::now();
        let a = alert("r", Priority::Error, "x");
        assert!(deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        let waited = t0.elapsed();
        // 7 s Retry-After, then the second retry's jittered 2 s (1..2 s).
        assert!(
            waited >= Duration::from_secs(8) && waited <= Duration::from_secs(9),
            "{waited:?}"
        );
        assert_eq!(calls.load(Relaxed), 3);
        let s = h.stats();
        assert_eq!((s.sent, s.retried, s.failed), (1, 2, 0));

        // Always 500: gives up after max_attempts, counted once.
        sink.script = vec![Err(SendError::retry("500")); 10];
        assert!(!deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        let s = h.stats();
        assert_eq!((s.sent, s.retried, s.failed), (1, 4, 1));
        // Permanent errors are not retried.
        sink.script = vec![Err(SendError::permanent("400"))];
        assert!(!deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        assert_eq!(h.stats().failed, 2);
        assert_eq!(h.stats().retried, 4);
    }
}
