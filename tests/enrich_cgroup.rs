//! End-to-end test of container resolution on real cgroups (root only).
//!
//! The test creates cgroups named exactly as the kubelet names them — a
//! cgroupfs-driver path in a cgroup v1 hierarchy (EKS AL2) and a
//! systemd-driver path in the cgroup v2 hierarchy (AL2023) — moves real
//! processes into them through `cgroup.procs`, and checks that the enricher
//! reading `/proc/<pid>/cgroup` names the right container and pod. A second
//! test runs the real `mamori capture` and checks that an exec inside such a
//! cgroup comes out with the container and pod ids; a third, that a
//! container process which exited (and was reaped) before mamori handled its
//! exec still does, by the kernel's cgroup id of the event.
//!
//! Needs a host with a writable v1 `pids` hierarchy and/or a v2 hierarchy at
//! `/sys/fs/cgroup/unified` or `/sys/fs/cgroup` (each part is skipped, with a
//! message, when its hierarchy is missing). Everything created is removed.
//!
//! Run: `cargo test -p sensor --features e2e --test enrich_cgroup -- --test-threads=1`

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

#[path = "enrich_cgroup/apiserver.rs"]
mod apiserver;
#[path = "common/mod.rs"]
mod common;
#[path = "common/container.rs"]
mod container;

use apiserver::{api_pod, fake_apiserver};
use mamori::enrich::Enricher;
use mamori_rules::event::{Event, EvtType, Process};

/// Deterministic but test-specific ids, so parallel runs never collide.
fn ids(tag: u8) -> (String, String) {
    let pid = std::process::id();
    let id = format!("{:08x}{:02x}{}", pid, tag, "c".repeat(54));
    let uid = format!("{:08x}-{:02x}aa-4bbb-8ccc-dddddddddddd", pid, tag);
    (id, uid)
}

/// A cgroup directory chain, removed deepest first on drop.
struct Cgroups {
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// Create `root/rel` one level at a time, remembering what we created.
    fn create(root: &Path, rel: &str) -> Option<(Cgroups, PathBuf)> {
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let mut dirs = Vec::new();
        let mut cur = root.to_path_buf();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            cur.push(part);
            if !cur.exists() {
                std::fs::create_dir(&cur)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", cur.display()));
                dirs.push(cur.clone());
            }
        }
        Some((Cgroups { dirs }, cur))
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // Members must have exited; retry briefly while the kernel
            // finishes tearing them down.
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A sleeping child moved into `cgroup`.
fn child_in(cgroup: &Path) -> Child {
    let child = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string())
        .unwrap_or_else(|e| panic!("moving {} into {}: {e}", child.id(), cgroup.display()));
    child
}

fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn event_of(pid: u32) -> Event {
    Event::new(
        1,
        EvtType::Openat,
        0,
        Process {
            pid,
            loginuid: -1,
            ..Default::default()
        },
    )
}

/// The cgroup v2 hierarchy: `unified` on hybrid hosts, the root on pure v2.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
}

fn v1_layout(tag: u8) -> (String, String, String) {
    let (id, uid) = ids(tag);
    (format!("kubepods/burstable/pod{uid}/{id}"), id, uid)
}

fn v2_layout(tag: u8) -> (String, String, String) {
    let (id, uid) = ids(tag);
    let us = uid.replace('-', "_");
    (
        format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{us}.slice/cri-containerd-{id}.scope"
        ),
        id,
        uid,
    )
}

