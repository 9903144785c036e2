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
//! See `tests/vm/README.md`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// The in-VM `/init` script.
pub const INIT_SCRIPT: &str = include_str!("../../tests/vm/init.sh");

/// Kernels booted when none are named: the EKS AL2023 (6.1, cgroup v2) and
/// EKS AL2 (5.10, cgroup v1) lines.
pub const DEFAULT_KERNELS: &[&str] = &["6.1", "5.10"];

/// A kernel line this lane knows how to fetch from Debian.
struct KnownKernel {
    /// What the user types: `6.1`.
    spec: &'static str,
    /// Debian suite that carries it.
    suite: &'static str,
    /// Package name = prefix + number + suffix, e.g. `linux-image-6.1.0-` `57` `-cloud-amd64-unsigned`.
    prefix: &'static str,
    suffix: &'static str,
    /// cgroup layout mounted in the VM by default (`v1` or `v2`).
    cgroup: &'static str,
    /// What it stands for.
    about: &'static str,
}

const KNOWN_KERNELS: &[KnownKernel] = &[
    KnownKernel {
        spec: "6.1",
        suite: "bookworm",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
        cgroup: "v2",
        about: "like EKS AL2023 (6.1, cgroup v2)",
    },
    KnownKernel {
        spec: "5.10",
        suite: "bullseye",
        prefix: "linux-image-5.10.0-",
        suffix: "-cloud-amd64-unsigned",
        cgroup: "v1",
        about: "like EKS AL2 (5.10, cgroup v1)",
    },
    KnownKernel {
        spec: "6.12",
        suite: "bookworm",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-cloud-amd64-unsigned",
        cgroup: "v2",
        about: "Debian 12's newer kernel line (6.12, cgroup v2)",
    },
];

/// Knobs of the lane. [`VmOpts::from_env`] reads the `MAMORI_VM_*` overrides.
#[derive(Debug, Clone)]
pub struct VmOpts {
    /// Cache and scratch directory (kernels, apt state, initramfs, logs).
    pub work_dir: PathBuf,
    /// Hard limit for one VM, boot to power-off; qemu is killed after it.
    pub timeout: Duration,
    /// How long `/init` waits for mamori's `attached` line.
    pub ready_timeout: Duration,
    /// Re-resolve and re-download kernels even when cached.
    pub refresh: bool,
    /// Install missing host packages (qemu) with apt-get when running as root.
    pub install: bool,
    /// Echo the serial console to stdout as it arrives (it is always logged).
    pub echo_console: bool,
    /// Boot this instead of the binary passed in (`MAMORI_VM_BINARY`), e.g.
    /// `tests/vm/fake-mamori.sh` to self-test the lane.
    pub binary_override: Option<PathBuf>,
    /// In-VM checks that must pass, of `exec`, `open`, `connect` (default:
    /// all; `MAMORI_VM_REQUIRE`, comma-separated). The others are still run
    /// and reported.
    pub require: Vec<String>,
}

/// The checks `tests/vm/init.sh` knows.
pub const CHECKS: &[&str] = &["exec", "open", "connect"];

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
    pub fn from_env() -> Result<Self> {
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
pub fn default_work_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        });
    target.join("vm")
}

/// Boot each kernel in `kernels` under qemu with `binary` packed into an
/// initramfs, run the in-VM check and fail if the sensor did not see an exec.
///
/// A kernel is `6.1`, `5.10`, `6.12`, or a path to a `vmlinuz` or a kernel
/// `.deb`; append `@v1`/`@v2` to choose the cgroup layout (e.g. `6.1@v1`).
/// An empty list means [`DEFAULT_KERNELS`].
pub fn vm_test(binary: &Path, kernels: &[String]) -> Result<()> {
    vm_test_with(binary, kernels, &VmOpts::from_env()?)
}

