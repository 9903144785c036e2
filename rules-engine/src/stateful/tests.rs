//! Stateful rules end to end: loaded from YAML, fed events through the
//! engine, checked for what fires, what is counted and what is refused.

use crate::{Engine, LoadOptions};

fn engine(rules: &str) -> Engine {
    let (e, report) = Engine::from_sources(&[("t.yaml", rules)], &LoadOptions::default());
    assert!(!report.has_errors(), "{report:?}");
    assert_eq!(e.active_rules(), 1, "{report:?}");
    e
}

fn connect(ts_ms: u64, pid: u32, rip: &str, rport: u16) -> crate::event::Event {
    serde_json::from_value(serde_json::json!({
        "ts": ts_ms * 1_000_000, "type": "connect", "res": -111,
        "proc": {"pid": pid, "name": "scan", "exepath": "/scan"},
        "fd": {"type": "ipv4", "num": 3, "name": "x", "rip": rip, "rport": rport, "l4proto": "tcp"},
    }))
    .expect("event")
}

const SCAN: &str = r#"
- rule: scan
  desc: d
  condition: evt.type = connect
  threshold: {by: proc.pid, distinct: fd.rport, count: 3, within: 1s, max_keys: 2}
  output: "n=%threshold.count ports=%threshold.values in %threshold.elapsed"
  priority: WARNING
"#;

#[test]
fn threshold_fires_once_per_window_and_counts_suppressed_repeats() {
    let e = engine(SCAN);
    let fired = |ev| e.evaluate(&ev).len();
    assert_eq!(fired(connect(0, 1, "10.0.0.1", 1)), 0);
    assert_eq!(
        fired(connect(10, 1, "10.0.0.1", 1)),
        0,
        "a repeated port is not new"
    );
    assert_eq!(fired(connect(20, 1, "10.0.0.1", 2)), 0);
    let a = e.evaluate(&connect(30, 1, "10.0.0.1", 3));
    assert_eq!(a.len(), 1);
    assert!(
        a[0].output.ends_with("n=3 ports=1,2,3 in 30ms"),
        "{}",
        a[0].output
    );
    assert_eq!(a[0].output_fields["threshold.count"], 3);
    for p in 4..10 {
        assert_eq!(fired(connect(40 + p, 1, "10.0.0.1", p as u16)), 0);
    }
    let s = &e.state_stats()[0];
    assert_eq!((s.alerts, s.suppressed, s.keys), (1, 6, 1));
    // A window after the alert, the key counts afresh.
    for (i, p) in (20..23).enumerate() {
        let n = fired(connect(1100 + i as u64, 1, "10.0.0.1", p));
        assert_eq!(n, usize::from(i == 2));
    }
}

#[test]
fn values_older_than_the_window_do_not_count() {
    let e = engine(SCAN);
    let n: usize = [(0, 1), (600, 2), (1200, 3), (1800, 4)]
        .into_iter()
        .map(|(t, p)| e.evaluate(&connect(t, 1, "10.0.0.1", p)).len())
        .sum();
    assert_eq!(n, 0, "never three ports within one second");
    assert_eq!(e.evaluate(&connect(1900, 1, "10.0.0.1", 5)).len(), 1);
}

#[test]
fn the_key_cap_evicts_and_counts_live_keys_separately_from_expired_ones() {
    let e = engine(SCAN);
    e.evaluate(&connect(0, 1, "10.0.0.1", 1));
    e.evaluate(&connect(0, 2, "10.0.0.1", 1));
    e.evaluate(&connect(0, 3, "10.0.0.1", 1)); // pushes pid 1 out, still live
    let s = &e.state_stats()[0];
    assert_eq!((s.keys, s.max_keys, s.evicted, s.expired), (2, 2, 1, 0));
    e.evaluate(&connect(5000, 4, "10.0.0.1", 1)); // pid 2's window is over
    let s = &e.state_stats()[0];
    assert_eq!((s.keys, s.evicted, s.expired), (2, 1, 1));
    e.reset_state();
    let s = &e.state_stats()[0];
    assert_eq!((s.keys, s.evicted, s.expired, s.alerts), (0, 0, 0, 0));
}

#[test]
fn events_without_a_key_value_are_not_counted() {
    let e = engine(&SCAN.replace("by: proc.pid", "by: container.id"));
    for p in 1..10 {
        assert!(e.evaluate(&connect(p, 1, "10.0.0.1", p as u16)).is_empty());
    }
    assert_eq!(e.state_stats()[0].keys, 0);
}

