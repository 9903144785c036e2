//! End-to-end test of `/metrics` (root only): the real binary runs with a
//! rule, a file sink and a webhook sink pointed at a closed loopback port;
//! real processes open, exec and exit; the exposition is fetched over HTTP
//! and parsed with a conformant OpenMetrics parser, and the families the
//! test caused must be non-zero.
//!
//! Run: `cargo test -p sensor --features e2e --test metrics -- --test-threads=1`

#[path = "common/mod.rs"]
mod common;

use std::{
    io::{Read, Write},
    process::Command,
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use openmetrics_parser::{
    openmetrics::parse_openmetrics, MetricsExposition, OpenMetricsType, OpenMetricsValue,
};

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

const RULES: &str = r#"
- rule: E2E metrics read
  desc: cat read the test's marker file
  condition: evt.type in (open, openat, openat2) and fd.filename=mamori-metrics-marker.txt and proc.name=cat
  output: marker read (file=%fd.name)
  priority: WARNING
  tags: [e2e, metrics]
"#;

/// How many times the marker is read.
const READS: usize = 5;

fn get(addr: &str, accept: Option<&str>, stderr: &Receiver<String>) -> (String, String) {
    let mut conn = std::net::TcpStream::connect(addr).unwrap_or_else(|e| {
        let log: Vec<String> = stderr.try_iter().collect();
        panic!("connecting to {addr}: {e}; mamori's stderr: {log:#?}")
    });
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (head.to_string(), body.to_string())
}

/// The values of family `name`'s samples having `labels` (a subset).
fn values(s: &Exposition, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    let Some(f) = s.families.get(name) else {
        return Vec::new();
    };
    f.iter_samples()
        .filter(|x| {
            let set = x.get_labelset().expect("labels");
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|x| match &x.value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
            OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
            OpenMetricsValue::Info => 1.0,
            _ => f64::NAN,
        })
        .collect()
}

fn one(s: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let v = values(s, name, labels);
    assert_eq!(v.len(), 1, "one sample of {name} {labels:?}: {v:?}");
    v[0]
}

#[test]
fn metrics_count_what_the_test_caused() {
    let dir = std::env::temp_dir().join(format!("mamori-metrics-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let marker = dir.join("mamori-metrics-marker.txt");
    std::fs::write(&marker, "x").unwrap();
    // A loopback port nobody listens on: the webhook fails and is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mamori"));
    cmd.args(["run", "--rules"])
        .arg(&rules)
        .args(["-o", "outputs.stdout.enabled=false"])
        .arg("-o")
        .arg(format!(
            "outputs.file.path={}",
            dir.join("alerts.jsonl").display()
        ))
        .arg("-o")
        .arg(format!("outputs.webhook.url=http://{dead}/"))
        .args(["-o", "outputs.webhook.retry.max_attempts=2"])
        .args(["-o", "outputs.webhook.retry.initial_backoff=10ms"])
        .args(["--health-addr", "127.0.0.1:0"])
        .env("NODE_NAME", "e2e-metrics-node");
    let (mut child, log, stderr) = common::spawn_until_attached(cmd);
    let addr = log
        .iter()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line: {log:?}"))
        .to_string();

    for _ in 0..READS {
        assert!(Command::new("cat")
            .arg(&marker)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success());
    }
    // Wait (bounded) until the pipeline published and the webhook gave up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let (head, body) = get(
            &addr,
            Some("application/openmetrics-text; version=1.0.0"),
            &stderr,
        );
        assert!(head.contains("application/openmetrics-text"), "{head}");
        let s = parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e:?}\n{body}"));
        let done = values(&s, "mamori_output_given_up", &[("sink", "webhook")]) == [READS as f64]
            && values(&s, "mamori_rule_matches", &[("rule", "E2E metrics read")])
                == [READS as f64]
            // Event counts are published once a second.
            && values(&s, "mamori_events", &[("type", "procexit")])
                .iter()
                .any(|&n| n >= READS as f64);
        if done {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "not all counted in time:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let node = [("node", "e2e-metrics-node")];
    for ty in ["execve", "clone", "procexit", "openat"] {
        assert!(
            one(&s, "mamori_events", &[("type", ty), node[0]]) > 0.0,
            "events of type {ty}"
        );
    }
    let all: f64 = values(&s, "mamori_events", &[]).iter().sum();
    assert_eq!(one(&s, "falcosecurity_scap_n_evts", &node), all);
    assert!(all >= (READS * 3) as f64, "{all} events");
    assert_eq!(
        one(
            &s,
            "mamori_rule_matches",
            &[
                ("rule", "E2E metrics read"),
                ("priority", "Warning"),
                ("tags", "e2e,metrics")
            ]
        ),
        READS as f64
    );
    assert_eq!(
        one(
            &s,
            "falcosecurity_falco_rules_matches",
            &[("rule_name", "E2E metrics read"), ("source", "syscall")]
        ),
        READS as f64
    );
    assert_eq!(
        one(&s, "mamori_output_sent", &[("sink", "file")]),
        READS as f64
    );
    assert_eq!(one(&s, "mamori_output_sent", &[("sink", "webhook")]), 0.0);
    assert_eq!(
        one(&s, "mamori_output_retried", &[("sink", "webhook")]),
        READS as f64
    );
    // Two attempts per alert, each timed.
    assert_eq!(
        one(
            &s,
            "mamori_output_send_duration_seconds",
            &[("sink", "webhook")]
        ),
        (2 * READS) as f64
    );
    assert_eq!(
        one(&s, "mamori_output_queue_length", &[("sink", "file")]),
        0.0
    );
    assert!(one(&s, "mamori_process_table_entries", &node) > 10.0);
    assert!(one(&s, "mamori_drain_passes", &node) > 0.0);
    let fill = one(&s, "mamori_ring_fill_ratio", &node);
    assert!((0.0..=1.0).contains(&fill), "{fill}");
    let rss = one(&s, "falcosecurity_falco_memory_rss_bytes", &node);
    assert_eq!(rss, one(&s, "mamori_process_resident_memory_bytes", &node));
    assert!(rss > 1e6, "{rss}");
    assert!(one(&s, "mamori_process_open_fds", &node) > 3.0);
    assert!(one(&s, "mamori_process_cpu_seconds", &node) > 0.0);
    assert!(one(&s, "falcosecurity_falco_cpu_usage_ratio", &node) > 0.0);
    assert_eq!(one(&s, "mamori_rules_reloads", &[("result", "ok")]), 1.0);
    let sha = s.families["mamori_rules_loaded"]
        .iter_samples()
        .map(|x| {
            x.get_labelset()
                .unwrap()
                .get_label_value("sha256")
                .unwrap()
                .to_string()
        })
        .collect::<Vec<_>>();
    assert!(sha.len() == 1 && sha[0].len() == 64, "{sha:?}");
    assert_eq!(
        one(
            &s,
            "mamori_build",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(one(&s, "falcosecurity_scap_n_drops", &node), 0.0);

    // A scraper that does not ask for OpenMetrics gets the same body as
    // Prometheus text.
    let (head, body) = get(&addr, None, &stderr);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("mamori_events_total{"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).ok();
}
