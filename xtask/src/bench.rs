//! `cargo xtask bench`: benchmarks that print ratios measured in one run.
//!
//! `capture` (root): the time of N `openat`+`close` pairs bare, while mamori
//! captures (full pipeline, JSON to /dev/null), and while a bpftrace one-liner
//! prints each path; per-program average run time from `kernel.bpf_stats_enabled`;
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

/// ns per openat+close pair over `n` iterations.
fn open_loop(n: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        drop(std::fs::File::open(TARGET_PATH));
    }
    start.elapsed().as_nanos() as f64 / n as f64
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
            let nums: Vec<u64> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            if rest.contains("lost in the kernel") && nums.len() >= 2 {
                return Ok((nums[0], nums[1]));
            }
        }
    }
    bail!("mamori printed no summary line")
}

/// (name, run_cnt, run_time_ns) of loaded programs whose name starts with mamori.
fn prog_stats() -> Result<Vec<(String, u64, u64)>> {
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

pub fn capture(mamori: &Path, iterations: u64) -> Result<()> {
    ensure_pkg("bpftrace", "bpftrace")?;
    ensure_pkg("bpftool", "bpftool")?;
    let n = iterations;
    println!("bench capture: {n} openat+close pairs on {TARGET_PATH}, 2 cores");
    open_loop(n / 10); // warm caches
    let bare = open_loop(n);

    // mamori: full pipeline, JSON to /dev/null.
    let mut cmd = Command::new(mamori);
    cmd.args(["capture", "--json", "--output", "/dev/null"]);
    let (child, rx) = spawn_ready(cmd, "attached", true)?;
    set_bpf_stats(true)?;
    let with_mamori = open_loop(n);
    let stats = prog_stats();
    set_bpf_stats(false)?;
    let (events, lost) = stop_mamori(child, &rx)?;

    // bpftrace printing each path (its stdout drained by a thread).
    let mut cmd = Command::new("bpftrace");
    cmd.args([
        "-e",
        "tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename)); }",
    ]);
    let (mut bt, _rx) = spawn_ready(cmd, "Attaching", false)?;
    std::thread::sleep(Duration::from_millis(500));
    let with_bpftrace = open_loop(n);
    signal(&bt, "-INT");
    let _ = bt.wait();

    // Sustained drain: two threads opening as fast as they can for 3 s.
    let mut cmd = Command::new(mamori);
    cmd.args(["capture", "--json", "--output", "/dev/null"]);
    let (child, rx) = spawn_ready(cmd, "attached", true)?;
    let storm = Duration::from_secs(3);
    let start = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut k = 0u64;
                while start.elapsed() < storm {
                    for _ in 0..1000 {
                        drop(std::fs::File::open(TARGET_PATH));
                    }
                    k += 1000;
                }
                k
            })
        })
        .collect();
    let opened: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let secs = start.elapsed().as_secs_f64();
    let (storm_events, storm_lost) = stop_mamori(child, &rx)?;

    println!();
    println!("| configuration | ns / openat+close | ratio to bare |");
    println!("| --- | ---: | ---: |");
    println!("| bare | {bare:.0} | 1.00 |");
    println!(
        "| mamori capturing (exec+connect+open, full paths, JSON) | {with_mamori:.0} | {:.2} |",
        with_mamori / bare
    );
    println!(
        "| bpftrace printing each path | {with_bpftrace:.0} | {:.2} |",
        with_bpftrace / bare
    );
    println!();
    println!("mamori during the timed loop: {events} events, {lost} lost");
    match stats {
        Ok(s) if !s.is_empty() => {
            println!();
            println!("| program | runs | avg ns / run |");
            println!("| --- | ---: | ---: |");
            for (name, cnt, t) in s {
                let avg = if cnt > 0 { t as f64 / cnt as f64 } else { 0.0 };
                println!("| {name} | {cnt} | {avg:.0} |");
            }
        }
        Ok(_) => println!("(bpftool listed no mamori programs)"),
        Err(e) => println!("(bpftool failed: {e})"),
    }
    println!();
    println!(
        "open storm (2 threads, {secs:.1} s): {opened} opens generated, mamori drained {storm_events} events = {:.0} events/s, {storm_lost} lost",
        storm_events as f64 / secs
    );
    // Userspace drain ceiling, without the kernel in the way.
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "sensor",
                "--example",
                "bench_drain",
            ]),
    )?;
    Ok(())
}

pub fn rules(iterations: u64) -> Result<()> {
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "sensor",
                "--example",
                "bench_rules",
                "--",
            ])
            .arg(iterations.to_string()),
    )
}
