//! Gap accounting: a silenced sensor is itself an alert.
//!
//! mamori keeps a small state file (on a hostPath in the chart, so it
//! outlives the pod) and rewrites it every `gap.heartbeat` while the
//! pipeline keeps draining the ring. At start-up it reads what the previous
//! instance left: a clean stop (its stop time), or a crash / `kill -9` / OOM
//! kill (only its last heartbeat), or a reboot of the node in between (a
//! different boot id). Once the kernel programs are attached again it raises
//! `mamori internal: sensor gap` with the uncovered interval, so the time
//! nothing was watched is visible next to the detections.
//!
//! The file is written whole to a temporary name and renamed, so a crash
//! mid-write leaves the previous heartbeat, never half a file.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use mamori_rules::alert::{Alert, Priority};
use serde::{Deserialize, Serialize};

use crate::config::{key_err, ConfigError, Dur};

/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// The rule name of the gap alert.
pub const GAP_RULE: &str = "mamori internal: sensor gap";

/// `gap:` in `mamori.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGap {
    /// Where the state file lives; gap accounting is off without one.
    pub state_file: Option<PathBuf>,
    /// How often the file is rewritten (bounds the uncertainty of a crash).
    pub heartbeat: Option<Dur>,
}

/// Validated `gap:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GapConfig {
    pub state_file: Option<PathBuf>,
    pub heartbeat: Duration,
}

impl RawGap {
    pub fn validate(self) -> Result<GapConfig, ConfigError> {
        let heartbeat = self.heartbeat.map_or(DEFAULT_HEARTBEAT, |d| d.0);
        if heartbeat < Duration::from_millis(100) || heartbeat > Duration::from_secs(3600) {
            return Err(key_err("gap.heartbeat", "expected 100ms to 1h"));
        }
        if let Some(p) = &self.state_file {
            if !p.is_absolute() {
                return Err(key_err(
                    "gap.state_file",
                    format!("expected an absolute path, got {}", p.display()),
                ));
            }
        }
        Ok(GapConfig {
            state_file: self.state_file,
            heartbeat,
        })
    }
}

/// What the state file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id` when written.
    pub boot_id: String,
    /// Unix ns: when this instance's programs were attached.
    pub started: u64,
    /// Unix ns of the last heartbeat (or the stop).
    pub heartbeat: u64,
    /// Set by a clean stop.
    #[serde(default)]
    pub stopped: bool,
}

/// How the previous instance ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Previous {
    /// No state file: first start on this node (no alert).
    None,
    /// A state file that could not be read or parsed.
    Unreadable(String),
    State(State),
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// This boot's id ("" when unknown).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Read what the previous instance left at `path`.
pub fn read_previous(path: &Path) -> Previous {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Previous::None,
        Err(e) => Previous::Unreadable(format!("reading {}: {e}", path.display())),
        Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
            Ok(s) => Previous::State(s),
            Err(e) => Previous::Unreadable(format!("parsing {}: {e}", path.display())),
        },
    }
}

/// Write `state` to `path` whole (temporary file, then rename).
pub fn write_state(path: &Path, state: &State) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn rfc3339(ns: u64) -> String {
    mamori_rules::timefmt::rfc3339_nanos(ns)
}

/// The gap alert for `previous`, coverage having resumed at `now` (Unix ns)
/// on boot `boot`; `None` on a first start.
pub fn gap_alert(previous: &Previous, now: u64, boot: &str, hostname: &str) -> Option<Alert> {
    let mut f = serde_json::Map::new();
    let (priority, detail) = match previous {
        Previous::None => return None,
        Previous::Unreadable(why) => {
            f.insert("gap.previous_end".into(), "unknown".into());
            f.insert("gap.error".into(), why.clone().into());
            (
                Priority::Warning,
                format!(
                    "the previous instance's state is unreadable ({why}); coverage resumed at {}",
                    rfc3339(now)
                ),
            )
        }
        Previous::State(s) => {
            let from = s.heartbeat.min(now);
            let rebooted = !s.boot_id.is_empty() && !boot.is_empty() && s.boot_id != boot;
            let end = match (s.stopped, rebooted) {
                (true, _) => "clean_stop",
                (false, true) => "reboot",
                (false, false) => "crash",
            };
            let secs = (now - from) as f64 / 1e9;
            f.insert("gap.previous_end".into(), end.into());
            f.insert("gap.start".into(), rfc3339(from).into());
            f.insert("gap.end".into(), rfc3339(now).into());
            f.insert(
                "gap.seconds".into(),
                ((secs * 1000.0).round() / 1000.0).into(),
            );
            f.insert("gap.previous_pid".into(), s.pid.into());
            f.insert("gap.node_rebooted".into(), rebooted.into());
            let how = match end {
                "clean_stop" => "stopped cleanly".to_string(),
                "reboot" => "ended with a node reboot (last heartbeat)".to_string(),
                _ => format!(
                    "ended without stopping (crash, kill -9 or OOM; pid {}, last heartbeat)",
                    s.pid
                ),
            };
            let priority = if s.stopped {
                Priority::Notice
            } else {
                Priority::Critical
            };
            (
                priority,
                format!(
                    "no events were watched from {} to {} ({secs:.3}s): the previous instance {how}",
                    rfc3339(from),
                    rfc3339(now)
                ),
            )
        }
    };
    Some(Alert::internal(
        now, GAP_RULE, priority, &detail, f, hostname,
    ))
}

/// The running instance's side: writes heartbeats and the clean stop.
pub struct Keeper {
    path: PathBuf,
    state: State,
}

impl Keeper {
    /// Read the previous state and record this instance as started now.
    /// Returns the keeper and the gap alert to raise, if any.
    pub fn start(path: PathBuf, hostname: &str) -> (Keeper, Option<Alert>) {
        let previous = read_previous(&path);
        let now = now_ns();
        let boot = boot_id();
        let alert = gap_alert(&previous, now, &boot, hostname);
        let k = Keeper {
            path,
            state: State {
                pid: std::process::id(),
                boot_id: boot,
                started: now,
                heartbeat: now,
                stopped: false,
            },
        };
        k.write();
        (k, alert)
    }

    fn write(&self) {
        if let Err(e) = write_state(&self.path, &self.state) {
            log::warn!("gap state file {}: {e}", self.path.display());
        }
    }

    /// The pipeline is alive now.
    pub fn beat(&mut self) {
        self.state.heartbeat = now_ns();
        self.write();
    }

    /// A clean stop: the next instance reports the gap from now.
    pub fn stopped(mut self) {
        self.state.heartbeat = now_ns();
        self.state.stopped = true;
        self.write();
    }
}

/// The heartbeat task of a running instance.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Beat every `every` while `alive()` says the pipeline is draining (a
/// stuck pipeline stops beating, so a later crash reports the gap from when
/// it stopped covering); on [`Running::stop`], record a clean stop.
pub fn spawn(
    mut keeper: Keeper,
    every: Duration,
    alive: impl Fn() -> bool + Send + 'static,
) -> Running {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => if alive() { keeper.beat() },
            }
        }
        keeper.stopped();
    });
    Running { stop, task }
}

impl Running {
    /// Record the clean stop (waits for the write).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests;