#[test]
fn counting_without_distinct_counts_events() {
    let e = engine(&SCAN.replace("distinct: fd.rport, ", ""));
    let n: Vec<usize> = (0..3)
        .map(|i| e.evaluate(&connect(i, 1, "10.0.0.1", 1)).len())
        .collect();
    assert_eq!(n, [0, 0, 1]);
}

fn exec(ts_ms: u64, pid: u32, ppid: u32, name: &str, ancestors: &[u32]) -> crate::event::Event {
    let anc: Vec<_> = ancestors
        .iter()
        .map(|p| serde_json::json!({"pid": p, "name": "sh", "exepath": "/bin/sh"}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "ts": ts_ms * 1_000_000, "type": "execve", "res": 0,
        "proc": {"pid": pid, "ppid": ppid, "name": name, "exepath": "/x", "ancestors": anc},
    }))
    .expect("event")
}

const SEQ: &str = r#"
- rule: abc
  desc: d
  condition: evt.type = execve and proc.name = c
  sequence:
    by: proc.pid
    tree: true
    within: 10s
    steps:
      - {name: first, condition: evt.type = execve and proc.name = a}
      - {name: second, condition: evt.type = execve and proc.name = b}
  output: "a=%seq.first.proc.pid b=%seq.second.proc.pid c=%proc.pid after %seq.elapsed of %seq.window"
  priority: WARNING
"#;

#[test]
fn sequence_steps_must_come_in_order_within_the_window_in_one_tree() {
    let e = engine(SEQ);
    // b before a does not count; c without a and b does not fire.
    assert!(e.evaluate(&exec(0, 10, 1, "b", &[])).is_empty());
    assert!(e.evaluate(&exec(1, 10, 1, "c", &[])).is_empty());
    assert!(e.evaluate(&exec(2, 10, 1, "a", &[])).is_empty());
    assert!(e.evaluate(&exec(3, 11, 10, "c", &[10])).is_empty());
    assert!(e.evaluate(&exec(4, 12, 10, "b", &[10])).is_empty());
    // An unrelated process's c does not complete it; a grandchild's does.
    assert!(e.evaluate(&exec(5, 20, 1, "c", &[])).is_empty());
    let a = e.evaluate(&exec(6, 13, 12, "c", &[12, 10]));
    assert_eq!(a.len(), 1);
    assert!(
        a[0].output.ends_with("a=10 b=12 c=13 after 4ms of 10s"),
        "{}",
        a[0].output
    );
    // Completed sequences are consumed.
    assert!(e.evaluate(&exec(7, 13, 12, "c", &[12, 10])).is_empty());
    let s = &e.state_stats()[0];
    assert_eq!((s.alerts, s.keys), (1, 0));
}

#[test]
fn sequence_progress_expires() {
    let e = engine(SEQ);
    e.evaluate(&exec(0, 10, 1, "a", &[]));
    e.evaluate(&exec(1, 10, 1, "b", &[]));
    assert!(e.evaluate(&exec(10_002, 10, 1, "c", &[])).is_empty());
    assert_eq!(e.state_stats()[0].expired, 1);
}

fn errors(rules: &str) -> Vec<String> {
    let (_, report) = Engine::from_sources(&[("bad.yaml", rules)], &LoadOptions::default());
    report.errors().map(|d| d.to_string()).collect()
}

#[test]
fn broken_stateful_blocks_are_errors_naming_the_place() {
    let base = "- rule: r\n  desc: d\n  condition: evt.type = connect\n  output: o %fd.name\n  priority: INFO\n";
    let cases = [
        ("  threshold: {count: 3}\n", "bad.yaml:6", "needs 'within'"),
        ("  threshold: {count: 1, within: 1s}\n", "bad.yaml:6", "from 2 to"),
        ("  threshold: {count: 3, within: 2d}\n", "bad.yaml:6", "duration"),
        ("  threshold: {count: 3, within: 1s, every: 2}\n", "bad.yaml:6", "unknown key 'every'"),
        ("  threshold: {count: 3, within: 1s, by: proc.nmae}\n", "bad.yaml:6", "proc.nmae"),
        ("  sequence: {within: 1s}\n", "bad.yaml:6", "needs 'steps'"),
        (
            "  sequence: {within: 1s, by: fd.name, tree: true, steps: [{name: a, condition: evt.type = execve}]}\n",
            "bad.yaml:6",
            "tree: true",
        ),
        (
            "  sequence: {within: 1s, steps: [{name: a, condition: evt.type = = execve}]}\n",
            "bad.yaml:6",
            "",
        ),
        (
            "  threshold: {count: 3, within: 1s}\n  sequence: {within: 1s}\n",
            "bad.yaml:7",
            "not both",
        ),
    ];
    for (extra, at, msg) in cases {
        let errs = errors(&format!("{base}{extra}"));
        assert!(
            errs.iter().any(|e| e.contains(at) && e.contains(msg)),
            "{extra}: {errs:?}"
        );
    }
    let errs = errors(&base.replace("o %fd.name", "o %threshold.count"));
    assert!(
        errs.iter().any(|e| e.contains("only exists in rules with")),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{}  sequence: {{within: 1s, steps: [{{name: a, condition: evt.type = execve}}]}}\n",
        base.replace("o %fd.name", "o %seq.b.fd.name")
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("no sequence step named 'b'")),
        "{errs:?}"
    );
}

