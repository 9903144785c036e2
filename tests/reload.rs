//! Rule reload with no event gap, end to end on the real kernel (root only).
//!
//! A storm of opens of test-marked files runs while the rules are reloaded
//! 20 times, a broken set and a good one alternating; the two good sets
//! (`reload set A` / `reload set B`) each have one rule firing on every open
//! of a marked file. Every file is opened exactly once, in order, by one
//! thread, so ring order is file order: each file must have produced
//! exactly one alert from exactly one set, the set must change exactly once
//! per good reload (alerts switch at the swap, never interleave), and every
//! broken set must have been reported and rejected while the old set kept
//! running.
//!
//! Run: `cargo test -p sensor --features e2e --test reload -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

const RELOADS: usize = 20;
/// Upper bounds on the storm, whatever happens to the reloads.
const STORM_MAX_FILES: usize = 60_000;
const STORM_MAX_TIME: Duration = Duration::from_secs(90);

fn good_set(name: &str, files: &Path) -> String {
    format!(
        "- rule: reload set {name}\n  desc: fires on every open of a marked file\n  condition: 'evt.type in (open, openat, openat2) and fd.name startswith \"{}/\"'\n  output: set {name} saw %fd.name\n  priority: NOTICE\n",
        files.display()
    )
}

const BROKEN_SET: &str = "- rule: reload broken\n  desc: d\n  condition: evt.type = openat and no.such_field = 1\n  output: o\n  priority: NOTICE\n";

/// Replace the rules file atomically (a temp name the loader ignores).
fn install(rules_dir: &Path, text: &str) {
    let tmp = rules_dir.join(".rules.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, rules_dir.join("rules.yaml")).unwrap();
}

/// Wait (at most 15 s) for a line matching `want`, keeping every line.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    want: impl Fn(&str) -> bool,
) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                let hit = want(&l);
                seen.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("no {what} within 15 s"),
        }
    }
}

/// For each marked file, the rules that alerted on it (from the alert
/// lines); and how many reload failure alerts there were.
fn sets_by_file(alerts: &[String], files: &Path, opened: usize) -> (Vec<Vec<String>>, usize) {
    let mut seen_by: Vec<Vec<String>> = vec![Vec::new(); opened];
    let mut failures = 0;
    for l in alerts {
        let a: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let rule = a["rule"].as_str().unwrap().to_string();
        if rule == "mamori internal: rules reload failed" {
            failures += 1;
            assert!(
                a["output"].as_str().unwrap().contains("no.such_field"),
                "{l}"
            );
            continue;
        }
        if rule.starts_with("mamori internal: tamper:") {
            continue; // the test's own SIGHUPs (tests/tamper.rs checks those)
        }
        assert!(rule.starts_with("reload set "), "unexpected alert: {l}");
        let name = a["output_fields"]["fd.name"].as_str().unwrap();
        let i: usize = name
            .strip_prefix(&format!("{}/f", files.display()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a marked file: {name}"));
        seen_by[i].push(rule);
    }
    (seen_by, failures)
}

#[test]
fn rules_reloaded_20_times_under_an_open_storm_evaluate_every_event_exactly_once() {
    let dir = std::env::temp_dir().join(format!("mamori-reload-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rules_dir = dir.join("rules");
    let files = dir.join("files");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    install(&rules_dir, &good_set("A", &files));

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules"]).arg(&rules_dir);
    let (mut child, _log, stderr) = common::spawn_until_attached(cmd);
    let pid = child.id().to_string();
    let stdout = child.stdout.take().unwrap();
    let (out_tx, out_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });

    // The storm: each marked file opened (created) once, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let (stop, files) = (stop.clone(), files.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed)
                && n < STORM_MAX_FILES
                && start.elapsed() < STORM_MAX_TIME
            {
                std::fs::File::create(files.join(format!("f{n}"))).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            n
        })
    };

    let mut alerts = Vec::new();
    let mut log = Vec::new();
    wait_for(&out_rx, &mut alerts, "alert of set A", |l| {
        l.contains("set A saw")
    });
    let mut good = 0;
    for k in 0..RELOADS {
        if k % 2 == 0 {
            install(&rules_dir, BROKEN_SET);
            wait_for(&out_rx, &mut alerts, "reload failure alert", |l| {
                l.contains("mamori internal: rules reload failed")
            });
        } else {
            good += 1;
            let name = if good % 2 == 1 { "B" } else { "A" };
            install(&rules_dir, &good_set(name, &files));
            if k % 4 == 1 {
                // SIGHUP too: it joins the same debounced reload.
                assert!(Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .unwrap()
                    .success());
            }
            wait_for(&stderr, &mut log, "reload line", |l| {
                l.contains("mamori: reloaded: 1 active rules")
            });
            let want = format!("set {name} saw");
            wait_for(&out_rx, &mut alerts, "alert of the new set", |l| {
                l.contains(&want)
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    let opened = storm.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    alerts.extend(out_rx.try_iter());
    log.extend(stderr.try_iter());
    assert!(
        status.success(),
        "mamori exited with {status}; stderr: {log:?}"
    );

    let (seen_by, failures) = sets_by_file(&alerts, &files, opened);
    assert_eq!(failures, RELOADS / 2, "one failure alert per broken set");
    let mut sets = Vec::with_capacity(opened);
    for (i, by) in seen_by.iter().enumerate() {
        assert_eq!(
            by.len(),
            1,
            "file f{i} (of {opened}) was evaluated by {by:?}"
        );
        sets.push(by[0].as_str());
    }
    let switches = sets.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(
        switches,
        RELOADS / 2,
        "the set changes once per good reload, never back and forth"
    );
    assert_eq!(sets[0], "reload set A");
    let reloaded = log
        .iter()
        .filter(|l| l.contains("mamori: reloaded:"))
        .count();
    assert_eq!(reloaded, RELOADS / 2, "{log:?}");
    eprintln!("{opened} marked files opened across {RELOADS} reloads; {switches} switches");
    let _ = std::fs::remove_dir_all(&dir);
}
