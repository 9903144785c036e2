//! The file sink on a real filesystem: rotation, symlinks, shared
//! directories, deleted files. (A full disk is `tests/outputs_file.rs`: it
//! needs root to mount a tiny tmpfs.)

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::outputs::tests::alert;
use mamori_rules::alert::Priority;

/// A fresh private (0755) directory under the temp dir.
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mamori-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn rules(t: &str) -> Vec<String> {
    t.lines()
        .map(|l| serde_json::from_str::<Alert>(l).unwrap().rule)
        .collect()
}

fn sink(path: &Path) -> (FileSink, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (
        FileSink::new(path.into(), false, flag.clone()).unwrap(),
        flag,
    )
}

#[tokio::test]
async fn reopen_after_rotation_loses_no_line() {
    let dir = tmp("rotate");
    let path = dir.join("alerts.jsonl");
    let (mut s, flag) = sink(&path);
    s.send(&alert("one", Priority::Error, "x")).await.unwrap();
    std::fs::rename(&path, dir.join("alerts.jsonl.1")).unwrap();
    s.send(&alert("two", Priority::Error, "x")).await.unwrap();
    flag.store(true, Ordering::Relaxed); // SIGHUP
    s.send(&alert("three", Priority::Error, "x")).await.unwrap();
    let old = std::fs::read_to_string(dir.join("alerts.jsonl.1")).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(rules(&old), ["one", "two"]);
    assert_eq!(rules(&new), ["three"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A symlink at the path is refused at start-up and at a SIGHUP reopen;
/// its target is never written.
#[tokio::test]
async fn a_symlinked_path_is_refused_not_followed() {
    let dir = tmp("symlink");
    let target = dir.join("victim");
    std::fs::write(&target, "precious\n").unwrap();
    let path = dir.join("alerts.jsonl");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let err = FileSink::new(path.clone(), false, Arc::default())
        .err()
        .expect("a symlinked path must be refused")
        .to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(err.contains("alerts.jsonl"), "{err}");

    // Swapped in after start-up (logrotate's rename, then a planted link).
    std::fs::remove_file(&path).unwrap();
    let (mut s, flag) = sink(&path);
    s.send(&alert("one", Priority::Error, "x")).await.unwrap();
    std::fs::rename(&path, dir.join("alerts.jsonl.1")).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    flag.store(true, Ordering::Relaxed);
    let e = s
        .send(&alert("two", Priority::Error, "x"))
        .await
        .unwrap_err();
    assert!(e.msg.contains("symbolic link"), "{}", e.msg);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_group_or_world_writable_directory_is_refused_unless_allowed() {
    for mode in [0o777, 0o775, 0o1777] {
        let dir = tmp("shared");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.join("alerts.jsonl");
        let err = FileSink::new(path.clone(), false, Arc::default())
            .err()
            .expect("a shared directory must be refused")
            .to_string();
        assert!(err.contains("writable"), "{err}");
        assert!(err.contains("allow_writable_dir"), "{err}");
        assert!(!path.exists(), "nothing created in a refused directory");
        let mut s = FileSink::new(path.clone(), true, Arc::default()).unwrap();
        s.send(&alert("ok", Priority::Error, "x")).await.unwrap();
        assert_eq!(rules(&std::fs::read_to_string(&path).unwrap()), ["ok"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// No SIGHUP: a deleted file (or directory) is noticed before the next write.
#[tokio::test]
async fn a_deleted_file_or_directory_is_noticed_and_reopened() {
    let dir = tmp("deleted");
    let path = dir.join("alerts.jsonl");
    let (mut s, _flag) = sink(&path);
    s.send(&alert("one", Priority::Error, "x")).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    s.send(&alert("two", Priority::Error, "x")).await.unwrap();
    assert_eq!(rules(&std::fs::read_to_string(&path).unwrap()), ["two"]);

    std::fs::remove_dir_all(&dir).unwrap();
    let e = s
        .send(&alert("three", Priority::Error, "x"))
        .await
        .expect_err("nowhere to write: not sent");
    assert!(e.retryable && e.msg.contains("opening"), "{}", e.msg);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.send(&alert("four", Priority::Error, "x")).await.unwrap();
    assert_eq!(rules(&std::fs::read_to_string(&path).unwrap()), ["four"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A file left ending in a fragment (a crash, another writer): the first
/// record starts on a line of its own.
#[tokio::test]
async fn a_file_ending_in_a_fragment_gets_a_fresh_line() {
    let dir = tmp("fragment");
    let path = dir.join("alerts.jsonl");
    std::fs::write(&path, "{\"torn").unwrap();
    let (mut s, _flag) = sink(&path);
    s.send(&alert("one", Priority::Error, "x")).await.unwrap();
    s.send(&alert("two", Priority::Error, "x")).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("{\"torn"));
    assert_eq!(rules(&lines.collect::<Vec<_>>().join("\n")), ["one", "two"]);
    std::fs::remove_dir_all(&dir).ok();
}
