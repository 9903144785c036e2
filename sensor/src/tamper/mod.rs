//! Tamper alerts: a sensor being silenced or subverted is itself an alert.
//!
//! What this kernel lets mamori observe (no kprobes or LSM here), each as an
//! internal alert naming the acting process:
//!
//! - **signals sent to mamori** — the `signal_generate` tracepoint, filtered
//!   in the kernel to mamori's thread group (`sensor-ebpf/src/tamper.rs`).
//!   A SIGKILL cannot be reported by the process it kills; the gap alert
//!   covers that. A SIGSTOP is reported once mamori runs again.
//! - **ptrace of mamori** — `ptrace(PTRACE_ATTACH | PTRACE_SEIZE)` calls
//!   aimed at one of its threads (`sys_enter_ptrace`), and, as a second net,
//!   a `TracerPid` in `/proc/self/task/*/status` found by the periodic check.
//! - **its programs or links detached or replaced** — the periodic check
//!   compares the kernel's program and link lists (by id, through the bpf
//!   syscalls aya exposes) with what mamori attached. The kernel does not
//!   say who closed a link; the alert names the last process seen attaching
//!   to mamori with ptrace (the only way into its descriptors), if any.
//! - **its binary, rules or config opened for writing** — from the open
//!   events the pipeline already carries (paths as this mount namespace
//!   sees them; a rename over a rules file is not an open and is not seen).
//!
//! Records from the kernel come through a small ring of their own, read on
//! the pipeline's once-a-second tick, so an event flood cannot hide them.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use mamori_common::{tamper, TamperRecord};
use mamori_rules::{
    alert::{Alert, Priority},
    event::Event,
};

use crate::kernel::{LoadedProgram, Sensor};

/// How often programs, links and tracers are checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a ptrace attacher stays the suspect for a detached link.
const SUSPECT_FOR: Duration = Duration::from_secs(120);

pub const SIGNAL_SENT: &str = "mamori internal: tamper: signal sent to mamori";
pub const PTRACE_ATTACH: &str = "mamori internal: tamper: ptrace of mamori";
pub const PROGRAM_DETACHED: &str = "mamori internal: tamper: kernel program detached";
pub const FILE_WRITTEN: &str = "mamori internal: tamper: mamori file opened for writing";

/// The process behind a tamper act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub name: String,
    /// `/proc/<pid>/cmdline` when it could still be read.
    pub cmdline: Option<String>,
}

impl Actor {
    fn from_record(r: &TamperRecord) -> Actor {
        let end = r.actor_comm.iter().position(|&b| b == 0).unwrap_or(16);
        Actor {
            pid: r.actor_tgid,
            tid: r.actor_tid,
            uid: r.actor_uid,
            name: String::from_utf8_lossy(&r.actor_comm[..end]).into_owned(),
            cmdline: cmdline(r.actor_tgid),
        }
    }

    fn from_event(ev: &Event) -> Actor {
        let cmd = std::iter::once(ev.proc.name.as_str())
            .chain(ev.proc.argv.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        Actor {
            pid: ev.proc.pid,
            tid: ev.proc.tid,
            uid: ev.proc.uid,
            name: ev.proc.name.clone(),
            cmdline: Some(cmd),
        }
    }

    fn fields(&self, f: &mut serde_json::Map<String, serde_json::Value>) {
        f.insert("actor.pid".into(), self.pid.into());
        f.insert("actor.tid".into(), self.tid.into());
        f.insert("actor.uid".into(), self.uid.into());
        f.insert("actor.name".into(), self.name.clone().into());
        if let Some(c) = &self.cmdline {
            f.insert("actor.cmdline".into(), c.clone().into());
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {} uid {}", self.name, self.pid, self.uid)?;
        if let Some(c) = &self.cmdline {
            write!(f, " cmdline \"{c}\"")?;
        }
        f.write_str(")")
    }
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!s.is_empty()).then(|| s.join(" "))
}

/// What mamori protects from writes: exact files, and directories whose
/// rule files (`*.yaml`/`*.yml` directly inside) it loads.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    files: HashSet<String>,
    rule_dirs: Vec<String>,
}

impl Protected {
    /// Mamori's binary, its rule paths and its config file, each as given
    /// (made absolute) and as resolved (symlinks followed).
    pub fn new(binary: Option<PathBuf>, rules: &[PathBuf], config: Option<&Path>) -> Protected {
        let mut p = Protected::default();
        let forms = |path: &Path| -> Vec<String> {
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            let mut v = vec![abs.display().to_string()];
            if let Ok(c) = std::fs::canonicalize(path) {
                v.push(c.display().to_string());
            }
            v
        };
        for f in binary.iter().map(PathBuf::as_path).chain(config) {
            p.files.extend(forms(f));
        }
        for r in rules {
            if r.is_dir() {
                p.rule_dirs.extend(forms(r));
            } else {
                p.files.extend(forms(r));
            }
        }
        p.rule_dirs.dedup();
        p
    }

