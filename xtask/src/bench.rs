//! `cargo xtask bench`: benchmarks that print ratios measured in one run.
//!
//! `capture` (root): the time of N `openat`+`close` pairs bare, while mamori
//! captures (full pipeline, JSON to /dev/null), and while a bpftrace one-liner
//! prints each path (each the median of three runs of an optimised loop
//! process, `sensor/examples/open_loop.rs`); per-program average run time from `kernel.bpf_stats_enabled`;
//! the event rate drained under a 2-thread open storm, with its drop count; and
//! the userspace drain ceiling (decode + process table + JSON, no kernel).
//! `rules`: the rule-engine benchmark (`sensor/examples/bench_rules.rs`).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{root, run};

const TARGET_PATH: &str = "/etc/hostname";

fn ensure_pkg(bin: &str, pkg: &str) -> Result<()> {
    if Command::new("which")
        .arg(bin)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        return Ok(());
    }
    eprintln!("bench: installing {pkg}");
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Timed runs per configuration; the median is reported.
const ROUNDS: usize = 3;

/// The optimised loop process (`sensor/examples/open_loop.rs`).
struct Looper(std::path::PathBuf);

impl Looper {
    fn build() -> Result<Looper> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).current_dir(root()).args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "sensor",
            "--example",
            "open_loop",
        ]))?;
        Ok(Looper(root().join("target/release/examples/open_loop")))
    }

    /// ns per openat+close pair over `n` iterations, in its own process.
    fn once(&self, n: u64) -> Result<f64> {
        let out = Command::new(&self.0)
            .args([&n.to_string(), TARGET_PATH])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", self.0.display()))?;
        if !out.status.success() {
            bail!("{} failed: {}", self.0.display(), out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("open_loop printed {text:?}"))
    }

    /// [`ROUNDS`] timed runs: (median, all).
    fn rounds(&self, n: u64) -> Result<(f64, Vec<f64>)> {
        let mut all = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            all.push(self.once(n)?);
        }
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        Ok((sorted[ROUNDS / 2], all))
    }
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Spawn a tracer and wait (bounded) until `ready` appears on the chosen stream.
fn spawn_ready(
    mut cmd: Command,
    ready: &str,
    on_stderr: bool,
) -> Result<(Child, mpsc::Receiver<String>)> {
    if on_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stream: Box<dyn std::io::Read + Send> = if on_stderr {
        Box::new(child.stderr.take().expect("piped"))
    } else {
        Box::new(child.stdout.take().expect("piped"))
    };
    let (tx, rx) = mpsc::channel();
    let keep = on_stderr; // mamori's stderr carries its summary; bpftrace's stdout is the flood
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if keep || line.contains("Attaching") {
                let _ = tx.send(line);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(ready) => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                bail!("{cmd:?} did not print {ready:?} within 60 s");
            }
        }
    }
    Ok((child, rx))
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// Stop mamori with SIGINT and return its summary: (events, lost).
fn stop_mamori(mut child: Child, rx: &mpsc::Receiver<String>) -> Result<(u64, u64)> {
    signal(&child, "-INT");
    let status = child.wait()?;
    if !status.success() {
        bail!("mamori exited with {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        // "mamori: N events, M lost in the kernel, K undecodable"
        if let Some(rest) = line.strip_prefix("mamori: ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let before = |word: &str| {
                words
                    .windows(2)
                    .find(|w| w[1].trim_end_matches(',') == word)
                    .and_then(|w| w[0].parse::<u64>().ok())
            };
            if let (Some(events), Some(lost)) = (before("events"), before("lost")) {
                return Ok((events, lost));
            }
        }
    }
    bail!("mamori printed no summary line")
}

/// (name, run_cnt, run_time_ns) of one loaded program.
type ProgStat = (String, u64, u64);

