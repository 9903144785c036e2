//! The file output on a real full disk: a 64 KiB tmpfs mounted in a temp
//! dir. A write that runs out of space must not leave a torn record behind
//! (the next alert would be glued onto it), and only alerts written in full
//! count as sent.
//!
//! Run (as root: it mounts a tmpfs), under the e2e lock:
//! `cargo test -p sensor --features e2e --test outputs_file -- --test-threads=1`

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use mamori::{config, outputs::Outputs};
use mamori_rules::alert::{Alert, Priority};

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("mamori-{name}-{}", std::process::id()));
        // A mount left by an earlier, killed run.
        let _ = Command::new("umount")
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(&dir)
            .status()
            .expect("running mount");
        assert!(st.success(), "mount -t tmpfs failed (root needed)");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn alert(i: usize) -> Alert {
    let mut f = serde_json::Map::new();
    f.insert("proc.name".into(), "cat".into());
    f.insert("fd.name".into(), format!("/etc/shadow-{i}").into());
    Alert {
        time: "2026-11-29T19:20:06.844531968Z".into(),
        rule: format!("r{i}"),
        priority: Priority::Warning,
        // About 1.1 KiB a record: 80 of them do not fit in 64 KiB.
        output: format!("{i} {}", "x".repeat(1000)),
        output_fields: f,
        source: "syscall".into(),
        tags: vec![],
        hostname: "node-1".into(),
    }
}

fn outputs(path: &Path) -> Outputs {
    let o = [
        "outputs.stdout.enabled=false".to_string(),
        "outputs.grace_period=60s".to_string(),
        format!("outputs.file.path={}", path.display()),
        "outputs.file.retry.max_attempts=2".to_string(),
        "outputs.file.retry.initial_backoff=1ms".to_string(),
        "outputs.file.retry.max_backoff=1ms".to_string(),
    ];
    let cfg = config::load(None, &o, Vec::<(String, String)>::new()).unwrap();
    Outputs::start(&cfg.outputs).unwrap()
}

/// Every line must be a whole alert; returns their rules.
fn parse_all(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the file ends in a torn record: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str::<Alert>(l)
                .unwrap_or_else(|e| panic!("line {}: not a whole alert ({e}): {l:.120}", n + 1))
                .rule
        })
        .collect()
}

#[test]
fn full_disk_leaves_no_torn_record_and_counts_exactly() {
    let fs = Tmpfs::mount("file-enospc", "64k");
    let path = fs.dir.join("alerts.jsonl");
    // Room to free later, to show the file carries on cleanly.
    let filler = fs.dir.join("filler");
    std::fs::write(&filler, vec![0u8; 8192]).unwrap();

    let out = outputs(&path);
    for i in 0..80 {
        out.submit(&alert(i));
    }
    let r = out.shutdown();
    let s = &r.sinks[0];
    assert!(!r.timed_out, "{r}");
    let rules = parse_all(&path);
    assert!(s.failed > 0, "the disk never filled: {s}");
    assert_eq!(s.sent + s.failed, 80, "{s}");
    assert_eq!(rules.len() as u64, s.sent, "lines vs sent: {s}");
    let mut uniq = rules.clone();
    uniq.dedup();
    assert_eq!(uniq, rules, "an alert written twice");

    // Space again: the next alerts land on lines of their own.
    std::fs::remove_file(&filler).unwrap();
    let out = outputs(&path);
    for i in 100..103 {
        out.submit(&alert(i));
    }
    let s2 = out.shutdown().sinks.remove(0);
    assert_eq!((s2.sent, s2.failed), (3, 0), "{s2}");
    let after = parse_all(&path);
    assert_eq!(after.len(), rules.len() + 3);
    assert_eq!(&after[rules.len()..], ["r100", "r101", "r102"]);
}
