//! End-to-end test of container resolution on real cgroups (root only).
//!
//! The test creates cgroups named exactly as the kubelet names them — a
//! cgroupfs-driver path in a cgroup v1 hierarchy (EKS AL2) and a
//! systemd-driver path in the cgroup v2 hierarchy (AL2023) — moves real
//! processes into them through `cgroup.procs`, and checks that the enricher
//! reading `/proc/<pid>/cgroup` names the right container and pod. A second
//! test runs the real `mamori capture` and checks that an exec inside such a
//! cgroup comes out with the container and pod ids.
//!
//! Needs a host with a writable v1 `pids` hierarchy and/or a v2 hierarchy at
//! `/sys/fs/cgroup/unified` or `/sys/fs/cgroup` (each part is skipped, with a
//! message, when its hierarchy is missing). Everything created is removed.
//!
//! Run: `cargo test -p sensor --features e2e --test enrich_cgroup -- --test-threads=1`

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use mamori::{
    enrich::Enricher,
    event::{Event, EvtType, Process},
};

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
    Event {
        ts: 1,
        evt_type: EvtType::Openat,
        res: 0,
        proc: Process {
            pid,
            loginuid: -1,
            ..Default::default()
        },
        fd: None,
        open: None,
        exec: None,
        lifecycle: None,
        container: None,
        drops: None,
    }
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

/// Start `mamori capture --json --comm NAME` and wait until it is attached.
fn start_capture(comm: &str) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mamori"))
        .args(["capture", "--json", "--events", "exec", "--comm", comm])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mamori capture did not attach; stderr: {log:?}");
        };
        let ready = line.contains("attached");
        log.push(line);
        if ready {
            return (child, log);
        }
    }
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

    let (capture, _log) = start_capture(comm);
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
