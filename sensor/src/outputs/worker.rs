//! The tasks on the outputs thread: one worker per sink draining its queue
//! (delivering through [`retry::deliver`]), the ticker that closes dedup and
//! rate-limit windows as they end, and the watch that reports losses.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use super::{
    queue::SinkHandle,
    retry::{self, Jitter, RateLimitedLog},
    Output,
};

/// Give-up and error logs of one sink are emitted at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Drain `h`'s queue through `sink`, one alert at a time, until the queue
/// is closed and empty.
pub(super) async fn worker(mut sink: Box<dyn Output>, h: Arc<SinkHandle>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (Arc::as_ptr(&h) as u64);
    let mut jitter = Jitter::new(seed);
    let mut log = RateLimitedLog::default();
    loop {
        let next = {
            let mut st = h.lock();
            match st.queue.pop_front() {
                Some(a) => {
                    st.in_flight = true;
                    Some(a)
                }
                None if st.closed => return,
                None => None,
            }
        };
        match next {
            Some(a) => {
                retry::deliver(sink.as_mut(), &h, &a, &mut jitter, &mut log).await;
                h.lock().in_flight = false;
            }
            None => h.notify.notified().await,
        }
    }
}

/// Flush dedup windows as they end.
pub(super) async fn dedup_ticker(handles: Vec<Arc<SinkHandle>>) {
    let period = handles
        .iter()
        .flat_map(|h| {
            let c = &h.filter.common;
            [
                c.dedup.as_ref().map(|d| d.window),
                c.rate_limit.map(|r| r.interval),
            ]
        })
        .flatten()
        .min()
        .map(|w| (w / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
    let Some(period) = period else { return };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for h in &handles {
            h.flush_dedup(now, false);
        }
    }
}

/// Losses are counted at once, and said on stderr at most once per
/// [`LOG_EVERY`] per sink, so a flood of drops cannot flood the log.
pub(super) async fn loss_watch(handles: Vec<Arc<SinkHandle>>) {
    let mut seen: Vec<(u64, u64)> = vec![(0, 0); handles.len()];
    let mut tick = tokio::time::interval(LOG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (h, (d0, f0)) in handles.iter().zip(seen.iter_mut()) {
            let d = h.counters.dropped.load(Relaxed);
            let f = h.counters.failed.load(Relaxed);
            if d > *d0 {
                log::warn!(
                    "output {}: {} alerts dropped (queue of {} full) in the last {}s",
                    h.name,
                    d - *d0,
                    h.filter.common.queue_capacity,
                    LOG_EVERY.as_secs()
                );
            }
            if f > *f0 {
                log::warn!(
                    "output {}: gave up on {} alerts in the last {}s",
                    h.name,
                    f - *f0,
                    LOG_EVERY.as_secs()
                );
            }
            (*d0, *f0) = (d, f);
        }
    }
}
