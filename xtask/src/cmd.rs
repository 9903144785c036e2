//! Running the host's programs, and the host facts that decide what xtask may
//! do (is it root, is a tool on `PATH`, installing a Debian package).
//!
//! Every chore starts programs the same two ways: [`run`] for an action whose
//! output the user watches (echoed as `+ cmd` first), [`output`] for a query
//! whose stdout xtask reads (quiet). Both fail with the same message: the
//! command, its exit status and, for [`output`], what it printed.

use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
};

use anyhow::{bail, Context, Result};

/// Run `cmd` with its output shown, echoing it first; fail unless it succeeds.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    check(cmd, status, String::new())
}

/// Run `cmd` quietly (stdin closed) and return its stdout; unless it
/// succeeds, fail with its stdout and stderr (those it was not told to
/// send elsewhere).
pub(crate) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let captured = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    check(cmd, out.status, captured)?;
    Ok(stdout)
}

/// The one failure message of [`run`] and [`output`].
fn check(cmd: &Command, status: ExitStatus, captured: String) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    if captured.trim().is_empty() {
        bail!("{cmd:?} failed: {status}");
    }
    bail!("{cmd:?} failed: {status}\n{captured}")
}

/// Whether xtask runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    // Avoid a libc dependency: /proc/self/status carries the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The first file called `name` in a `PATH` directory.
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `apt-get install` one package (no recommends, non-interactive), quietly;
/// when that fails, refresh the package lists (a fresh machine may have none
/// yet) and try once more.
pub(crate) fn apt_install(pkg: &str) -> Result<()> {
    let install = || {
        output(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", pkg])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install().is_err() {
        output(Command::new("apt-get").args(["update", "-q"]))?;
        install().with_context(|| format!("apt-get install {pkg}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_and_carries_its_output() {
        let err = output(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"sh\""), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("out\nerr"), "{err}");
        assert_eq!(
            output(Command::new("sh").args(["-c", "echo hi"])).unwrap(),
            "hi\n"
        );
        let err = run(Command::new("sh").args(["-c", "exit 4"]))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("failed: exit status: 4"), "{err}");
    }
}
