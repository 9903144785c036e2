//! The rule-authoring CLI end to end: `rules test` on `rules/tests`,
//! `rules validate` exit codes and JSON, `fields`, `replay`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

fn mamori() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mamori"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn rules_test_round_trip_on_shipped_cases() {
    let out = mamori()
        .args(["rules", "test"])
        .arg(repo().join("rules/tests"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(", 0 failed"), "{last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 15, "{last}");
}

#[test]
fn rules_test_reports_failures_and_exits_nonzero() {
    let dir = tempdir("rules_test_fail");
    std::fs::write(
        dir.join("r.yaml"),
        "- rule: R\n  desc: d\n  condition: evt.type = execve and proc.name = x\n  output: o\n  priority: info\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("t.yaml"),
        "rules: [r.yaml]\ncases:\n  - name: should fire but does not\n    events: [{type: execve, proc: {name: y}}]\n    expect: [{rule: R}]\n  - name: fires\n    events: [{type: execve, proc: {name: x}}]\n    expect: [{rule: R}]\n",
    )
    .unwrap();
    let out = mamori()
        .args(["rules", "test"])
        .arg(dir.join("t.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert_eq!(stdout.lines().last().unwrap(), "1 passed, 1 failed");
}

#[test]
fn rules_test_reads_recorded_events_files() {
    let dir = tempdir("rules_test_events_file");
    std::fs::write(
        dir.join("r.yaml"),
        "- rule: R\n  desc: d\n  condition: evt.type = openat and fd.name = /etc/shadow\n  output: \"%proc.name\"\n  priority: info\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rec.jsonl"),
        concat!(
            r#"{"ts":1,"type":"openat","res":3,"proc":{"pid":1,"name":"cat"},"fd":{"type":"file","num":3,"name":"/etc/hosts"},"open":{"flags":0,"path":"/etc/hosts"}}"#,
            "\n",
            r#"{"ts":2,"type":"openat","res":3,"proc":{"pid":1,"name":"cat"},"fd":{"type":"file","num":3,"name":"/etc/shadow"},"open":{"flags":0,"path":"/etc/shadow"}}"#,
            "\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("t.yaml"),
        "rules: [r.yaml]\ncases:\n  - name: recorded\n    events_file: rec.jsonl\n    expect: [{rule: R, count: 1, fields: {proc.name: cat}}]\n",
    )
    .unwrap();
    let out = mamori().args(["rules", "test"]).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.lines().last().unwrap(), "1 passed, 0 failed");
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mamori-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn validate_exit_codes_and_json() {
    let dir = tempdir("validate");
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: info\n",
    )
    .unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "- rule: R\n  desc: d\n  condition: evt.type = execve and proc.nmae = x\n  output: o\n  priority: info\n",
    )
    .unwrap();
    assert!(mamori()
        .args(["rules", "validate"])
        .arg(&good)
        .status()
        .unwrap()
        .success());
    let out = mamori()
        .args(["rules", "validate"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml:3:36: error[LOAD_ERR_COMPILE_CONDITION]: rule 'R': 'proc.nmae'"),
        "{text}"
    );
    let out = mamori()
        .args(["rules", "validate", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let d = &v["report"]["diagnostics"][0];
    assert_eq!(d["code"], "LOAD_ERR_COMPILE_CONDITION");
    assert_eq!(d["line"], 3);
    assert_eq!(d["col"], 36);
    assert_eq!(d["item"]["name"], "R");
}

#[test]
fn fields_json_lists_the_registry() {
    let out = mamori().args(["fields", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for n in [
        "evt.type",
        "proc.aname",
        "fd.sip",
        "container.id",
        "k8s.pod.name",
    ] {
        assert!(names.contains(&n), "{n}");
    }
}

#[test]
fn replay_prints_falco_shaped_alerts() {
    let dir = tempdir("replay");
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"ts":1700000000000000001,"type":"openat","res":3,"proc":{"pid":42,"name":"cat","exepath":"/usr/bin/cat","argv":["cat","/etc/shadow"]},"fd":{"type":"file","num":3,"name":"/etc/shadow"},"open":{"flags":0,"path":"/etc/shadow"}}"#,
            "\n",
            r#"{"ts":1700000000000000002,"type":"openat","res":3,"proc":{"pid":42,"name":"cat"},"fd":{"type":"file","num":3,"name":"/etc/hosts"},"open":{"flags":0,"path":"/etc/hosts"}}"#,
            "\n"
        ),
    )
    .unwrap();
    let rules = repo().join("../shared/falco-rules/falco_rules.yaml");
    assert!(
        rules.is_file(),
        "Falco rules corpus missing at {}",
        rules.display()
    );
    let out = mamori()
        .arg("replay")
        .arg(&events)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let a: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(a["rule"], "Read sensitive file untrusted");
    assert_eq!(a["priority"], "Warning");
    assert_eq!(a["source"], "syscall");
    assert_eq!(a["time"], "2023-11-14T22:13:20.000000001Z");
    assert!(a["output"]
        .as_str()
        .unwrap()
        .starts_with("22:13:20.000000001: Warning "));
    assert_eq!(a["output_fields"]["fd.name"], "/etc/shadow");
    assert!(a["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "maturity_stable"));
    assert!(a["hostname"].is_string());
}

/// A non-UTF-8 line and an over-long line are skipped with `file:line`, like
/// any other unreadable line; the events around them are still replayed.
#[test]
fn replay_skips_non_utf8_and_overlong_lines_with_their_position() {
    let dir = tempdir("replay_bad_lines");
    let events = dir.join("events.jsonl");
    let shadow = r#"{"ts":1700000000000000001,"type":"openat","res":3,"proc":{"pid":42,"name":"cat","exepath":"/usr/bin/cat","argv":["cat","/etc/shadow"]},"fd":{"type":"file","num":3,"name":"/etc/shadow"},"open":{"flags":0,"path":"/etc/shadow"}}"#;
    let mut data = Vec::new();
    data.extend_from_slice(shadow.as_bytes());
    data.extend_from_slice(b"\n{\"ts\":1,\"type\":\"open\xff\xfeat\"}\n");
    data.extend_from_slice(&vec![b' '; (1 << 20) + 10]);
    data.extend_from_slice(b"\nnot json\n");
    data.extend_from_slice(shadow.as_bytes());
    data.push(b'\n');
    std::fs::write(&events, &data).unwrap();
    let rules = repo().join("../shared/falco-rules/falco_rules.yaml");
    let out = mamori()
        .arg("replay")
        .arg(&events)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let at = |n: usize| format!("{}:{n}: skipped: ", events.display());
    assert!(stderr.contains(&format!("{}not UTF-8", at(2))), "{stderr}");
    assert!(
        stderr.contains(&format!("{}line longer than 1048576 bytes", at(3))),
        "{stderr}"
    );
    assert!(stderr.contains(&at(4)), "{stderr}");
    assert!(
        stderr.contains("2 events, 2 alerts, 3 unreadable lines"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

/// `mamori` with its address space capped at 1 GiB, so a loader that tries
/// to expand a bomb dies (or fails its allocation) instead of the machine.
fn mamori_capped() -> Command {
    let mut c = mamori();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setrlimit, which is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// A "billion laughs" file: ten levels of nine aliases of the level below.
fn billion_laughs(top: &str, last: &str) -> String {
    let mut t = format!("{top}a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let row = vec![format!("*a{}", i - 1); 9].join(",");
        t.push_str(&format!("{top}a{i}: &a{i} [{row}]\n"));
    }
    t.push_str(last);
    t
}

#[test]
fn alias_bombs_fail_fast_with_a_position() {
    let dir = tempdir("alias_bomb");
    let rules = dir.join("bomb.yaml");
    std::fs::write(&rules, billion_laughs("- ", "")).unwrap();
    let t = std::time::Instant::now();
    let out = mamori_capped()
        .args(["rules", "validate"])
        .arg(&rules)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
    let line = stdout.lines().next().unwrap_or("");
    assert!(line.starts_with(&format!("{}:", rules.display())), "{line}");
    assert!(
        line.contains("aliases expand the document by more than"),
        "{line}"
    );
}

#[test]
fn validate_accepts_flow_lists_at_the_key_indentation_as_falco_does() {
    let dir = tempdir("flow_lists");
    let f = dir.join("flow.yaml");
    std::fs::write(
        &f,
        "- list: a\n  items: [\n  x, y\n  ]\n- list: b\n  items: [\n    \"x\",\n    y\n]\n\
         - rule: R\n  desc: d\n  condition: evt.type = execve and proc.name in (a, b)\n  output: o\n  priority: info\n",
    )
    .unwrap();
    let out = mamori()
        .args(["rules", "validate"])
        .arg(&f)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 rules: 1 active"), "{stdout}");
}
