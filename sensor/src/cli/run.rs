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
    config,
    detect::{rule_files, Detector},
    outputs::{Outputs, ShutdownReport},
    pipeline::{self, KernelArgs, LastStage, Pipeline},
};
use mamori_rules::{event::Event, RuleMatching};

/// Where rules are looked for when `--rules` is not given.
pub const DEFAULT_RULE_DIRS: &[&str] = &["/etc/mamori/rules", "rules"];

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

/// `run`'s last stage: detect, then queue each alert for the outputs.
struct DetectAndQueue<'a> {
    detector: Detector,
    outputs: &'a Outputs,
    alerts: u64,
}

impl LastStage for DetectAndQueue<'_> {
    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        for a in &self.detector.evaluate(ev) {
            self.outputs.submit(a);
            self.alerts += 1;
        }
        Ok(())
    }
}

pub async fn run(rules: Vec<PathBuf>, kernel: KernelArgs, rc: RunConfig) -> anyhow::Result<()> {
    let cfg = load_config(&rc)?;
    let paths = if rules.is_empty() {
        default_rules()?
    } else {
        rules
    };
    let opts = rule_files::options(RuleMatching::First);
    let hostname = opts.hostname.clone().unwrap_or_default();
    let (engine, report) = rule_files::load(&paths, &opts).context("loading rules")?;
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
    let ready = crate::cli::health::Ready::default();
    if let Some(addr) = rc.health_addr {
        let bound = crate::cli::health::serve(addr, ready.clone())
            .await
            .with_context(|| format!("serving /healthz on {addr}"))?;
        eprintln!("mamori: health endpoint on http://{bound}/healthz");
    }
    let pipeline = Pipeline::start(&kernel, &cfg.container_engines)?;
    ready.set(pipeline.heartbeat());
    let mut last = DetectAndQueue {
        detector: Detector::new(engine, hostname),
        outputs: &outputs,
        alerts: 0,
    };
    let stats = pipeline.run(&mut last, pipeline::shutdown_signal()).await;
    let (detector, alerts) = (last.detector, last.alerts);
    hup_task.abort();
    // Drain the outputs even when the pipeline failed: queued alerts matter.
    let report = tokio::task::spawn_blocking(move || outputs.shutdown())
        .await
        .context("waiting for the outputs")?;
    let stats = stats?;
    eprintln!("mamori: {}", stats.summary(Some(alerts)));
    report_outputs(&report, rc.verbose);
    for st in detector.engine().state_stats() {
        if rc.verbose || st.evicted > 0 {
            eprintln!(
                "mamori: stateful rule '{}' ({}): {} alerts, {} suppressed repeats, {} keys of {} max, {} evicted while live, {} expired",
                st.rule, st.kind, st.alerts, st.suppressed, st.keys, st.max_keys, st.evicted, st.expired
            );
        }
    }
    Ok(())
}
