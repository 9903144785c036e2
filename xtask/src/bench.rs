//! `cargo xtask bench`: benchmarks that print ratios measured in one run.
//!
//! `capture` (root): the time of N `openat`+`close` pairs (an optimised loop
//! process, `sensor/examples/open_loop.rs`) bare, while mamori runs Falco's
//! stable rules, while it captures every event as JSON, with its programs
//! attached but open events off (the floor that syscall tracepoints alone
//! cost), and while a bpftrace one-liner prints each path. Each
//! configuration is interleaved with bare runs (bare, with, bare, with, ...,
//! bare: on a shared VM the bare time drifts by several percent within a
//! minute) and reported as the median of its per-round ratios, every round
//! printed. Then per-program average run time from
//! `kernel.bpf_stats_enabled`; the event rate drained under storms of opens
//! (`sensor/examples/open_storm.rs`): unpaced, and paced at rising rates,
//! each with its drop count; and the userspace drain ceiling (decode +
//! process table + JSON, no kernel).
//! `rules`: the rule-engine benchmark (`rules-engine/examples/bench_rules/`,
//! the kernel-free rules crate alone), then rule loading in rules/s for 1k to
//! 100k generated rules (`rules-engine/examples/bench_load.rs`).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    cargo,
    cmd::{apt_install, find_in_path, output, run},
    root, target_dir,
};

const TARGET_PATH: &str = "/etc/hostname";

fn ensure_pkg(bin: &str, pkg: &str) -> Result<()> {
    if find_in_path(bin).is_some() {
        return Ok(());
    }
    eprintln!("bench: installing {pkg}");
    apt_install(pkg)
}

/// The optimised loop process (`sensor/examples/open_loop.rs`).
struct Looper(std::path::PathBuf);

impl Looper {
    fn build() -> Result<Looper> {
        Ok(Looper(build_example("open_loop")?))
    }

    /// ns per openat+close pair over `n` iterations, in its own process.
    fn once(&self, n: u64) -> Result<f64> {
        let text = output(
            Command::new(&self.0)
                .args([&n.to_string(), TARGET_PATH])
                .stderr(Stdio::inherit()),
        )?;
        text.trim()
            .parse()
            .with_context(|| format!("open_loop printed {text:?}"))
    }
}

/// `cargo VERB --quiet --release -p PACKAGE --example NAME`, in the workspace.
fn cargo_example(verb: &str, package: &str, name: &str) -> Command {
    let mut cmd = cargo();
    cmd.args([
        verb,
        "--quiet",
        "--release",
        "-p",
        package,
        "--example",
        name,
    ]);
    cmd
}

/// Build a release example of the sensor crate; its path.
fn build_example(name: &str) -> Result<std::path::PathBuf> {
    run(&mut cargo_example("build", "sensor", name))?;
    Ok(target_dir().join("release/examples").join(name))
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

/// A tracer running while the loop is timed.
enum Tracer {
    Mamori(Child, mpsc::Receiver<String>),
    Bpftrace(Child),
}

impl Tracer {
    fn mamori(mamori: &Path, args: &[&str]) -> Result<Tracer> {
        let mut cmd = Command::new(mamori);
        cmd.args(args);
        let (child, rx) = spawn_ready(cmd, "attached", true)?;
        Ok(Tracer::Mamori(child, rx))
    }

    fn bpftrace(program: &str) -> Result<Tracer> {
        let mut cmd = Command::new("bpftrace");
        cmd.args(["-e", program]);
        let (child, _rx) = spawn_ready(cmd, "Attaching", false)?;
        // "Attaching" comes just before the probes are in place.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Tracer::Bpftrace(child))
    }

    /// Stop it: (events, lost) from mamori's summary; zeros for bpftrace.
    fn stop(self) -> Result<(u64, u64)> {
        match self {
            Tracer::Mamori(child, rx) => stop_mamori(child, &rx),
            Tracer::Bpftrace(mut child) => {
                signal(&child, "-INT");
                let _ = child.wait();
                Ok((0, 0))
            }
        }
    }
}

/// One configuration timed against bare, interleaved so that the drift of a
/// shared VM hits both alike: (an untimed warm-up with the tracer,) bare,
/// with, bare, with, ..., bare. Each run with the tracer is compared with the
/// mean of the bare runs just before and just after it; the median of those
/// ratios is the result.
struct Paired {
    bare: Vec<f64>,
    with: Vec<f64>,
    ratios: Vec<f64>,
    events: u64,
    lost: u64,
}

/// The middle value (the upper one of an even count); `v` is not empty.
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Round `i`'s ratio: its time with the tracer over the mean of the bare
/// runs just before (`bare[i]`) and just after (`bare[i + 1]`) it.
fn round_ratio(bare: &[f64], with: f64, i: usize) -> f64 {
    with / ((bare[i] + bare[i + 1]) / 2.0)
}

impl Paired {
    fn measure(
        looper: &Looper,
        n: u64,
        rounds: usize,
        start: impl Fn() -> Result<Tracer>,
    ) -> Result<Paired> {
        // One untimed warm-up round: caches, page tables and the allocator
        // settle for this configuration before anything is compared.
        let tracer = start()?;
        let warm = looper.once(n / 10);
        tracer.stop()?;
        warm?;
        let mut p = Paired {
            bare: vec![looper.once(n)?],
            with: Vec::new(),
            ratios: Vec::new(),
            events: 0,
            lost: 0,
        };
        for i in 0..rounds {
            let tracer = start()?;
            let timed = looper.once(n);
            let (events, lost) = tracer.stop()?;
            p.with.push(timed?);
            p.events += events;
            p.lost += lost;
            p.bare.push(looper.once(n)?);
            p.ratios.push(round_ratio(&p.bare, p.with[i], i));
        }
        Ok(p)
    }

    fn row(&self, name: &str, counts: bool) -> String {
        let (lo, hi) = self
            .ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let (events, lost) = if counts {
            (self.events.to_string(), self.lost.to_string())
        } else {
            (String::new(), String::new())
        };
        format!(
            "| {name} | **{:.2}** | {lo:.2}-{hi:.2} ({}) | {:.0} ({}) | {:.0} ({}) | {events} | {lost} |",
            median(&self.ratios),
            self.ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" "),
            median(&self.with),
            fmt_runs(&self.with),
            median(&self.bare),
            fmt_runs(&self.bare),
        )
    }
}

