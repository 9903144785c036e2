//! Reloading rules and the outputs configuration with no event gap.
//!
//! Falco restarts its whole pipeline on a reload; mamori keeps its kernel
//! programs attached and the ring draining. SIGHUP or a change in a watched
//! rules/config directory ([`watch`]) wakes the reload thread, which reads
//! and compiles the new set *off the hot path*; the hot path picks the result
//! up with one relaxed atomic load per event ([`Reloader::take`]) and swaps
//! it in between two events. So every event is evaluated by exactly one rule
//! set, and none waits for a compile.
//!
//! A set with any error (an unreadable file, a broken rule, an invalid
//! config) is rejected whole: the old set keeps running and the hot path
//! emits `mamori internal: rules reload failed` with the first diagnostics.
//! [`Counters`] count reloads and failures (plain atomics, for a metrics
//! endpoint to expose). Stateful rules whose definition did not change keep
//! their memory ([`mamori_rules::Engine::carry_state_from`], at the swap).

pub mod watch;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use mamori_rules::{
    alert::{Alert, Priority},
    yaml::SourceFile,
    Engine, LoadOptions, LoadReport,
};

use crate::{config, detect::rule_files, outputs::Outputs};

/// Quiet time after a change before reloading: an editor's save or a
/// ConfigMap swap is several file system events.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest a stream of changes can hold a reload back.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// Error diagnostics quoted in the failure alert.
const QUOTED_ERRORS: usize = 3;

/// The rule name of the alert for a rejected reload.
pub const RELOAD_FAILED: &str = "mamori internal: rules reload failed";

/// What a reload reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Rule files and directories, as given to `mamori run`.
    pub rules: Vec<PathBuf>,
    pub opts: LoadOptions,
    /// The config file (resolved), if any; its outputs are reloaded.
    pub config: Option<PathBuf>,
    /// `-o KEY=VALUE` overrides, re-applied on every reload.
    pub overrides: Vec<String>,
}

/// The texts a set was built from, to tell a real change from a touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    rules: Vec<(String, String)>,
    config: Option<String>,
}

impl Snapshot {
    /// The snapshot of rule sources already read (the initial load).
    pub fn new(rules: &[Arc<SourceFile>], config: Option<&std::path::Path>) -> Snapshot {
        Snapshot {
            rules: texts(rules),
            config: config.and_then(|p| std::fs::read_to_string(p).ok()),
        }
    }
}

fn texts(rules: &[Arc<SourceFile>]) -> Vec<(String, String)> {
    rules
        .iter()
        .map(|f| (f.name.clone(), f.text.clone()))
        .collect()
}

/// Read and compile rule paths; any error (unreadable or broken) fails the
/// load with a report holding the read errors first.
pub fn load_rules(
    paths: &[PathBuf],
    opts: &LoadOptions,
) -> Result<(Engine, LoadReport, Vec<Arc<SourceFile>>), LoadReport> {
    let (sources, mut diags) = rule_files::read(paths);
    let (engine, mut report) = Engine::compile(&sources, opts);
    diags.append(&mut report.diagnostics);
    report.diagnostics = diags;
    if report.has_errors() {
        return Err(report);
    }
    Ok((engine, report, sources))
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SIGHUP: also reopen output files (logrotate).
    Hangup,
    /// A watched file or directory changed.
    Files,
}

/// What the reload thread hands the hot path.
pub enum Update {
    /// A new valid set: swap in what is `Some`.
    Swap(Box<NewSet>),
    /// Rejected: the old set keeps running; emit this alert.
    Failed(Box<Alert>),
    /// SIGHUP: reopen the output files.
    Reopen,
}

/// A validated new set.
pub struct NewSet {
    /// New rules (`None`: the rule files did not change).
    pub engine: Option<Engine>,
    /// New outputs, already started (`None`: the config did not change).
    pub outputs: Option<Outputs>,
    /// One line for the log.
    pub summary: String,
}

