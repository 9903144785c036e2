//! `mamori capture`: print live events, as JSON lines (`--json`, the format
//! `mamori replay` reads) or one human-readable line each.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use mamori_common::EventKind;

use crate::{
    bpf::{Options, Sensor},
    event::Event,
    pipeline,
    proctable::{Clock, ProcTable, Users},
    timefmt::rfc3339_nanos,
};

/// What `capture` prints and where.
#[derive(Debug, Clone, Default)]
pub struct CaptureArgs {
    pub json: bool,
    pub comm: Option<String>,
    pub pid: Option<u32>,
    pub output: Option<PathBuf>,
    pub kernel: KernelArgs,
}

/// Kernel-side settings shared by `capture` and `run`.
#[derive(Debug, Clone, Default)]
pub struct KernelArgs {
    /// Ring buffer size (default: [`Options::default`]'s).
    pub ring_bytes: Option<u32>,
    /// Kinds to capture; empty = all.
    pub kinds: Vec<EventKind>,
    /// A clock read per open/connect event (see [`Options::precise_time`]).
    pub precise_time: bool,
}

/// Parse `--events` names (`exec`, `fork`, `exit`, `open`, `connect`).
pub fn parse_kinds(names: &[String]) -> anyhow::Result<Vec<EventKind>> {
    names
        .iter()
        .map(|n| {
            EventKind::ALL
                .into_iter()
                .find(|k| k.name() == n.trim())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown event kind {n:?} (expected exec, fork, exit, open, connect)"
                    )
                })
        })
        .collect()
}

/// Keep an event? `--comm` matches `proc.name`; `--pid` matches the process
/// or any of its ancestors (so a PID selects a whole subtree).
pub fn selected(ev: &Event, comm: Option<&str>, pid: Option<u32>) -> bool {
    if let Some(c) = comm {
        if ev.proc.name != c {
            return false;
        }
    }
    if let Some(p) = pid {
        if ev.proc.pid != p && !ev.proc.ancestors.iter().any(|a| a.pid == p) {
            return false;
        }
    }
    true
}

/// Escape control characters so hostile paths cannot forge lines or drive
/// the terminal.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One human-readable line (no trailing newline).
pub fn human_line(ev: &Event) -> String {
    let p = &ev.proc;
    let mut line = format!(
        "{} {} pid={} ppid={} comm={} uid={} res={}",
        rfc3339_nanos(ev.ts),
        ev.evt_type,
        p.pid,
        p.ppid,
        escape_text(&p.name),
        p.uid,
        ev.res
    );
    if let Some(x) = &ev.exec {
        let argv = if ev.res == 0 { &p.argv } else { &x.argv };
        line.push_str(&format!(
            " file={} argv=[{}]",
            escape_text(&x.filename),
            escape_text(&argv.join(", "))
        ));
    }
    if let Some(fd) = &ev.fd {
        line.push_str(&format!(
            " fd.type={} fd.name={}",
            fd.fd_type.as_str(),
            escape_text(&fd.name)
        ));
    }
    if let Some(o) = &ev.open {
        line.push_str(&format!(" flags={:#o}", o.flags));
    }
    if let Some(l) = &ev.lifecycle {
        if let Some(c) = l.child_pid {
            line.push_str(&format!(" child={c}"));
        }
        if let Some(s) = l.exit_status {
            line.push_str(&format!(" status={s}"));
        }
    }
    if let Some(d) = &ev.drops {
        line.push_str(&format!(
            " LOST exec={} fork={} exit={} open={} connect={} invalid={}",
            d.exec, d.fork, d.exit, d.open, d.connect, d.invalid
        ));
    }
    line
}

/// Load the sensor, seed the process table, announce readiness on stderr.
pub fn start(k: &KernelArgs) -> anyhow::Result<(Sensor, ProcTable)> {
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
    let sensor = Sensor::load(&opts).context("starting the kernel sensor")?;
    let clock = Clock::now();
    let table = ProcTable::seeded(
        std::path::Path::new("/proc"),
        clock,
        Users::load(std::path::Path::new("/etc/passwd")),
    );
    eprintln!(
        "mamori: attached {} programs ({}); {} processes seeded from /proc",
        sensor.attached.len(),
        sensor.attached.join(", "),
        table.len()
    );
    Ok((sensor, table))
}

pub async fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, out);
    let (mut sensor, mut table) = start(&args.kernel)?;
    let mut last_flush = Instant::now();
    let mut enricher = crate::enrich::Enricher::for_this_node();
    let stats = pipeline::run(
        &mut sensor,
        &mut table,
        Some(&mut enricher),
        |ev| {
            if ev.drops.is_some() || selected(ev, args.comm.as_deref(), args.pid) {
                if args.json {
                    serde_json::to_writer(&mut out, ev)?;
                    out.write_all(b"\n")?;
                } else {
                    writeln!(out, "{}", human_line(ev))?;
                }
            }
            if last_flush.elapsed() > Duration::from_millis(200) {
                out.flush()?;
                last_flush = Instant::now();
            }
            Ok(())
        },
        pipeline::shutdown_signal(),
    )
    .await?;
    out.flush()?;
    eprintln!(
        "mamori: {} events, {} lost in the kernel, {} undecodable",
        stats.events,
        stats.dropped.total() - stats.dropped.invalid,
        stats.invalid
    );
    Ok(())
}
