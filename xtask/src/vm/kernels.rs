//! Which kernel a name means and getting its `vmlinuz`: the Debian kernel
//! lines the lane knows (`6.1`, `5.10`, `6.12`; the newest package the
//! mirror serves, cached under `target/vm/kernels/<spec>/`), or a `vmlinuz`
//! or kernel `.deb` given as a path.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use super::apt::{extract_deb, PrivateApt};
use super::{sanitize, VmOpts};

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
// ---------------------------------------------------------------------------
// Kernels

/// A kernel ready to boot.
pub(super) struct Target {
    pub(super) spec: String,
    pub(super) vmlinuz: PathBuf,
    /// Package (or file) it came from.
    pub(super) source: String,
    pub(super) cgroup: String,
    /// `uname -r` must start with this (known kernels only).
    pub(super) expect_release: Option<String>,
}

pub(super) fn resolve_kernel(spec: &str, opts: &VmOpts) -> Result<Target> {
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
    let candidates = kernel_candidates(&apt, known)?;
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

/// Package names of `k`'s line in `apt`'s suite, newest ABI first.
fn kernel_candidates(apt: &PrivateApt, k: &KnownKernel) -> Result<Vec<String>> {
    let names = apt.search_names(&format!("^{}", k.prefix.replace('.', "\\.")))?;
    let found = newest_first(k, names.iter().map(String::as_str));
    if found.is_empty() {
        bail!(
            "no {}<N>{} package in Debian {} (apt lists in {})",
            k.prefix,
            k.suffix,
            k.suite,
            apt.dir().display()
        );
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