/// Reload counters, for the metrics endpoint to expose.
#[derive(Debug, Default)]
pub struct Counters {
    /// Reloads that swapped in a new set.
    pub reloads: AtomicU64,
    /// Reloads rejected for errors.
    pub failures: AtomicU64,
    /// Unix seconds of the last successful reload (0: none yet).
    pub last_success_unix: AtomicU64,
}

struct Shared {
    pending: AtomicBool,
    updates: Mutex<Vec<Update>>,
    counters: Arc<Counters>,
}

/// The hot path's handle on the reload thread.
pub struct Reloader {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Cause>,
    _watcher: Option<notify::RecommendedWatcher>,
    retired: Vec<std::thread::JoinHandle<()>>,
}

impl Reloader {
    /// Start the reload thread and the file watch over `src`, whose current
    /// set was built from `current`.
    pub fn start(src: Sources, current: Snapshot, hostname: String) -> anyhow::Result<Reloader> {
        let shared = Arc::new(Shared {
            pending: AtomicBool::new(false),
            updates: Mutex::new(Vec::new()),
            counters: Arc::default(),
        });
        let (tx, rx) = mpsc::channel();
        let watcher = watch::watch(&watch::dirs(&src.rules, src.config.as_deref()), tx.clone())?;
        let worker = Worker {
            src,
            current,
            rejected: None,
            hostname,
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("mamori-reload".into())
            .spawn(move || worker.run(rx))?;
        Ok(Reloader {
            shared,
            tx,
            _watcher: watcher,
            retired: Vec::new(),
        })
    }

    /// A sender for SIGHUP (or tests) to ask for a reload.
    pub fn trigger(&self) -> mpsc::Sender<Cause> {
        self.tx.clone()
    }

    /// The updates ready for the hot path; `None` (one relaxed load) when
    /// there are none.
    #[inline]
    pub fn take(&self) -> Option<Vec<Update>> {
        if !self.shared.pending.load(Ordering::Relaxed) {
            return None;
        }
        let mut u = self
            .shared
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.shared.pending.store(false, Ordering::Relaxed);
        Some(std::mem::take(&mut *u))
    }

    /// The reload counters (a handle a metrics endpoint can keep).
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// Drop a replaced rule set off the hot path (freeing a large set takes
    /// a while).
    pub fn retire_engine(&mut self, old: Engine) {
        self.retired.retain(|t| !t.is_finished());
        if let Ok(t) = std::thread::Builder::new()
            .name("mamori-retire".into())
            .spawn(move || drop(old))
        {
            self.retired.push(t);
        }
    }

    /// Drain replaced outputs (their queued alerts still go out) on a
    /// thread of their own.
    pub fn retire_outputs(&mut self, old: Outputs) {
        self.retired.retain(|t| !t.is_finished());
        if let Ok(t) = std::thread::Builder::new()
            .name("mamori-retire".into())
            .spawn(move || {
                let r = old.shutdown();
                for s in &r.sinks {
                    log::info!("reload: replaced output {s}");
                }
            })
        {
            self.retired.push(t);
        }
    }

    /// Wait for retired outputs to finish draining (at exit).
    pub fn finish(self) {
        for t in self.retired {
            let _ = t.join();
        }
    }
}

/// The reload thread's state.
struct Worker {
    src: Sources,
    current: Snapshot,
    /// The last rejected texts: the same broken set is reported once (again
    /// only on SIGHUP), not on every unrelated change in its directory.
    rejected: Option<Snapshot>,
    hostname: String,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cause>) {
        while let Ok(first) = rx.recv() {
            let mut hangup = first == Cause::Hangup;
            let start = Instant::now();
            while start.elapsed() < DEBOUNCE_MAX {
                match rx.recv_timeout(DEBOUNCE) {
                    Ok(c) => hangup |= c == Cause::Hangup,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            let mut out = Vec::new();
            if hangup {
                out.push(Update::Reopen);
            }
            match self.reload(hangup) {
                Ok(Some(set)) => out.push(Update::Swap(Box::new(set))),
                Ok(None) => log::debug!("reload: nothing changed"),
                Err(msg) => {
                    self.shared
                        .counters
                        .failures
                        .fetch_add(1, Ordering::Relaxed);
                    log::warn!("reload rejected, the running rules stay: {msg}");
                    out.push(Update::Failed(Box::new(self.failure_alert(&msg))));
                }
            }
            if !out.is_empty() {
                self.publish(out);
            }
        }
    }

    fn publish(&self, mut out: Vec<Update>) {
        let mut u = self
            .shared
            .updates
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        u.append(&mut out);
        self.shared.pending.store(true, Ordering::Relaxed);
    }

    /// Build the new set; `Ok(None)` when no text changed.
    fn reload(&mut self, hangup: bool) -> Result<Option<NewSet>, String> {
        let (sources, read_errors) = rule_files::read(&self.src.rules);
        let config_text = match &self.src.config {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let next = Snapshot {
            rules: texts(&sources),
            config: config_text,
        };
        if read_errors.is_empty() && next == self.current {
            // Back to the running set: a later broken text is news again.
            self.rejected = None;
            return Ok(None);
        }
        if !hangup && self.rejected.as_ref() == Some(&next) {
            return Ok(None);
        }
        let result = self.build(&next, &sources, read_errors);
        match &result {
            Ok(_) => {
                self.current = next;
                self.rejected = None;
            }
            Err(_) => self.rejected = Some(next),
        }
        result.map(Some)
    }

    /// Compile the rules and start the outputs of `next` (what changed).
    fn build(
        &self,
        next: &Snapshot,
        sources: &[Arc<SourceFile>],
        read_errors: Vec<mamori_rules::Diagnostic>,
    ) -> Result<NewSet, String> {
        let mut set = NewSet {
            engine: None,
            outputs: None,
            summary: String::new(),
        };
        let mut parts = Vec::new();
        if next.rules != self.current.rules || !read_errors.is_empty() {
            let (engine, report) = Engine::compile(sources, &self.src.opts);
            let errors: Vec<String> = read_errors
                .iter()
                .chain(report.errors())
                .map(|d| d.to_string())
                .collect();
            if !errors.is_empty() {
                return Err(quote_errors(&errors));
            }
            if engine.active_rules() == 0 {
                return Err("no active rules in the new set".into());
            }
            parts.push(format!("{} active rules", engine.active_rules()));
            set.engine = Some(engine);
        }
        if next.config != self.current.config {
            let cfg = config::load(
                self.src.config.as_deref(),
                &self.src.overrides,
                std::env::vars(),
            )
            .map_err(|e| format!("config: {e}"))?;
            let outputs = Outputs::start(&cfg.outputs).map_err(|e| format!("outputs: {e}"))?;
            parts.push("outputs restarted".into());
            set.outputs = Some(outputs);
        }
        let c = &self.shared.counters;
        c.reloads.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        c.last_success_unix.store(now, Ordering::Relaxed);
        set.summary = format!("reloaded: {}", parts.join(", "));
        Ok(set)
    }

    fn failure_alert(&self, msg: &str) -> Alert {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut fields = serde_json::Map::new();
        fields.insert(
            "reload.failures".into(),
            self.shared.counters.failures.load(Ordering::Relaxed).into(),
        );
        fields.insert("reload.errors".into(), msg.into());
        Alert::internal(
            now,
            RELOAD_FAILED,
            Priority::Error,
            &format!("the running rules and outputs stay; {msg}"),
            fields,
            &self.hostname,
        )
    }
}

/// The first errors, one line, with how many more there are.
fn quote_errors(errors: &[String]) -> String {
    let mut s = errors
        .iter()
        .take(QUOTED_ERRORS)
        .map(|e| e.lines().next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > QUOTED_ERRORS {
        s.push_str(&format!(" (and {} more)", errors.len() - QUOTED_ERRORS));
    }
    s
}

#[cfg(test)]
mod tests;
