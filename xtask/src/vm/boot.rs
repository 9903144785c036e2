//! One VM run: start qemu on a kernel and the initramfs, read the serial
//! console for the `MAMORI-VM-*` markers `/init` prints, stop qemu (or kill
//! it at the hard timeout) and judge the run.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kernels::Target;
use super::{fmt_secs, sanitize, VmOpts};

/// What one VM run showed.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) verdict: String,
    pub(super) uname: Option<String>,
    /// Seconds from qemu start to `/init` running.
    pub(super) boot_secs: Option<f64>,
    /// mamori's attach time as `/init` measured it.
    pub(super) attach: Option<String>,
    /// `exec+ open- connect-`: which in-VM checks saw their event.
    pub(super) checks: Vec<String>,
    /// Which `sys_exit` program mamori attached (BTF loads or the helper
    /// fallback).
    pub(super) hot_path: Option<String>,
    pub(super) total_secs: f64,
}

impl Outcome {
    /// Take in one console line: a `MAMORI-VM-*` marker fills its field.
    fn note(&mut self, line: &str, start: Instant) {
        if line.starts_with("MAMORI-VM-INIT:") {
            self.boot_secs = Some(start.elapsed().as_secs_f64());
        } else if let Some(r) = line.strip_prefix("MAMORI-VM-KERNEL: ") {
            self.uname = Some(r.trim().to_string());
        } else if let Some(r) = line.strip_prefix("MAMORI-VM-ATTACHED: after ") {
            self.attach = Some(r.trim().to_string());
        } else if let Some(r) = line.strip_prefix("MAMORI-VM-PROGRAMS: ") {
            self.hot_path = hot_path_program(r);
        } else if let Some(r) = line.strip_prefix("MAMORI-VM-CHECK: ") {
            let mut w = r.split_whitespace();
            if let (Some(name), Some(state)) = (w.next(), w.next()) {
                let mark = if state == "seen:" { '+' } else { '-' };
                self.checks.push(format!("{name}{mark}"));
            }
        } else if let Some(r) = line.strip_prefix("MAMORI-VM-RESULT: ") {
            self.verdict = r.trim().to_string();
        }
    }

    /// The host's own checks of a run `/init` passed: the kernel is the one
    /// asked for and mamori attached the `sys_exit` program it must get.
    fn judge(&mut self, t: &Target, opts: &VmOpts) {
        if self.verdict.is_empty() {
            self.verdict =
                "FAIL the VM stopped without a result (kernel panic or init crash?)".into();
        }
        if let (Some(want), Some(got)) = (&t.expect_release, &self.uname) {
            if self.verdict == "PASS" && !got.starts_with(want.as_str()) {
                self.verdict = format!("FAIL booted {got}, expected a {want}x kernel");
            }
        }
        // (A stand-in binary attaches no programs.)
        if let (Some(got), None) = (&self.uname, &opts.binary_override) {
            let want = expected_hot_path(got);
            if self.verdict == "PASS" && self.hot_path.as_deref() != Some(want) {
                self.verdict = format!(
                    "FAIL attached {} on {got}, expected {want}",
                    self.hot_path.as_deref().unwrap_or("no sys_exit program")
                );
            }
        }
    }
}

/// Boot `t` with `initrd` under qemu, log its console to
/// `<work dir>/logs/<spec>.log` and tell what the run showed.
pub(super) fn boot(
    qemu: &Path,
    t: &Target,
    initrd: &Path,
    mem_mib: u64,
    opts: &VmOpts,
) -> Result<Outcome> {
    let logs = opts.work_dir.join("logs");
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{}.log", sanitize(&t.spec)));
    let mut log = fs::File::create(&log_path)?;
    let mut cmd = qemu_command(qemu, t, initrd, mem_mib, opts);
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
    let mut vm = Vm::spawn(&mut cmd).with_context(|| format!("starting {}", qemu.display()))?;
    let mut o = Outcome::default();
    let eof = read_console(&vm.lines, &mut log, &mut o, start, t, opts)?;
    if o.verdict.is_empty() && !eof {
        o.verdict = format!(
            "FAIL timed out after {}s (qemu killed)",
            opts.timeout.as_secs()
        );
        kill(&mut vm.child);
    } else {
        // `poweroff -f` follows the result; give qemu a moment to exit.
        wait_or_kill(&mut vm.child, Duration::from_secs(15));
    }
    o.total_secs = start.elapsed().as_secs_f64();
    let qemu_err = vm.stderr.join().unwrap_or_default();
    if !qemu_err.trim().is_empty() {
        writeln!(log, "# qemu stderr:\n{qemu_err}")?;
    }
    o.judge(t, opts);
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

/// qemu on `t`'s kernel and `initrd`: TCG, one CPU, serial console on
/// stdout, no network device, no reboot; the kernel command line carries the
/// in-VM settings `/init` reads (`mamori.*`).
fn qemu_command(qemu: &Path, t: &Target, initrd: &Path, mem_mib: u64, opts: &VmOpts) -> Command {
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
    cmd
}

/// A running qemu: its console lines (`None` at EOF) and its stderr, each
/// read by a thread of its own.
struct Vm {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    stderr: JoinHandle<String>,
}

impl Vm {
    fn spawn(cmd: &mut Command) -> std::io::Result<Vm> {
        let mut child = cmd.spawn()?;
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
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        drop(tx);
        Ok(Vm {
            child,
            lines: rx,
            stderr,
        })
    }
}

/// Log (and echo) console lines into `o` until a verdict, EOF or the hard
/// timeout; whether the console reached EOF.
fn read_console(
    lines: &mpsc::Receiver<Option<String>>,
    log: &mut fs::File,
    o: &mut Outcome,
    start: Instant,
    t: &Target,
    opts: &VmOpts,
) -> Result<bool> {
    let deadline = start + opts.timeout;
    let mut eof = false;
    while !eof && o.verdict.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match lines.recv_timeout(left) {
            Ok(Some(line)) => {
                writeln!(log, "{line}")?;
                if opts.echo_console {
                    println!("[vm {}] {line}", t.spec);
                }
                o.note(&line, start);
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    Ok(eof)
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
}
