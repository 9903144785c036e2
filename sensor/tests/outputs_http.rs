//! Slack and webhook outputs against a real HTTP server (hyper on
//! 127.0.0.1:0) that records requests and answers as scripted: 200, 429 with
//! Retry-After, 500, or never. Also: a stuck or dead Slack does not delay the
//! file and syslog outputs, full queues drop the oldest and count it, dedup
//! sends one summary with the count, shutdown respects the grace period.
//!
//! No root needed; every wait is bounded.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use mamori::{
    config,
    outputs::{Output, Outputs, SendFuture, SinkSpec, SinkStats},
};
use mamori_rules::alert::{Alert, Priority};

#[derive(Clone, Copy, Debug)]
enum Reply {
    Ok,
    Status(u16, Option<u64>),
    Hang,
}

#[derive(Debug, Clone)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A recording HTTP server on its own thread and runtime.
struct Server {
    addr: SocketAddr,
    reqs: Arc<Mutex<Vec<Req>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Server {
    fn start(script: Vec<Reply>) -> Server {
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (tx, rx) = std::sync::mpsc::channel();
        let (r2, s2) = (reqs.clone(), script.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                loop {
                    let (s, _) = l.accept().await.unwrap();
                    let (reqs, script) = (r2.clone(), s2.clone());
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (reqs, script) = (reqs.clone(), script.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                reqs.lock().unwrap().push(Req {
                                    path,
                                    headers,
                                    body: body.to_vec(),
                                    at: Instant::now(),
                                });
                                let reply = script.lock().unwrap().pop_front().unwrap_or(Reply::Ok);
                                let resp = match reply {
                                    Reply::Ok => Response::new(Full::new(Bytes::from("ok"))),
                                    Reply::Status(code, ra) => {
                                        let mut b = Response::builder().status(code);
                                        if let Some(s) = ra {
                                            b = b.header("retry-after", s.to_string());
                                        }
                                        b.body(Full::new(Bytes::from("try later"))).unwrap()
                                    }
                                    Reply::Hang => {
                                        tokio::time::sleep(Duration::from_secs(3600)).await;
                                        unreachable!()
                                    }
                                };
                                Ok::<_, Infallible>(resp)
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        });
        let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Server { addr, reqs, script }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }

    /// Wait (bounded) until at least `n` requests arrived.
    fn wait_for(&self, n: usize, limit: Duration) -> Vec<Req> {
        let t0 = Instant::now();
        loop {
            let r = self.requests();
            if r.len() >= n || t0.elapsed() > limit {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn alert(rule: &str, output: &str) -> Alert {
    let mut f = serde_json::Map::new();
    f.insert("proc.name".into(), "cat".into());
    f.insert("fd.name".into(), "/etc/shadow".into());
    Alert {
        time: "2026-11-29T19:20:06.844531968Z".into(),
        rule: rule.into(),
        priority: Priority::Critical,
        output: output.into(),
        output_fields: f,
        source: "syscall".into(),
        tags: vec!["maturity_stable".into(), "filesystem".into()],
        hostname: "node-1".into(),
    }
}

fn start(opts: &[String]) -> Outputs {
    let mut o = vec!["outputs.stdout.enabled=false".to_string()];
    o.extend_from_slice(opts);
    let cfg = config::load(None, &o, Vec::<(String, String)>::new()).unwrap();
    Outputs::start(&cfg.outputs).unwrap()
}

fn stats(o: &Outputs, name: &str) -> SinkStats {
    o.stats().into_iter().find(|s| s.name == name).unwrap()
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn webhook_posts_the_falco_alert_json_unchanged_with_headers() {
    let srv = Server::start(vec![]);
    std::env::set_var("MAMORI_TEST_WEBHOOK_TOKEN", "Bearer s3cr3t-token");
    let out = start(&[
        format!("outputs.webhook.url={}", srv.url("/falco")),
        "outputs.webhook.headers.Authorization={env: MAMORI_TEST_WEBHOOK_TOKEN}".into(),
        "outputs.webhook.headers.X-Team=sec".into(),
    ]);
    let a = alert(
        "Read sensitive file",
        "12:00:00: Critical read (file=/etc/shadow)",
    );
    out.submit(&a);
    let reqs = srv.wait_for(1, Duration::from_secs(5));
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/falco");
    assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-token"));
    assert_eq!(r.header("x-team"), Some("sec"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("user-agent").unwrap().starts_with("mamori/"));
    // Exactly the Falco alert JSON: same keys, same values.
    assert_eq!(r.json(), serde_json::to_value(&a).unwrap());
    let back: Alert = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(back, a);
    let report = out.shutdown();
    let s = &report.sinks[0];
    assert_eq!((s.sent, s.failed, s.pending), (1, 0, 0));
}

#[test]
fn slack_message_is_escaped_and_has_the_triage_fields() {
    let srv = Server::start(vec![]);
    let out = start(&[
        format!(
            "outputs.slack.webhook_url={}",
            srv.url("/services/T0/B0/XYZ")
        ),
        "outputs.slack.channel=#sec".into(),
        "outputs.slack.username=mamori-bot".into(),
    ]);
    let mut a = alert(
        "Shell in container",
        "shell (cmd=sh -c 'curl <https://evil.example|click> <!channel> @here' \x1b[31m\nFAKE)",
    );
    a.output_fields
        .insert("k8s.pod.name".into(), "web-7d9 <@U1>".into());
    a.output_fields.insert("k8s.ns.name".into(), "prod".into());
    a.output_fields.insert(
        "proc.cmdline".into(),
        format!("sh -c {}", "A".repeat(2000)).into(),
    );
    out.submit(&a);
    let reqs = srv.wait_for(1, Duration::from_secs(5));
    assert_eq!(reqs.len(), 1);
    let p = reqs[0].json();
    assert_eq!(p["channel"], "#sec");
    assert_eq!(p["username"], "mamori-bot");
    let att = &p["attachments"][0];
    assert_eq!(att["color"], "#e01e5a");
    assert_eq!(att["title"], "Shell in container");
    let text = att["text"].as_str().unwrap();
    assert_eq!(
        text,
        "shell (cmd=sh -c 'curl &lt;https://evil.example|click&gt; &lt;!channel&gt; @\u{200b}here' \\x1b[31m\\x0aFAKE)"
    );
    let body = String::from_utf8(reqs[0].body.clone()).unwrap();
    for bad in ["<!channel>", "<https://evil", "<@U1>", "\\u001b", "@here"] {
        assert!(!body.contains(bad), "{bad} in {body}");
    }
    let fields = att["fields"].as_array().unwrap();
    let get = |t: &str| {
        fields
            .iter()
            .find(|f| f["title"] == t)
            .map(|f| f["value"].as_str().unwrap().to_string())
    };
    assert_eq!(get("priority").unwrap(), "Critical");
    assert_eq!(get("hostname").unwrap(), "node-1");
    assert_eq!(get("namespace").unwrap(), "prod");
    assert_eq!(get("pod").unwrap(), "web-7d9 &lt;@U1&gt;");
    assert_eq!(get("fd.name").unwrap(), "/etc/shadow");
    let cmd = get("proc.cmdline").unwrap();
    assert_eq!(cmd.chars().count(), 500);
    assert!(cmd.ends_with("… (truncated)"));
    out.shutdown();
}

#[test]
fn retry_after_is_honoured_then_success() {
    let srv = Server::start(vec![Reply::Status(429, Some(1))]);
    let out = start(&[
        format!("outputs.slack.webhook_url={}", srv.url("/s")),
        "outputs.slack.retry.initial_backoff=10ms".into(),
    ]);
    out.submit(&alert("r", "x"));
    let reqs = srv.wait_for(2, Duration::from_secs(5));
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(990) && gap < Duration::from_millis(1500),
        "retried after {gap:?}, Retry-After said 1 s"
    );
    assert!(wait_until(Duration::from_secs(2), || stats(&out, "slack")
        .sent
        == 1));
    let s = stats(&out, "slack");
    assert_eq!((s.sent, s.retried, s.failed), (1, 1, 0));
    out.shutdown();
}

#[test]
fn server_errors_are_retried_then_given_up_and_counted() {
    let srv = Server::start(vec![Reply::Status(500, None); 10]);
    let out = start(&[
        format!("outputs.webhook.url={}", srv.url("/w")),
        "outputs.webhook.retry.max_attempts=3".into(),
        "outputs.webhook.retry.initial_backoff=20ms".into(),
    ]);
    out.submit(&alert("r", "x"));
    assert!(wait_until(Duration::from_secs(5), || stats(
        &out, "webhook"
    )
    .failed
        == 1));
    let s = stats(&out, "webhook");
    assert_eq!((s.sent, s.retried, s.failed), (0, 2, 1));
    assert_eq!(srv.requests().len(), 3);
    // 4xx other than 408/429: not retried.
    let srv_before = srv.requests().len();
    {
        let mut s = srv.script.lock().unwrap();
        s.clear();
        s.push_back(Reply::Status(400, None));
    }
    out.submit(&alert("r2", "x"));
    assert!(wait_until(Duration::from_secs(5), || stats(
        &out, "webhook"
    )
    .failed
        == 2));
    assert_eq!(srv.requests().len(), srv_before + 1);
    assert_eq!(stats(&out, "webhook").retried, 2);
    out.shutdown();
}

#[test]
fn connection_errors_never_print_the_webhook_url() {
    // A port nobody listens on: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{dead}/services/T000/B000/TOPSECRETTOKEN");
    let cfg = config::load(
        None,
        &[format!("outputs.slack.webhook_url={url}")],
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    let slack = cfg.outputs.slack.clone().unwrap();
    assert!(!format!("{cfg:?}").contains("TOPSECRETTOKEN"));
    let mut sink = mamori::outputs::slack::SlackSink::new(&slack).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(sink.send(&alert("r", "x"))).unwrap_err();
    assert!(e.retryable);
    let msg = format!("{e} {e:?}");
    assert!(!msg.contains("TOPSECRETTOKEN"), "{msg}");
}

/// A stuck Slack (never answers) and a dead one (connection refused) must
/// not delay the file output or syslog.
#[test]
fn stuck_or_dead_slack_does_not_delay_file_and_syslog() {
    let hang = Server::start(vec![Reply::Hang; 1000]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for slack_url in [hang.url("/hang"), format!("http://{dead}/dead")] {
        let dir = std::env::temp_dir().join(format!(
            "mamori-http-{}-{}",
            std::process::id(),
            slack_url.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("alerts.jsonl");
        let _ = std::fs::remove_file(&file);
        // A syslog receiver over TCP (octet counting) that reports each record.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let syslog_addr = tcp.local_addr().unwrap();
        let (rec_tx, rec_rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read};
            let (s, _) = tcp.accept().unwrap();
            let mut r = BufReader::new(s);
            loop {
                let mut len = Vec::new();
                if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                    return;
                }
                let n: usize = std::str::from_utf8(&len[..len.len() - 1])
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut rec = vec![0; n];
                r.read_exact(&mut rec).unwrap();
                if rec_tx.send(String::from_utf8(rec).unwrap()).is_err() {
                    return;
                }
            }
        });
        let out = start(&[
            format!("outputs.slack.webhook_url={slack_url}"),
            "outputs.slack.timeout=30s".into(),
            format!("outputs.file.path={}", file.display()),
            format!("outputs.syslog.address=tcp://{syslog_addr}"),
            "outputs.grace_period=200ms".into(),
        ]);
        let n = 200;
        let t0 = Instant::now();
        for i in 0..n {
            out.submit(&alert(&format!("rule {i}"), "x"));
        }
        for i in 0..n {
            let rec = rec_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("syslog record");
            assert!(rec.contains(&format!("rule=\"rule {i}\"")), "{rec}");
        }
        let syslog_done = t0.elapsed();
        assert!(wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&file)
                .map(|t| t.lines().count() == n)
                .unwrap_or(false)
        }));
        let file_done = t0.elapsed();
        let slack = stats(&out, "slack");
        assert_eq!(slack.sent, 0, "{slack_url}: Slack cannot have delivered");
        assert!(
            syslog_done < Duration::from_secs(2) && file_done < Duration::from_secs(2),
            "{slack_url}: syslog {syslog_done:?}, file {file_done:?}"
        );
        eprintln!(
            "Slack {slack_url}: {n} alerts via syslog in {syslog_done:?}, file in {file_done:?}"
        );
        let t = Instant::now();
        let r = out.shutdown();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            t.elapsed()
        );
        let s = r.sinks.iter().find(|s| s.name == "slack").unwrap();
        assert!(s.pending > 0, "undelivered Slack alerts are reported: {s}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn dedup_sends_the_first_at_once_and_one_summary_with_the_count() {
    let srv = Server::start(vec![]);
    let out = start(&[
        format!("outputs.webhook.url={}", srv.url("/w")),
        "outputs.webhook.dedup.window=400ms".into(),
        "outputs.webhook.dedup.fields=[fd.name]".into(),
    ]);
    let t0 = Instant::now();
    for _ in 0..50 {
        out.submit(&alert("Read sensitive file", "read /etc/shadow"));
    }
    let first = srv.wait_for(1, Duration::from_secs(2));
    assert!(first[0].at - t0 < Duration::from_millis(300));
    let reqs = srv.wait_for(2, Duration::from_secs(3));
    assert_eq!(reqs.len(), 2);
    let summary = reqs[1].json();
    assert_eq!(summary["output_fields"]["mamori.dedup.count"], 49);
    assert_eq!(summary["rule"], "Read sensitive file");
    assert!(summary["output"]
        .as_str()
        .unwrap()
        .ends_with("(repeated 49 more times in 0.4s)"));
    let gap = reqs[1].at - t0;
    assert!(
        gap >= Duration::from_millis(400) && gap < Duration::from_millis(1500),
        "{gap:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.requests().len(), 2, "nothing more after the summary");
    let s = stats(&out, "webhook");
    assert_eq!((s.sent, s.deduplicated), (2, 49));
    // Pending repeats are flushed at shutdown.
    for _ in 0..3 {
        out.submit(&alert("Read sensitive file", "read /etc/shadow"));
    }
    let r = out.shutdown();
    assert_eq!(
        r.sinks[0].sent, 4,
        "first of the new window + shutdown summary"
    );
    assert_eq!(
        srv.requests()[3].json()["output_fields"]["mamori.dedup.count"],
        2
    );
}

/// Accepts one alert per `every`.
struct Slow {
    every: Duration,
    delivered: Arc<AtomicU64>,
}

impl Output for Slow {
    fn send<'a>(&'a mut self, _a: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(self.every).await;
            self.delivered.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}

#[test]
fn backpressure_100k_alerts_into_a_10_per_second_sink() {
    let delivered = Arc::new(AtomicU64::new(0));
    let cap = 1000;
    let grace = Duration::from_millis(300);
    let out = Outputs::start_sinks(
        vec![SinkSpec {
            name: "slow".into(),
            common: mamori::outputs::config::SinkCommon {
                queue_capacity: cap,
                ..Default::default()
            },
            sink: Box::new(Slow {
                every: Duration::from_millis(100),
                delivered: delivered.clone(),
            }),
            reopen: None,
        }],
        grace,
    )
    .unwrap();
    let n = 100_000u64;
    let t0 = Instant::now();
    let a = alert("r", "x");
    for _ in 0..n {
        out.submit(&a);
    }
    let submit_time = t0.elapsed();
    // Detection is never held up: were submit to wait for the sink, 100k
    // alerts at 10/s would take hours; they take well under a second (the
    // bound is loose so a loaded CI machine cannot fail it).
    assert!(submit_time < Duration::from_secs(20), "{submit_time:?}");
    let s = stats(&out, "slow");
    assert!(s.pending <= cap as u64 + 1, "queue bounded: {s}");
    assert_eq!(s.sent + s.dropped + s.pending, n, "{s}");
    std::thread::sleep(Duration::from_millis(350));
    let t = Instant::now();
    let r = out.shutdown();
    let took = t.elapsed();
    assert!(r.timed_out);
    assert!(
        took < grace + Duration::from_millis(400),
        "shutdown took {took:?}"
    );
    let s = &r.sinks[0];
    assert_eq!(s.sent, delivered.load(Ordering::Relaxed));
    assert_eq!(
        s.sent + s.dropped + s.pending,
        n,
        "every alert accounted for: {s}"
    );
    assert!(s.dropped >= n - cap as u64 - 10, "{s}");
    assert!(s.sent >= 3 && s.sent <= 10, "about 10/s for ~0.65 s: {s}");
    eprintln!("100k submits in {submit_time:?}; {s}; shutdown in {took:?}");
}

/// Alert-to-HTTP-server latency for Slack, sequential alerts on loopback.
#[test]
fn slack_latency_on_loopback() {
    let srv = Server::start(vec![]);
    let out = start(&[format!("outputs.slack.webhook_url={}", srv.url("/s"))]);
    let n = 200;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        out.submit(&alert(&format!("r{i}"), "x"));
        let reqs = srv.wait_for(i + 1, Duration::from_secs(5));
        assert_eq!(reqs.len(), i + 1);
        lat.push(reqs[i].at - t);
    }
    lat.sort();
    let (p50, p99) = (lat[n / 2], lat[n * 99 / 100]);
    eprintln!("alert → Slack POST received: p50 {p50:?}, p99 {p99:?} over {n}");
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    out.shutdown();
}