/// [`vm_test`] with explicit options.
pub fn vm_test_with(binary: &Path, kernels: &[String], opts: &VmOpts) -> Result<()> {
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

    println!();
    println!("vm-test summary (prerequisites {prep_secs:.1}s):");
    let mut failed = 0;
    for (target, r) in &results {
        match r {
            Ok(o) => {
                let pass = o.verdict == "PASS";
                if !pass {
                    failed += 1;
                }
                println!(
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
                );
            }
            Err(e) => {
                failed += 1;
                println!(
                    "  {} (cgroup {}, {}): ERROR {e:#}",
                    target.spec, target.cgroup, target.source
                );
            }
        }
    }
    println!(
        "vm-test: finished in {:.1}s, console logs in {}",
        started.elapsed().as_secs_f64(),
        opts.work_dir.join("logs").display()
    );
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

/// The `sys_exit` program named in mamori's `attached N programs (...)` line.
fn hot_path_program(attached_line: &str) -> Option<String> {
    let list = attached_line.split_once('(')?.1.split_once(')')?.0;
    list.split(", ")
        .find(|p| p.starts_with("mamori_sys_exit"))
        .map(str::to_string)
}

/// Which `sys_exit` program a kernel (`uname -r`) must get: the BTF-load one
/// needs `bpf_get_current_task_btf` (5.11).
fn expected_hot_path(release: &str) -> &'static str {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (major, minor) >= (5, 11) {
        "mamori_sys_exit"
    } else {
        "mamori_sys_exit_compat"
    }
}

fn fmt_secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"))
}

// ---------------------------------------------------------------------------
// Host prerequisites

fn is_root() -> bool {
    // No libc dependency: the effective uid is in /proc/self/status.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run a command, returning stdout; on failure the error names the command
/// and carries its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_qemu(opts: &VmOpts) -> Result<PathBuf> {
    if let Some(q) = find_in_path("qemu-system-x86_64") {
        return Ok(q);
    }
    if !(opts.install && is_root()) {
        bail!(
            "qemu-system-x86_64 not found: install it with \
             `apt-get install -y --no-install-recommends qemu-system-x86` (as root), \
             or run `cargo xtask vm-test` as root so it installs it itself"
        );
    }
    println!("vm-test: installing qemu-system-x86 with apt-get");
    let install = || {
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "qemu-system-x86",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        install().context("apt-get install qemu-system-x86")?;
    }
    find_in_path("qemu-system-x86_64")
        .ok_or_else(|| anyhow!("qemu-system-x86 installed but qemu-system-x86_64 is not on PATH"))
}

/// True if `path` is an ELF file without a PT_INTERP program header.
fn is_static_elf(path: &Path) -> bool {
    let Ok(data) = fs::read(path) else {
        return false;
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= data.len() && u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) != 3
    })
}

fn ensure_busybox(opts: &VmOpts) -> Result<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if is_static_elf(Path::new(p)) {
            return Ok(PathBuf::from(p));
        }
    }
    let cached = opts.work_dir.join("busybox");
    if is_static_elf(&cached) {
        return Ok(cached);
    }
    // Not on the host (or the dynamic one): take busybox-static's binary out
    // of its package, fetched through the private apt state.
    println!("vm-test: fetching busybox-static");
    let apt = PrivateApt::new(&opts.work_dir, "bookworm")?;
    let deb = apt.download(&["busybox-static".to_string()])?;
    let tmp = opts.work_dir.join("busybox.extract");
    extract_deb(&deb.1, &tmp, &["./bin/busybox"])?;
    fs::rename(tmp.join("bin/busybox"), &cached)?;
    let _ = fs::remove_dir_all(&tmp);
    let _ = fs::remove_file(&deb.1);
    if !is_static_elf(&cached) {
        bail!(
            "{} from busybox-static is not a static ELF",
            cached.display()
        );
    }
    Ok(cached)
}

// ---------------------------------------------------------------------------
// Kernels

/// A kernel ready to boot.
struct Target {
    spec: String,
    vmlinuz: PathBuf,
    /// Package (or file) it came from.
    source: String,
    cgroup: String,
    /// `uname -r` must start with this (known kernels only).
    expect_release: Option<String>,
}

