use mamori_rules::alert::{Alert, Priority};
use openmetrics_parser::{
    openmetrics::parse_openmetrics, MetricsExposition, OpenMetricsType, OpenMetricsValue,
};

use super::*;

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// The exposition, parsed by a conformant OpenMetrics parser.
fn scrape(m: &Metrics) -> Exposition {
    parse_openmetrics(&m.encode()).expect("the exposition parses")
}

/// The value of family `name`'s sample with `labels` (a subset), if exactly
/// one sample has them (a histogram's value is its count).
fn value(s: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = s
        .families
        .get(name)?
        .iter_samples()
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
            _ => f64::NAN,
        })
        .collect();
    (found.len() == 1).then(|| found[0])
}

#[test]
fn counters_follow_totals_and_parse_with_falco_names() {
    let m = Metrics::new("node-a");
    m.add_events("openat", 5);
    m.add_events("execve", 2);
    m.set_drops("open", &[0, 3]);
    m.set_drops("open", &[1, 3]);
    m.set_undecodable(2);
    let mut a = Alert::internal(
        0,
        "Test rule",
        Priority::Warning,
        "x",
        Default::default(),
        "node-a",
    );
    a.tags = vec!["b".into(), "a".into()];
    m.rule_matched(&a);
    m.rule_matched(&a);
    m.rules_loaded(true, Some("abc"));
    m.rules_loaded(false, None);
    let s = scrape(&m);
    assert_eq!(value(&s, "mamori_events", &[("type", "openat")]), Some(5.0));
    assert_eq!(value(&s, "falcosecurity_scap_n_evts", &[]), Some(7.0));
    assert_eq!(
        value(&s, "mamori_kernel_drops", &[("kind", "open"), ("cpu", "1")]),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "mamori_kernel_drops", &[("kind", "open"), ("cpu", "0")]),
        Some(1.0)
    );
    // 4 kernel drops + 2 undecodable.
    assert_eq!(value(&s, "falcosecurity_scap_n_drops", &[]), Some(6.0));
    assert_eq!(
        value(
            &s,
            "mamori_rule_matches",
            &[
                ("rule", "Test rule"),
                ("priority", "Warning"),
                ("tags", "a,b")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "falcosecurity_falco_rules_matches",
            &[("rule_name", "Test rule"), ("source", "internal")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "mamori_rules_reloads", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "mamori_rules_reloads", &[("result", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "mamori_rules_loaded", &[("sha256", "abc")]),
        Some(1.0)
    );
    assert!(value(&s, "falcosecurity_falco_memory_rss_bytes", &[]).unwrap() > 1e6);
    assert!(value(&s, "mamori_process_open_fds", &[]).unwrap() >= 3.0);
    // Every series names the node.
    for (name, f) in &s.families {
        for x in f.iter_samples() {
            let set = x.get_labelset().expect("labels");
            assert_eq!(set.get_label_value("node"), Some("node-a"), "{name}");
        }
    }
}

#[test]
fn a_total_that_goes_back_keeps_the_counter_monotonic() {
    let c = prometheus_client::metrics::counter::Counter::<u64>::default();
    Metrics::set_total(&c, 10);
    Metrics::set_total(&c, 4);
    assert_eq!(c.get(), 10);
    Metrics::set_total(&c, 12);
    assert_eq!(c.get(), 12);
}

#[test]
fn metrics_answer_only_get_metrics_and_negotiate_openmetrics() {
    let m = Metrics::new("n");
    let r = crate::cli::health::metrics_response(b"GET /metrics HTTP/1.1\r\n\r\n", &m).unwrap();
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("mamori_build_info{"), "{r}");
    let r = crate::cli::health::metrics_response(
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        &m,
    )
    .unwrap();
    assert!(
        r.contains("Content-Type: application/openmetrics-text"),
        "{r}"
    );
    assert!(r.trim_end().ends_with("# EOF"));
    assert!(crate::cli::health::metrics_response(b"GET /healthz HTTP/1.1\r\n\r\n", &m).is_none());
    assert!(crate::cli::health::metrics_response(b"POST /metrics HTTP/1.1\r\n\r\n", &m).is_none());
}

/// The per-sink families come from the sinks' own counters and queues.
#[tokio::test]
async fn sink_families_read_the_running_outputs() {
    let dir = std::env::temp_dir().join(format!("mamori-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alerts.json");
    let cfg = crate::config::load(
        None,
        &[
            "outputs.stdout.enabled=false".into(),
            format!("outputs.file.path={}", path.display()),
        ],
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    let outputs = crate::outputs::Outputs::start(&cfg.outputs).unwrap();
    let m = Metrics::new("n");
    m.set_sinks(outputs.handles().to_vec());
    let a = Alert::internal(0, "r", Priority::Critical, "x", Default::default(), "n");
    outputs.submit(&a);
    outputs.submit(&a);
    let t0 = std::time::Instant::now();
    while value(&scrape(&m), "mamori_output_sent", &[("sink", "file")]) != Some(2.0) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{}",
            m.encode()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s = scrape(&m);
    assert_eq!(
        value(
            &s,
            "mamori_output_send_duration_seconds",
            &[("sink", "file")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "mamori_output_queue_length", &[("sink", "file")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "falcosecurity_falco_outputs_queue_num_drops", &[]),
        Some(0.0)
    );
    tokio::task::spawn_blocking(move || outputs.shutdown())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stateful_stats_become_gauges_and_counters_by_rule() {
    let m = Metrics::new("n");
    let st = |keys, evicted, expired| StateStats {
        rule: "Burst".into(),
        kind: "count",
        keys,
        max_keys: 10,
        evicted,
        expired,
        alerts: 0,
        suppressed: 0,
    };
    m.set_state(&[st(4, 1, 2)]);
    m.set_state(&[st(3, 2, 5)]);
    let s = scrape(&m);
    assert_eq!(
        value(&s, "mamori_stateful_keys", &[("rule", "Burst")]),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "mamori_stateful_evictions", &[("rule", "Burst")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "mamori_stateful_expiries", &[("rule", "Burst")]),
        Some(5.0)
    );
}
