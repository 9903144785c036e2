//! Prerequisites for building the eBPF object, installed when missing:
//! nightly with `rust-src`, and `bpf-linker` built against nightly's LLVM
//! (linked through a prefix whose `lib/` points at nightly's own libLLVM).

use std::{path::PathBuf, process::Command};

use anyhow::{anyhow, Context, Result};

use crate::cmd::{output, run};

/// Make sure nightly + rust-src + a matching bpf-linker are present.
pub fn ensure() -> Result<()> {
    if std::env::var_os("MAMORI_SKIP_PREREQS").is_some() {
        return Ok(());
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is required (https://rustup.rs)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    for component in ["rust-src", "clippy"] {
        if !components.lines().any(|l| l.starts_with(component)) {
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                "nightly",
            ]))?;
        }
    }
    ensure_bpf_linker()
}

/// LLVM major version of nightly rustc, e.g. "22".
fn nightly_llvm_major() -> Result<String> {
    let vv = output(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let ver = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no LLVM version"))?;
    Ok(ver.split('.').next().unwrap_or(ver).trim().to_string())
}

fn ensure_bpf_linker() -> Result<()> {
    let major = nightly_llvm_major()?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let prefix = home.join(".cache/mamori").join(format!("llvm-{major}"));
    let stamp = prefix.join("bpf-linker-llvm");
    let works = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let stamped = std::fs::read_to_string(&stamp)
        .map(|s| s.trim() == major)
        .unwrap_or(false);
    // An installed bpf-linker without our stamp is trusted only if it runs; a
    // stamped one must match nightly's LLVM major version.
    if works && (stamped || !stamp.exists()) {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker for LLVM {major} (about 90 s)");
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let sysroot_lib = PathBuf::from(sysroot.trim()).join("lib");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let mut soname = None;
    for entry in std::fs::read_dir(&sysroot_lib)
        .with_context(|| format!("reading {}", sysroot_lib.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM") && name.contains(".so") {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(entry.path(), &link)?;
            if name.starts_with(&format!("libLLVM.so.{major}")) {
                soname = Some(entry.path());
            }
        }
    }
    let soname = soname.ok_or_else(|| {
        anyhow!(
            "no libLLVM.so.{major}* in {} (is nightly installed completely?)",
            sysroot_lib.display()
        )
    })?;
    let plain = lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&plain);
    std::os::unix::fs::symlink(&soname, &plain)?;
    run(Command::new("cargo")
        .args(["install", "--force", "bpf-linker", "--no-default-features"])
        .args(["--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))?;
    std::fs::write(&stamp, &major)?;
    Ok(())
}
