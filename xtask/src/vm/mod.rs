//! `cargo xtask vm-test`: boot other kernels under qemu and check the sensor there.
//!
//! For every kernel asked for, this
//! 1. fetches a Debian `linux-image-*-cloud-amd64-unsigned` package through apt
//!    (a private apt state under `target/vm/apt/<suite>`, so the host's sources
//!    are never changed) and keeps its `vmlinuz` under `target/vm/kernels/`;
//! 2. packs an initramfs (newc cpio, written here) with a static busybox, the
//!    sensor binary plus the shared libraries `ldd` names, and `/init`
//!    (`tests/vm/init.sh`);
//! 3. boots it with `qemu-system-x86_64` (TCG, no network device, hard
//!    timeout) and reads the serial console for the `MAMORI-VM-*` markers the
//!    init script prints: `MAMORI-VM-RESULT: PASS` or `... FAIL <why>`.
//!
//! The lane's steps, one module each: [`host`] (qemu and a static busybox on
//! the host), [`kernels`] (which Debian kernel a name means, fetched through
//! [`apt`]), [`initramfs`] (the cpio image) and [`boot`] (qemu and the console
//! markers). This file holds the options and runs the steps in order.
//!
//! See `tests/vm/README.md`.

mod apt;
mod boot;
mod host;
mod initramfs;
mod kernels;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use boot::{boot, Outcome};
use host::{ensure_busybox, ensure_qemu};
use initramfs::build_initramfs;
use kernels::{resolve_kernel, Target};

/// The in-VM `/init` script.
pub(crate) const INIT_SCRIPT: &str = include_str!("../../../tests/vm/init.sh");

/// Kernels booted when none are named: the EKS AL2023 (6.1, cgroup v2) and
/// EKS AL2 (5.10, cgroup v1) lines.
pub(crate) const DEFAULT_KERNELS: &[&str] = &["6.1", "5.10"];

/// Knobs of the lane. [`VmOpts::from_env`] reads the `MAMORI_VM_*` overrides.
#[derive(Debug, Clone)]
pub(crate) struct VmOpts {
    /// Cache and scratch directory (kernels, apt state, initramfs, logs).
    pub(crate) work_dir: PathBuf,
    /// Hard limit for one VM, boot to power-off; qemu is killed after it.
    pub(crate) timeout: Duration,
    /// How long `/init` waits for mamori's `attached` line.
    pub(crate) ready_timeout: Duration,
    /// Re-resolve and re-download kernels even when cached.
    pub(crate) refresh: bool,
    /// Install missing host packages (qemu) with apt-get when running as root.
    pub(crate) install: bool,
    /// Echo the serial console to stdout as it arrives (it is always logged).
    pub(crate) echo_console: bool,
    /// Boot this instead of the binary passed in (`MAMORI_VM_BINARY`), e.g.
    /// `tests/vm/fake-mamori.sh` to self-test the lane.
    pub(crate) binary_override: Option<PathBuf>,
    /// In-VM checks that must pass, of `exec`, `open`, `connect`, `symlink` (default:
    /// all; `MAMORI_VM_REQUIRE`, comma-separated). The others are still run
    /// and reported.
    pub(crate) require: Vec<String>,
}

/// The checks `tests/vm/init.sh` knows.
pub(crate) const CHECKS: &[&str] = &["exec", "open", "connect", "symlink"];

