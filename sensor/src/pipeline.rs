//! The live pipeline: start-up, and the one place that reads as the data flow.
//!
//! ```text
//! kernel ring ─► decode ─► process table ─► enrich ─► last stage
//! kernel::ring   kernel::   process::        enrich::   run: detect:: → outputs::
//!                decode     ProcTable::apply Enricher   capture: cli::capture printer
//! ```
//!
//! Each stage is a function or type that returns its output here; only
//! [`Pipeline::drain`] hands one stage's value to the next. `mamori run` and
//! `mamori capture` differ only in their [`LastStage`].
//!
//! The kernel submits without waking us (a wakeup per event costs more than
//! the event), each CPU waking us once per byte budget (an eighth of the ring
//! across the CPUs); so the reader both waits for readiness and polls on a
//! short timer. Kernel-side losses are read every second and handed to the
//! last stage as a `drop` event, so no loss is silent.

use std::{future::Future, time::Duration};

use anyhow::Context;
use mamori_common::EventKind;
use mamori_rules::event::{Drops, Event, EvtType, Process};
use tokio::io::unix::AsyncFd;

use crate::{
    enrich::{runtime::EnginesConfig, Enricher},
    kernel::{decode::decode, ring::BatchRing, Options, Sensor},
    metrics::Metrics,
    process::{Clock, ProcTable, Users},
};

/// How often the ring is drained when no wakeup came.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How often kernel drop counters are checked.
const DROPS_EVERY: Duration = Duration::from_secs(1);
/// Records handed on per drain pass. After a full pass the pipeline yields,
/// so a flood never holds back signals, drop reports or `/healthz` (a pass
/// is a few ms of work).
const DRAIN_BUDGET: usize = 4096;
/// How long the final drain at shutdown may take: under a flood the ring
/// never empties, and SIGTERM must be honoured within the grace period.
const FINAL_DRAIN_FOR: Duration = Duration::from_millis(500);

/// The pipeline's liveness, for `/healthz`: when it last finished a drain
/// pass. A busy pipeline keeps beating; a stuck one stops.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    start: std::time::Instant,
    /// ms since `start` of the last completed pass (`u64::MAX`: none yet).
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            start: std::time::Instant::now(),
            last: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
        }
    }
}

impl Heartbeat {
    fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// A heartbeat whose last pass was `ago` ago (tests of `/healthz`).
    #[cfg(test)]
    pub(crate) fn beaten_ago(ago: Duration) -> Heartbeat {
        let now = std::time::Instant::now();
        Heartbeat {
            start: now.checked_sub(ago).unwrap_or(now),
            last: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Time since the last completed drain pass; `None` before the first.
    pub fn since_last(&self) -> Option<Duration> {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        (last != u64::MAX).then(|| {
            self.start
                .elapsed()
                .saturating_sub(Duration::from_millis(last))
        })
    }
}

/// Kernel-side settings shared by `capture` and `run`.
#[derive(Debug, Clone, Default)]
pub struct KernelArgs {
    /// Ring buffer size (default: [`Options::default`]'s).
    pub ring_bytes: Option<u32>,
    /// Kinds to capture; empty = [`crate::kernel::DEFAULT_KINDS`].
    pub kinds: Vec<EventKind>,
    /// A clock read per open/connect event (see [`Options::precise_time`]).
    pub precise_time: bool,
    /// The table-driven syscalls to capture (mamori syscall ids); `None` =
    /// all of them (`capture`). `run` selects those its rules need
    /// ([`syscalls_for`]).
    pub syscalls: Option<Vec<u16>>,
}

/// The table-driven syscalls (mamori ids) that rules needing `types` use:
/// the kernel records only these.
pub fn syscalls_for(types: &[EvtType]) -> Vec<u16> {
    types
        .iter()
        .filter_map(|t| crate::kernel::systable::by_evt(*t))
        .map(|r| r.id)
        .collect()
}

/// Parse `--events` names (`exec`, `fork`, `exit`, `open`, `connect`, `net`,
/// `fds`, `identity`, `inject`, `fileop`, `chdir`, `flow`, `dns`).
pub fn parse_kinds(names: &[String]) -> anyhow::Result<Vec<EventKind>> {
    names
        .iter()
        .map(|n| {
            EventKind::ALL
                .into_iter()
                .find(|k| k.name() == n.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown event kind {n:?} (expected exec, fork, exit, open, connect, \
                         net, fds, identity, inject, fileop, chdir, flow, dns)"
                    )
                })
        })
        .collect()
}

/// What the pipeline ends in: `run` detects and queues alerts, `capture`
/// prints. A closure `FnMut(&Event) -> anyhow::Result<()>` is one too.
pub trait LastStage {
    /// One event, in ring order. An error stops the pipeline (e.g. the
    /// output file became unwritable).
    fn event(&mut self, ev: &Event) -> anyhow::Result<()>;