    /// Whether `path` (absolute, as an open event names it) is protected.
    pub fn covers(&self, path: &str) -> bool {
        if self.files.contains(path) {
            return true;
        }
        self.rule_dirs.iter().any(|d| {
            path.strip_prefix(d.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| {
                    !name.contains('/') && (name.ends_with(".yaml") || name.ends_with(".yml"))
                })
        })
    }
}

/// Whether open flags ask for writing (or truncating).
fn opens_for_write(flags: u32) -> bool {
    let acc = flags & libc::O_ACCMODE as u32;
    acc == libc::O_WRONLY as u32 || acc == libc::O_RDWR as u32 || flags & libc::O_TRUNC as u32 != 0
}

/// The tamper watch of one `mamori run`.
pub struct Watch {
    me: u32,
    hostname: String,
    protected: Protected,
    ring: Option<RingBuf<MapData>>,
    programs: Vec<LoadedProgram>,
    /// Links to our programs at start: (link id, program id).
    links: Vec<(u32, u32)>,
    detached: HashSet<u32>,
    tracers: HashSet<(u32, u32)>,
    suspect: Option<(Actor, Instant)>,
    checked: Option<Instant>,
}

impl Watch {
    /// Take the tamper ring and note the attached programs and their links.
    pub fn new(sensor: &mut Sensor, protected: Protected, hostname: String) -> Watch {
        let programs: Vec<LoadedProgram> = sensor
            .programs()
            .into_iter()
            .filter(|p| sensor.attached.contains(&p.name.as_str()))
            .collect();
        let ids: HashSet<u32> = programs.iter().map(|p| p.id).collect();
        let links = aya::programs::loaded_links()
            .filter_map(Result::ok)
            .filter(|l| ids.contains(&l.program_id()))
            .map(|l| (l.id(), l.program_id()))
            .collect::<Vec<_>>();
        let ring = sensor.take_tamper_ring();
        if ring.is_none() {
            log::warn!("tamper: no signal/ptrace ring in the eBPF object");
        }
        log::info!(
            "tamper: watching {} programs and {} links",
            programs.len(),
            links.len()
        );
        Watch {
            me: std::process::id(),
            hostname,
            protected,
            ring,
            programs,
            links,
            detached: HashSet::new(),
            tracers: HashSet::new(),
            suspect: None,
            checked: None,
        }
    }

    /// A watch with no kernel side (tests of the event checks).
    #[cfg(test)]
    fn without_kernel(protected: Protected) -> Watch {
        Watch {
            me: std::process::id(),
            hostname: "node-1".into(),
            protected,
            ring: None,
            programs: Vec::new(),
            links: Vec::new(),
            detached: HashSet::new(),
            tracers: HashSet::new(),
            suspect: None,
            checked: None,
        }
    }

    /// Links being watched (link id, program id).
    pub fn links(&self) -> &[(u32, u32)] {
        &self.links
    }

    /// The alert for an open of a protected path for writing by another
    /// process; `None` for every other event (cheap: flags first).
    pub fn on_event(&self, ev: &Event) -> Option<Alert> {
        let open = ev.open.as_ref()?;
        if !opens_for_write(open.flags) || ev.proc.pid == self.me {
            return None;
        }
        let path = ev.fd.as_ref().map(|f| f.name.as_str())?;
        if !self.protected.covers(path) {
            return None;
        }
        let actor = Actor::from_event(ev);
        let mut f = serde_json::Map::new();
        actor.fields(&mut f);
        f.insert("fd.name".into(), path.into());
        f.insert("evt.res".into(), ev.res.into());
        Some(self.alert(
            ev.ts,
            FILE_WRITTEN,
            Priority::Critical,
            &format!("{path} opened for writing by {actor} (result {})", ev.res),
            f,
        ))
    }

