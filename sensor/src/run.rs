//! `mamori run`: the main job. Live events → rules → alerts as Falco-shaped
//! JSON lines on stdout (sinks for Slack/syslog/webhooks come later).
//!
//! Alerts are flushed as they are produced: an alert must leave within a
//! second of its event. Kernel losses become an alert too (Falco's "syscall
//! event drop" equivalent), so they are as visible as detections.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use mamori_common::EventKind;

use crate::{
    alert::{Alert, Priority},
    capture,
    event::Event,
    pipeline,
    rules::Engine,
    timefmt::rfc3339_nanos,
};

/// Where rules are looked for when `--rules` is not given.
pub const DEFAULT_RULE_DIRS: &[&str] = &["/etc/mamori/rules", "rules"];

/// The alert for a `drop` event.
pub fn drop_alert(ev: &Event, hostname: &str) -> Option<Alert> {
    let d = ev.drops.as_ref()?;
    let text = format!(
        "mamori internal: kernel event drop. {} events lost since the last report (exec={} fork={} exit={} open={} connect={} undecodable={})",
        d.total(),
        d.exec,
        d.fork,
        d.exit,
        d.open,
        d.connect,
        d.invalid
    );
    let mut fields = serde_json::Map::new();
    for (k, v) in [
        ("n_drops", d.total()),
        ("n_drops_exec", d.exec),
        ("n_drops_fork", d.fork),
        ("n_drops_exit", d.exit),
        ("n_drops_open", d.open),
        ("n_drops_connect", d.connect),
        ("n_invalid", d.invalid),
    ] {
        fields.insert(k.into(), v.into());
    }
    let time = rfc3339_nanos(ev.ts);
    let clock = time.get(11..29).unwrap_or("").to_string();
    Some(Alert {
        time,
        rule: "mamori internal: kernel event drop".into(),
        priority: Priority::Critical,
        output: format!("{clock}: {} {text}", Priority::Critical),
        output_fields: fields,
        source: "internal".into(),
        tags: vec!["mamori_internal".into()],
        hostname: hostname.into(),
    })
}

fn default_rules() -> anyhow::Result<Vec<PathBuf>> {
    DEFAULT_RULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
        .map(|p| vec![p])
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no --rules given and none of {} exists",
                DEFAULT_RULE_DIRS.join(", ")
            )
        })
}

pub async fn run(
    rules: Vec<PathBuf>,
    ring_bytes: Option<u32>,
    kinds: Vec<EventKind>,
) -> anyhow::Result<()> {
    let paths = if rules.is_empty() {
        default_rules()?
    } else {
        rules
    };
    let (engine, report) = Engine::load(&paths).context("loading rules")?;
    let warnings = report.diagnostics.len();
    eprintln!(
        "mamori: {} active rules from {} ({warnings} warnings; `mamori rules validate` shows them)",
        engine.active_rules(),
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if engine.active_rules() == 0 {
        anyhow::bail!("no active rules: nothing to detect");
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let (mut sensor, mut table, clock) = capture::start(ring_bytes, &kinds)?;
    let mut out = std::io::stdout().lock();
    let mut alerts = 0u64;
    let stats = pipeline::run(
        &mut sensor,
        &mut table,
        clock,
        |ev| {
            let produced = match drop_alert(ev, &hostname) {
                Some(a) => vec![a],
                None => engine.evaluate(ev),
            };
            for a in &produced {
                serde_json::to_writer(&mut out, a)?;
                out.write_all(b"\n")?;
                alerts += 1;
            }
            if !produced.is_empty() {
                out.flush()?;
            }
            Ok(())
        },
        pipeline::shutdown_signal(),
    )
    .await?;
    eprintln!(
        "mamori: {} events, {alerts} alerts, {} lost in the kernel, {} undecodable",
        stats.events,
        stats.dropped.total() - stats.dropped.invalid,
        stats.invalid
    );
    Ok(())
}
