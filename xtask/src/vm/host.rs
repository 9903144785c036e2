//! What the host must provide for the lane: `qemu-system-x86_64` (installed
//! with apt-get when missing and running as root) and a static busybox for the
//! initramfs (the host's, or one taken out of Debian's `busybox-static`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::apt::{extract_deb, PrivateApt};
use super::VmOpts;
use crate::cmd::{apt_install, find_in_path, is_root};

/// The path of `qemu-system-x86_64`.
pub(super) fn ensure_qemu(opts: &VmOpts) -> Result<PathBuf> {
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
    apt_install("qemu-system-x86")?;
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

/// The path of a static busybox (cached under the work dir when fetched).
pub(super) fn ensure_busybox(opts: &VmOpts) -> Result<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_on_host_detection_does_not_panic() {
        let _ = is_static_elf(Path::new("/bin/sh"));
        let _ = is_static_elf(Path::new("/nonexistent"));
    }
}
