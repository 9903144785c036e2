//! Per-sink series, read at scrape time from each sink's own atomics and
//! queue (the outputs thread keeps them; nothing is copied on the alert
//! path). The handle list is replaced whole when the outputs are rebuilt.

use std::sync::{atomic::Ordering::Relaxed, Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use crate::outputs::queue::SinkHandle;

/// The sinks of the running outputs.
#[derive(Default)]
pub struct SinkCollector {
    handles: Mutex<Vec<Arc<SinkHandle>>>,
}

impl std::fmt::Debug for SinkCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkCollector")
    }
}

impl SinkCollector {
    pub fn set(&self, handles: Vec<Arc<SinkHandle>>) {
        *self.handles.lock().unwrap_or_else(|e| e.into_inner()) = handles;
    }
}

type Read = fn(&SinkHandle) -> u64;

/// `(name, help, value)` of each per-sink counter.
const COUNTERS: &[(&str, &str, Read)] = &[
    ("mamori_output_sent", "Alerts delivered, by sink", |h| {
        h.counters.sent.load(Relaxed)
    }),
    (
        "mamori_output_retried",
        "Delivery attempts retried, by sink",
        |h| h.counters.retried.load(Relaxed),
    ),
    (
        "mamori_output_dropped",
        "Alerts dropped from a full queue, by sink",
        |h| h.counters.dropped.load(Relaxed),
    ),
    (
        "mamori_output_given_up",
        "Alerts given up on (permanent error or retries exhausted), by sink",
        |h| h.counters.failed.load(Relaxed),
    ),
    (
        "mamori_output_deduplicated",
        "Repeats folded into a dedup summary, by sink",
        |h| h.counters.deduplicated.load(Relaxed),
    ),
    (
        "mamori_output_rate_limited",
        "Alerts held back by the per-rule rate limit, by sink",
        |h| h.counters.rate_limited.load(Relaxed),
    ),
];

impl Collector for SinkCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let handles = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if handles.is_empty() {
            // No empty families: nothing to say before the outputs start.
            return Ok(());
        }
        for (name, help, read) in COUNTERS {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for h in &handles {
                let labels = [("sink", h.name())];
                ConstCounter::new(read(h)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "mamori_output_queue_length",
            "Alerts queued or in flight, by sink",
            None,
            MetricType::Gauge,
        )?;
        for h in &handles {
            let labels = [("sink", h.name())];
            ConstGauge::new(h.pending() as i64).encode(m.encode_family(&labels)?)?;
        }
        let mut m = enc.encode_descriptor(
            "mamori_output_send_duration_seconds",
            "Time of one delivery attempt, by sink",
            None,
            MetricType::Histogram,
        )?;
        for h in &handles {
            let labels = [("sink", h.name())];
            h.latency.encode(m.encode_family(&labels)?)?;
        }
        let total: u64 = handles
            .iter()
            .map(|h| h.counters.dropped.load(Relaxed))
            .sum();
        let m = enc.encode_descriptor(
            "falcosecurity_falco_outputs_queue_num_drops",
            "Alerts dropped from full output queues (Falco name; = sum of mamori_output_dropped_total)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(total).encode(m)?;
        Ok(())
    }
}
