//! Tests of configuration loading: layers, errors naming keys, bounds.
use super::{secret::SecretSource, *};
use crate::outputs::{
    config::{RateLimitConfig, DEFAULT_GRACE},
    syslog::config::{SyslogAddress, SyslogFormat},
};

fn from_yaml(y: &str) -> Result<Config, ConfigError> {
    let root = yaml_to_value(y, "test.yaml")?;
    parse_raw(root)?.validate()
}

#[test]
fn empty_config_is_stdout_only() {
    let c = from_yaml("").unwrap();
    assert!(c.outputs.stdout.is_some());
    assert!(c.outputs.syslog.is_none() && c.outputs.slack.is_none());
    assert_eq!(c.outputs.grace_period, DEFAULT_GRACE);
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let e = from_yaml("outputs:\n  syslog:\n    adress: udp://127.0.0.1:514\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outputs.syslog"), "{e}");
    assert!(e.contains("unknown field `adress`"), "{e}");
    let e = from_yaml("outptus: {}\n").unwrap_err().to_string();
    assert!(e.contains("unknown field `outptus`"), "{e}");
}

#[test]
fn bad_values_name_the_key() {
    let e =
        from_yaml("outputs:\n  slack:\n    webhook_url: https://x\n    minimum_priority: loud\n")
            .unwrap_err()
            .to_string();
    assert!(e.contains("outputs.slack.minimum_priority"), "{e}");
    let e = from_yaml("outputs:\n  syslog:\n    address: smtp://x:1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outputs.syslog.address") && e.contains("unknown scheme"),
        "{e}"
    );
    let e = from_yaml("outputs:\n  grace_period: soon\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outputs.grace_period"), "{e}");
    let e = from_yaml("outputs:\n  file:\n    enabled: true\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outputs.file.path"), "{e}");
}

#[test]
fn full_example_file_parses() {
    let text = include_str!("../../../mamori.example.yaml");
    let root = yaml_to_value(text, "mamori.example.yaml").unwrap();
    let raw = parse_raw(root).unwrap();
    std::env::set_var("SLACK_WEBHOOK_URL", "https://hooks.example.invalid/T/B/x");
    std::env::set_var("WEBHOOK_TOKEN", "Bearer t0ken");
    std::env::set_var("CLUSTER_NAME", "prod-eu");
    let c = raw.validate().unwrap();
    assert_eq!(c.append_output.len(), 2);
    assert_eq!(c.append_output[0], crate::config::append::default()[0]);
    assert_eq!(c.append_output[1].extra_fields[1].format, "prod-eu");
    let s = c.outputs.syslog.unwrap();
    assert_eq!(s.format, SyslogFormat::Rfc5424);
    assert!(c.outputs.slack.is_some() && c.outputs.webhook.is_some());
}

