//! The live pipeline: ring buffer → decode → process table → a consumer.
//!
//! The kernel submits without waking us (a wakeup per event costs more than
//! the event), each CPU waking us once per byte budget (an eighth of the ring
//! across the CPUs); so the reader both waits for readiness and polls on a
//! short timer. Kernel-side losses
//! are read every second and handed to the consumer as a `drop` event, so no
//! loss is silent.

use std::{future::Future, time::Duration};

use tokio::io::unix::AsyncFd;

use crate::{
    bpf::Sensor,
    decode::decode,
    enrich::Enricher,
    event::{Drops, Event, EvtType, Process},
    proctable::ProcTable,
};

/// How often the ring is drained when no wakeup came.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// How often kernel drop counters are checked.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// Counters of one pipeline run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub events: u64,
    pub invalid: u64,
    pub dropped: Drops,
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

/// Run until `shutdown` resolves, handing every event to `consume` (after
/// container enrichment, when an enricher is given). An error from `consume`
/// stops the pipeline (e.g. the output file became unwritable).
pub async fn run<F, S>(
    sensor: &mut Sensor,
    table: &mut ProcTable,
    mut enricher: Option<&mut Enricher>,
    mut consume: F,
    shutdown: S,
) -> anyhow::Result<Stats>
where
    F: FnMut(&Event) -> anyhow::Result<()>,
    S: Future<Output = ()>,
{
    let ring = sensor
        .take_ring()
        .ok_or_else(|| anyhow::anyhow!("the event ring was already taken"))?;
    // SAFETY: the ring buffer's fd is owned by the `BatchRing`, which the
    // `AsyncFd` owns for its whole life; `as_raw_fd` always returns that fd.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| {
            anyhow::anyhow!(
                "registering the ring buffer with tokio: {}",
                e.into_parts().1
            )
        })?;
    let mut stats = Stats::default();
    let mut invalid_since_report = 0u64;
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drops_tick = tokio::time::interval(DROPS_EVERY);
    drops_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), table, enricher.as_deref_mut(), &mut consume, &mut stats, &mut invalid_since_report)?;
                guard.clear_ready();
            }
            _ = poll.tick() => drain(ring.get_mut(), table, enricher.as_deref_mut(), &mut consume, &mut stats, &mut invalid_since_report)?,
            _ = drops_tick.tick() => {
                if let Some(ev) = report(sensor, &mut stats, &mut invalid_since_report) {
                    consume(&ev)?;
                }
            }
        }
    }
    // Final drain: whatever the kernel queued before we stopped.
    drain(
        ring.get_mut(),
        table,
        enricher.as_deref_mut(),
        &mut consume,
        &mut stats,
        &mut invalid_since_report,
    )?;
    if let Some(en) = enricher {
        en.release(&mut consume, true)?;
    }
    if let Some(ev) = report(sensor, &mut stats, &mut invalid_since_report) {
        consume(&ev)?;
    }
    Ok(stats)
}

fn drain<F>(
    ring: &mut crate::ringbuf::BatchRing,
    table: &mut ProcTable,
    mut enricher: Option<&mut Enricher>,
    consume: &mut F,
    stats: &mut Stats,
    invalid: &mut u64,
) -> anyhow::Result<()>
where
    F: FnMut(&Event) -> anyhow::Result<()>,
{
    ring.drain(|record| -> anyhow::Result<()> {
        match decode(record) {
            Ok(raw) => {
                let ev = table.apply(&raw);
                stats.events += 1;
                match enricher.as_deref_mut() {
                    Some(en) => en.admit(ev, consume)?,
                    None => consume(&ev)?,
                }
            }
            Err(e) => {
                stats.invalid += 1;
                *invalid += 1;
                if stats.invalid <= 10 || stats.invalid.is_power_of_two() {
                    log::warn!("undecodable kernel record ({} so far): {e}", stats.invalid);
                }
            }
        }
        Ok(())
    })?;
    // Events held for late pod metadata whose time has come.
    if let Some(en) = enricher {
        en.release(consume, false)?;
    }
    Ok(())
}

/// Read the kernel's drop counters; a `drop` event if anything was lost.
fn report(sensor: &mut Sensor, stats: &mut Stats, invalid: &mut u64) -> Option<Event> {
    let mut d = sensor.drops_since_last();
    d.invalid = std::mem::take(invalid);
    if d.total() == 0 {
        return None;
    }
    log::warn!("kernel event drop: {d}");
    stats.dropped.add(&d);
    Some(drop_event(d))
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
