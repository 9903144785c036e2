//! `cargo xtask soak --minutes N` (root): bounded memory and no loss, measured.
//!
//! Starts the release `mamori run` with the shipped rules, every alert also
//! sent to a webhook on a closed loopback port (an alert storm into a dead
//! sink: retries, give-ups, full queues), and `/metrics` on loopback. First
//! the idle RSS (10 s after attach, nothing but this node's own processes),
//! then for N minutes a mixed workload, each step bounded: execs of
//! `/bin/true` and of a shell running `cat` on a file some rules watch,
//! opens, TCP connects to a loopback listener, and processes moved into a
//! fresh cgroup (container-like; on cgroup v2). Every second: mamori's RSS
//! and CPU from `/proc`, and its event and drop totals from `/metrics`.
//!
//! Fails on growth (the mean RSS of the last fifth of the run more than
//! 10% + 4 MiB above that of the second fifth, after warm-up) or on any
//! event lost in the kernel. Prints the figures the README quotes.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::root;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 on Linux.
const USER_HZ: f64 = 100.0;

/// One per-second sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    cpu_ticks: u64,
    events: f64,
    drops: f64,
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`...).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The value of an unlabelled-but-for-`node` sample `name` in an exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn scrape(addr: &str) -> Result<String> {
    let mut c = TcpStream::connect(addr).context("connecting to /metrics")?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

fn sample(pid: u32, addr: &str) -> Result<Sample> {
    let text = scrape(addr)?;
    Ok(Sample {
        rss_kib: rss_kib(pid),
        cpu_ticks: cpu_ticks(pid),
        events: metric(&text, "falcosecurity_scap_n_evts_total").unwrap_or(0.0),
        drops: metric(&text, "falcosecurity_scap_n_drops_total").unwrap_or(0.0),
    })
}

/// Start mamori and wait (60 s at most) for its metrics address.
fn start(mamori: &Path, dead: &str) -> Result<(Child, String)> {
    let mut child = Command::new(mamori)
        .args(["run", "--rules"])
        .arg(root().join("rules"))
        .args(["-o", "outputs.stdout.enabled=false"])
        .arg("-o")
        .arg(format!("outputs.webhook.url=http://{dead}/"))
        .args(["-o", "outputs.webhook.queue_capacity=1000"])
        .args(["--health-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting mamori")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l.clone()).is_err() {
                // Keep draining so mamori never blocks on a full pipe.
                continue;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut addr = None;
    while Instant::now() < deadline {
        let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(a) = l.split("metrics on http://").nth(1) {
            addr = a.strip_suffix("/metrics").map(str::to_string);
        }
        if l.contains("attached") {
            if let Some(a) = addr {
                return Ok((child, a));
            }
        }
    }
    let _ = child.kill();
    bail!("mamori did not attach within 60 s")
}

/// One bounded round of the mixed workload.
fn workload_round(dir: &Path, listener: &str, cgroup: Option<&Path>, i: u64) -> Result<()> {
    for _ in 0..5 {
        Command::new("/bin/true").status()?;
    }
    // A shell reading a file: exec, fork, open in one.
    Command::new("/bin/sh")
        .args(["-c", "cat /etc/hostname > /dev/null"])
        .status()?;
    for j in 0..50 {
        let p = dir.join(format!("f{}", (i * 50 + j) % 200));
        std::fs::write(&p, b"x")?;
        let _ = std::fs::read(&p)?;
    }
    for _ in 0..5 {
        let _ = TcpStream::connect(listener);
    }
    if let Some(cg) = cgroup {
        // A process living in a container-like cgroup of its own.
        let mut child = Command::new("/bin/sleep").arg("0.05").spawn()?;
        let _ = std::fs::write(cg.join("cgroup.procs"), child.id().to_string());
        child.wait()?;
    }
    Ok(())
}

fn mean(v: &[Sample]) -> f64 {
    v.iter().map(|s| s.rss_kib as f64).sum::<f64>() / v.len().max(1) as f64
}

pub fn soak(mamori: &Path, minutes: u64) -> Result<()> {
    if minutes == 0 || minutes > 24 * 60 {
        bail!("--minutes must be 1 to 1440");
    }
    // A closed loopback port: the webhook sink fails every alert.
    let dead = TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let target = listener.local_addr()?.to_string();
    listener.set_nonblocking(true)?;
    let dir = std::env::temp_dir().join(format!("mamori-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/mamori-soak-{}", std::process::id()));
    let cgroup = std::fs::create_dir(&cgroup).ok().map(|_| cgroup);

    let (mut child, addr) = start(mamori, &dead)?;
    let pid = child.id();
    let result = (|| -> Result<()> {
        std::thread::sleep(Duration::from_secs(10));
        let idle = sample(pid, &addr)?;
        let procs = std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .count();
        println!(
            "soak: idle RSS {:.1} MiB (10 s after attach, {procs} processes on the node): {:.1} MiB anonymous (heap), {:.1} MiB file-backed (the binary and the mmapped event ring)",
            idle.rss_kib as f64 / 1024.0,
            status_kib(pid, "RssAnon:") as f64 / 1024.0,
            status_kib(pid, "RssFile:") as f64 / 1024.0
        );
        let until = Instant::now() + Duration::from_secs(minutes * 60);
        let mut samples = Vec::new();
        let mut next = Instant::now();
        let mut i = 0u64;
        while Instant::now() < until {
            workload_round(&dir, &target, cgroup.as_deref(), i)?;
            while listener.accept().is_ok() {}
            i += 1;
            if Instant::now() >= next {
                samples.push(sample(pid, &addr)?);
                next += Duration::from_secs(1);
            }
            if let Some(st) = child.try_wait()? {
                bail!("mamori exited during the soak: {st}");
            }
        }
        let last = *samples.last().context("no samples")?;
        let n = samples.len();
        let (second, tail) = (&samples[n / 5..2 * n / 5], &samples[4 * n / 5..]);
        let (early, late) = (mean(second), mean(tail));
        let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let anon = status_kib(pid, "RssAnon:");
        let cpu = (last.cpu_ticks - idle.cpu_ticks) as f64 / USER_HZ / n as f64;
        println!(
            "soak: {minutes} min, {i} workload rounds, {:.0} events ({:.0}/s), {} lost in the kernel",
            last.events - idle.events,
            (last.events - idle.events) / n as f64,
            last.drops - idle.drops
        );
        println!(
            "soak: RSS mean {:.1} MiB in the second fifth, {:.1} MiB in the last fifth, peak {:.1} MiB ({:.1} MiB anonymous at the end); CPU {:.1}% of a core",
            early / 1024.0,
            late / 1024.0,
            peak as f64 / 1024.0,
            anon as f64 / 1024.0,
            cpu * 100.0
        );
        if late > early * 1.10 + 4096.0 {
            bail!("RSS grew: {early:.0} KiB -> {late:.0} KiB");
        }
        if last.drops > idle.drops {
            bail!("{} events lost in the kernel", last.drops - idle.drops);
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(cg) = cgroup {
        let _ = std::fs::remove_dir(cg);
    }
    result
}