#[test]
fn overrides_beat_env_beat_file() {
    let dir = std::env::temp_dir().join(format!("mamori-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.yaml");
    std::fs::write(
        &p,
        "outputs:\n  syslog:\n    address: udp://127.0.0.1:1\n    facility: local0\n",
    )
    .unwrap();
    let env = vec![
        (
            "MAMORI_OUTPUTS__SYSLOG__ADDRESS".to_string(),
            "tcp://127.0.0.1:2".to_string(),
        ),
        (
            "MAMORI_OUTPUTS__SYSLOG__FORMAT".to_string(),
            "rfc3164".to_string(),
        ),
        ("MAMORI_BENCH_REPEAT".to_string(), "3".to_string()), // not config: ignored
    ];
    let c = load(
        Some(&p),
        &[
            "outputs.syslog.format=rfc5424".into(),
            "outputs.stdout.enabled=false".into(),
        ],
        env,
    )
    .unwrap();
    let s = c.outputs.syslog.unwrap();
    assert_eq!(s.address, SyslogAddress::Tcp("127.0.0.1:2".into()));
    assert_eq!(s.format, SyslogFormat::Rfc5424);
    assert_eq!(s.facility, 16);
    assert!(c.outputs.stdout.is_none());
    let c = load(
        None,
        &[
            "outputs.slack.tags=[network, k8s]".into(),
            "outputs.slack.webhook_url=http://127.0.0.1:9/x".into(),
        ],
        vec![],
    )
    .unwrap();
    assert_eq!(c.outputs.slack.unwrap().common.tags, vec!["network", "k8s"]);
    assert!(matches!(
        load(None, &["outputs.syslog".into()], vec![]),
        Err(ConfigError::BadOverride { .. })
    ));
    let e = load(
        None,
        &["outputs.syslog.adress=udp://1.2.3.4:5".into()],
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("outputs.syslog") && e.contains("adress"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn secrets_are_redacted_in_debug_and_errors() {
    let url = "https://hooks.example.invalid/services/T000/B000/SUPERSECRET";
    let c = load(
        None,
        &[
            format!("outputs.slack.webhook_url={url}"),
            "outputs.webhook.url=http://127.0.0.1:9/hook".into(),
            "outputs.webhook.headers.Authorization=Bearer SUPERSECRET".into(),
        ],
        vec![],
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("SUPERSECRET"), "{dbg}");
    assert!(dbg.contains("***"));
    // A bad URL: the error must not echo it.
    let e = load(
        None,
        &["outputs.slack.webhook_url=ftp://SUPERSECRET".into()],
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(
        !e.contains("SUPERSECRET") && e.contains("outputs.slack.webhook_url"),
        "{e}"
    );
    // From env / file.
    let e = SecretSource::Env("MAMORI_TEST_SURELY_UNSET_VAR".into())
        .resolve("outputs.slack.webhook_url")
        .unwrap_err()
        .to_string();
    assert!(e.contains("MAMORI_TEST_SURELY_UNSET_VAR is not set"), "{e}");
    let dir = std::env::temp_dir().join(format!("mamori-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("url"), format!("{url}\n")).unwrap();
    let s = SecretSource::File(dir.join("url")).resolve("k").unwrap();
    assert_eq!(s.expose(), url);
    assert_eq!(format!("{s:?} {s}"), "*** ***");
    // A device or a huge file is not read to the end.
    let e = SecretSource::File("/dev/zero".into())
        .resolve("outputs.slack.webhook_url")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("larger than 64 KiB") && e.contains("outputs.slack.webhook_url"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn override_values_are_yaml_scalars_or_literal_text() {
    let c = load(
        None,
        &[
            "outputs.slack.webhook_url=http://127.0.0.1:9/x".into(),
            "outputs.slack.channel=#sec".into(),
            "outputs.slack.username=a: b".into(),
            "outputs.slack.max_value_chars=100".into(),
        ],
        vec![],
    )
    .unwrap();
    let s = c.outputs.slack.unwrap();
    assert_eq!(s.channel.as_deref(), Some("#sec"));
    assert_eq!(s.username.as_deref(), Some("a: b"));
    assert_eq!(s.max_value_chars, 100);
    // Without its URL the Slack output stays off.
    let c = load(None, &["outputs.slack.channel=#sec".into()], vec![]).unwrap();
    assert!(c.outputs.slack.is_none());
}

#[test]
fn rate_limit_keys() {
    let c = load(
        None,
        &[
            "outputs.stdout.rate_limit.per_rule=5".into(),
            "outputs.stdout.rate_limit.interval=30s".into(),
        ],
        vec![],
    )
    .unwrap();
    assert_eq!(
        c.outputs.stdout.unwrap().common.rate_limit,
        Some(RateLimitConfig {
            per_rule: 5,
            interval: Duration::from_secs(30)
        })
    );
    let e = load(
        None,
        &["outputs.stdout.rate_limit.per_rule=0".into()],
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("outputs.stdout.rate_limit.per_rule"), "{e}");
}

#[test]
fn huge_durations_are_an_error_naming_the_key() {
    for v in ["1e300", "999999999999h"] {
        let e = load(None, &[format!("outputs.grace_period={v}")], vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("outputs.grace_period"), "{v}: {e}");
    }
}

#[test]
fn sink_numbers_past_their_bounds_are_errors_naming_the_key() {
    let webhook = "outputs.webhook.url=https://hooks.example.invalid/x";
    for (o, key) in [
        (
            "outputs.stdout.queue_capacity=4294967296",
            "outputs.stdout.queue_capacity",
        ),
        (
            "outputs.stdout.retry.max_attempts=4000000000",
            "outputs.stdout.retry.max_attempts",
        ),
        (
            "outputs.stdout.rate_limit.per_rule=4000000000",
            "outputs.stdout.rate_limit.per_rule",
        ),
        (
            "outputs.syslog.max_message_bytes=100000000",
            "outputs.syslog.max_message_bytes",
        ),
        (
            "outputs.slack.max_value_chars=0",
            "outputs.slack.max_value_chars",
        ),
        (
            "outputs.slack.max_value_chars=99999999",
            "outputs.slack.max_value_chars",
        ),
        (
            "outputs.webhook.url=https://hooks.example.invalid:99999/x",
            "outputs.webhook.url",
        ),
    ] {
        let mut overrides = vec![o.to_string()];
        if o.starts_with("outputs.syslog") {
            overrides.push("outputs.syslog.enabled=true".into());
        }
        if o.starts_with("outputs.slack") {
            overrides.push("outputs.slack.webhook_url=https://hooks.slack.example/x".into());
        }
        if !o.starts_with("outputs.webhook") {
            overrides.push(webhook.into());
        }
        let e = load(None, &overrides, vec![]).unwrap_err().to_string();
        assert!(e.contains(key), "{o}: {e}");
        assert!(!e.contains("99999/x"), "the URL is never echoed: {e}");
    }
}

#[test]
fn alias_bombs_are_an_error_naming_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("mamori-cfg-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bomb.yaml");
    let mut text = String::from("a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let row = vec![format!("*a{}", i - 1); 9].join(",");
        text.push_str(&format!("a{i}: &a{i} [{row}]\n"));
    }
    text.push_str("outputs: *a9\n");
    assert!(text.len() < 500);
    std::fs::write(&p, &text).unwrap();
    let e = load(Some(&p), &[], vec![]).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: invalid YAML: line ", p.display())),
        "{e}"
    );
    assert!(e.contains("aliases expand the document"), "{e}");
    // Ordinary anchors still work.
    std::fs::write(
        &p,
        "x-limits: &rl {per_rule: 5, interval: 30s}\noutputs:\n  stdout:\n    rate_limit: *rl\n",
    )
    .unwrap();
    let e = load(Some(&p), &[], vec![]).unwrap_err().to_string();
    assert!(e.contains("unknown field `x-limits`"), "{e}");
    std::fs::write(
        &p,
        "outputs:\n  stdout:\n    rate_limit: &rl {per_rule: 5, interval: 30s}\n  file:\n    path: /tmp/x\n    rate_limit: *rl\n",
    )
    .unwrap();
    let c = load(Some(&p), &[], vec![]).unwrap();
    assert_eq!(
        c.outputs.file.unwrap().common.rate_limit.unwrap().per_rule,
        5
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Sinks switched on with their required keys, so their numbers are read.
const ALL_SINKS: &[&str] = &[
    "outputs.file.path=/tmp/mamori-never-written.json",
    "outputs.syslog.address=udp://127.0.0.1:514",
    "outputs.slack.webhook_url=https://hooks.example.invalid/x",
    "outputs.webhook.url=http://127.0.0.1:9/x",
];

/// Every numeric key of the config (durations included).
fn numeric_keys() -> Vec<String> {
    let mut keys = vec!["outputs.grace_period".to_string()];
    for sink in ["stdout", "file", "syslog", "slack", "webhook"] {
        for k in [
            "queue_capacity",
            "dedup.window",
            "retry.max_attempts",
            "retry.initial_backoff",
            "retry.max_backoff",
            "rate_limit.per_rule",
            "rate_limit.interval",
        ] {
            keys.push(format!("outputs.{sink}.{k}"));
        }
    }
    for k in [
        "slack.max_value_chars",
        "slack.timeout",
        "webhook.timeout",
        "syslog.max_message_bytes",
    ] {
        keys.push(format!("outputs.{k}"));
    }
    keys
}

/// Loads `key=value` with every sink on; never panics. `Err` holds the
/// message, which must name the key.
fn probe(key: &str, value: &str) -> Result<(), String> {
    let mut o: Vec<String> = ALL_SINKS.iter().map(|s| s.to_string()).collect();
    o.push(format!("{key}={value}"));
    match std::panic::catch_unwind(|| load(None, &o, vec![])) {
        Err(_) => panic!("{key}={value} panicked"),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains(key),
                "{key}={value}: error does not name the key: {e}"
            );
            Err(e)
        }
    }
}

#[test]
fn hostile_numbers_are_errors_naming_the_key_never_panics() {
    // No number a config may hold is out of every key's range: these
    // are errors everywhere.
    let never = [
        "-1",
        "1e300",
        "-1e300",
        "1e400",
        ".inf",
        ".nan",
        "18446744073709551616",
        "99999999999999999999999999",
        "999999999999h",
        "-5s",
        "[1]",
        "{a: 1}",
    ];
    // Representable but large: each key's own bound decides (the sink
    // configs bound some of them); they must not panic.
    let maybe = [
        "0",
        "1.5",
        "4294967296",
        "18446744073709551615",
        "0x7fffffffffffffff",
    ];
    for key in numeric_keys() {
        for v in never {
            assert!(probe(&key, v).is_err(), "{key}={v} accepted");
        }
        for v in maybe {
            let _ = probe(&key, v);
        }
    }
    for (key, v) in [
        ("outputs.syslog.address", "udp://127.0.0.1:99999"),
        ("outputs.syslog.address", "tcp://127.0.0.1:-1"),
        ("outputs.syslog.max_message_bytes", "10"),
        ("outputs.stdout.queue_capacity", "0"),
        ("outputs.file.retry.max_attempts", "0"),
        ("outputs.slack.rate_limit.per_rule", "0"),
    ] {
        assert!(probe(key, v).is_err(), "{key}={v} accepted");
    }
}

#[test]
fn node_name_and_gap_keys_are_read_and_checked() {
    let c = from_yaml("node_name: ip-10-0-1-2.ec2.internal\ngap:\n  state_file: /var/lib/mamori/state.json\n  heartbeat: 2s\n").unwrap();
    assert_eq!(c.node_name.as_deref(), Some("ip-10-0-1-2.ec2.internal"));
    assert_eq!(
        c.gap.state_file.as_deref(),
        Some(Path::new("/var/lib/mamori/state.json"))
    );
    assert_eq!(c.gap.heartbeat, Duration::from_secs(2));
    let e = from_yaml("node_name: Bad_Node\n").unwrap_err().to_string();
    assert!(e.contains("`node_name`") && e.contains("Bad_Node"), "{e}");
    let e = from_yaml("gap: {heartbeat: 1ms}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("gap.heartbeat"), "{e}");
    let e = from_yaml("gap: {statefile: /x}\n").unwrap_err().to_string();
    assert!(e.contains("gap") && e.contains("statefile"), "{e}");
    // MAMORI_NODE_NAME reaches the key like any other variable.
    let c = load(
        None,
        &[],
        [("MAMORI_NODE_NAME".to_string(), "node-from-env".to_string())],
    )
    .unwrap();
    assert_eq!(c.node_name.as_deref(), Some("node-from-env"));
}
