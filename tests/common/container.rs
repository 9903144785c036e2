//! A fake container for end-to-end tests (root only; included with
//! `#[path = "common/container.rs"] mod container;`): a cgroup named exactly
//! as the kubelet + containerd name one, so mamori's enricher resolves a
//! container id for processes inside it. The cgroup v2 hierarchy is used when
//! there is one (systemd-driver path), else the v1 `pids` hierarchy
//! (cgroupfs-driver path). On hybrid hosts (v1 controllers plus v2 at
//! `/sys/fs/cgroup/unified`) the container's processes join the same path in
//! both, as runc does there: the v1 `pids` hierarchy and the unified one (so
//! the kernel's cgroup id of their events is the container's). Dropping it
//! removes the directories it created.
#![allow(dead_code)] // each test uses the part it needs

use std::{
    io::{BufRead, BufReader},
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct FakeContainer {
    /// The container's cgroup directory (in the v2 hierarchy when there is
    /// one).
    pub dir: PathBuf,
    /// On hybrid hosts, the same cgroup in the v1 `pids` hierarchy, which
    /// the container's processes join too.
    pub v1_dir: Option<PathBuf>,
    /// Full (64-hex) container id.
    pub id: String,
    /// Pod uid in the cgroup path.
    pub pod_uid: String,
    created: Vec<PathBuf>,
}

const V1_PIDS: &str = "/sys/fs/cgroup/pids";

/// The cgroup v2 hierarchy: `unified` on hybrid hosts, the root on pure v2.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

impl FakeContainer {
    /// Create the cgroup; `tag` tells apart several containers of one test
    /// (ids also carry the test's pid, so parallel test binaries never
    /// collide). Panics if there is no writable hierarchy.
    pub fn create(tag: u8) -> FakeContainer {
        let pid = std::process::id();
        let id = format!("{pid:08x}{tag:02x}{}", "d".repeat(54));
        let pod_uid = format!("{pid:08x}-{tag:02x}ee-4fff-8aaa-bbbbbbbbbbbb");
        let v2 = v2_root();
        let (root, rel) = match v2.clone() {
            Some(root) => {
                let us = pod_uid.replace('-', "_");
                (
                    root,
                    format!(
                        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{us}.slice/cri-containerd-{id}.scope"
                    ),
                )
            }
            None => (
                PathBuf::from(V1_PIDS),
                format!("kubepods/besteffort/pod{pod_uid}/{id}"),
            ),
        };
        assert!(
            root.join("cgroup.procs").exists(),
            "no writable cgroup hierarchy at {}",
            root.display()
        );
        let hybrid = v2.is_some_and(|r| r.ends_with("unified"))
            && Path::new(V1_PIDS).join("cgroup.procs").exists();
        let mut created = Vec::new();
        let dir = make_dirs(&root, &rel, &mut created);
        let v1_dir = hybrid.then(|| make_dirs(Path::new(V1_PIDS), &rel, &mut created));
        FakeContainer {
            dir,
            v1_dir,
            id,
            pod_uid,
            created,
        }
    }

    /// The kernel's id of the container's cgroup in the v2 hierarchy (what
    /// `bpf_get_current_cgroup_id()` reports for its processes): the
    /// directory's inode. `None` when only v1 is used.
    pub fn cgroup_id(&self) -> Option<u64> {
        if self.dir.starts_with(V1_PIDS) {
            return None;
        }
        std::fs::metadata(&self.dir).ok().map(|m| m.ino())
    }

    /// `container.id` as Falco prints it: the first 12 characters.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// A command that runs `program args...` as this container's first
    /// process: a shell moves itself into the cgroup (on hybrid hosts: the
    /// v1 one, then the unified one), then execs the program (what runc
    /// does), so the program's pid is the returned child's pid.
    ///
    /// mamori reads `/proc/<pid>/cgroup` when it handles the event; for a
    /// process that has exited by then it goes by the kernel's cgroup id of
    /// the event, which says which container it was in on v2 and hybrid
    /// hosts. On pure v1 hosts it falls back to the parent's container, and
    /// this one's parent is the (host) test: there, use it only for programs
    /// that stay alive until their events are seen, and run short-lived
    /// tools through [`FakeContainer::spawn`].
    pub fn command(&self, program: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c");
        match &self.v1_dir {
            Some(v1) => cmd
                .arg(r#"echo $$ > "$0" && echo $$ > "$1" && shift && exec "$@""#)
                .arg(v1.join("cgroup.procs"))
                .arg(self.dir.join("cgroup.procs")),
            None => cmd
                .arg(r#"echo $$ > "$0" && exec "$@""#)
                .arg(self.dir.join("cgroup.procs")),
        };
        cmd.arg(program.as_ref()).args(args);
        cmd
    }

    /// Run `program args...` in the container the way a workload does: a
    /// long-lived container process (a shell moved into the cgroup, then
    /// exec'd, as runc does; in a session of its own, so without a
    /// controlling terminal) starts it as a child and stays alive until the
    /// returned [`InContainer`] is released or dropped, so the tool is
    /// attributed to the container even after it exits.
    pub fn spawn(&self, program: impl AsRef<Path>, args: &[&str]) -> InContainer {
        let holder = r#""$@" & echo "pid=$!"; wait $!; echo "rc=$?"; read -r _"#;
        let mut cmd = self.command("sh", &["-c", holder, "sh"]);
        cmd.arg(program.as_ref())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // A session of its own: like a container started without -t, no
        // controlling terminal (proc.tty = 0) even when the test has one.
        // SAFETY: setsid is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut holder = cmd.spawn().expect("spawn the container process");
        let stdout = holder.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut run = InContainer {
            holder: Some(holder),
            pid: 0,
            code: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while run.code.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "{} in the container did not finish",
                        program.as_ref().display()
                    )
                });
            if let Some(p) = line.strip_prefix("pid=") {
                run.pid = p.parse().unwrap();
            } else if let Some(c) = line.strip_prefix("rc=") {
                run.code = Some(c.parse().unwrap());
            }
        }
        run
    }
}

/// Create `root/rel` one level at a time, noting what was created.
fn make_dirs(root: &Path, rel: &str, created: &mut Vec<PathBuf>) -> PathBuf {
    let mut dir = root.to_path_buf();
    for part in rel.split('/') {
        dir.push(part);
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            created.push(dir.clone());
        }
    }
    dir
}

/// A tool that ran in a [`FakeContainer`], its container process still alive.
pub struct InContainer {
    holder: Option<Child>,
    /// The tool's pid.
    pub pid: u32,
    /// The tool's exit code.
    pub code: Option<i32>,
}

impl InContainer {
    /// Let the container process exit.
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(mut h) = self.holder.take() {
            drop(h.stdin.take());
            for _ in 0..250 {
                if h.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

impl Drop for InContainer {
    fn drop(&mut self) {
        self.end();
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        for d in self.created.iter().rev() {
            // Members must have exited; retry briefly while the kernel
            // finishes tearing them down.
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