fn flow(ts_ms: u64, pid: u32, bytes_out: u64) -> crate::event::Event {
    serde_json::from_value(serde_json::json!({
        "ts": ts_ms * 1_000_000, "type": "flow", "res": 0,
        "proc": {"pid": pid, "name": "up", "exepath": "/up"},
        "fd": {"type": "ipv4", "num": -1, "name": "x", "rip": "198.51.100.7", "rport": 443, "l4proto": "tcp"},
        "flow": {"bytes_out": bytes_out, "bytes_in": 0, "duration_ns": 1, "state": "closed"},
    }))
    .expect("event")
}

const UPLOAD: &str = r#"
- rule: upload
  desc: d
  condition: evt.type = flow
  threshold: {by: proc.pid, sum: flow.bytes_out, count: 1000, within: 1s}
  output: "sent=%threshold.count"
  priority: WARNING
"#;

#[test]
fn threshold_sum_adds_a_field_within_the_window() {
    let e = engine(UPLOAD);
    assert!(e.names_type(crate::event::EvtType::Flow));
    assert!(!e.names_type(crate::event::EvtType::Dns));
    assert_eq!(e.evaluate(&flow(0, 1, 600)).len(), 0);
    assert_eq!(e.evaluate(&flow(10, 2, 600)).len(), 0, "another key");
    assert_eq!(
        e.evaluate(&flow(1500, 1, 600)).len(),
        0,
        "the first expired"
    );
    let a = e.evaluate(&flow(1600, 1, 400));
    assert_eq!(a.len(), 1);
    assert!(a[0].output.ends_with("sent=1000"), "{}", a[0].output);
    // Zero or missing amounts do not count (and do not fire).
    assert_eq!(e.evaluate(&flow(5000, 3, 0)).len(), 0);
    assert_eq!(e.evaluate(&flow(5001, 3, 999)).len(), 0);
}

#[test]
fn threshold_sum_is_checked() {
    for (bad, why) in [
        ("sum: proc.name", "not numeric"),
        ("sum: flow.bytes_out, distinct: fd.rip", "not together"),
    ] {
        let rules = UPLOAD.replace("sum: flow.bytes_out", bad);
        let (_, report) = Engine::from_sources(&[("t.yaml", &rules)], &LoadOptions::default());
        let text = format!("{report:?}");
        assert!(report.has_errors() && text.contains(why), "{bad}: {text}");
    }
}

#[test]
fn a_reload_carries_state_only_for_rules_whose_definition_did_not_change() {
    let load = |text: &str| {
        let (e, report) = Engine::from_sources(&[("t.yaml", text)], &LoadOptions::default());
        assert!(!report.has_errors(), "{report:?}");
        e
    };
    let mut old = load(SCAN);
    assert!(old.evaluate(&connect(0, 1, "10.0.0.1", 1)).is_empty());
    assert!(old.evaluate(&connect(10, 1, "10.0.0.1", 2)).is_empty());
    // Same rule, moved down by an unrelated rule before it: state carries.
    let unrelated =
        "- rule: other\n  desc: d\n  condition: evt.type = open\n  output: o\n  priority: INFO\n";
    let mut same = load(&format!("{unrelated}{SCAN}"));
    assert_eq!(same.carry_state_from(&mut old), 1);
    let a = same.evaluate(&connect(20, 1, "10.0.0.1", 3));
    assert_eq!(a.len(), 1, "the third port completes the carried window");
    // Changed threshold count: a fresh machine, nothing carried.
    let mut changed = load(&SCAN.replace("count: 3", "count: 4"));
    assert_eq!(changed.carry_state_from(&mut same), 0);
    assert!(changed.evaluate(&connect(30, 1, "10.0.0.1", 4)).is_empty());
    assert_eq!(changed.state_stats()[0].keys, 1, "only the new event's key");
}