    /// Kernel records since the last call, and every [`CHECK_EVERY`] the
    /// programs, links and tracers.
    pub fn check(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut records = Vec::new();
        if let Some(ring) = &mut self.ring {
            while let Some(item) = ring.next() {
                if item.len() >= std::mem::size_of::<TamperRecord>() {
                    // SAFETY: the length was checked and `TamperRecord` is
                    // plain integers (any bit pattern is valid); the read is
                    // unaligned-safe.
                    let r =
                        unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<TamperRecord>()) };
                    records.push(r);
                }
            }
        }
        for r in records {
            out.extend(self.record_alert(&r));
        }
        let now = Instant::now();
        if self
            .checked
            .is_none_or(|t| now.duration_since(t) >= CHECK_EVERY)
        {
            self.checked = Some(now);
            out.extend(self.tracer_alerts());
            out.extend(self.detach_alerts());
        }
        out
    }

    fn record_alert(&mut self, r: &TamperRecord) -> Option<Alert> {
        let actor = Actor::from_record(r);
        if actor.pid == self.me {
            return None; // mamori's own (SIGPIPE from a write, ...)
        }
        let mut f = serde_json::Map::new();
        actor.fields(&mut f);
        match r.kind {
            tamper::SIGNAL => {
                if r.what == libc::SIGCHLD as u32 {
                    return None;
                }
                let name = signal_name(r.what);
                f.insert("signal".into(), name.clone().into());
                f.insert("target.tid".into(), r.target.into());
                let prio = if [libc::SIGKILL, libc::SIGSTOP, libc::SIGTERM, libc::SIGINT]
                    .contains(&(r.what as i32))
                {
                    Priority::Critical
                } else {
                    Priority::Warning
                };
                Some(self.alert(
                    now_ns(),
                    SIGNAL_SENT,
                    prio,
                    &format!("{name} sent to mamori (thread {}) by {actor}", r.target),
                    f,
                ))
            }
            tamper::PTRACE => {
                if !self.is_my_thread(r.target) {
                    return None;
                }
                self.suspect = Some((actor.clone(), Instant::now()));
                self.tracers.insert((r.target, actor.pid));
                let req = if r.what == 0x4206 {
                    "PTRACE_SEIZE"
                } else {
                    "PTRACE_ATTACH"
                };
                f.insert("ptrace.request".into(), req.into());
                f.insert("target.tid".into(), r.target.into());
                Some(self.alert(
                    now_ns(),
                    PTRACE_ATTACH,
                    Priority::Critical,
                    &format!("{req} of mamori (thread {}) by {actor}", r.target),
                    f,
                ))
            }
            _ => None,
        }
    }

    fn is_my_thread(&self, tid: u32) -> bool {
        tid == self.me || Path::new(&format!("/proc/self/task/{tid}")).exists()
    }

    /// Tracers found in `/proc/self/task/*/status` not yet reported.
    fn tracer_alerts(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return out;
        };
        for t in tasks.filter_map(Result::ok) {
            let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(t.path().join("status")) else {
                continue;
            };
            let tracer = status
                .lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0);
            if tracer == 0 || !self.tracers.insert((tid, tracer)) {
                continue;
            }
            let actor = proc_actor(tracer);
            self.suspect = Some((actor.clone(), Instant::now()));
            let mut f = serde_json::Map::new();
            actor.fields(&mut f);
            f.insert("target.tid".into(), tid.into());
            out.push(self.alert(
                now_ns(),
                PTRACE_ATTACH,
                Priority::Critical,
                &format!("mamori thread {tid} is traced by {actor}"),
                f,
            ));
        }
        out
    }

    /// Programs gone or changed, links gone or pointing elsewhere.
    fn detach_alerts(&mut self) -> Vec<Alert> {
        let mut out = Vec::new();
        let progs: std::collections::HashMap<u32, u64> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| (p.id(), p.tag()))
            .collect();
        let links: std::collections::HashMap<u32, u32> = aya::programs::loaded_links()
            .filter_map(Result::ok)
            .map(|l| (l.id(), l.program_id()))
            .collect();
        if progs.is_empty() {
            return out; // the listing itself failed: nothing to conclude
        }
        let mut gone = Vec::new();
        for &(link, prog) in &self.links {
            if self.detached.contains(&link) {
                continue;
            }
            let what = match links.get(&link) {
                None => "detached (link closed)",
                Some(&p) if p != prog => "replaced (link points to another program)",
                Some(_) => match progs.get(&prog) {
                    None => "unloaded",
                    Some(&tag)
                        if self
                            .programs
                            .iter()
                            .any(|lp| lp.id == prog && lp.tag != tag) =>
                    {
                        "replaced (program tag changed)"
                    }
                    Some(_) => continue,
                },
            };
            gone.push((link, prog, what));
        }
        for (link, prog, what) in gone {
            self.detached.insert(link);
            let name = self
                .programs
                .iter()
                .find(|p| p.id == prog)
                .map_or("?", |p| p.name.as_str())
                .to_string();
            let mut f = serde_json::Map::new();
            f.insert("program".into(), name.clone().into());
            f.insert("program.id".into(), prog.into());
            f.insert("link.id".into(), link.into());
            let suspect = self
                .suspect
                .as_ref()
                .filter(|(_, at)| at.elapsed() < SUSPECT_FOR)
                .map(|(a, _)| a.clone());
            let by = match &suspect {
                Some(a) => {
                    a.fields(&mut f);
                    format!("; last process to ptrace mamori: {a}")
                }
                None => "; no ptrace of mamori seen, actor unknown".into(),
            };
            out.push(self.alert(
                now_ns(),
                PROGRAM_DETACHED,
                Priority::Critical,
                &format!("program {name} (id {prog}, link {link}) {what}{by}"),
                f,
            ));
        }
        out
    }

    fn alert(
        &self,
        ts: u64,
        rule: &str,
        prio: Priority,
        detail: &str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Alert {
        Alert::internal(ts, rule, prio, detail, fields, &self.hostname)
    }
}

fn proc_actor(pid: u32) -> Actor {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    Actor {
        pid,
        tid: pid,
        uid: get("Uid:")
            .and_then(|v| v.split_whitespace().next().and_then(|u| u.parse().ok()))
            .unwrap_or(u32::MAX),
        name: get("Name:").unwrap_or_else(|| "?".into()),
        cmdline: cmdline(pid),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `SIGTERM`-style name of a signal number.
pub fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(sig as usize)
        .map_or_else(|| format!("signal {sig}"), |n| n.to_string())
}

#[cfg(test)]
mod tests;