    /// Called about once a second whatever the event rate (publish metrics;
    /// a reload or a self-check can be acted on while no event comes).
    fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<F: FnMut(&Event) -> anyhow::Result<()>> LastStage for F {
    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        self(ev)
    }
}

/// Counters of one pipeline run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub events: u64,
    pub invalid: u64,
    pub dropped: Drops,
}

impl Stats {
    /// The exit summary line (`alerts` for `run`).
    pub fn summary(&self, alerts: Option<u64>) -> String {
        let alerts = alerts.map(|n| format!("{n} alerts, ")).unwrap_or_default();
        format!(
            "{} events, {alerts}{} lost in the kernel, {} undecodable",
            self.events,
            self.dropped.total() - self.dropped.invalid,
            self.invalid
        )
    }
}

/// Builds the `drop` event reporting losses.
pub fn drop_event(drops: Drops) -> Event {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let me = Process {
        pid: std::process::id(),
        tid: std::process::id(),
        name: "mamori".into(),
        loginuid: -1,
        ..Default::default()
    };
    let lost = drops.total() as i64;
    Event {
        drops: Some(drops),
        ..Event::new(now, EvtType::Drop, lost, me)
    }
}

/// The stages up to the last one, with their state.
pub struct Pipeline {
    sensor: Sensor,
    ring: AsyncFd<BatchRing>,
    table: ProcTable,
    enricher: Option<Enricher>,
    stats: Stats,
    /// Undecodable records since the last drop report.
    invalid_since_report: u64,
    heartbeat: Heartbeat,
    metrics: Option<std::sync::Arc<Metrics>>,
    /// Events per type (indexed by `EvtType as usize`) not yet in `metrics`.
    by_type: [u64; TYPE_SLOTS],
}

/// Slots for per-type counts: more than there are event types.
const TYPE_SLOTS: usize = 64;

impl Pipeline {
    /// Start-up for this node: load and attach the kernel programs, seed the
    /// process table from `/proc`, start enrichment (cgroups, pod watch), and
    /// announce readiness on stderr. Must be called inside the tokio runtime.
    pub fn start(k: &KernelArgs, engines: &EnginesConfig) -> anyhow::Result<Pipeline> {
        let mut opts = Options {
            precise_time: k.precise_time,
            ..Options::default()
        };
        if let Some(b) = k.ring_bytes {
            opts.ring_bytes = b;
        }
        if !k.kinds.is_empty() {
            opts.kinds = k.kinds.clone();
        }
        if let Some(ids) = &k.syscalls {
            opts.syscalls = ids.clone();
        }
        let sensor = Sensor::load(&opts).context("starting the kernel sensor")?;
        let table = ProcTable::seeded(
            std::path::Path::new("/proc"),
            Clock::now(),
            Users::load(std::path::Path::new("/etc/passwd")),
        );
        eprintln!(
            "mamori: attached {} programs ({}); {} processes seeded from /proc",
            sensor.attached.len(),
            sensor.attached.join(", "),
            table.len()
        );
        Pipeline::new(sensor, table, Some(Enricher::for_this_node(engines)))
    }