/// Stats of the loaded programs whose name starts with mamori.
fn prog_stats() -> Result<Vec<ProgStat>> {
    let out = Command::new("bpftool").args(["prog", "show"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut res = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        // "123: raw_tracepoint  name mamori_sys_exit  tag ... run_time_ns 1234 run_cnt 56"
        if let Some(pos) = line.find(" name ") {
            cur = line[pos + 6..]
                .split_whitespace()
                .next()
                .map(str::to_string);
        }
        let field = |key: &str| {
            line.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(name), Some(t), Some(c)) = (&cur, field("run_time_ns"), field("run_cnt")) {
            if name.starts_with("mamori") {
                res.push((name.clone(), c, t));
            }
        }
    }
    Ok(res)
}

fn set_bpf_stats(on: bool) -> Result<()> {
    std::fs::write(
        "/proc/sys/kernel/bpf_stats_enabled",
        if on { "1" } else { "0" },
    )
    .context("writing kernel.bpf_stats_enabled")
}

/// What one configuration measured.
struct Measured {
    /// Median ns per pair, and every run.
    ns: f64,
    runs: Vec<f64>,
    events: u64,
    lost: u64,
    stats: Result<Vec<ProgStat>>,
}

/// [`ROUNDS`] timed loops with mamori running `args`.
fn with_mamori(looper: &Looper, mamori: &Path, args: &[&str], n: u64) -> Result<Measured> {
    let mut cmd = Command::new(mamori);
    cmd.args(args);
    let (child, rx) = spawn_ready(cmd, "attached", true)?;
    // Timed with program statistics off: with them on, the kernel reads the
    // clock twice around every program run, which users do not pay.
    let (ns, runs) = looper.rounds(n)?;
    // Then a shorter loop with statistics on, for the per-program averages.
    set_bpf_stats(true)?;
    looper.once(n / 4)?;
    let stats = prog_stats();
    set_bpf_stats(false)?;
    let (events, lost) = stop_mamori(child, &rx)?;
    Ok(Measured {
        ns,
        runs,
        events,
        lost,
        stats,
    })
}

/// Open as fast as `threads` threads can for `secs` while mamori runs `args`:
/// (opens generated, events drained, lost, elapsed s).
fn storm(mamori: &Path, args: &[&str], threads: usize, secs: u64) -> Result<(u64, u64, u64, f64)> {
    let mut cmd = Command::new(mamori);
    cmd.args(args);
    let (child, rx) = spawn_ready(cmd, "attached", true)?;
    let dur = Duration::from_secs(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut k = 0u64;
                while start.elapsed() < dur {
                    for _ in 0..1000 {
                        drop(std::fs::File::open(TARGET_PATH));
                    }
                    k += 1000;
                }
                k
            })
        })
        .collect();
    let opened: u64 = handles.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    let (events, lost) = stop_mamori(child, &rx)?;
    Ok((opened, events, lost, elapsed))
}

