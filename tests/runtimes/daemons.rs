//! Real container runtimes for the runtime tests, each private to the test:
//! its own socket, root and state under the test's directory, nothing
//! pulled (the image is a busybox-static root filesystem imported), every
//! container without a network of its own or on the host's loopback only.
//!
//! - podman: `podman system service` on a private socket, `--runtime runc`
//!   (crun 1.8 refuses hybrid cgroup hosts), its own `--root`/`--runroot`;
//! - docker: `dockerd` without bridge or iptables, its own data and exec
//!   roots and socket;
//! - containerd with its CRI plugin: own root, state and sockets, an empty
//!   CNI directory (pods use the node's network namespace), the imported
//!   image as its sandbox image, `restrict_oom_score_adj` (root here lacks
//!   CAP_SYS_RESOURCE).
//!
//! Every daemon is stopped (and its containers removed) when dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The image every runtime runs: busybox-static, `sleep 600` by default.
pub const IMAGE: &str = "localhost/mamori-bb:rt";

/// Run a command to completion; panics with its output on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wait (at most 30 s) until `path` exists; panics with the daemon's log.
fn wait_for(path: &Path, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("no {} after 30 s; log:\n{log}", path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// A busybox-static root filesystem as a tar file (what `import` takes).
pub fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "nc", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    tar
}

/// A daemon this test started; killed (after `cleanup`) when dropped.
pub struct Daemon {
    pub socket: PathBuf,
    child: Child,
    cleanup: Vec<Command>,
}

impl Daemon {
    /// Remove `what` before the daemon stops (a container, a pod).
    pub fn on_drop(&mut self, cmd: Command) {
        self.cleanup.push(cmd);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for c in &mut self.cleanup {
            let _ = c
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The podman command line on the private store.
pub fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("podman/root"))
        .arg("--runroot")
        .arg(dir.join("podman/run"))
        .args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

/// podman's API service on a private socket, with the image imported.
pub fn start_podman(dir: &Path, tar: &Path) -> Daemon {
    let socket = dir.join("podman/podman.sock");
    std::fs::create_dir_all(dir.join("podman")).unwrap();
    run(podman(dir)
        .arg("import")
        .args(["--change", r#"CMD ["/bin/sleep", "600"]"#])
        .arg(tar)
        .arg(IMAGE));
    let log = dir.join("podman/service.log");
    let child = spawn_logged(
        podman(dir)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display())),
        &log,
    );
    wait_for(&socket, &log);
    Daemon {
        socket,
        child,
        cleanup: Vec::new(),
    }
}

/// The docker command line on the private daemon.
pub fn docker(d: &Daemon) -> Command {
    let mut c = Command::new("docker");
    c.arg("-H").arg(format!("unix://{}", d.socket.display()));
    c
}

/// dockerd on private roots and socket, with the image imported.
pub fn start_docker(dir: &Path, tar: &Path) -> Daemon {
    let base = dir.join("docker");
    std::fs::create_dir_all(&base).unwrap();
    let socket = base.join("docker.sock");
    let log = base.join("dockerd.log");
    let child = spawn_logged(
        Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--ip-masq=false", "--containerd-namespace=mamori-rt"])
            .arg("--data-root")
            .arg(base.join("data"))
            .arg("--exec-root")
            .arg(base.join("exec"))
            .arg("--pidfile")
            .arg(base.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display())),
        &log,
    );
    wait_for(&socket, &log);
    let d = Daemon {
        socket,
        child,
        cleanup: Vec::new(),
    };
    // The socket exists a moment before the API answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&d)
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "dockerd never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    run(docker(&d)
        .arg("import")
        .args(["--change", r#"CMD ["/bin/sleep", "600"]"#])
        .arg(tar)
        .arg(IMAGE));
    d
}

/// containerd with its CRI plugin on private paths; the image (saved from
/// the docker daemon `docker_d`, so it carries its command) imported into
/// the CRI's namespace and used as the sandbox image too.
pub fn start_containerd(dir: &Path, docker_d: &Daemon) -> Daemon {
    let base = dir.join("containerd");
    for d in ["cni-conf", "cni-bin", "logs"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let socket = base.join("containerd.sock");
    let b = base.display();
    let config = format!(
        r#"version = 2
root = "{b}/root"
state = "{b}/state"
[grpc]
  address = "{b}/containerd.sock"
[ttrpc]
  address = "{b}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{b}/cni-bin"
    conf_dir = "{b}/cni-conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#
    );
    let cfg = base.join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = base.join("containerd.log");
    let child = spawn_logged(Command::new("containerd").arg("--config").arg(&cfg), &log);
    wait_for(&socket, &log);
    let d = Daemon {
        socket,
        child,
        cleanup: Vec::new(),
    };
    let archive = base.join("image.tar");
    run(docker(docker_d)
        .arg("save")
        .arg("-o")
        .arg(&archive)
        .arg(IMAGE));
    run(Command::new("ctr")
        .arg("--address")
        .arg(&d.socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(&archive));
    d
}