#[test]
fn resolver_names_container_and_pod_in_real_v1_and_v2_cgroups() {
    let mut checked = 0;
    let mut en = Enricher::new("/proc", 64, None);

    let (rel, id, uid) = v1_layout(1);
    match Cgroups::create(Path::new("/sys/fs/cgroup/pids"), &rel) {
        Some((_guard, dir)) => {
            let child = child_in(&dir);
            let mut ev = event_of(child.id());
            en.enrich(&mut ev);
            reap(child);
            let c = ev.container.expect("enriched");
            assert_eq!(c.full_id, id, "v1 container id");
            assert_eq!(c.id, &id[..12]);
            assert_eq!(c.pod.as_ref().expect("pod").uid, uid, "v1 pod uid");
            checked += 1;
        }
        None => eprintln!("no cgroup v1 pids hierarchy: v1 part skipped"),
    }

    let (rel, id, uid) = v2_layout(2);
    match v2_root().and_then(|root| Cgroups::create(&root, &rel)) {
        Some((_guard, dir)) => {
            let child = child_in(&dir);
            let mut ev = event_of(child.id());
            en.enrich(&mut ev);
            reap(child);
            let c = ev.container.expect("enriched");
            assert_eq!(c.full_id, id, "v2 container id");
            assert_eq!(c.runtime.as_deref(), Some("containerd"));
            assert_eq!(c.pod.as_ref().expect("pod").uid, uid, "v2 pod uid");
            checked += 1;
        }
        None => eprintln!("no cgroup v2 hierarchy: v2 part skipped"),
    }

    // This test process itself is a host process.
    let mut ev = event_of(std::process::id());
    en.enrich(&mut ev);
    assert!(ev.container.expect("enriched").is_host());
    assert!(checked > 0, "neither a v1 nor a v2 hierarchy to test on");
}

/// The library on the real unified hierarchy: a cgroup id seen once through
/// `/proc` is remembered (the stat'd inode is the kernel's id), and one never
/// seen is found by walking `/sys/fs/cgroup[/unified]`.
#[test]
fn resolver_finds_gone_processes_by_cgroup_id_on_the_real_hierarchy() {
    let Some(root) = mamori::enrich::cgroupfs::unified_root() else {
        eprintln!("no cgroup v2 hierarchy: skipped");
        return;
    };
    let mut en = Enricher::new("/proc", 64, None).with_cgroup_root(Some(root.clone()));
    let (rel, id, uid) = v2_layout(7);
    let (guard, dir) = Cgroups::create(&root, &rel).expect("cgroup");
    let (rel2, id2, _) = v2_layout(8);
    let (guard2, dir2) = Cgroups::create(&root, &rel2).expect("cgroup");
    let ino = |d: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(d).unwrap());
    // Seen alive once, then gone.
    let child = child_in(&dir);
    let pid = child.id();
    let mut ev = event_of(pid);
    ev.proc.cgroup_id = ino(&dir);
    en.enrich(&mut ev);
    reap(child);
    assert_eq!(ev.container.expect("enriched").full_id, id);
    let mut gone = event_of(pid);
    gone.evt_type = EvtType::Execve;
    gone.proc.cgroup_id = ino(&dir);
    en.enrich(&mut gone);
    let c = gone.container.expect("resolved by cgroup id");
    assert_eq!(c.full_id, id);
    assert_eq!(c.pod.as_ref().expect("pod").uid, uid);
    // Never seen: a walk.
    let mut gone = event_of(u32::MAX - 3);
    gone.proc.cgroup_id = ino(&dir2);
    en.enrich(&mut gone);
    assert_eq!(gone.container.expect("resolved by a walk").full_id, id2);
    let st = en.stats();
    assert_eq!(
        (st.cgroup_id_hits, st.cgroup_walks, st.cgroup_walk_hits),
        (1, 1, 1),
        "{st:?}"
    );
    drop(guard2);
    drop(guard);
}

/// Start `mamori capture --json --comm NAME` and wait until it is attached.
/// Also returns the rest of its stderr, line by line (until it exits).
fn start_capture(
    comm: &str,
    env: &[(&str, String)],
) -> (Child, Vec<String>, mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["capture", "--json", "--events", "exec", "--comm", comm])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    common::spawn_until_attached(cmd)
}

