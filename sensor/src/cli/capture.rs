//! `mamori capture`: print live events, as JSON lines (`--json`, the format
//! `mamori replay` reads) or one human-readable line each.

use std::{
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    enrich::runtime::EnginesConfig,
    pipeline::{self, KernelArgs, LastStage, Pipeline},
};
use mamori_rules::{event::Event, timefmt::rfc3339_nanos};

/// What `capture` prints and where.
#[derive(Debug, Clone, Default)]
pub struct CaptureArgs {
    pub json: bool,
    pub comm: Option<String>,
    pub pid: Option<u32>,
    pub output: Option<PathBuf>,
    pub kernel: KernelArgs,
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

/// `capture`'s last stage: selected events, printed.
struct Printer<'a> {
    args: &'a CaptureArgs,
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    last_flush: Instant,
}

impl LastStage for Printer<'_> {
    fn event(&mut self, ev: &Event) -> anyhow::Result<()> {
        let a = self.args;
        if ev.drops.is_some() || selected(ev, a.comm.as_deref(), a.pid) {
            if a.json {
                serde_json::to_writer(&mut self.out, ev)?;
                self.out.write_all(b"\n")?;
            } else {
                writeln!(self.out, "{}", human_line(ev))?;
            }
        }
        if self.last_flush.elapsed() > Duration::from_millis(200) {
            self.out.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }
}

pub async fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut printer = Printer {
        args: &args,
        out: std::io::BufWriter::with_capacity(256 * 1024, out),
        last_flush: Instant::now(),
    };
    let stats = Pipeline::start(&args.kernel, &EnginesConfig::default())?
        .run(&mut printer, pipeline::shutdown_signal())
        .await?;
    printer.out.flush()?;
    eprintln!("mamori: {}", stats.summary(None));
    Ok(())
}
