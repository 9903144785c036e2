//! Build chores for mamori. `cargo xtask --help` lists them.
//!
//! The eBPF object needs a nightly toolchain with `rust-src` and a
//! `bpf-linker` built against nightly's LLVM; `prereqs` installs both when
//! missing so that a fresh machine needs nothing but rustup.

mod bench;
mod chart;
mod cmd;
mod prereqs;
mod soak;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::cmd::{is_root, run};

#[derive(Parser)]
#[command(about = "mamori build chores")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install prerequisites if missing and build the eBPF object.
    BuildEbpf,
    /// Run everything CI runs: lint, unit tests, root end-to-end tests, VM lane.
    Test {
        /// Skip the qemu lane (other kernels).
        #[arg(long)]
        no_vm: bool,
    },
    /// Build (release) and run `mamori run` with the default configuration.
    Run {
        /// Extra arguments for `mamori run`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Benchmarks: `capture` (kernel side, needs root), `rules` or `outputs`.
    Bench {
        #[arg(value_parser = ["capture", "rules", "outputs"])]
        what: String,
        /// Iterations (capture: openat+close pairs).
        #[arg(long)]
        iterations: Option<u64>,
    },
    /// Run the fuzz targets (condition parser, rules loader, config loader;
    /// libFuzzer) for a bounded time each.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// The Helm chart checked by real helm (lint --strict, template) and the
    /// Kubernetes 1.25-1.33 schemas (tools from PyPI, cached).
    Chart,
    /// Bounded memory and no loss (root): `mamori run` under a mixed
    /// workload and an alert storm into a dead webhook, RSS/CPU/drops
    /// sampled every second; fails on RSS growth or kernel loss.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Boot other kernels (Debian 6.1 and 5.10) under qemu and check the sensor there.
    VmTest {
        /// Kernels to boot (default: 6.1 and 5.10; also 6.12, or a vmlinuz/.deb path).
        #[arg(long)]
        kernel: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::BuildEbpf => {
            let obj = build_ebpf()?;
            println!("eBPF object: {}", obj.display());
            Ok(())
        }
        Cmd::Test { no_vm } => test(no_vm),
        Cmd::Run { args } => {
            let bin = build_sensor_release()?;
            let mut cmd = Command::new(bin);
            cmd.arg("run").args(args);
            run(&mut cmd)
        }
        Cmd::Bench { what, iterations } => match what.as_str() {
            "capture" => bench::capture(&build_sensor_release()?, iterations.unwrap_or(1_000_000)),
            "outputs" => bench::outputs(),
            _ => bench::rules(iterations.unwrap_or(1_000_000)),
        },
        Cmd::Fuzz { seconds } => fuzz(seconds),
        Cmd::Chart => chart::check(),
        Cmd::Soak { minutes } => soak::soak(&build_sensor_release()?, minutes),
        Cmd::VmTest { kernel } => vm::vm_test(&build_sensor_release()?, &kernel),
    }
}

/// Workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo puts what it builds: `$CARGO_TARGET_DIR` (relative to the
/// workspace, where [`cargo`] runs) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// The cargo running xtask, in the workspace root.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// `rustup run nightly cargo VERB --package mamori-ebpf --release --target
/// bpfel-unknown-none -Z build-std=core`, in the workspace root, without the
/// stable rustc that `cargo xtask` put in the environment.
fn nightly_ebpf_cargo(verb: &str) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root())
        .args(["run", "nightly", "cargo", verb, "--package", "mamori-ebpf"])
        .args(["--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    c
}

/// Build the eBPF object the same way `sensor/build.rs` does (via aya-build),
/// but into `target/bpfel-unknown-none/release/mamori`.
pub fn build_ebpf() -> Result<PathBuf> {
    prereqs::ensure()?;
    run(nightly_ebpf_cargo("build").arg("--bins").env(
        "CARGO_ENCODED_RUSTFLAGS",
        "--cfg=bpf_target_arch=\"x86_64\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
    ))?;
    Ok(target_dir().join("bpfel-unknown-none/release/mamori"))
}

/// `cargo build --release -p sensor` (which embeds the eBPF object).
pub fn build_sensor_release() -> Result<PathBuf> {
    prereqs::ensure()?;
    run(cargo().args(["build", "--release", "-p", "sensor"]))?;
    Ok(target_dir().join("release/mamori"))
}

/// The fuzz targets in `fuzz/`, built on stable with LLVM's sanitizer-coverage
/// pass (the instrumentation cargo-fuzz uses) and run by libFuzzer for
/// `seconds` each from their seed corpus. A crash fails with its input saved.
fn fuzz(seconds: u64) -> Result<()> {
    // The rule engine's targets (the rules crate alone), then the config
    // loader's (the sensor crate, without its eBPF object).
    fuzz_crate(
        &root().join("fuzz"),
        &["condition_parser", "rules_file"],
        seconds,
    )?;
    fuzz_crate(&root().join("fuzz/config"), &["config_file"], seconds)
}

/// Build the fuzz crate in `dir` with coverage instrumentation and run each
/// of its `targets` for `seconds` from its seeds.
fn fuzz_crate(dir: &Path, targets: &[&str], seconds: u64) -> Result<()> {
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg",
        "fuzzing",
    ]
    .join(" ");
    run(cargo()
        .current_dir(dir)
        .args(["build", "--release", "--target", "x86_64-unknown-linux-gnu"])
        .args(["--target-dir", "target/cov"])
        .env("RUSTFLAGS", flags)
        .env("AYA_BUILD_SKIP", "1"))?;
    for target in targets {
        let corpus = dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        for seed in std::fs::read_dir(dir.join("seeds").join(target))? {
            let seed = seed?.path();
            std::fs::copy(&seed, corpus.join(seed.file_name().unwrap_or_default()))?;
        }
        let bin = dir
            .join("target/cov/x86_64-unknown-linux-gnu/release")
            .join(target);
        // libFuzzer narrates every new input; keep that in a log and show
        // its tail (the crash report) only on failure.
        let log = dir.join("target").join(format!("{target}.log"));
        let out = std::fs::File::create(&log)?;
        let status = Command::new(&bin)
            .current_dir(dir.join("target"))
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .arg(&corpus)
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); log {}:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        let stats: Vec<&str> = tail
            .iter()
            .copied()
            .filter(|l| l.starts_with("stat::"))
            .collect();
        eprintln!("fuzz {target}: {seconds} s, no crash; {}", stats.join(", "));
    }
    Ok(())
}

fn test(no_vm: bool) -> Result<()> {
    prereqs::ensure()?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    build_ebpf()?;
    // The kernel crate, linted for its own target.
    run(nightly_ebpf_cargo("clippy").args(["--", "-D", "warnings"]))?;
    // Unit and pure-userspace integration tests (rules, decoder, replay; the
    // chart rendered by real helm).
    let tools = chart::ensure_tools()?;
    run(cargo().args(["test"]).env("MAMORI_HELM", &tools.helm))?;
    chart::check()?;
    if is_root() {
        // Real-kernel end-to-end tests (every `[[test]]` behind the `e2e`
        // feature): they share kernel state, run them one at a time.
        run(cargo()
            .args(["test", "-p", "sensor", "--features", "e2e"])
            .args(["--", "--test-threads=1"]))?;
    } else {
        bail!("the end-to-end tests load eBPF programs and must run as root");
    }
    // A short soak: flat RSS and no loss under a mixed workload.
    soak::soak(&build_sensor_release()?, 2)?;
    fuzz(30)?;
    if !no_vm {
        vm::vm_test(&build_sensor_release()?, &[])?;
    }
    eprintln!("xtask test: all passed");
    Ok(())
}