/// Per-program averages from a loop timed with statistics on (kept apart
/// from the timed runs: with statistics on, the kernel reads the clock
/// twice around every program run, which users do not pay).
fn program_stats(looper: &Looper, mamori: &Path, args: &[&str], n: u64) -> Result<Vec<ProgStat>> {
    let tracer = Tracer::mamori(mamori, args)?;
    set_bpf_stats(true)?;
    let looped = looper.once(n);
    let stats = prog_stats();
    set_bpf_stats(false)?;
    tracer.stop()?;
    looped?;
    stats
}

/// One storm: `threads` threads of `exe` (open_storm) opening `path` for
/// `secs` at `rate` opens/s in total (0: unpaced) while mamori runs `args`.
struct Storm {
    threads: u32,
    rate: u64,
    path: &'static str,
    opens: u64,
    events: u64,
    lost: u64,
    secs: f64,
}

fn storm(
    exe: &Path,
    mamori: &Path,
    args: &[&str],
    (threads, rate, path): (u32, u64, &'static str),
    secs: f64,
) -> Result<Storm> {
    let tracer = Tracer::mamori(mamori, args)?;
    let start = Instant::now();
    let out = output(
        Command::new(exe)
            .args([
                &threads.to_string(),
                &rate.to_string(),
                &secs.to_string(),
                path,
            ])
            .stderr(Stdio::inherit()),
    );
    let elapsed = start.elapsed().as_secs_f64();
    let (events, lost) = tracer.stop()?;
    let text = out?;
    let opens = text
        .trim()
        .parse()
        .with_context(|| format!("open_storm printed {text:?}"))?;
    Ok(Storm {
        threads,
        rate,
        path,
        opens,
        events,
        lost,
        secs: elapsed.min(secs + 0.05),
    })
}

/// Interleaved rounds for the mamori rows.
const ROUNDS: usize = 9;
/// Rounds for the floor row.
const FLOOR_ROUNDS: usize = 5;
/// Rounds for bpftrace (4-5x slower per run).
const REFERENCE_ROUNDS: usize = 3;
/// A path that does not exist: each open is one cheap, failing syscall.
const MISSING_PATH: &str = "/nonexistent-mamori-bench/file";

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
    let storm_exe = build_example("open_storm")?;
    println!(
        "bench capture: {n} openat+close pairs on {TARGET_PATH} per run; each configuration interleaved with bare runs; 2 cores"
    );
    // Warm caches first.
    looper.once(n / 10)?;

    // The main job: live events through Falco's stable rules.
    let run_args = ["run", "--rules", corpus.as_str()];
    let live = Paired::measure(&looper, n, ROUNDS, || Tracer::mamori(mamori, &run_args))?;
    // Capture with every event serialised as JSON (to /dev/null).
    let cap_args = ["capture", "--json", "--output", "/dev/null"];
    let cap = Paired::measure(&looper, n, ROUNDS, || Tracer::mamori(mamori, &cap_args))?;
    // The floor: the same programs attached, open events switched off, so
    // each syscall exit only runs the program up to its dispatch.
    let floor_args = [
        "capture",
        "--events",
        "exec,fork,exit,connect",
        "--output",
        "/dev/null",
    ];
    let floor = Paired::measure(&looper, n, FLOOR_ROUNDS, || {
        Tracer::mamori(mamori, &floor_args)
    })?;
    // bpftrace printing each path (its stdout drained by a thread).
    let bt = Paired::measure(&looper, n, REFERENCE_ROUNDS, || {
        Tracer::bpftrace(
            "tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename)); }",
        )
    })?;
    let stats = program_stats(&looper, mamori, &run_args, n / 4);

    // Drain: an unpaced open+close storm, then failing opens paced at rising
    // rates (2 threads each).
    let mut storms = vec![storm(
        &storm_exe,
        mamori,
        &run_args,
        (2, 0, TARGET_PATH),
        3.0,
    )?];
    for rate in [250_000, 500_000, 750_000, 1_000_000, 1_500_000] {
        storms.push(storm(
            &storm_exe,
            mamori,
            &run_args,
            (2, rate, MISSING_PATH),
            3.0,
        )?);
    }

    println!();
    print_overhead(&live, &cap, &floor, &bt);
    println!();
    print_program_stats(stats);
    println!();
    print_storms(&storms);
    // Userspace drain ceiling, without the kernel in the way.
    run(cargo_example("run", "sensor", "bench_drain").arg("--"))
}

