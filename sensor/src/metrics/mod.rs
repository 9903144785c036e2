//! Prometheus metrics (`GET /metrics`, served next to `/healthz`).
//!
//! Why this shape: the event path must not pay for metrics. The stages keep
//! their own plain counters (the pipeline's per-type counts, the process
//! table's size, the engine's stateful-rule stats, each sink's atomics) and
//! this module copies their *totals* into the registry at most once a second
//! ([`Metrics::set_total`] turns a total into a monotonic counter), or reads
//! them at scrape time ([`sinks`], [`process`]). Only rule matches — rare by
//! nature — touch a labelled family directly.
//!
//! The exposition is written by `prometheus-client` (OpenMetrics text, which
//! Prometheus reads). Every series carries the `node` label (see
//! [`crate::host::node_name`]). Names a Falco dashboard looks for are
//! exposed too (`falcosecurity_*`, see [`FALCO_NAMES`] and the README), with
//! the same values as mamori's own series.

pub mod process;
pub mod sinks;

use std::{borrow::Cow, sync::Arc};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

use mamori_rules::{alert::Alert, StateStats};

/// A one-label set (`type`, `sink`, `rule`...).
pub type L1 = [(&'static str, String); 1];
/// Two labels.
pub type L2 = [(&'static str, String); 2];
/// Three labels.
pub type L3 = [(&'static str, String); 3];
/// Four labels.
pub type L4 = [(&'static str, String); 4];

/// The `falcosecurity_*` names exposed, and the mamori series each mirrors
/// (documented in the README).
pub const FALCO_NAMES: &[(&str, &str)] = &[
    (
        "falcosecurity_falco_rules_matches_total",
        "mamori_rule_matches_total",
    ),
    ("falcosecurity_scap_n_evts_total", "mamori_events_total"),
    (
        "falcosecurity_scap_n_drops_total",
        "mamori_kernel_drops_total",
    ),
    (
        "falcosecurity_falco_outputs_queue_num_drops_total",
        "mamori_output_dropped_total",
    ),
    (
        "falcosecurity_falco_memory_rss_bytes",
        "mamori_process_resident_memory_bytes",
    ),
    (
        "falcosecurity_falco_cpu_usage_ratio",
        "mamori_process_cpu_seconds_total / uptime",
    ),
];

/// Every family mamori exposes, created once; cheap to clone parts out of.
pub struct Metrics {
    registry: Registry,
    /// Events handed on by the pipeline, by `type` (Falco's `evt.type`).
    pub events: Family<L1, Counter>,
    events_all: Counter,
    /// Kernel-side losses by event `kind` and `cpu`.
    pub drops: Family<L2, Counter>,
    drops_all: Counter,
    /// Ring records the decoder rejected.
    pub undecodable: Counter,
    /// How full the ring was at the end of the last drain pass (0..1).
    pub ring_fill: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub procs: Gauge,
    pub proc_evictions: Counter,
    rule_matches: Family<L3, Counter>,
    falco_matches: Family<L4, Counter>,
    state_keys: Family<L1, Gauge>,
    state_evicted: Family<L1, Counter>,
    state_expired: Family<L1, Counter>,
    pub pods_known: Gauge,
    pub watch_restarts: Counter,
    pub holds_released_late: Counter,
    pub rules_reloads: Family<L1, Counter>,
    pub rules_last_reload: Gauge,
    /// `sha256` of the loaded rule files (one series at 1).
    pub rules_loaded: Family<L1, Gauge>,
    /// Completed drain passes (self-liveness as a rate).
    pub drain_passes: Counter,
    sinks: Arc<sinks::SinkCollector>,
    process: Arc<process::ProcessCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The registry for `node`, with every family registered.
    pub fn new(node: &str) -> Metrics {
        let labels = [(Cow::Borrowed("node"), Cow::Owned(node.to_string()))];
        let mut r = Registry::with_labels(labels.into_iter());
        let m = Metrics {
            events: Family::default(),
            events_all: Counter::default(),
            drops: Family::default(),
            drops_all: Counter::default(),
            undecodable: Counter::default(),
            ring_fill: Gauge::default(),
            procs: Gauge::default(),
            proc_evictions: Counter::default(),
            rule_matches: Family::default(),
            falco_matches: Family::default(),
            state_keys: Family::default(),
            state_evicted: Family::default(),
            state_expired: Family::default(),
            pods_known: Gauge::default(),
            watch_restarts: Counter::default(),
            holds_released_late: Counter::default(),
            rules_reloads: Family::default(),
            rules_last_reload: Gauge::default(),
            rules_loaded: Family::default(),
            drain_passes: Counter::default(),
            sinks: Arc::new(sinks::SinkCollector::default()),
            process: Arc::new(process::ProcessCollector::new()),
            registry: Registry::default(),
        };
        // (`node` comes from the registry's labels.)
        let info = Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]);
        r.register("mamori_build", "mamori's version", info);
        r.register(
            "mamori_events",
            "Events handed on by the pipeline, by event type",
            m.events.clone(),
        );
        r.register(
            "falcosecurity_scap_n_evts",
            "Events handed on by the pipeline (Falco name; = sum of mamori_events_total)",
            m.events_all.clone(),
        );
        r.register(
            "mamori_kernel_drops",
            "Events lost in the kernel, by event kind and CPU",
            m.drops.clone(),
        );
        r.register(
            "falcosecurity_scap_n_drops",
            "Events lost in the kernel (Falco name; = sum of mamori_kernel_drops_total)",
            m.drops_all.clone(),
        );
        r.register(
            "mamori_undecodable_records",
            "Kernel records the decoder rejected",
            m.undecodable.clone(),
        );
        r.register(
            "mamori_ring_fill_ratio",
            "Fill of the kernel event ring after the last drain pass (0 to 1)",
            m.ring_fill.clone(),
        );
        r.register(
            "mamori_drain_passes",
            "Drain passes over the event ring completed",
            m.drain_passes.clone(),
        );
        r.register(
            "mamori_process_table_entries",
            "Processes in the process table",
            m.procs.clone(),
        );
        r.register(
            "mamori_process_table_evictions",
            "Process-table entries pruned at the size cap",
            m.proc_evictions.clone(),
        );
        r.register(
            "mamori_rule_matches",
            "Alerts raised, by rule, priority and tags",
            m.rule_matches.clone(),
        );
        r.register(
            "falcosecurity_falco_rules_matches",
            "Alerts raised (Falco name and labels)",
            m.falco_matches.clone(),
        );
        r.register(
            "mamori_stateful_keys",
            "Keys a stateful rule tracks now",
            m.state_keys.clone(),
        );
        r.register(
            "mamori_stateful_evictions",
            "Stateful-rule keys pushed out by the cap while their window was open",
            m.state_evicted.clone(),
        );
        r.register(
            "mamori_stateful_expiries",
            "Stateful-rule keys dropped because their window had passed",
            m.state_expired.clone(),
        );
        r.register(
            "mamori_enrich_pods_known",
            "Pods of this node known from the API server watch",
            m.pods_known.clone(),
        );
        r.register(
            "mamori_enrich_watch_restarts",
            "Pod watch errors, each followed by a backoff and a new watch",
            m.watch_restarts.clone(),
        );
        r.register(
            "mamori_enrich_holds_released_late",
            "Events held for pod metadata released without it (hold expired)",
            m.holds_released_late.clone(),
        );
        r.register(
            "mamori_rules_reloads",
            "Rule reloads, by result (ok, failed)",
            m.rules_reloads.clone(),
        );
        r.register(
            "mamori_rules_last_reload_timestamp_seconds",
            "When rules were last loaded successfully (Unix time)",
            m.rules_last_reload.clone(),
        );
        r.register(
            "mamori_rules_loaded",
            "The loaded rule set (sha256 of the rule files, in load order)",
            m.rules_loaded.clone(),
        );
        r.register_collector(Box::new(m.sinks.clone()));
        r.register_collector(Box::new(m.process.clone()));
        Metrics { registry: r, ..m }
    }

    /// The exposition (OpenMetrics text).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Make `c` show `total` (a running total kept elsewhere). Totals only
    /// grow; one that went back (its source was rebuilt) is ignored until it
    /// passes the old value, so the counter stays monotonic.
    pub fn set_total(c: &Counter, total: u64) {
        let cur = c.get();
        if total > cur {
            c.inc_by(total - cur);
        }
    }

    /// Events of one type (`ev.evt_type.as_str()`), `n` more.
    pub fn add_events(&self, evt_type: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.events
            .get_or_create(&[("type", evt_type.to_string())])
            .inc_by(n);
        self.events_all.inc_by(n);
    }

    /// The kernel's per-CPU drop totals for `kind`.
    pub fn set_drops(&self, kind: &str, per_cpu: &[u64]) {
        for (cpu, &n) in per_cpu.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let c = self
                .drops
                .get_or_create_owned(&[("kind", kind.to_string()), ("cpu", cpu.to_string())]);
            let before = c.get();
            Metrics::set_total(&c, n);
            self.drops_all.inc_by(c.get() - before);
        }
    }

    /// Undecodable records, as a running total.
    pub fn set_undecodable(&self, total: u64) {
        let before = self.undecodable.get();
        Metrics::set_total(&self.undecodable, total);
        let new = self.undecodable.get() - before;
        if new > 0 {
            self.drops
                .get_or_create(&[("kind", "undecodable".into()), ("cpu", "all".into())])
                .inc_by(new);
            self.drops_all.inc_by(new);
        }
    }

    /// One alert raised (rule or internal).
    pub fn rule_matched(&self, a: &Alert) {
        let mut tags = a.tags.clone();
        tags.sort();
        let tags = tags.join(",");
        let priority = a.priority.as_str().to_string();
        self.rule_matches
            .get_or_create(&[
                ("rule", a.rule.clone()),
                ("priority", priority.clone()),
                ("tags", tags.clone()),
            ])
            .inc();
        self.falco_matches
            .get_or_create(&[
                ("rule_name", a.rule.clone()),
                ("priority", priority),
                ("source", a.source.clone()),
                ("tags", tags),
            ])
            .inc();
    }

    /// The stateful rules' current stats.
    pub fn set_state(&self, stats: &[StateStats]) {
        for s in stats {
            let l = [("rule", s.rule.clone())];
            self.state_keys.get_or_create(&l).set(s.keys as i64);
            Metrics::set_total(&self.state_evicted.get_or_create(&l), s.evicted);
            Metrics::set_total(&self.state_expired.get_or_create(&l), s.expired);
        }
    }

    /// A rule (re)load: `ok` or not, and on success the rule set's digest.
    pub fn rules_loaded(&self, ok: bool, sha256: Option<&str>) {
        let result = if ok { "ok" } else { "failed" };
        self.rules_reloads
            .get_or_create(&[("result", result.to_string())])
            .inc();
        if let (true, Some(sha)) = (ok, sha256) {
            self.rules_loaded.clear();
            self.rules_loaded
                .get_or_create(&[("sha256", sha.to_string())])
                .set(1);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.rules_last_reload.set(now);
        }
    }

    /// The sinks whose queues and counters are exposed (replaced whole when
    /// the outputs are rebuilt).
    pub fn set_sinks(&self, handles: Vec<Arc<crate::outputs::queue::SinkHandle>>) {
        self.sinks.set(handles);
    }

    /// Kernel program ids whose run count and time are exposed when
    /// `kernel.bpf_stats_enabled` is on.
    pub fn set_programs(&self, ids: Vec<(String, u32)>) {
        self.process.set_programs(ids);
    }
}

/// sha256 of the rule files' contents, in load order (for
/// `mamori_rules_loaded`): files as given, directories' `*.yaml` in name order.
pub fn rules_digest(paths: &[std::path::PathBuf]) -> String {
    let (sources, _) = crate::detect::rule_files::read(paths);
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for s in &sources {
        h.update(s.name.as_bytes());
        h.update(&[0]);
        h.update(s.text.as_bytes());
        h.update(&[0]);
    }
    h.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

#[cfg(test)]
mod tests;