impl Default for VmOpts {
    fn default() -> Self {
        VmOpts {
            work_dir: default_work_dir(),
            timeout: Duration::from_secs(240),
            ready_timeout: Duration::from_secs(150),
            refresh: false,
            install: true,
            echo_console: true,
            binary_override: None,
            require: CHECKS.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl VmOpts {
    /// Defaults, overridden by `MAMORI_VM_DIR`, `MAMORI_VM_TIMEOUT` (seconds),
    /// `MAMORI_VM_READY_TIMEOUT` (seconds), `MAMORI_VM_REFRESH=1`,
    /// `MAMORI_VM_NO_INSTALL=1`, `MAMORI_VM_QUIET=1`, `MAMORI_VM_BINARY` and
    /// `MAMORI_VM_REQUIRE` (e.g. `exec,open,connect`).
    pub(crate) fn from_env() -> Result<Self> {
        let mut o = VmOpts::default();
        if let Some(d) = std::env::var_os("MAMORI_VM_DIR") {
            o.work_dir = PathBuf::from(d);
        }
        let secs = |name: &str| -> Result<Option<Duration>> {
            match std::env::var(name) {
                Ok(v) => Ok(Some(Duration::from_secs(v.trim().parse().with_context(
                    || format!("{name}={v:?} is not a number of seconds"),
                )?))),
                Err(_) => Ok(None),
            }
        };
        if let Some(t) = secs("MAMORI_VM_TIMEOUT")? {
            o.timeout = t;
        }
        if let Some(t) = secs("MAMORI_VM_READY_TIMEOUT")? {
            o.ready_timeout = t;
        }
        let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1" || v == "true");
        o.refresh = flag("MAMORI_VM_REFRESH");
        o.install = !flag("MAMORI_VM_NO_INSTALL");
        o.echo_console = !flag("MAMORI_VM_QUIET");
        o.binary_override = std::env::var_os("MAMORI_VM_BINARY").map(PathBuf::from);
        if let Ok(v) = std::env::var("MAMORI_VM_REQUIRE") {
            o.require = v
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
        }
        Ok(o)
    }
}

/// `<workspace>/target/vm`, or `$CARGO_TARGET_DIR/vm`.
pub(crate) fn default_work_dir() -> PathBuf {
    crate::target_dir().join("vm")
}

/// Boot each kernel in `kernels` under qemu with `binary` packed into an
/// initramfs, run the in-VM check and fail if the sensor did not see an exec.
///
/// A kernel is `6.1`, `5.10`, `6.12`, or a path to a `vmlinuz` or a kernel
/// `.deb`; append `@v1`/`@v2` to choose the cgroup layout (e.g. `6.1@v1`).
/// An empty list means [`DEFAULT_KERNELS`].
pub(crate) fn vm_test(binary: &Path, kernels: &[String]) -> Result<()> {
    vm_test_with(binary, kernels, &VmOpts::from_env()?)
}

/// [`vm_test`] with explicit options.
pub(crate) fn vm_test_with(binary: &Path, kernels: &[String], opts: &VmOpts) -> Result<()> {
    let started = Instant::now();
    if let Some(bad) = opts.require.iter().find(|c| !CHECKS.contains(&c.as_str())) {
        bail!(
            "unknown check {bad:?} in MAMORI_VM_REQUIRE (known: {})",
            CHECKS.join(",")
        );
    }
    if opts.require.is_empty() {
        bail!(
            "MAMORI_VM_REQUIRE names no check (known: {})",
            CHECKS.join(",")
        );
    }
    let kernels: Vec<String> = if kernels.is_empty() {
        DEFAULT_KERNELS.iter().map(|s| s.to_string()).collect()
    } else {
        kernels.to_vec()
    };
    let binary = opts.binary_override.as_deref().unwrap_or(binary);
    let binary = binary.canonicalize().with_context(|| {
        format!(
            "sensor binary {} not found (build it first)",
            binary.display()
        )
    })?;
    fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("creating {}", opts.work_dir.display()))?;

    println!("vm-test: binary {}", binary.display());
    println!("vm-test: kernels {}", kernels.join(", "));
    println!("vm-test: cache {}", opts.work_dir.display());

    let t = Instant::now();
    let qemu = ensure_qemu(opts)?;
    let busybox = ensure_busybox(opts)?;
    // Resolve every kernel before booting any, so a fetch problem shows early.
    let mut targets = Vec::new();
    for k in &kernels {
        targets.push(resolve_kernel(k, opts).with_context(|| format!("kernel {k:?}"))?);
    }
    let prep_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let initrd = opts.work_dir.join("initrd.cpio");
    let initrd_size = build_initramfs(&binary, &busybox, &initrd)?;
    println!(
        "vm-test: initramfs {} ({:.1} MiB) in {:.1}s",
        initrd.display(),
        initrd_size as f64 / (1024.0 * 1024.0),
        t.elapsed().as_secs_f64()
    );
    // The initramfs is unpacked into RAM next to its own image.
    let mem_mib = 1024u64.max(512 + 3 * (initrd_size >> 20));

    let mut results = Vec::new();
    for target in &targets {
        let r = boot(&qemu, target, &initrd, mem_mib, opts);
        results.push((target, r));
    }

    print_summary(&results, prep_secs);
    println!(
        "vm-test: finished in {:.1}s, console logs in {}",
        started.elapsed().as_secs_f64(),
        opts.work_dir.join("logs").display()
    );
    let failed = results.iter().filter(|(_, r)| !passed(r)).count();
    // The plain closing line CI logs are read for.
    println!(
        "vm-test: {} passed, {failed} failed",
        results.len() - failed
    );
    if failed > 0 {
        bail!("vm-test: {failed} of {} kernel(s) failed", results.len());
    }
    Ok(())
}

fn passed(r: &Result<Outcome>) -> bool {
    r.as_ref().is_ok_and(|o| o.verdict == "PASS")
}

/// One block per kernel: its verdict and what the VM showed.
fn print_summary(results: &[(&Target, Result<Outcome>)], prep_secs: f64) {
    println!();
    println!("vm-test summary (prerequisites {prep_secs:.1}s):");
    for (target, r) in results {
        match r {
            Ok(o) => println!(
                "  {} (cgroup {}, {}): {}\n      uname {}, boot {}, attach {}, total {:.1}s, checks {}, sys_exit program {}",
                target.spec,
                target.cgroup,
                target.source,
                o.verdict,
                o.uname.as_deref().unwrap_or("?"),
                fmt_secs(o.boot_secs),
                o.attach.as_deref().unwrap_or("-"),
                o.total_secs,
                if o.checks.is_empty() { "-".to_string() } else { o.checks.join(" ") },
                o.hot_path.as_deref().unwrap_or("-"),
            ),
            Err(e) => println!(
                "  {} (cgroup {}, {}): ERROR {e:#}",
                target.spec, target.cgroup, target.source
            ),
        }
    }
}

/// `1.2s`, or `-` when not measured.
fn fmt_secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"))
}

/// `spec` as a file name: anything but ASCII letters, digits, `.` and `-`
/// becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_prints_the_markers_the_host_reads() {
        for m in [
            "MAMORI-VM-INIT:",
            "MAMORI-VM-KERNEL:",
            "MAMORI-VM-ATTACHED: after ",
            "MAMORI-VM-CHECK:",
            "MAMORI-VM-RESULT:",
        ] {
            assert!(INIT_SCRIPT.contains(m), "{m}");
        }
        for c in CHECKS {
            assert!(INIT_SCRIPT.contains(&format!("sel_{c}()")), "{c}");
        }
    }
}