fn resolve_kernel(spec: &str, opts: &VmOpts) -> Result<Target> {
    let (name, cgroup) = match spec.rsplit_once('@') {
        Some((n, c @ ("v1" | "v2"))) => (n, Some(c.to_string())),
        Some((_, c)) => bail!("unknown cgroup layout {c:?} (use @v1 or @v2)"),
        None => (spec, None),
    };
    let path = Path::new(name);
    if path.is_file() {
        let cgroup = cgroup.unwrap_or_else(|| "v2".into());
        let vmlinuz = if name.ends_with(".deb") {
            let dir = opts.work_dir.join("kernels").join(sanitize(name));
            if !dir.join("vmlinuz").is_file() || opts.refresh {
                install_kernel_deb(path, &dir)?;
            }
            dir.join("vmlinuz")
        } else {
            path.canonicalize()?
        };
        return Ok(Target {
            spec: spec.to_string(),
            vmlinuz,
            source: path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            cgroup,
            expect_release: None,
        });
    }
    let known = KNOWN_KERNELS
        .iter()
        .find(|k| k.spec == name)
        .ok_or_else(|| {
            anyhow!(
                "unknown kernel {name:?}: use one of {} or a path to a vmlinuz or kernel .deb",
                KNOWN_KERNELS
                    .iter()
                    .map(|k| format!("{} ({})", k.spec, k.about))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let dir = opts.work_dir.join("kernels").join(known.spec);
    let vmlinuz = dir.join("vmlinuz");
    let source_file = dir.join("package");
    if vmlinuz.is_file() && source_file.is_file() && !opts.refresh {
        let source = fs::read_to_string(&source_file)?.trim().to_string();
        println!("vm-test: kernel {name}: cached {source}");
        return Ok(Target {
            spec: spec.to_string(),
            vmlinuz,
            source,
            cgroup: cgroup.unwrap_or_else(|| known.cgroup.into()),
            expect_release: Some(format!("{}.", known.spec)),
        });
    }
    let t = Instant::now();
    let apt = PrivateApt::new(&opts.work_dir, known.suite)?;
    if opts.refresh {
        apt.update()?;
    }
    let candidates = apt.kernel_candidates(known)?;
    println!(
        "vm-test: kernel {name}: {} candidate package(s) in {}, newest {}",
        candidates.len(),
        known.suite,
        candidates[0]
    );
    let (pkg, deb) = apt.download(&candidates)?;
    install_kernel_deb(&deb, &dir)?;
    fs::write(&source_file, format!("{pkg}\n"))?;
    let _ = fs::remove_file(&deb);
    println!(
        "vm-test: kernel {name}: {pkg} fetched in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(Target {
        spec: spec.to_string(),
        vmlinuz,
        source: pkg,
        cgroup: cgroup.unwrap_or_else(|| known.cgroup.into()),
        expect_release: Some(format!("{}.", known.spec)),
    })
}

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

/// Take `boot/vmlinuz-*` (and the config, for reference) out of a kernel .deb.
fn install_kernel_deb(deb: &Path, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("extract");
    extract_deb(deb, &tmp, &["./boot/vmlinuz-*", "./boot/config-*"])?;
    fs::create_dir_all(dir)?;
    let mut found = false;
    for e in fs::read_dir(tmp.join("boot"))? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("vmlinuz-") {
            fs::rename(e.path(), dir.join("vmlinuz"))?;
            found = true;
        } else if n.starts_with("config-") {
            fs::rename(e.path(), dir.join("config"))?;
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    if !found {
        bail!("{} holds no boot/vmlinuz-*", deb.display());
    }
    Ok(())
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C DIR --wildcards MEMBERS...`
fn extract_deb(deb: &Path, dir: &Path, members: &[&str]) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb (Debian's dpkg is needed to unpack kernel packages)")?;
    let tar_out = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .args(members)
        .stdin(dpkg.stdout.take().expect("piped"))
        .output()
        .context("running tar")?;
    let dpkg_status = dpkg.wait()?;
    if !dpkg_status.success() || !tar_out.status.success() {
        bail!(
            "unpacking {} failed (dpkg-deb {dpkg_status}, tar {}): {}",
            deb.display(),
            tar_out.status,
            String::from_utf8_lossy(&tar_out.stderr)
        );
    }
    Ok(())
}

/// An apt configuration of its own (sources, lists, cache) for one Debian
/// suite, living under `target/vm/apt/<suite>`: the host's sources and
/// package lists are not touched. The mirrors are the host's own Debian ones.
struct PrivateApt {
    dir: PathBuf,
    options: Vec<String>,
}

impl PrivateApt {
    fn new(work_dir: &Path, suite: &str) -> Result<Self> {
        let dir = work_dir.join("apt").join(suite);
        for d in [
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "debs",
        ] {
            fs::create_dir_all(dir.join(d))?;
        }
        let sources = dir.join("sources.list");
        if !sources.is_file() {
            let (main, security) = host_debian_mirrors()?;
            let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
            let opt = if keyring.is_file() {
                format!("[signed-by={}] ", keyring.display())
            } else {
                String::new()
            };
            let mut text = format!("deb {opt}{main} {suite} main\n");
            if let Some(sec) = security {
                text.push_str(&format!("deb {opt}{sec} {suite}-security main\n"));
            }
            fs::write(&sources, text)?;
        }
        let p = |k: &str, v: &Path| format!("{k}={}", v.display());
        let mut options = vec![
            p("Dir::Etc::sourcelist", &sources),
            p("Dir::Etc::sourceparts", &dir.join("sources.list.d")),
            p("Dir::State::Lists", &dir.join("lists")),
            p("Dir::Cache", &dir.join("cache")),
            "Acquire::Languages=none".into(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        ];
        if is_root() {
            // Downloads land in our own directory, which `_apt` cannot write.
            options.push("APT::Sandbox::User=root".into());
        }
        let apt = PrivateApt { dir, options };
        if !apt.has_lists()? {
            apt.update()?;
        }
        Ok(apt)
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        c
    }

    fn has_lists(&self) -> Result<bool> {
        Ok(fs::read_dir(self.dir.join("lists"))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("_Packages")))
    }

    fn update(&self) -> Result<()> {
        println!("vm-test: apt-get update ({})", self.dir.display());
        run(self.cmd("apt-get").args(["update", "-q"])).with_context(|| {
            format!(
                "apt-get update with the private sources {} (is a Debian mirror reachable?)",
                self.dir.join("sources.list").display()
            )
        })?;
        Ok(())
    }

    /// Package names of `k`'s line, newest ABI first.
    fn kernel_candidates(&self, k: &KnownKernel) -> Result<Vec<String>> {
        let out = run(self.cmd("apt-cache").args([
            "search",
            "--names-only",
            &format!("^{}", k.prefix.replace('.', "\\.")),
        ]))?;
        let found = newest_first(k, out.lines().filter_map(|l| l.split_whitespace().next()));
        if found.is_empty() {
            bail!(
                "no {}<N>{} package in Debian {} (apt lists in {})",
                k.prefix,
                k.suffix,
                k.suite,
                self.dir.display()
            );
        }
        Ok(found)
    }

    /// Download the first of `candidates` that the mirror actually serves
    /// (a suite's newest index entries sometimes 404 on its security mirror).
    /// Returns the package name and the .deb path.
    fn download(&self, candidates: &[String]) -> Result<(String, PathBuf)> {
        let debs = self.dir.join("debs");
        let mut errors = Vec::new();
        for refreshed in [false, true] {
            if refreshed {
                self.update()?;
            }
            for pkg in candidates.iter().take(6) {
                for e in fs::read_dir(&debs)? {
                    let _ = fs::remove_file(e?.path());
                }
                match run(self
                    .cmd("apt-get")
                    .args(["download", "-q", pkg])
                    .current_dir(&debs))
                {
                    Ok(_) => {
                        let deb = fs::read_dir(&debs)?
                            .filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .find(|p| p.extension().is_some_and(|x| x == "deb"))
                            .ok_or_else(|| anyhow!("apt-get download {pkg} left no .deb"))?;
                        return Ok((pkg.clone(), deb));
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        let line = msg
                            .lines()
                            .rev()
                            .find(|l| l.starts_with("E:"))
                            .unwrap_or("");
                        println!("vm-test: {pkg} not downloadable, trying the next one {line}");
                        errors.push(format!("{pkg}: {line}"));
                    }
                }
            }
        }
        bail!(
            "could not download any of {candidates:?}:\n{}",
            errors.join("\n")
        )
    }
}

/// The package names of `k`'s line among `names`, newest ABI number first.
fn newest_first<'a>(k: &KnownKernel, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut found: Vec<(u64, String)> = names
        .filter_map(|name| {
            let mid = name.strip_prefix(k.prefix)?.strip_suffix(k.suffix)?;
            Some((mid.parse().ok()?, name.to_string()))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.dedup();
    found.into_iter().map(|(_, n)| n).collect()
}

/// The host's Debian archive and security mirrors, from its apt sources.
fn host_debian_mirrors() -> Result<(String, Option<String>)> {
    let out = run(Command::new("apt-get").args([
        "indextargets",
        "--no-release-info",
        "--format",
        "$(SITE) $(RELEASE) $(TARGET_OF)",
    ]))
    .context("apt-get indextargets (apt is needed to fetch Debian kernels)")?;
    let mut main = None;
    let mut security = None;
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 || f[2] != "deb" {
            continue;
        }
        let (site, release) = (f[0].trim_end_matches('/'), f[1]);
        if release.ends_with("-security") || site.ends_with("-security") {
            security.get_or_insert_with(|| site.to_string());
        } else if !release.contains('-') && site.ends_with("/debian") {
            main.get_or_insert_with(|| site.to_string());
        }
    }
    let main = main.ok_or_else(|| {
        anyhow!(
            "no Debian archive in the host's apt sources (apt-get indextargets); \
             pass a kernel as a path to a vmlinuz or .deb instead"
        )
    })?;
    Ok((main, security))
}

// ---------------------------------------------------------------------------
// Initramfs

/// A newc ("070701") cpio archive writer, enough for an initramfs.
struct Cpio<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Cpio {
            out,
            ino: 1,
            written: 0,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len(),
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() + 1,
            0, // check
        );
        self.ino += 1;
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn dir(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, 0o040755, (0, 0), &[])
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, 0o100000 | perm, (0, 0), data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, 0o120777, (0, 0), target.as_bytes())
    }

    fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, 0o020000 | perm, (major, minor), &[])
    }

    /// Write the trailer; returns the writer and the archive's length.
    fn finish(mut self) -> io::Result<(W, u64)> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.write(&[0u8; 3][..n])
    }
}

/// Shared libraries (and the dynamic loader) `binary` needs, as `ldd` names them.
fn shared_libs(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .context("running ldd")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {text}", binary.display());
    }
    parse_ldd(&text).with_context(|| format!("{}", binary.display()))
}

/// The absolute paths in `ldd` output (libraries and the loader).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("shared library missing on the host: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn build_initramfs(binary: &Path, busybox: &Path, out: &Path) -> Result<u64> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut c = Cpio::new(io::BufWriter::new(file));
    let mut dirs: Vec<String> = Vec::new();
    let mut mkdirs = |c: &mut Cpio<_>, path: &str| -> io::Result<()> {
        let mut cur = String::new();
        for part in path.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            if !dirs.contains(&cur) {
                c.dir(&cur)?;
                dirs.push(cur.clone());
            }
        }
        Ok(())
    };
    for d in [
        "/bin",
        "/sbin",
        "/usr/bin",
        "/usr/sbin",
        "/etc",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
    ] {
        mkdirs(&mut c, d)?;
    }
    c.char_dev("/dev/console", 0o600, 5, 1)?;
    c.char_dev("/dev/null", 0o666, 1, 3)?;
    c.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    c.file("/etc/group", 0o644, b"root:x:0:\n")?;
    let bb = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    c.file("/bin/busybox", 0o755, &bb)?;
    c.symlink("/bin/sh", "busybox")?;
    c.file("/init", 0o755, INIT_SCRIPT.as_bytes())?;

    let bin = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let mode = fs::metadata(binary)?.permissions().mode() & 0o777;
    c.file("/mamori", mode | 0o755, &bin)?;
    for lib in shared_libs(binary)? {
        let name = lib.to_string_lossy().into_owned();
        if name.starts_with("/bin/") {
            continue; // never shadow busybox
        }
        let data = fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        if let Some(parent) = lib.parent() {
            mkdirs(&mut c, &parent.to_string_lossy())?;
        }
        c.file(&name, 0o755, &data)?;
    }
    Ok(c.finish()?.1)
}

// ---------------------------------------------------------------------------
// Booting

/// What one VM run showed.
struct Outcome {
    verdict: String,
    uname: Option<String>,
    /// Seconds from qemu start to `/init` running.
    boot_secs: Option<f64>,
    /// mamori's attach time as `/init` measured it.
    attach: Option<String>,
    /// `exec+ open- connect-`: which in-VM checks saw their event.
    checks: Vec<String>,
    /// Which `sys_exit` program mamori attached (BTF loads or the helper
    /// fallback).
    hot_path: Option<String>,
    total_secs: f64,
}

fn boot(qemu: &Path, t: &Target, initrd: &Path, mem_mib: u64, opts: &VmOpts) -> Result<Outcome> {
    let logs = opts.work_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{}.log", sanitize(&t.spec)));
    let mut log = fs::File::create(&log_path)?;
    let append = format!(
        "console=ttyS0 panic=-1 quiet mamori.cgroup={} mamori.ready_timeout={} mamori.require={}",
        t.cgroup,
        opts.ready_timeout.as_secs(),
        opts.require.join(",")
    );
    let mut cmd = Command::new(qemu);
    cmd.args(["-m", &mem_mib.to_string(), "-smp", "1", "-cpu", "max"])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ])
        .args(["-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&t.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!();
    println!(
        "vm-test: booting {} ({}, cgroup {}) timeout {}s",
        t.spec,
        t.source,
        t.cgroup,
        opts.timeout.as_secs()
    );
    writeln!(log, "# {cmd:?}")?;
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", qemu.display()))?;
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let stdout = child.stdout.take().expect("piped");
    let tx_out = tx.clone();
    std::thread::spawn(move || {
        read_lines(
            stdout,
            |l| tx_out.send(Some(l)).is_ok(),
            || {
                let _ = tx_out.send(None);
            },
        )
    });
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    drop(tx);

    let deadline = start + opts.timeout;
    let mut o = Outcome {
        verdict: String::new(),
        uname: None,
        boot_secs: None,
        attach: None,
        checks: Vec::new(),
        hot_path: None,
        total_secs: 0.0,
    };
    let mut eof = false;
    while !eof && o.verdict.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                writeln!(log, "{line}")?;
                if opts.echo_console {
                    println!("[vm {}] {line}", t.spec);
                }
                if line.starts_with("MAMORI-VM-INIT:") {
                    o.boot_secs = Some(start.elapsed().as_secs_f64());
                } else if let Some(r) = line.strip_prefix("MAMORI-VM-KERNEL: ") {
                    o.uname = Some(r.trim().to_string());
                } else if let Some(r) = line.strip_prefix("MAMORI-VM-ATTACHED: after ") {
                    o.attach = Some(r.trim().to_string());
                } else if let Some(r) = line.strip_prefix("MAMORI-VM-PROGRAMS: ") {
                    o.hot_path = hot_path_program(r);
                } else if let Some(r) = line.strip_prefix("MAMORI-VM-CHECK: ") {
                    let mut w = r.split_whitespace();
                    if let (Some(name), Some(state)) = (w.next(), w.next()) {
                        let mark = if state == "seen:" { '+' } else { '-' };
                        o.checks.push(format!("{name}{mark}"));
                    }
                } else if let Some(r) = line.strip_prefix("MAMORI-VM-RESULT: ") {
                    o.verdict = r.trim().to_string();
                }
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    if o.verdict.is_empty() && !eof {
        o.verdict = format!(
            "FAIL timed out after {}s (qemu killed)",
            opts.timeout.as_secs()
        );
        kill(&mut child);
    } else {
        // `poweroff -f` follows the result; give qemu a moment to exit.
        wait_or_kill(&mut child, Duration::from_secs(15));
    }
    o.total_secs = start.elapsed().as_secs_f64();
    let qemu_err = err_thread.join().unwrap_or_default();
    if !qemu_err.trim().is_empty() {
        writeln!(log, "# qemu stderr:\n{qemu_err}")?;
    }
    if o.verdict.is_empty() {
        o.verdict = "FAIL the VM stopped without a result (kernel panic or init crash?)".into();
    }
    if let (Some(want), Some(got)) = (&t.expect_release, &o.uname) {
        if o.verdict == "PASS" && !got.starts_with(want.as_str()) {
            o.verdict = format!("FAIL booted {got}, expected a {want}x kernel");
        }
    }
    // (A stand-in binary attaches no programs.)
    if let (Some(got), None) = (&o.uname, &opts.binary_override) {
        let want = expected_hot_path(got);
        if o.verdict == "PASS" && o.hot_path.as_deref() != Some(want) {
            o.verdict = format!(
                "FAIL attached {} on {got}, expected {want}",
                o.hot_path.as_deref().unwrap_or("no sys_exit program")
            );
        }
    }
    if o.verdict != "PASS" {
        if !opts.echo_console {
            println!("vm-test: {} console ({}):", t.spec, log_path.display());
            print!("{}", fs::read_to_string(&log_path).unwrap_or_default());
        }
        if !qemu_err.trim().is_empty() {
            println!("vm-test: qemu stderr:\n{qemu_err}");
        }
    }
    println!(
        "vm-test: {} -> {} (boot {}, total {:.1}s, log {})",
        t.spec,
        o.verdict,
        fmt_secs(o.boot_secs),
        o.total_secs,
        log_path.display()
    );
    Ok(o)
}

/// Feed `r`'s lines (lossy UTF-8, `\r` dropped) to `f` until EOF or `f`
/// returns false, then call `done`.
fn read_lines(r: impl Read, mut f: impl FnMut(String) -> bool, done: impl FnOnce()) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                if !f(line.trim_end_matches('\n').to_string()) {
                    break;
                }
            }
        }
    }
    done();
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_or_kill(child: &mut Child, grace: Duration) {
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(child);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_path_is_read_from_the_attached_line_and_expected_by_release() {
        let line = "mamori: attached 5 programs (mamori_sys_exit_compat, mamori_sched_exec, \
                    mamori_sched_exit); 41 processes seeded from /proc";
        assert_eq!(
            hot_path_program(line).as_deref(),
            Some("mamori_sys_exit_compat")
        );
        assert_eq!(
            hot_path_program("mamori: attached 1 programs (mamori_sys_exit); 1 processes")
                .as_deref(),
            Some("mamori_sys_exit")
        );
        assert_eq!(hot_path_program("fake-mamori: attached (stand-in)"), None);
        assert_eq!(
            expected_hot_path("5.10.0-43-cloud-amd64"),
            "mamori_sys_exit_compat"
        );
        assert_eq!(expected_hot_path("5.11.0"), "mamori_sys_exit");
        assert_eq!(expected_hot_path("6.1.0-57-cloud-amd64"), "mamori_sys_exit");
        assert_eq!(expected_hot_path("4.19.0"), "mamori_sys_exit_compat");
    }

    /// Walk a newc archive back into (name, mode, data) entries.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(off % 4, 0, "header not 4-aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap() as usize
            };
            let (mode, size, namesize) = (field(1) as u32, field(6), field(11));
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            let data_at = (110 + namesize + 3) & !3;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size + 3) & !3;
            off += next;
            b = &b[next..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn cpio_entries_parse_back() {
        let mut c = Cpio::new(Vec::new());
        c.dir("/bin").unwrap();
        c.file("/bin/x", 0o755, b"hello").unwrap();
        c.symlink("/bin/y", "x").unwrap();
        c.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        c.file("/e", 0o644, b"").unwrap();
        let (out, len) = c.finish().unwrap();
        assert_eq!(len % 4, 0);
        assert_eq!(out.len() as u64, len);
        let e = parse(&out);
        let names: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/x", "bin/y", "dev/console", "e"]);
        assert_eq!(e[1].1, 0o100755);
        assert_eq!(e[1].2, b"hello");
        assert_eq!(e[2].1, 0o120777);
        assert_eq!(e[2].2, b"x");
        assert_eq!(e[3].1, 0o020600);
        assert!(e[4].2.is_empty());
    }

    #[test]
    fn cpio_round_trips_through_offsets() {
        let mut out = Vec::new();
        {
            let mut c = Cpio::new(&mut out);
            c.file("a", 0o644, b"abc").unwrap();
            c.finish().unwrap();
        }
        assert_eq!(&out[..6], b"070701");
        // filesize field (7th) is 3, namesize (12th) is 2 ("a\0").
        let field = |i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&out[6 + 8 * i..14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!(field(1), 0o100644);
        assert_eq!(field(6), 3);
        assert_eq!(field(11), 2);
        // header 110 + name 2 -> 112 (aligned), data 3 -> pad to 116.
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..115], b"abc");
        assert_eq!(&out[116..122], b"070701");
    }

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f94)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f95)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f96)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn kernel_candidates_newest_abi_first() {
        let k = &KNOWN_KERNELS[0];
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64", // signed, not ours
            "linux-image-6.1.0-57-cloud-amd64-dbg",
            "linux-image-6.1.0-50-cloud-amd64-unsigned",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
        ];
        assert_eq!(
            newest_first(k, names.into_iter()),
            [
                "linux-image-6.1.0-57-cloud-amd64-unsigned",
                "linux-image-6.1.0-50-cloud-amd64-unsigned",
                "linux-image-6.1.0-9-cloud-amd64-unsigned"
            ]
        );
        let k612 = KNOWN_KERNELS.iter().find(|k| k.spec == "6.12").unwrap();
        assert_eq!(
            newest_first(k612, names.into_iter()),
            ["linux-image-6.12.117+deb12-cloud-amd64-unsigned"]
        );
    }

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

    #[test]
    fn busybox_on_host_detection_does_not_panic() {
        let _ = is_static_elf(Path::new("/bin/sh"));
        let _ = is_static_elf(Path::new("/nonexistent"));
    }
}
