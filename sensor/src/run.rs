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
    fields::time_of_day_ns,
    pipeline,
    rules::Engine,
    timefmt::rfc3339_nanos,
};

/// Where rules are looked for when `--rules` is not given.
pub const DEFAULT_RULE_DIRS: &[&str] = &["/etc/mamori/rules", "rules"];

/// The alert for a `drop` event.
pub fn drop_alert(ev: &Event, hostname: &str) -> Option<Alert> {
    let d = ev.drops.as_ref()?;
    let text = format!("mamori internal: kernel event drop. {d} since the last report");
    let mut fields = serde_json::Map::new();
    fields.insert("n_drops".into(), d.total().into());
    for (k, n) in d.by_kind() {
        fields.insert(format!("n_drops_{k}"), n.into());
    }
    Some(Alert {
        time: rfc3339_nanos(ev.ts),
        rule: "mamori internal: kernel event drop".into(),
        priority: Priority::Critical,
        output: format!("{}: {} {text}", time_of_day_ns(ev.ts), Priority::Critical),
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
    let (mut sensor, mut table) = capture::start(ring_bytes, &kinds)?;
    let mut out = std::io::stdout().lock();
    let mut alerts = 0u64;
    let mut enricher = crate::enrich::Enricher::for_this_node();
    let stats = pipeline::run(
        &mut sensor,
        &mut table,
        Some(&mut enricher),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::Drops, pipeline::drop_event};

    #[test]
    fn drops_become_a_critical_internal_alert() {
        let ev = drop_event(Drops {
            open: 7,
            connect: 2,
            ..Default::default()
        });
        let a = drop_alert(&ev, "node-1").expect("a drop event makes an alert");
        assert_eq!(a.rule, "mamori internal: kernel event drop");
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.output_fields["n_drops"], 9);
        assert_eq!(a.output_fields["n_drops_open"], 7);
        assert!(a
            .output
            .contains("9 events lost (exec=0 fork=0 exit=0 open=7 connect=2 undecodable=0)"));
        assert_eq!(a.hostname, "node-1");
        let mut quiet = ev.clone();
        quiet.drops = None;
        assert!(drop_alert(&quiet, "node-1").is_none());
    }
}
