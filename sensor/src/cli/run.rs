//! `mamori run`: the main job. Live events → rules → alerts, handed to the
//! configured outputs (stdout, file, syslog, Slack, webhook; see
//! [`crate::outputs`] and `mamori.example.yaml`).
//!
//! The pipeline only *submits* alerts: the outputs run on their own thread
//! with bounded queues, so no sink can slow detection down. Kernel losses
//! become an alert too (Falco's "syscall event drop" equivalent), so they are
//! as visible as detections. On SIGINT/SIGTERM the outputs get the configured
//! grace period to drain; what is left, dropped or failed is reported.
//! SIGHUP or a change to a rules/config file reloads rules and outputs
//! without stopping the pipeline ([`crate::reload`]).

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;

use crate::{
    config,
    detect::{rule_files, Detector},
    metrics::Metrics,
    outputs::{Outputs, ShutdownReport},
    pipeline::{self, KernelArgs, LastStage, Pipeline},
    reload::{self, Reloader, Update},
    tamper,
};
use mamori_rules::{event::Event, LoadError, RuleMatching};

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

/// `run`'s last stage: detect, then queue each alert for the outputs; a
/// reloaded rule set or outputs are swapped in between two events.
struct DetectAndQueue {
    detector: Detector,
    outputs: Outputs,
    reloader: Reloader,
    tamper: tamper::Watch,
    alerts: u64,
    metrics: Arc<Metrics>,
    /// The rule paths, for the loaded set's digest after a reload.
    rule_paths: Vec<PathBuf>,
}

impl DetectAndQueue {
    /// Apply what the reload thread published (one relaxed load when
    /// nothing did).
    fn apply_reloads(&mut self) {
        let Some(updates) = self.reloader.take() else {
            return;
        };
        for u in updates {
            match u {
                Update::Reopen => {
                    log::info!("SIGHUP: reopening output files");
                    self.outputs.reopen();
                }
                Update::Failed(a) => {
                    eprintln!("mamori: {}", a.output);
                    self.metrics.rules_loaded(false, None);
                    self.metrics.rule_matched(&a);
                    self.outputs.submit(&a);
                    self.alerts += 1;
                }
                Update::Swap(set) => {
                    let mut carried = 0;
                    if let Some(engine) = set.engine {
                        let (old, n) = self.detector.swap_engine(engine);
                        carried = n;
                        self.reloader.retire_engine(old);
                        let digest = crate::metrics::rules_digest(&self.rule_paths);
                        self.metrics.rules_loaded(true, Some(&digest));
                    }
                    if let Some(outputs) = set.outputs {
                        let old = std::mem::replace(&mut self.outputs, outputs);
                        self.reloader.retire_outputs(old);
                        self.metrics.set_sinks(self.outputs.handles().to_vec());
                    }
                    eprintln!(
                        "mamori: {} ({carried} stateful rules kept their state)",
                        set.summary
                    );
                }
            }
        }
    }
}

impl LastStage for DetectAndQueue {
    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        self.apply_reloads();
        for a in &self.detector.evaluate(ev) {
            self.metrics.rule_matched(a);
            self.outputs.submit(a);
            self.alerts += 1;
        }
        if let Some(a) = self.tamper.on_event(ev) {
            eprintln!("mamori: {}", a.output);
            self.metrics.rule_matched(&a);
            self.outputs.submit(&a);
            self.alerts += 1;
        }
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.apply_reloads();
        for a in self.tamper.check() {
            eprintln!("mamori: {}", a.output);
            self.metrics.rule_matched(&a);
            self.outputs.submit(&a);
            self.alerts += 1;
        }
        self.metrics
            .set_state(&self.detector.engine().state_stats());
        Ok(())
    }
}

/// The kinds to capture: as given, or the defaults plus the opt-in kinds
/// (flow, dns) a loaded rule names, so a node whose rules do not ask for
/// them pays nothing for them.
fn with_asked_kinds(mut kernel: KernelArgs, engine: &mamori_rules::Engine) -> KernelArgs {
    use mamori_common::EventKind;
    use mamori_rules::event::EvtType;
    if kernel.kinds.is_empty() {
        kernel.kinds = crate::kernel::DEFAULT_KINDS.to_vec();
        for (t, k) in [
            (EvtType::Flow, EventKind::Flow),
            (EvtType::Dns, EventKind::Dns),
        ] {
            if engine.names_type(t) {
                kernel.kinds.push(k);
            }
        }
    }
    kernel
}

