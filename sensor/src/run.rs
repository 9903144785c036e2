//! `mamori run`: the main job. Live events → rules → alerts, handed to the
//! configured outputs (stdout, file, syslog, Slack, webhook; see
//! [`crate::outputs`] and `mamori.example.yaml`).
//!
//! The pipeline only *submits* alerts: the outputs run on their own thread
//! with bounded queues, so no sink can slow detection down. Kernel losses
//! become an alert too (Falco's "syscall event drop" equivalent), so they are
//! as visible as detections. On SIGINT/SIGTERM the outputs get the configured
//! grace period to drain; what is left, dropped or failed is reported.

use std::path::PathBuf;

use anyhow::Context;

use crate::{
    alert::{Alert, Priority},
    capture, config,
    event::Event,
    fields::time_of_day_ns,
    outputs::{Outputs, ShutdownReport},
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

/// Where `mamori run` gets its output configuration.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// `--config`; default [`config::DEFAULT_CONFIG_PATH`] if it exists.
    pub config: Option<PathBuf>,
    /// `-o KEY=VALUE`, in order.
    pub overrides: Vec<String>,
    /// `-v` or more: print per-output counters at exit.
    pub verbose: bool,
    /// `--health-addr`: serve `GET /healthz` there (ready once attached).
    pub health_addr: Option<std::net::SocketAddr>,
}

/// Load and validate the configuration (file, `MAMORI_*` env, `-o`).
pub fn load_config(rc: &RunConfig) -> anyhow::Result<config::Config> {
    let path = config::resolve_path(rc.config.clone());
    if let Some(p) = &path {
        log::info!("config: {}", p.display());
    }
    Ok(config::load(
        path.as_deref(),
        &rc.overrides,
        std::env::vars(),
    )?)
}

/// The exit summary of the outputs: always the losses, everything with `-v`.
pub fn report_outputs(r: &ShutdownReport, verbose: bool) {
    for s in &r.sinks {
        if verbose {
            eprintln!("mamori: output {s}");
        } else if s.dropped + s.failed + s.pending > 0 {
            eprintln!(
                "mamori: output {}: {} alerts not delivered (dropped={} failed={} left={})",
                s.name,
                s.dropped + s.failed + s.pending,
                s.dropped,
                s.failed,
                s.pending
            );
        }
    }
    if r.timed_out {
        eprintln!(
            "mamori: outputs: grace period over with {} alerts left undelivered",
            r.left()
        );
    }
}

pub async fn run(
    rules: Vec<PathBuf>,
    kernel: capture::KernelArgs,
    rc: RunConfig,
) -> anyhow::Result<()> {
    let cfg = load_config(&rc)?;
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
    let outputs = Outputs::start(&cfg.outputs).context("starting outputs")?;
    let reopen = outputs.reopener();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let hup_task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log::info!("SIGHUP: reopening output files");
            reopen.reopen();
        }
    });
    let ready = crate::health::Ready::default();
    if let Some(addr) = rc.health_addr {
        let bound = crate::health::serve(addr, ready.clone())
            .await
            .with_context(|| format!("serving /healthz on {addr}"))?;
        eprintln!("mamori: health endpoint on http://{bound}/healthz");
    }
    let (mut sensor, mut table) = capture::start(&kernel)?;
    ready.set();
    let mut alerts = 0u64;
    let mut evictions = EvictionWatch::default();
    let mut enricher = crate::enrich::Enricher::for_this_node();
    let stats = pipeline::run(
        &mut sensor,
        &mut table,
        Some(&mut enricher),
        |ev| {
            let mut produced = match drop_alert(ev, &hostname) {
                Some(a) => vec![a],
                None => engine.evaluate(ev),
            };
            produced.extend(evictions.check(&engine, ev.ts, &hostname));
            for a in &produced {
                outputs.submit(a);
                alerts += 1;
            }
            Ok(())
        },
        pipeline::shutdown_signal(),
    )
    .await;
    hup_task.abort();
    // Drain the outputs even when the pipeline failed: queued alerts matter.
    let report = tokio::task::spawn_blocking(move || outputs.shutdown())
        .await
        .context("waiting for the outputs")?;
    let stats = stats?;
    eprintln!(
        "mamori: {} events, {alerts} alerts, {} lost in the kernel, {} undecodable",
        stats.events,
        stats.dropped.total() - stats.dropped.invalid,
        stats.invalid
    );
    report_outputs(&report, rc.verbose);
    for st in engine.state_stats() {
        if rc.verbose || st.evicted > 0 {
            eprintln!(
                "mamori: stateful rule '{}' ({}): {} alerts, {} suppressed repeats, {} keys of {} max, {} evicted while live, {} expired",
                st.rule, st.kind, st.alerts, st.suppressed, st.keys, st.max_keys, st.evicted, st.expired
            );
        }
    }
    Ok(())
}

