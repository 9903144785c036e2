//! A fake container for end-to-end tests (root only; included with
//! `#[path = "common/container.rs"] mod container;`): a cgroup named exactly
//! as the kubelet + containerd name one, so mamori's enricher resolves a
//! container id for processes inside it. The cgroup v2 hierarchy is used when
//! there is one (systemd-driver path), else the v1 `pids` hierarchy
//! (cgroupfs-driver path). Dropping it removes the directories it created.
#![allow(dead_code)] // each test uses the part it needs

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct FakeContainer {
    /// The container's cgroup directory.
    pub dir: PathBuf,
    /// Full (64-hex) container id.
    pub id: String,
    /// Pod uid in the cgroup path.
    pub pod_uid: String,
    created: Vec<PathBuf>,
}

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
        let (root, rel) = match v2_root() {
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
                PathBuf::from("/sys/fs/cgroup/pids"),
                format!("kubepods/besteffort/pod{pod_uid}/{id}"),
            ),
        };
        assert!(
            root.join("cgroup.procs").exists(),
            "no writable cgroup hierarchy at {}",
            root.display()
        );
        let mut c = FakeContainer {
            dir: root.clone(),
            id,
            pod_uid,
            created: Vec::new(),
        };
        for part in rel.split('/') {
            c.dir.push(part);
            if !c.dir.exists() {
                std::fs::create_dir(&c.dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", c.dir.display()));
                c.created.push(c.dir.clone());
            }
        }
        c
    }

    /// `container.id` as Falco prints it: the first 12 characters.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// A command that runs `program args...` as this container's first
    /// process: a shell moves itself into the cgroup, then execs the program
    /// (what runc does), so the program's pid is the returned child's pid.
    ///
    /// mamori reads `/proc/<pid>/cgroup` when it handles the event; a
    /// process that has exited by then is attributed to its parent's
    /// container, and this one's parent is the (host) test. Use it only for
    /// programs that stay alive until their events are seen; short-lived
    /// tools go through [`FakeContainer::spawn`].
    pub fn command(&self, program: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg(program.as_ref())
            .args(args);
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
