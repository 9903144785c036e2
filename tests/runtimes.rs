//! End-to-end: alerts from containers started by real runtimes — podman,
//! docker and containerd driven through its CRI — carry what the runtime
//! knows (container name, image, digest, privileged, start time and, from
//! the CRI, the pod's name, namespace and uid) with no API server, and the
//! process fields of a process a runtime exec'd into a container are the
//! container's: its cwd, its real parent, the file its image came from.
//!
//! Root only; needs `podman`, `docker.io`, `containerd` (and `runc`),
//! installed by `.ci/run`. Network: podman and docker containers run with
//! `--network none`; the CRI pod uses the node's network namespace and
//! connects only to 127.0.0.1.
//!
//! Run: `cargo test -p sensor --features e2e --test runtimes -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;
#[path = "runtimes/daemons.rs"]
mod daemons;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use daemons::{docker, podman, run, Daemon, IMAGE};
use mamori::enrich::runtime::cri::{self, api};
use serde_json::Value;

/// The test's rules; every field the checks read is in the output, so it
/// is in `output_fields`.
fn rules() -> String {
    let out = "rt %container.id %container.name %container.image %container.image.repository \
        %container.image.tag %container.image.digest %container.privileged %container.start_ts \
        %container.type %k8s.pod.name %k8s.ns.name %k8s.pod.uid %proc.cmdline %proc.pid \
        %proc.ppid %proc.pname %proc.cwd %proc.exepath %proc.exe %fd.name";
    let rule = |name: &str, cond: &str| {
        format!("- rule: {name}\n  desc: {name}\n  condition: {cond}\n  output: \"{out}\"\n  priority: NOTICE\n")
    };
    [
        rule(
            "rt exec",
            "evt.type in (execve, execveat) and evt.rawres = 0 and container.id != host \
             and proc.cmdline contains mamori-rt",
        ),
        rule(
            "rt open",
            "evt.type in (open, openat, openat2) and container.id != host \
             and fd.name contains mamori-rt",
        ),
        rule(
            "rt connect",
            "evt.type = connect and container.id != host and fd.rport = 7",
        ),
    ]
    .concat()
}