/// Turns stateful-rule evictions into an internal alert (at most one per
/// minute): a key pushed out while its window was open is a detection that
/// may have been missed, so it must be as visible as a kernel drop.
#[derive(Default)]
struct EvictionWatch {
    checked: Option<std::time::Instant>,
    reported: u64,
    /// Events since the clock was last read (it is read every 1024).
    calls: u32,
}

impl EvictionWatch {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn check(&mut self, engine: &Engine, ts: u64, hostname: &str) -> Option<Alert> {
        self.calls = self.calls.wrapping_add(1);
        if self.checked.is_some() && !self.calls.is_multiple_of(1024) {
            return None;
        }
        let now = std::time::Instant::now();
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.checked = Some(now);
        let stats = engine.state_stats();
        let total: u64 = stats.iter().map(|s| s.evicted).sum();
        if total <= self.reported {
            return None;
        }
        let new = total - self.reported;
        self.reported = total;
        Some(eviction_alert(&stats, new, ts, hostname))
    }
}

/// The alert for `new` stateful-rule keys evicted while live.
pub fn eviction_alert(
    stats: &[crate::rules::state::StateStats],
    new: u64,
    ts: u64,
    hostname: &str,
) -> Alert {
    let mut fields = serde_json::Map::new();
    fields.insert("n_evicted".into(), new.into());
    let per_rule: Vec<String> = stats
        .iter()
        .filter(|s| s.evicted > 0)
        .map(|s| {
            fields.insert(format!("evicted.{}", s.rule), s.evicted.into());
            format!("'{}' {} (cap {})", s.rule, s.evicted, s.max_keys)
        })
        .collect();
    let text = format!(
        "mamori internal: stateful rule state evicted. {new} keys pushed out while their window was open since the last report; totals: {}",
        per_rule.join(", ")
    );
    Alert {
        time: rfc3339_nanos(ts),
        rule: "mamori internal: stateful rule state evicted".into(),
        priority: Priority::Warning,
        output: format!("{}: {} {text}", time_of_day_ns(ts), Priority::Warning),
        output_fields: fields,
        source: "internal".into(),
        tags: vec!["mamori_internal".into()],
        hostname: hostname.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evictions_become_a_warning_internal_alert_once_per_check() {
        let rules = r#"
- rule: scan
  desc: d
  condition: evt.type = connect
  threshold: {by: proc.pid, count: 5, within: 10s, max_keys: 1}
  output: o
  priority: WARNING
"#;
        let (engine, _) = Engine::from_sources(&[("t.yaml", rules)], &Default::default());
        let mut w = EvictionWatch::default();
        assert!(w.check(&engine, 0, "n").is_none(), "nothing evicted yet");
        for pid in 1..4u32 {
            let ev: Event = serde_json::from_value(serde_json::json!({
                "ts": 1, "type": "connect", "res": 0, "proc": {"pid": pid, "name": "x"},
                "fd": {"type": "ipv4", "num": 3, "name": "x", "rip": "10.0.0.1", "rport": 80}
            }))
            .unwrap();
            engine.evaluate(&ev);
        }
        w.checked = None;
        let a = w.check(&engine, 7, "n").expect("2 live keys were evicted");
        assert_eq!(a.rule, "mamori internal: stateful rule state evicted");
        assert_eq!(a.output_fields["n_evicted"], 2);
        assert!(a.output.contains("'scan' 2 (cap 1)"), "{}", a.output);
        w.checked = None;
        assert!(w.check(&engine, 8, "n").is_none(), "no new evictions");
    }
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