pub fn capture(mamori: &Path, iterations: u64) -> Result<()> {
    ensure_pkg("bpftrace", "bpftrace")?;
    ensure_pkg("bpftool", "bpftool")?;
    let corpus = root().join("../shared/falco-rules/falco_rules.yaml");
    if !corpus.exists() {
        bail!("Falco's rules corpus is missing at {}", corpus.display());
    }
    let corpus = corpus.to_string_lossy().into_owned();
    let n = iterations;
    let looper = Looper::build()?;
    println!(
        "bench capture: {n} openat+close pairs on {TARGET_PATH} per run, median of {ROUNDS} runs, 2 cores"
    );
    // Warm caches first.
    looper.once(n / 10)?;
    // The bare loop drifts by several percent over a run on a shared VM, so
    // each configuration is compared with the mean of the bare medians timed
    // just before and just after it.
    let (bare1, bare1_runs) = looper.rounds(n)?;

    // The main job: live events through Falco's stable rules.
    let run_args = ["run", "--rules", corpus.as_str()];
    let run = with_mamori(&looper, mamori, &run_args, n)?;
    let (bare2, bare2_runs) = looper.rounds(n)?;
    // Capture with every event serialised as JSON (to /dev/null).
    let cap_args = ["capture", "--json", "--output", "/dev/null"];
    let cap = with_mamori(&looper, mamori, &cap_args, n)?;
    let (bare3, bare3_runs) = looper.rounds(n)?;
    let bare = (bare1 + bare2 + bare3) / 3.0;
    let (bare_run, bare_cap) = ((bare1 + bare2) / 2.0, (bare2 + bare3) / 2.0);

    // bpftrace printing each path (its stdout drained by a thread).
    let mut cmd = Command::new("bpftrace");
    cmd.args([
        "-e",
        "tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename)); }",
    ]);
    let (mut bt, _rx) = spawn_ready(cmd, "Attaching", false)?;
    std::thread::sleep(Duration::from_millis(500));
    let (with_bpftrace, bt_runs) = looper.rounds(n)?;
    signal(&bt, "-INT");
    let _ = bt.wait();

    let (opened1, drained1, lost1, secs1) = storm(mamori, &run_args, 1, 3)?;
    let (opened2, drained2, lost2, secs2) = storm(mamori, &run_args, 2, 3)?;

    println!();
    println!(
        "| configuration | ns / openat+close (median; runs) | ratio to bare | events | lost |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "| bare (before, between, after) | {bare1:.0}, {bare2:.0}, {bare3:.0}; {}, {}, {} | 1.00 | | |",
        fmt_runs(&bare1_runs),
        fmt_runs(&bare2_runs),
        fmt_runs(&bare3_runs)
    );
    println!(
        "| mamori run (exec+connect+open, full paths, Falco stable rules) | {:.0}; {} | {:.2} | {} | {} |",
        run.ns,
        fmt_runs(&run.runs),
        run.ns / bare_run,
        run.events,
        run.lost
    );
    println!(
        "| mamori capture --json (every event serialised) | {:.0}; {} | {:.2} | {} | {} |",
        cap.ns,
        fmt_runs(&cap.runs),
        cap.ns / bare_cap,
        cap.events,
        cap.lost
    );
    println!(
        "| bpftrace printing each path | {with_bpftrace:.0}; {} | {:.2} | | |",
        fmt_runs(&bt_runs),
        with_bpftrace / bare
    );
    println!();
    match run.stats {
        Ok(s) if !s.is_empty() => {
            println!("| program (during mamori run) | runs | avg ns / run |");
            println!("| --- | ---: | ---: |");
            for (name, cnt, t) in s {
                let avg = if cnt > 0 { t as f64 / cnt as f64 } else { 0.0 };
                println!("| {name} | {cnt} | {avg:.0} |");
            }
        }
        Ok(_) => println!("(bpftool listed no mamori programs)"),
        Err(e) => println!("(bpftool failed: {e})"),
    }
    for (threads, opened, drained, lost, secs) in [
        (1, opened1, drained1, lost1, secs1),
        (2, opened2, drained2, lost2, secs2),
    ] {
        println!(
            "open storm under mamori run ({threads} thread(s), {secs:.1} s): {opened} opens, {drained} events drained = {:.0} events/s, {lost} lost",
            drained as f64 / secs
        );
    }
    // Userspace drain ceiling, without the kernel in the way.
    example("bench_drain", &[], false)
}

pub fn rules(iterations: u64) -> Result<()> {
    example("bench_rules", &[&iterations.to_string()], false)
}

/// Alert delivery latency per sink (`sensor/examples/bench_outputs.rs`).
pub fn outputs() -> Result<()> {
    example("bench_outputs", &[], true)
}

/// `cargo run --release -p sensor --example NAME -- ARGS`; `no_ebpf` builds
/// without the eBPF object (the example does not load programs).
fn example(name: &str, args: &[&str], no_ebpf: bool) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "sensor",
            "--example",
            name,
            "--",
        ])
        .args(args);
    if no_ebpf {
        cmd.env("AYA_BUILD_SKIP", "1");
    }
    run(&mut cmd)
}