/// The overhead table: each configuration's ratio to bare.
fn print_overhead(live: &Paired, cap: &Paired, floor: &Paired, bt: &Paired) {
    println!(
        "| configuration | ratio to bare (median) | ratios, lowest-highest (each round) | ns / openat+close with (runs) | bare (runs) | events | lost |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    println!(
        "{}",
        live.row(
            "mamori run (exec+connect+open, full paths, Falco stable rules)",
            true
        )
    );
    println!(
        "{}",
        cap.row("mamori capture --json (every event serialised)", true)
    );
    println!(
        "{}",
        floor.row(
            "floor: mamori's programs attached, open events off (syscall tracepoint cost)",
            true
        )
    );
    println!("{}", bt.row("bpftrace printing each path", false));
}

/// Per-program average run time, or why there is none.
fn print_program_stats(stats: Result<Vec<ProgStat>>) {
    match stats {
        Ok(s) if !s.is_empty() => {
            println!("| program (during mamori run) | runs | avg ns / run |");
            println!("| --- | ---: | ---: |");
            for (name, cnt, t) in s {
                let avg = if cnt > 0 { t as f64 / cnt as f64 } else { 0.0 };
                println!("| {name} | {cnt} | {avg:.0} |");
            }
        }
        Ok(_) => println!("(bpftool listed no mamori programs)"),
        Err(e) => println!("(program statistics unavailable: {e})"),
    }
}

/// The storm table and the highest drain rate seen with nothing lost.
fn print_storms(storms: &[Storm]) {
    println!("| storm under mamori run (2 threads) | target opens/s | opens/s made | events drained / s | lost |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut sustained = 0.0f64;
    for s in storms {
        let made = s.opens as f64 / s.secs;
        let drained = s.events as f64 / s.secs;
        let what = if s.rate == 0 {
            format!("open+close {} unpaced, {} threads", s.path, s.threads)
        } else {
            format!("failing open {}, {} threads", s.path, s.threads)
        };
        let target = if s.rate == 0 {
            "-".to_string()
        } else {
            s.rate.to_string()
        };
        println!(
            "| {what} | {target} | {made:.0} | {drained:.0} | {} |",
            s.lost
        );
        if s.lost == 0 {
            sustained = sustained.max(drained);
        }
    }
    println!("sustained drain with 0 lost: {sustained:.0} events/s");
}

pub fn rules(iterations: u64) -> Result<()> {
    run(cargo_example("run", "mamori-rules", "bench_rules")
        .arg("--")
        .arg(iterations.to_string()))?;
    // Then loading: rules/s for generated files of 1k..100k rules.
    run(&mut cargo_example("run", "mamori-rules", "bench_load"))
}

/// Alert delivery latency per sink (`sensor/examples/bench_outputs.rs`).
pub fn outputs() -> Result<()> {
    // The example loads no programs: build it without the eBPF object.
    run(cargo_example("run", "sensor", "bench_outputs").env("AYA_BUILD_SKIP", "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_is_compared_with_the_bare_runs_around_it() {
        // bare drifts from 100 to 200; each traced run costs 1.2x the bare
        // time of its moment.
        let bare = [100.0, 150.0, 200.0];
        assert!((round_ratio(&bare, 150.0, 0) - 1.2).abs() < 1e-9);
        assert!((round_ratio(&bare, 210.0, 1) - 1.2).abs() < 1e-9);
    }

    #[test]
    fn the_median_ignores_one_noisy_round() {
        assert_eq!(median(&[1.21, 1.40, 1.22, 1.20, 1.23]), 1.22);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[1.0, 2.0]), 2.0);
    }
}