/// What a test container runs when exec'd into (with `-w /tmp`): a relative
/// open, a loopback connect to a closed port.
const SCRIPT: &str = "cat mamori-rt-open 2>/dev/null; nc 127.0.0.1 7 </dev/null 2>/dev/null; true";

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        // podman leaves its overlay directory bind-mounted on itself.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        for point in mounts.lines().filter_map(|l| l.split(' ').nth(1)) {
            if Path::new(point).starts_with(&self.0) {
                let c = std::ffi::CString::new(point).unwrap();
                // SAFETY: umount2 with a NUL-terminated path alive for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `mamori run` this test started; stopped when dropped.
struct Mamori(Child);

impl Drop for Mamori {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `mamori run` with the test's rules, its alerts in a file, asking the
/// daemons' private sockets.
fn start_mamori(dir: &Path, sockets: [&Path; 3]) -> (Mamori, PathBuf) {
    let alerts = dir.join("alerts.jsonl");
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, self::rules()).unwrap();
    let [cri, dockerd, podman] = sockets.map(|s| s.display().to_string());
    let config = format!(
        "outputs:\n  stdout: {{enabled: false}}\n  file: {{path: {}, minimum_priority: debug}}\n\
         container_engines:\n  cri: {{sockets: [{cri}]}}\n  docker: {{sockets: [{dockerd}]}}\n  \
         podman: {{sockets: [{podman}]}}\n",
        alerts.display()
    );
    let cfg = dir.join("mamori.yaml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.arg("run")
        .arg("--rules")
        .arg(&rules)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG");
    let (child, mut log, rx) = common::spawn_until_attached(cmd);
    let mamori = Mamori(child);
    // The engines are detected right after the programs are attached.
    let detected = |log: &[String], engine: &str| {
        log.iter()
            .any(|l| l.contains(&format!("container engine {engine}: /")))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !["cri", "docker", "podman"]
        .iter()
        .all(|e| detected(&log, e))
    {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => log.push(line),
            Err(_) => panic!("not every engine socket was detected: {log:#?}"),
        }
    }
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (mamori, alerts)
}

fn text(a: &Value, k: &str) -> String {
    match &a["output_fields"][k] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Wait (at most 20 s) for an alert of `rule` from container `name`
/// matching `pred`.
fn wait_alert(file: &Path, rule: &str, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<Value> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(a) = all
            .iter()
            .find(|a| a["rule"] == rule && text(a, "container.name") == name && pred(a))
        {
            return a.clone();
        }
        if Instant::now() > deadline {
            let ours: Vec<&Value> = all.iter().filter(|a| a["rule"] == rule).collect();
            panic!("no {rule:?} alert from container {name}; {rule:?} alerts: {ours:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The alerts of one exec'd script in container `name`, checked: metadata
/// (with `pod` = name, namespace, uid for CRI) and process fields.
fn check(alerts: &Path, engine: &str, name: &str, pod: Option<(&str, &str, &str)>) {
    let sh = wait_alert(alerts, "rt exec", name, |a| {
        text(a, "proc.cmdline").starts_with("sh -c cat mamori-rt-open")
    });
    // busybox's shell runs `cat` by exec'ing /proc/self/exe with argv[0]
    // `cat` (so `proc.name` is `exe`, as Falco shows it too).
    let cat = wait_alert(alerts, "rt exec", name, |a| {
        text(a, "proc.exe") == "cat" && text(a, "proc.cmdline").ends_with(" mamori-rt-open")
    });
    // (The runtime's own opens under the test's directory match the rule
    // too: the one wanted is the container's relative open.)
    let open = wait_alert(alerts, "rt open", name, |a| {
        text(a, "fd.name") == "/tmp/mamori-rt-open"
    });
    let connect = wait_alert(alerts, "rt connect", name, |a| {
        text(a, "proc.cmdline").contains("127.0.0.1")
    });
    for a in [&sh, &cat, &open, &connect] {
        assert_eq!(text(a, "container.image"), IMAGE, "{engine}: {a:#}");
        assert_eq!(text(a, "container.image.repository"), "localhost/mamori-bb");
        assert_eq!(text(a, "container.image.tag"), "rt");
        assert!(
            text(a, "container.image.digest").starts_with("sha256:"),
            "{a:#}"
        );
        assert_eq!(a["output_fields"]["container.privileged"], false, "{a:#}");
        let started: u64 = text(a, "container.start_ts").parse().unwrap_or(0);
        assert!(started > 1_700_000_000_000_000_000, "{a:#}");
        if let Some((pod, ns, uid)) = pod {
            assert_eq!(text(a, "k8s.pod.name"), pod, "{a:#}");
            assert_eq!(text(a, "k8s.ns.name"), ns);
            assert_eq!(text(a, "k8s.pod.uid"), uid);
        }
    }
    // The runtime exec'd the shell with `-w /tmp`: its cwd is the
    // container's /tmp, not the runtime's directory on the host.
    assert_eq!(text(&sh, "proc.cwd"), "/tmp", "{engine}: {sh:#}");
    assert_eq!(text(&cat, "proc.cwd"), "/tmp", "{engine}: {cat:#}");
    assert_eq!(text(&open, "proc.cwd"), "/tmp", "{open:#}");
    // The shell's child: its parent is the shell, the image busybox (the
    // file behind the `cat` symlink, as the container sees it).
    assert_eq!(text(&cat, "proc.ppid"), text(&sh, "proc.pid"), "{cat:#}");
    assert_eq!(text(&cat, "proc.pname"), "sh");
    assert_eq!(text(&cat, "proc.exepath"), "/bin/busybox", "{cat:#}");
    assert_eq!(text(&cat, "proc.exe"), "cat");
}

#[test]
fn runtime_containers_carry_their_metadata_and_true_process_fields() {
    let dir = std::env::temp_dir().join(format!("mamori-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _tmp = TempDir(dir.clone());
    let tar = daemons::rootfs_tar(&dir);
    let mut podman_d = daemons::start_podman(&dir, &tar);
    let mut docker_d = daemons::start_docker(&dir, &tar);
    let containerd = daemons::start_containerd(&dir, &docker_d);
    let (mamori, alerts) = start_mamori(
        &dir,
        [&containerd.socket, &docker_d.socket, &podman_d.socket],
    );
    let limits = [
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
    ];

    let name = "mamori-rt-podman";
    podman_d.on_drop({
        let mut c = podman(&dir);
        c.args(["rm", "-f", "-t", "0", name]);
        c
    });
    run(podman(&dir)
        .args(["run", "-d", "--network", "none", "--name", name])
        .args(limits)
        .arg(IMAGE));
    run(podman(&dir).args(["exec", "-w", "/tmp", name, "sh", "-c", SCRIPT, name]));
    check(&alerts, "podman", name, None);

    let name = "mamori-rt-docker";
    docker_d.on_drop({
        let mut c = docker(&docker_d);
        c.args(["rm", "-f", name]);
        c
    });
    run(docker(&docker_d)
        .args(["run", "-d", "--network", "none", "--name", name])
        .args(limits)
        .arg(IMAGE));
    run(docker(&docker_d).args(["exec", "-w", "/tmp", name, "sh", "-c", SCRIPT, name]));
    check(&alerts, "docker", name, None);

    let uid = format!("{:08x}-0000-4000-8000-00000000ab01", std::process::id());
    let pod = CriPod::start(&containerd, &dir, &uid);
    pod.exec(&["sh", "-c", SCRIPT, "mamori-rt-cri"]);
    check(
        &alerts,
        "containerd",
        "app",
        Some(("mamori-rt-pod", "mamori-rt-ns", &uid)),
    );
    drop(pod);
    drop(mamori);
}

/// A pod sandbox and its container, created through the CRI as a kubelet
/// would (without the kubelet's labels: the pod is found through the
/// sandbox); removed when dropped.
struct CriPod {
    rt: tokio::runtime::Runtime,
    socket: PathBuf,
    sandbox: String,
    container: String,
}

impl CriPod {
    fn start(d: &Daemon, dir: &Path, uid: &str) -> CriPod {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let logs = dir.join("containerd/logs");
        let node_net = api::NamespaceOption {
            network: api::NamespaceMode::Node as i32,
            ..Default::default()
        };
        let sandbox_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "mamori-rt-pod".into(),
                uid: uid.into(),
                namespace: "mamori-rt-ns".into(),
                attempt: 0,
            }),
            // The node's network (and UTS) namespace: no hostname of its own.
            hostname: String::new(),
            log_directory: logs.display().to_string(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(node_net.clone()),
                    privileged: false,
                }),
            }),
            ..Default::default()
        };
        let (sandbox, container) = rt.block_on(async {
            let mut c = cri::connect(&d.socket).await.expect("CRI connect");
            let sandbox = c
                .run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            let config = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["/bin/sleep".into(), "600".into()],
                working_dir: "/tmp".into(),
                log_path: "app.log".into(),
                linux: Some(api::LinuxContainerConfig {
                    resources: None,
                    security_context: Some(api::LinuxContainerSecurityContext {
                        privileged: false,
                        namespace_options: Some(node_net.clone()),
                    }),
                }),
                ..Default::default()
            };
            let container = c
                .create_container(api::CreateContainerRequest {
                    pod_sandbox_id: sandbox.clone(),
                    config: Some(config),
                    sandbox_config: Some(sandbox_config),
                })
                .await
                .expect("CreateContainer")
                .into_inner()
                .container_id;
            c.start_container(api::StartContainerRequest {
                container_id: container.clone(),
            })
            .await
            .expect("StartContainer");
            (sandbox, container)
        });
        CriPod {
            rt,
            socket: d.socket.clone(),
            sandbox,
            container,
        }
    }

    fn exec(&self, cmd: &[&str]) {
        let r = self.rt.block_on(async {
            let mut c = cri::connect(&self.socket).await.expect("CRI connect");
            c.exec_sync(api::ExecSyncRequest {
                container_id: self.container.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            })
            .await
            .expect("ExecSync")
            .into_inner()
        });
        assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    }
}

impl Drop for CriPod {
    fn drop(&mut self) {
        let id = self.sandbox.clone();
        let socket = self.socket.clone();
        self.rt.block_on(async move {
            if let Ok(mut c) = cri::connect(&socket).await {
                let _ = c
                    .stop_pod_sandbox(api::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = c
                    .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
            }
        });
    }
}