#[test]
fn capture_enriches_an_exec_inside_kubepods_cgroups() {
    let dir = std::env::temp_dir().join(format!("mamori-enrich-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A renamed sleep: a comm nothing else on the machine has, alive long
    // enough for its /proc entry to be read.
    let comm = "mamori-e2e-ctr";
    let tool = dir.join(comm);
    std::fs::copy("/bin/sleep", &tool).unwrap();

    let mut layouts = Vec::new();
    let mut guards = Vec::new();
    let (rel, id, uid) = v1_layout(3);
    if let Some((g, d)) = Cgroups::create(Path::new("/sys/fs/cgroup/pids"), &rel) {
        guards.push(g);
        layouts.push((d, id, uid));
    }
    let (rel, id, uid) = v2_layout(4);
    if let Some((g, d)) = v2_root().and_then(|r| Cgroups::create(&r, &rel)) {
        guards.push(g);
        layouts.push((d, id, uid));
    }
    assert!(!layouts.is_empty(), "no cgroup hierarchy to test on");

    let (capture, _log, stderr_rx) = start_capture(comm, &[]);
    // The shell moves itself into the container's cgroup, then execs the
    // tool: what runc does for a container's first process.
    let mut runs = Vec::new();
    for (d, _, _) in &layouts {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec {} 1",
            d.display(),
            tool.display()
        );
        runs.push(Command::new("sh").args(["-c", &script]).spawn().unwrap());
    }
    let pids: Vec<u32> = runs.iter().map(Child::id).collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(capture.id() as i32, libc::SIGINT) };
    let out = capture.wait_with_output().unwrap();
    assert!(out.status.success(), "capture exited with {}", out.status);
    // Off Kubernetes: no pod watch, and nothing about it in the logs.
    let stderr: String = stderr_rx.iter().collect::<Vec<_>>().join("\n");
    assert!(
        !stderr.to_lowercase().contains("pod") && !stderr.contains("WARN"),
        "quiet without Kubernetes: {stderr}"
    );
    let events: Vec<Event> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is an event"))
        .collect();

    for ((_, id, uid), pid) in layouts.iter().zip(&pids) {
        let ev = events
            .iter()
            .find(|e| e.evt_type == EvtType::Execve && e.proc.pid == *pid && e.res == 0)
            .unwrap_or_else(|| panic!("no exec of pid {pid} in {events:#?}"));
        let c = ev.container.as_ref().expect("container filled");
        assert_eq!(&c.full_id, id, "{ev:#?}");
        assert_eq!(c.id, &id[..12]);
        assert_eq!(&c.pod.as_ref().expect("pod").uid, uid);
    }
    drop(guards);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child killed and reaped when dropped (also when a test fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fake containers removed newest first (the first one made the parent
/// cgroups the others share), also when a test fails.
struct LastFirst(Vec<container::FakeContainer>);

impl Drop for LastFirst {
    fn drop(&mut self) {
        while self.0.pop().is_some() {}
    }
}

/// Containers whose only process is a one-shot tool (a renamed `true`),
/// gone and reaped long before mamori handles its exec (mamori drains the
/// ring every few ms; `true` lives well under one): `/proc/<pid>/cgroup` is
/// gone, and the parent is the host test. The exec must still name the
/// container — a brand-new one (created after mamori started: found by
/// walking the v2 hierarchy for the event's cgroup id) and one whose main
/// process mamori saw (a `kubectl exec`: found in the cgroup id cache).
#[test]
fn capture_attributes_a_gone_container_process_by_its_cgroup_id() {
    if v2_root().is_none() {
        eprintln!("no cgroup v2 hierarchy: the kernel's cgroup id means nothing here, skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mamori-enrich-gone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let comm = "mamori-e2e-once";
    let tool = dir.join(comm);
    std::fs::copy("/bin/true", &tool).unwrap();

    let (capture, _log, stderr_rx) = start_capture(comm, &[]);
    std::thread::sleep(Duration::from_millis(300));
    // Brand-new containers, each a first process that execs the tool.
    let fresh = LastFirst(
        (0..4)
            .map(|i| container::FakeContainer::create(0x40 + i))
            .collect(),
    );
    let mut runs: Vec<(u32, &container::FakeContainer)> = Vec::new();
    for c in &fresh.0 {
        let mut child = c.command(&tool, &[]).spawn().unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        runs.push((pid, c));
    }
    // A running container (its main process seen by mamori), then two
    // one-shot tools exec'd into it.
    let running = container::FakeContainer::create(0x50);
    let main = Reaped(running.command("sleep", &["20"]).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..2 {
        let mut child = running.command(&tool, &[]).spawn().unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        runs.push((pid, &running));
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe_sigint(&capture);
    let out = capture.wait_with_output().unwrap();
    drop(main);
    let stderr: Vec<String> = stderr_rx.iter().collect();
    assert!(
        out.status.success(),
        "capture exited with {}: {stderr:?}",
        out.status
    );
    let events: Vec<Event> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is an event"))
        .collect();
    for (pid, c) in &runs {
        let ev = events
            .iter()
            .find(|e| e.evt_type == EvtType::Execve && e.proc.pid == *pid && e.res == 0)
            .unwrap_or_else(|| panic!("no exec of pid {pid} in {events:#?}"));
        // The kernel's id is the container's v2 directory.
        assert_eq!(Some(ev.proc.cgroup_id), c.cgroup_id(), "{ev:#?}");
        let got = ev.container.as_ref();
        assert_eq!(
            got.map(|c| c.full_id.as_str()),
            Some(c.id.as_str()),
            "exec of gone pid {pid} not attributed to its container: {ev:#?}"
        );
        let got = got.unwrap();
        assert_eq!(got.id, c.short_id());
        assert_eq!(got.runtime.as_deref(), Some("containerd"));
        assert_eq!(got.pod.as_ref().expect("pod").uid, c.pod_uid);
    }
    drop(running);
    drop(fresh);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run `tool` as the first process of the container cgroup `cg`; its pid.
fn exec_in(cg: &Path, tool: &Path) -> u32 {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} 1",
        cg.display(),
        tool.display()
    );
    let run = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let pid = run.id();
    assert!(run.wait_with_output().unwrap().status.success());
    pid
}

#[test]
fn capture_enriches_an_exec_with_the_pod_from_the_api() {
    let (rel, id, uid) = v2_layout(5);
    let (rel, id, uid, root) = match v2_root() {
        Some(r) => (rel, id, uid, r),
        None => {
            let (rel, id, uid) = v1_layout(5);
            (rel, id, uid, PathBuf::from("/sys/fs/cgroup/pids"))
        }
    };
    let (guard, cg) = Cgroups::create(&root, &rel).expect("a cgroup hierarchy");
    // A second pod that the watch delivers only after its first exec.
    let (late_id, late_uid) = ids(6);
    let late_rel = if root.ends_with("pids") {
        v1_layout(6).0
    } else {
        v2_layout(6).0
    };
    let (late_guard, late_cg) = Cgroups::create(&root, &late_rel).expect("late cgroup");
    let node = "mamori-e2e-node";
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
        "items": [api_pod("api-6b7f9d8c4-k2x9q", &uid, &id, node, "7")]
    })
    .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen_tx, seen_rx) = mpsc::channel();
    let (push_tx, push_rx) = mpsc::channel();
    let port = fake_apiserver(list, stop.clone(), seen_tx, push_rx);

    let dir = std::env::temp_dir().join(format!("mamori-enrich-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = apiserver::write_kubeconfig(&dir, port);
    let comm = "mamori-e2e-pod";
    let tool = dir.join(comm);
    std::fs::copy("/bin/sleep", &tool).unwrap();

    let (capture, log, stderr_rx) = start_capture(
        comm,
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("NODE_NAME", node.to_string()),
        ],
    );
    // Wait for the watch (it starts after the list was applied).
    let targets = match wait_for_watch(&seen_rx) {
        Ok(targets) => targets,
        Err(targets) => {
            unsafe_sigint(&capture);
            let _ = capture.wait_with_output();
            let rest: Vec<String> = stderr_rx.iter().collect();
            panic!("no pod watch from mamori: {targets:?} {log:?} {rest:?}");
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    let pid = exec_in(&cg, &tool);
    // The late pod: its exec (1 s of sleep) is over before the watch says
    // ADDED; the event is held and comes out with the pod.
    let late_pid = {
        let cg = late_cg.clone();
        let tool = tool.clone();
        let t = std::thread::spawn(move || exec_in(&cg, &tool));
        std::thread::sleep(Duration::from_millis(300));
        let added = serde_json::json!({"type": "ADDED",
            "object": api_pod("api-6b7f9d8c4-late1", &late_uid, &late_id, node, "8")});
        push_tx.send(format!("{added}\n")).unwrap();
        t.join().unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    unsafe_sigint(&capture);
    let out = capture.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(out.status.success(), "capture exited with {}", out.status);
    let stderr: Vec<String> = stderr_rx.iter().collect();
    let events: Vec<Event> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is an event"))
        .collect();
    assert_first_pod(&events, pid, &id, &uid, &stderr);
    // Only this node's pods were asked for, and never per event.
    for t in &targets {
        assert!(
            t.contains("fieldSelector=spec.nodeName%3Dmamori-e2e-node"),
            "{t}"
        );
    }
    assert_late_pod(&events, late_pid, &late_id, &late_uid);
    // Deepest first: the late pod's cgroups share the parents of the first.
    drop(late_guard);
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The request targets the fake API server saw, up to the first watch
/// (bounded: 30 s); `Err` with the targets so far if no watch came.
fn wait_for_watch(seen: &mpsc::Receiver<String>) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut targets = Vec::new();
    while !targets.iter().any(|t: &String| t.contains("watch=true")) {
        match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(t) => targets.push(t),
            Err(_) => return Err(targets),
        }
    }
    Ok(targets)
}

/// The exec of `pid` in the listed pod's container: the container and pod
/// metadata from the API.
fn assert_first_pod(events: &[Event], pid: u32, id: &str, uid: &str, stderr: &[String]) {
    let ev = events
        .iter()
        .find(|e| e.evt_type == EvtType::Execve && e.proc.pid == pid && e.res == 0)
        .unwrap_or_else(|| panic!("no exec of pid {pid} in {events:#?}; stderr {stderr:?}"));
    let c = ev.container.as_ref().expect("container");
    assert_eq!(c.full_id, id);
    assert_eq!(c.name.as_deref(), Some("server"), "{ev:#?}");
    assert_eq!(
        c.image_repository.as_deref(),
        Some("registry.example/payments/api")
    );
    assert_eq!(c.image_tag.as_deref(), Some("2.4.1"));
    assert_eq!(c.image_digest.as_deref(), Some("sha256:feedbeef"));
    assert_eq!(c.privileged, Some(false));
    let pod = c.pod.as_ref().expect("pod");
    assert_eq!(pod.uid, uid);
    assert_eq!(pod.name.as_deref(), Some("api-6b7f9d8c4-k2x9q"));
    assert_eq!(pod.namespace.as_deref(), Some("payments"));
    assert_eq!(pod.labels.get("app").map(String::as_str), Some("api"));
    assert_eq!(pod.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(pod.workload_name.as_deref(), Some("api"));
    assert_eq!(pod.service_account.as_deref(), Some("api"));
}

/// The exec of `late_pid`, held until the watch added its pod.
fn assert_late_pod(events: &[Event], late_pid: u32, late_id: &str, late_uid: &str) {
    let late = events
        .iter()
        .find(|e| e.evt_type == EvtType::Execve && e.proc.pid == late_pid && e.res == 0)
        .unwrap_or_else(|| panic!("no exec of pid {late_pid} in {events:#?}"));
    let c = late.container.as_ref().expect("container");
    assert_eq!(c.full_id, late_id);
    assert_eq!(
        c.name.as_deref(),
        Some("server"),
        "held for the pod: {late:#?}"
    );
    let pod = c.pod.as_ref().expect("pod");
    assert_eq!(pod.name.as_deref(), Some("api-6b7f9d8c4-late1"));
    assert_eq!(pod.uid, late_uid);
}

fn unsafe_sigint(child: &Child) {
    // SAFETY: sending SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}
