//! Alert latency through the outputs: from `Outputs::submit` (what the rule
//! engine calls on a match) to a loopback syslog server receiving the record
//! (TCP, octet counting) and to a loopback HTTP server receiving the Slack
//! POST. p50/p99/max over N alerts submitted at a steady rate.
//!
//! Run: `AYA_BUILD_SKIP=1 cargo run --release -p sensor --example bench_outputs [-- N RATE]`
//! (defaults: 10000 alerts at 500/s). Target: p99 < 50 ms on loopback.
//!
//! Each sink delivers one alert at a time, so a rate above what one
//! connection sustains (about 1/RTT for HTTP) measures queueing instead;
//! real Slack webhooks accept about one message a second anyway, which is
//! what dedup and the rate limit are for.

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Read},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use mamori::{config, outputs::Outputs};
use mamori_rules::alert::{Alert, Priority};

type Arrivals = Arc<Mutex<Vec<Option<Instant>>>>;

/// The alert index in `bench-N` (rule name), found anywhere in `text`.
fn index_in(text: &str) -> Option<usize> {
    let i = text.find("bench-")? + 6;
    let digits: String = text[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn syslog_server(arrivals: Arrivals) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
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
            let now = Instant::now();
            if let Some(i) = index_in(&String::from_utf8_lossy(&rec)) {
                if let Some(slot) = arrivals.lock().unwrap().get_mut(i) {
                    slot.get_or_insert(now);
                }
            }
        }
    });
    addr
}

fn http_server(arrivals: Arrivals) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
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
                let arrivals = arrivals.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let arrivals = arrivals.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let now = Instant::now();
                            if let Some(i) = index_in(&String::from_utf8_lossy(&body)) {
                                if let Some(slot) = arrivals.lock().unwrap().get_mut(i) {
                                    slot.get_or_insert(now);
                                }
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn alert(i: usize) -> Alert {
    let mut f = serde_json::Map::new();
    f.insert("proc.name".into(), "cat".into());
    f.insert("fd.name".into(), "/etc/shadow".into());
    f.insert("proc.cmdline".into(), "cat /etc/shadow".into());
    Alert {
        time: "2026-11-29T19:20:06.844531968Z".into(),
        rule: format!("bench-{i}"),
        priority: Priority::Warning,
        output: format!("12:00:00.000000000: Warning bench-{i} read (file=/etc/shadow)"),
        output_fields: f,
        source: "syscall".into(),
        tags: vec!["bench".into()],
        hostname: "node-1".into(),
    }
}

fn summary(name: &str, sent: &[Instant], arrived: &[Option<Instant>]) -> Duration {
    let mut lat: Vec<Duration> = sent
        .iter()
        .zip(arrived)
        .filter_map(|(s, a)| a.map(|a| a.saturating_duration_since(*s)))
        .collect();
    let lost = sent.len() - lat.len();
    lat.sort();
    if lat.is_empty() {
        println!("{name}: nothing arrived");
        return Duration::MAX;
    }
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "{name:>7}: p50 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}  (n={}, not arrived={lost})",
        pct(50),
        pct(99),
        lat[lat.len() - 1],
        lat.len()
    );
    pct(99)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rate: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500.0);
    let syslog_arr: Arrivals = Arc::new(Mutex::new(vec![None; n]));
    let slack_arr: Arrivals = Arc::new(Mutex::new(vec![None; n]));
    let syslog = syslog_server(syslog_arr.clone());
    let http = http_server(slack_arr.clone());
    let cfg = config::load(
        None,
        &[
            "outputs.stdout.enabled=false".into(),
            format!("outputs.syslog.address=tcp://{syslog}"),
            format!("outputs.slack.webhook_url=http://{http}/services/bench"),
            format!("outputs.syslog.queue_capacity={n}"),
            format!("outputs.slack.queue_capacity={n}"),
        ],
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    let out = Outputs::start(&cfg.outputs).unwrap();
    let every = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let due = t0 + every * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let a = alert(i);
        sent.push(Instant::now());
        out.submit(&a);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let done = |a: &Arrivals| a.lock().unwrap().iter().all(Option::is_some);
        if done(&syslog_arr) && done(&slack_arr) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("{n} alerts at {rate}/s, submit → received on loopback:");
    let p99_syslog = summary("syslog", &sent, &syslog_arr.lock().unwrap());
    let p99_slack = summary("slack", &sent, &slack_arr.lock().unwrap());
    for s in out.shutdown().sinks {
        println!("  {s}");
    }
    let target = Duration::from_millis(50);
    println!(
        "p99 target {target:?}: syslog {}, slack {}",
        if p99_syslog < target { "met" } else { "MISSED" },
        if p99_slack < target { "met" } else { "MISSED" }
    );
}