    /// A pipeline over parts built by the caller (tests leave out
    /// enrichment). Must be called inside the tokio runtime.
    pub fn new(
        mut sensor: Sensor,
        table: ProcTable,
        enricher: Option<Enricher>,
    ) -> anyhow::Result<Pipeline> {
        let ring = sensor
            .take_ring()
            .ok_or_else(|| anyhow::anyhow!("the event ring was already taken"))?;
        // SAFETY: the ring buffer's fd is owned by the `BatchRing`, which the
        // `AsyncFd` owns for its whole life; `as_raw_fd` always returns that fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| {
                anyhow::anyhow!(
                    "registering the ring buffer with tokio: {}",
                    e.into_parts().1
                )
            })?;
        Ok(Pipeline {
            sensor,
            ring,
            table,
            enricher,
            stats: Stats::default(),
            invalid_since_report: 0,
            heartbeat: Heartbeat::default(),
            metrics: None,
            by_type: [0; TYPE_SLOTS],
        })
    }

    /// The kernel sensor (tamper watch: its programs and tamper ring).
    pub fn sensor_mut(&mut self) -> &mut Sensor {
        &mut self.sensor
    }

    /// Publish this pipeline's counters to `metrics` (about once a second).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<Metrics>) -> Pipeline {
        metrics.set_programs(self.sensor.program_ids.clone());
        self.metrics = Some(metrics);
        self
    }

    /// The pipeline's liveness (for `/healthz`).
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Run until `shutdown` resolves, handing every event to `last`; then
    /// drain what the kernel queued, release held events and report losses.
    pub async fn run(
        mut self,
        last: &mut impl LastStage,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<Stats> {
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drops_tick = tokio::time::interval(DROPS_EVERY);
        drops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        // More records were waiting after the last pass.
        let mut backlog = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                guard = self.ring.readable_mut() => {
                    guard?.clear_ready();
                    backlog = self.drain(last)? == DRAIN_BUDGET;
                }
                _ = poll.tick() => backlog = self.drain(last)? == DRAIN_BUDGET,
                _ = std::future::ready(()), if backlog => {
                    backlog = self.drain(last)? == DRAIN_BUDGET;
                }
                _ = drops_tick.tick() => {
                    if let Some(ev) = self.losses() {
                        last.event(&ev)?;
                    }
                    self.publish();
                    last.tick()?;
                }
            }
            if backlog {
                // Let the runtime's other tasks (health, SIGHUP) run too.
                tokio::task::yield_now().await;
            }
        }
        // Final drain: what the kernel queued before we stopped, bounded in
        // time (a flood would never let it finish).
        let until = std::time::Instant::now() + FINAL_DRAIN_FOR;
        while self.drain(last)? == DRAIN_BUDGET && std::time::Instant::now() < until {}
        if let Some(en) = &mut self.enricher {
            for ev in en.release(true) {
                last.event(&ev)?;
            }
        }
        if let Some(ev) = self.losses() {
            last.event(&ev)?;
        }
        self.publish();
        last.tick()?;
        Ok(self.stats)
    }

    /// Copy the stages' counters into the metrics (totals and gauges; the
    /// event path only bumps plain integers).
    fn publish(&mut self) {
        let Some(m) = &self.metrics else { return };
        for t in EvtType::ALL {
            let slot = t as usize;
            if slot < TYPE_SLOTS {
                m.add_events(t.as_str(), std::mem::take(&mut self.by_type[slot]));
            }
        }
        for kind in EventKind::ALL {
            m.set_drops(kind.name(), &self.sensor.drops_per_cpu(kind));
        }
        m.set_undecodable(self.stats.invalid);
        m.procs.set(self.table.len() as i64);
        Metrics::set_total(&m.proc_evictions, self.table.evicted());
        if let Some(en) = &self.enricher {
            Metrics::set_total(&m.holds_released_late, en.stats().released_expired);
            if let Some(pods) = en.pods() {
                m.pods_known.set(pods.len() as i64);
                let restarts = pods.watch.errors.load(std::sync::atomic::Ordering::Relaxed);
                Metrics::set_total(&m.watch_restarts, restarts);
            }
        }
    }

    /// The data flow, one record at a time: ring → decode → process table →
    /// enrich → last stage; then held events whose time has come. At most
    /// [`DRAIN_BUDGET`] records; returns how many.
    fn drain(&mut self, last: &mut impl LastStage) -> anyhow::Result<usize> {
        let Pipeline {
            ring,
            table,
            enricher,
            stats,
            invalid_since_report,
            heartbeat,
            metrics,
            by_type,
            ..
        } = self;
        let n = ring
            .get_mut()
            .drain(DRAIN_BUDGET, |record| -> anyhow::Result<()> {
                let raw = match decode(record) {
                    Ok(raw) => raw,
                    Err(e) => {
                        stats.invalid += 1;
                        *invalid_since_report += 1;
                        if stats.invalid <= 10 || stats.invalid.is_power_of_two() {
                            log::warn!("undecodable kernel record ({} so far): {e}", stats.invalid);
                        }
                        return Ok(());
                    }
                };
                let ev = table.apply(&raw);
                stats.events += 1;
                if let Some(n) = by_type.get_mut(ev.evt_type as usize) {
                    *n += 1;
                }
                let Some(en) = enricher.as_mut() else {
                    return last.event(&ev);
                };
                if let Some(ev) = en.admit(ev) {
                    last.event(&ev)?;
                }
                for ev in en.release(false) {
                    last.event(&ev)?;
                }
                Ok(())
            })?;
        // Events held for late pod metadata whose time has come.
        if let Some(en) = enricher {
            for ev in en.release(false) {
                last.event(&ev)?;
            }
        }
        heartbeat.beat();
        if let Some(m) = metrics {
            m.ring_fill.set(ring.get_ref().fill_ratio());
            m.drain_passes.inc();
        }
        Ok(n)
    }

    /// Read the kernel's drop counters; a `drop` event if anything was lost.
    fn losses(&mut self) -> Option<Event> {
        let mut d = self.sensor.drops_since_last();
        d.invalid = std::mem::take(&mut self.invalid_since_report);
        if d.total() == 0 {
            return None;
        }
        log::warn!("kernel event drop: {d}");
        self.stats.dropped.add(&d);
        Some(drop_event(d))
    }
}

/// Resolves on the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot watch SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    let mut int = match signal(SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot watch SIGINT: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
