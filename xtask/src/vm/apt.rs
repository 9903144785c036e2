//! Fetching Debian packages without touching the host's apt: a private apt
//! state per suite (sources, lists, cache) that uses the host's own Debian
//! mirrors, and unpacking files out of a `.deb`. The kernels and busybox the
//! lane boots come through here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::cmd::{is_root, output};

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C DIR --wildcards MEMBERS...`
pub(super) fn extract_deb(deb: &Path, dir: &Path, members: &[&str]) -> Result<()> {
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
pub(super) struct PrivateApt {
    dir: PathBuf,
    options: Vec<String>,
}

impl PrivateApt {
    pub(super) fn new(work_dir: &Path, suite: &str) -> Result<Self> {
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

    pub(super) fn update(&self) -> Result<()> {
        println!("vm-test: apt-get update ({})", self.dir.display());
        output(self.cmd("apt-get").args(["update", "-q"])).with_context(|| {
            format!(
                "apt-get update with the private sources {} (is a Debian mirror reachable?)",
                self.dir.join("sources.list").display()
            )
        })?;
        Ok(())
    }

    /// The names of the packages whose name matches `pattern` (a regex),
    /// as `apt-cache search --names-only` lists them.
    pub(super) fn search_names(&self, pattern: &str) -> Result<Vec<String>> {
        let out = output(
            self.cmd("apt-cache")
                .args(["search", "--names-only", pattern]),
        )?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// The directory of this apt state.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Download the first of `candidates` that the mirror actually serves
    /// (a suite's newest index entries sometimes 404 on its security mirror).
    /// Returns the package name and the .deb path.
    pub(super) fn download(&self, candidates: &[String]) -> Result<(String, PathBuf)> {
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
                match output(
                    self.cmd("apt-get")
                        .args(["download", "-q", pkg])
                        .current_dir(&debs),
                ) {
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
/// The host's Debian archive and security mirrors, from its apt sources.
fn host_debian_mirrors() -> Result<(String, Option<String>)> {
    let out = output(Command::new("apt-get").args([
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
