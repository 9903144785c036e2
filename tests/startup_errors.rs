//! Start-up without what the sensor needs: one clear message naming it.
//! `mamori run` as an unprivileged user, as root without CAP_BPF/CAP_PERFMON
//! (capsh), without CAP_SYS_PTRACE (a warning, and it runs), and with a ring
//! too small for the largest event.
//!
//! Run as root, under the e2e lock (one case loads the programs):
//! `cargo test -p sensor --features e2e --test startup_errors -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

const RULES: &str = r#"
- rule: Startup test exec
  desc: any exec
  condition: evt.type=execve and proc.name = mamori-never-such-name
  output: x (cmd=%proc.cmdline)
  priority: NOTICE
"#;

/// A rules file any user can read.
fn rules(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mamori-startup-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = dir.join("rules.yaml");
    std::fs::write(&f, RULES).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    f
}

fn mamori() -> &'static str {
    env!("CARGO_BIN_EXE_mamori")
}

/// Run `cmd` (which must exit on its own) and return its output.
fn output(mut cmd: Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("spawning");
    assert!(!out.status.success(), "it started: {out:?}");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unprivileged_user_is_told_what_is_missing() {
    let r = rules("nobody");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(mamori())
    .args(["run", "--rules"])
    .arg(&r);
    let e = stderr(&output(cmd));
    assert!(e.contains("needs root"), "{e}");
    assert!(e.contains("missing CAP_BPF and CAP_PERFMON"), "{e}");
    assert!(e.contains("uid 65534"), "{e}");
    assert!(!e.contains("tracefs"), "a misleading cause: {e}");
}

#[test]
fn root_without_bpf_capabilities_is_told_which_are_missing() {
    let r = rules("nocaps");
    let mut cmd = Command::new("capsh");
    cmd.arg("--drop=cap_bpf,cap_perfmon,cap_sys_admin")
        .arg("--")
        .arg("-c")
        .arg(format!("exec {} run --rules {}", mamori(), r.display()));
    let e = stderr(&output(cmd));
    assert!(e.contains("missing CAP_BPF and CAP_PERFMON"), "{e}");
    assert!(e.contains("uid 0"), "{e}");

    let mut cmd = Command::new("capsh");
    cmd.arg("--drop=cap_perfmon,cap_sys_admin")
        .arg("--")
        .arg("-c")
        .arg(format!("exec {} run --rules {}", mamori(), r.display()));
    let e = stderr(&output(cmd));
    assert!(e.contains("missing CAP_PERFMON ("), "{e}");
}

#[test]
fn a_ring_smaller_than_the_largest_event_is_an_error() {
    let r = rules("ring");
    for size in ["8192", "4096"] {
        let mut cmd = Command::new(mamori());
        cmd.args(["run", "--ring-size", size, "--rules"]).arg(&r);
        let e = stderr(&output(cmd));
        assert!(
            e.contains(&format!("ring buffer size {size} must be")) && e.contains("16384"),
            "{e}"
        );
        assert!(e.contains("largest event"), "{e}");
    }
}

/// Without CAP_SYS_PTRACE the sensor runs, and says what it cannot do.
#[test]
fn without_cap_sys_ptrace_it_warns_and_runs() {
    let r = rules("ptrace");
    let mut cmd = Command::new("capsh");
    cmd.arg("--drop=cap_sys_ptrace")
        .arg("--")
        .arg("-c")
        .arg(format!("exec {} run --rules {}", mamori(), r.display()))
        .stdin(Stdio::null());
    let (mut child, log, _rest) = common::spawn_until_attached(cmd);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.iter()
            .any(|l| l.contains("without CAP_SYS_PTRACE") && l.contains("relative paths")),
        "{log:#?}"
    );
}