pub async fn run(rules: Vec<PathBuf>, mut kernel: KernelArgs, rc: RunConfig) -> anyhow::Result<()> {
    let cfg = load_config(&rc)?;
    crate::host::set_configured_node_name(cfg.node_name.clone());
    let paths = if rules.is_empty() {
        default_rules()?
    } else {
        rules
    };
    let mut opts = rule_files::options(RuleMatching::First);
    opts.append_output = cfg.append_output.clone();
    let hostname = opts.hostname.clone().unwrap_or_default();
    let (engine, report, sources) = reload::load_rules(&paths, &opts)
        .map_err(|report| LoadError::Invalid { report })
        .context("loading rules")?;
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
    // The kernel records only the table-driven syscalls the rules need.
    kernel.syscalls = Some(pipeline::syscalls_for(&engine.needed_types()));
    let metrics = Arc::new(Metrics::new(&hostname));
    metrics.rules_loaded(true, Some(&crate::metrics::rules_digest(&paths)));
    let outputs = Outputs::start(&cfg.outputs).context("starting outputs")?;
    metrics.set_sinks(outputs.handles().to_vec());
    let config_path = config::resolve_path(rc.config.clone());
    let current = reload::Snapshot::new(&sources, config_path.as_deref());
    let protected =
        tamper::Protected::new(std::env::current_exe().ok(), &paths, config_path.as_deref());
    let rule_paths = paths.clone();
    let src = reload::Sources {
        rules: paths,
        opts,
        config: config_path,
        overrides: rc.overrides.clone(),
    };
    let reloader = Reloader::start(src, current, hostname.clone()).context("starting reloads")?;
    let hup_trigger = reloader.trigger();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let hup_task = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            log::info!("SIGHUP: reloading rules and outputs, reopening output files");
            let _ = hup_trigger.send(reload::Cause::Hangup);
        }
    });
    let ready = crate::cli::health::Ready::default();
    if let Some(addr) = rc.health_addr {
        let bound = crate::cli::health::serve(addr, ready.clone(), Some(metrics.clone()))
            .await
            .with_context(|| format!("serving /healthz on {addr}"))?;
        eprintln!("mamori: metrics on http://{bound}/metrics");
        eprintln!("mamori: health endpoint on http://{bound}/healthz");
    }
    let kernel = with_asked_kinds(kernel, &engine);
    let mut pipeline =
        Pipeline::start(&kernel, &cfg.container_engines)?.with_metrics(metrics.clone());
    ready.set(pipeline.heartbeat());
    let tamper = tamper::Watch::new(pipeline.sensor_mut(), protected, hostname.clone());
    let gap = cfg.gap.state_file.clone().map(|path| {
        let (keeper, alert) = crate::gap::Keeper::start(path, &hostname);
        if let Some(a) = alert {
            eprintln!("mamori: {}", a.output);
            metrics.rule_matched(&a);
            outputs.submit(&a);
        }
        let beat = pipeline.heartbeat();
        crate::gap::spawn(keeper, cfg.gap.heartbeat, move || {
            beat.since_last()
                .is_none_or(|d| d < crate::cli::health::STALLED_AFTER)
        })
    });
    let mut last = DetectAndQueue {
        detector: Detector::new(engine, hostname),
        outputs,
        reloader,
        tamper,
        alerts: 0,
        metrics,
        rule_paths,
    };
    let stats = pipeline.run(&mut last, pipeline::shutdown_signal()).await;
    let DetectAndQueue {
        detector,
        outputs,
        reloader,
        alerts,
        ..
    } = last;
    hup_task.abort();
    if let Some(gap) = gap {
        gap.stop().await;
    }
    // Drain the outputs even when the pipeline failed: queued alerts matter.
    let report = tokio::task::spawn_blocking(move || {
        let r = outputs.shutdown();
        reloader.finish();
        r
    })
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
