//! The syslog output against a real `rsyslogd` (Debian package `rsyslog`):
//! a private instance listens on loopback UDP and TCP and on a unix socket in
//! a temp dir and writes every record twice — raw (`%rawmsg%`) and as parsed
//! by rsyslog — so the test sees exactly what arrived and that rsyslog read
//! it as the intended RFC 5424 / RFC 3164 record.
//!
//! Run: `cargo test -p sensor --features e2e --test outputs_syslog`
//! (needs `rsyslogd` on PATH or in /usr/sbin; no root needed).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[path = "outputs_certs.rs"]
mod certs;
use certs::make_certs;
use mamori::{
    config,
    outputs::{
        syslog::format::{self, Header},
        Outputs,
    },
};
use mamori_rules::alert::{Alert, Priority};

struct Rsyslog {
    child: Option<Child>,
    dir: PathBuf,
    udp: u16,
    tcp: u16,
    /// TLS (mTLS: client certificate required) input, when started with certs.
    tls: Option<u16>,
}

fn rsyslogd() -> PathBuf {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "rsyslogd".into()
}

fn free_port() -> u16 {
    // A port both free for TCP and UDP right now.
    for _ in 0..50 {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

impl Rsyslog {
    fn start(name: &str) -> Rsyslog {
        Self::start_opts(name, false)
    }

    /// With a test CA, server and client certificates (openssl CLI) and a
    /// TLS input that requires a client certificate signed by that CA.
    fn start_tls(name: &str) -> Rsyslog {
        Self::start_opts(name, true)
    }

    fn start_opts(name: &str, tls: bool) -> Rsyslog {
        let dir =
            std::env::temp_dir().join(format!("mamori-rsyslog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (udp, tcp) = (free_port(), free_port());
        if tls {
            make_certs(&dir);
        }
        let mut r = Rsyslog {
            child: None,
            dir,
            udp,
            tcp,
            tls: tls.then(free_port),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let d = self.dir.display();
        let conf = format!(
            r#"
global(workDirectory="{d}" maxMessageSize="64k"{tls_global})
module(load="imudp")
module(load="imtcp")
{tls_input}
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imuxsock" Socket="{d}/log.sock" UseSpecialParser="off" ParseHostname="on" RateLimit.Interval="0")
template(name="raw" type="string" string="%inputname% %rawmsg%\n")
template(name="parsed" type="string" string="%inputname%|%pri%|%syslogfacility-text%|%syslogseverity-text%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{d}/raw.log" template="raw")
*.* action(type="omfile" file="{d}/parsed.log" template="parsed")
"#,
            udp = self.udp,
            tcp = self.tcp,
            tls_global = if self.tls.is_some() {
                format!(
                    r#" DefaultNetstreamDriverCAFile="{d}/ca.pem" DefaultNetstreamDriverCertFile="{d}/server.pem" DefaultNetstreamDriverKeyFile="{d}/server-key.pem""#
                )
            } else {
                String::new()
            },
            tls_input = match self.tls {
                Some(port) => format!(
                    r#"input(type="imtcp" address="127.0.0.1" port="{port}" name="imtls" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")"#
                ),
                None => String::new(),
            },
        );
        std::fs::write(self.dir.join("rsyslog.conf"), conf).unwrap();
        let _ = std::fs::remove_file(self.dir.join("log.sock"));
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (Debian package rsyslog) must be installed");
        self.child = Some(child);
        // Ready when TCP accepts and the unix socket exists (bounded).
        let t0 = Instant::now();
        loop {
            let tcp_up = std::net::TcpStream::connect(("127.0.0.1", self.tcp)).is_ok()
                && self
                    .tls
                    .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            if tcp_up && self.dir.join("log.sock").exists() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "rsyslogd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Wait (bounded) until `pred` holds for the raw and parsed lines.
    fn wait(
        &self,
        limit: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> (Vec<String>, Vec<String>) {
        let t0 = Instant::now();
        loop {
            let raw = self.lines("raw.log");
            if pred(&raw) || t0.elapsed() > limit {
                // omfile writes both files per batch; give the second a moment.
                std::thread::sleep(Duration::from_millis(50));
                return (self.lines("raw.log"), self.lines("parsed.log"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn alert(rule: &str, prio: Priority, output: &str) -> Alert {
    let mut f = serde_json::Map::new();
    f.insert("proc.name".into(), "cat".into());
    f.insert("fd.name".into(), "/etc/shadow".into());
    Alert {
        time: "2026-11-29T19:20:06.844531968Z".into(),
        rule: rule.into(),
        priority: prio,
        output: output.into(),
        output_fields: f,
        source: "syscall".into(),
        tags: vec!["maturity_stable".into(), "filesystem".into()],
        hostname: "node-1".into(),
    }
}

fn header() -> Header {
    Header {
        facility: 3,
        app_name: "mamori".into(),
        procid: std::process::id(),
        max_bytes: 8192,
    }
}

fn outputs(opts: &[String]) -> Outputs {
    let mut o = vec![
        "outputs.stdout.enabled=false".to_string(),
        "outputs.grace_period=2s".to_string(),
        "outputs.syslog.retry.initial_backoff=20ms".to_string(),
    ];
    o.extend_from_slice(opts);
    let cfg = config::load(None, &o, Vec::<(String, String)>::new()).unwrap();
    Outputs::start(&cfg.outputs).unwrap()
}

const HOSTILE: &str =
    "12:00:00: Critical evil\n<13>1 2026-01-01T00:00:00Z forged mamori 1 alert - gotcha\x1b[2J\x1b]0;pwned\x07";

#[test]
fn rfc5424_records_arrive_exactly_over_udp_tcp_and_unix_socket() {
    let rs = Rsyslog::start("5424");
    let sock = rs.dir.join("log.sock");
    let transports = [
        ("imudp", format!("udp://127.0.0.1:{}", rs.udp)),
        ("imtcp", format!("tcp://127.0.0.1:{}", rs.tcp)),
        ("imuxsock", format!("unix://{}", sock.display())),
    ];
    let normal = alert(
        "Read sensitive file",
        Priority::Warning,
        "12:00:00: Warning read (file=/etc/shadow proc=cat)",
    );
    let mut hostile = alert("Shell \"spawned\" ]", Priority::Critical, HOSTILE);
    hostile
        .output_fields
        .insert("proc.cmdline".into(), "sh -c \"x]\\y\"\n\x1b[31m".into());
    let want_normal = format::rfc5424(&normal, &header());
    let want_hostile = format::rfc5424(&hostile, &header());
    assert!(!want_hostile.contains('\n') && !want_hostile.contains('\x1b'));

    for (input, address) in &transports {
        let out = outputs(&[format!("outputs.syslog.address={address}")]);
        let t0 = Instant::now();
        // UDP/unix datagrams to a just-started server: resend a probe until
        // rsyslog shows it, bounded; the real records follow.
        let probe = alert("probe", Priority::Notice, &format!("probe {input}"));
        for _ in 0..50 {
            out.submit(&probe);
            let (raw, _) = rs.wait(Duration::from_millis(100), |l| {
                l.iter().any(|x| x.contains(&format!("probe {input}")))
            });
            if raw.iter().any(|x| x.contains(&format!("probe {input}"))) {
                break;
            }
        }
        let before = rs.lines("raw.log").len();
        out.submit(&normal);
        out.submit(&hostile);
        let (raw, parsed) = rs.wait(Duration::from_secs(10), |l| l.len() >= before + 2);
        let report = out.shutdown();
        let ours: Vec<&String> = raw[before..].iter().collect();
        assert_eq!(
            ours,
            [
                &format!("{input} {want_normal}"),
                &format!("{input} {want_hostile}")
            ],
            "{input}: exactly the two records, in order, one line each"
        );
        let parsed_ours: Vec<&String> = parsed.iter().filter(|l| l.starts_with(input)).collect();
        let last_two = &parsed_ours[parsed_ours.len() - 2..];
        // The backslash of `x]\y` arrives as `\\` (neutralized), each
        // escaped again in the SD-PARAM.
        let pid = std::process::id();
        assert_eq!(
            *last_two[0],
            format!(
                "{input}|28|daemon|warning|node-1|mamori|{pid}|alert|\
                 [mamori@32473 rule=\"Read sensitive file\" priority=\"Warning\" source=\"syscall\" tags=\"maturity_stable,filesystem\"]\
                 [fields@32473 fd.name=\"/etc/shadow\" proc.name=\"cat\"]|\
                 12:00:00: Warning read (file=/etc/shadow proc=cat)"
            )
        );
        assert_eq!(
            *last_two[1],
            format!(
                "{input}|26|daemon|crit|node-1|mamori|{pid}|alert|\
                 [mamori@32473 rule=\"Shell \\\"spawned\\\" \\]\" priority=\"Critical\" source=\"syscall\" tags=\"maturity_stable,filesystem\"]\
                 [fields@32473 fd.name=\"/etc/shadow\" proc.cmdline=\"sh -c \\\"x\\]\\\\\\\\y\\\"\\\\x0a\\\\x1b[31m\" proc.name=\"cat\"]|\
                 12:00:00: Critical evil\\x0a<13>1 2026-01-01T00:00:00Z forged mamori 1 alert - gotcha\\x1b[2J\\x1b]0;pwned\\x07"
            )
        );
        assert!(
            !parsed.iter().any(|l| l.contains("|forged|")),
            "no forged record"
        );
        let s = &report.sinks[0];
        assert_eq!((s.failed, s.dropped, s.pending), (0, 0, 0), "{s}");
        eprintln!("{input}: delivered in {:?}", t0.elapsed());
    }
}

#[test]
fn rfc3164_over_udp() {
    let rs = Rsyslog::start("3164");
    let out = outputs(&[
        format!("outputs.syslog.address=udp://127.0.0.1:{}", rs.udp),
        "outputs.syslog.format=rfc3164".into(),
        "outputs.syslog.facility=local3".into(),
    ]);
    let probe = alert("probe", Priority::Notice, "probe");
    for _ in 0..50 {
        out.submit(&probe);
        let (raw, _) = rs.wait(Duration::from_millis(100), |l| !l.is_empty());
        if !raw.is_empty() {
            break;
        }
    }
    let before = rs.lines("raw.log").len();
    let a = alert("r", Priority::Error, HOSTILE);
    out.submit(&a);
    let (raw, parsed) = rs.wait(Duration::from_secs(10), |l| l.len() > before);
    out.shutdown();
    let h = Header {
        facility: 19,
        ..header()
    };
    let want = format::rfc3164(&a, &h);
    assert_eq!(raw[before..], [format!("imudp {want}")]);
    let p = parsed.last().unwrap();
    let pid = std::process::id();
    assert!(
        p.starts_with(&format!("imudp|155|local3|err|node-1|mamori|{pid}|")),
        "{p}"
    );
    assert!(p.ends_with("gotcha\\x1b[2J\\x1b]0;pwned\\x07"), "{p}");
}

/// rsyslog restarts: the TCP sink notices the closed connection, reconnects
/// with backoff, and no record submitted after the restart is lost.
#[test]
fn tcp_reconnects_after_a_server_restart() {
    let mut rs = Rsyslog::start("restart");
    let out = outputs(&[
        format!("outputs.syslog.address=tcp://127.0.0.1:{}", rs.tcp),
        "outputs.syslog.retry.max_attempts=50".into(),
        "outputs.syslog.retry.max_backoff=200ms".into(),
    ]);
    out.submit(&alert("before", Priority::Error, "before restart"));
    rs.wait(Duration::from_secs(10), |l| {
        l.iter().any(|x| x.contains("before restart"))
    });
    rs.stop();
    // While the server is down: retried with backoff, not lost.
    out.submit(&alert("during", Priority::Error, "while down"));
    std::thread::sleep(Duration::from_millis(300));
    rs.spawn();
    for i in 0..5 {
        out.submit(&alert(
            "after",
            Priority::Error,
            &format!("after restart {i}"),
        ));
    }
    let (raw, _) = rs.wait(Duration::from_secs(10), |l| {
        l.iter().filter(|x| x.contains("after restart")).count() == 5
    });
    let report = out.shutdown();
    let got: Vec<_> = raw
        .iter()
        .filter(|l| l.contains("restart") || l.contains("while down"))
        .collect();
    assert!(raw.iter().any(|l| l.contains("while down")), "{got:#?}");
    assert_eq!(
        raw.iter().filter(|l| l.contains("after restart")).count(),
        5,
        "{got:#?}"
    );
    let s = &report.sinks[0];
    assert!(s.retried >= 1, "{s}");
    assert_eq!((s.sent, s.failed, s.dropped), (7, 0, 0), "{s}");
}

/// tls://: RFC 5424 over TLS with octet counting, the server verified
/// against the configured CA, a client certificate presented (mTLS); and
/// without the CA the connection is refused, never sent in the clear.
#[test]
fn tls_with_ca_and_client_certificate() {
    let rs = Rsyslog::start_tls("tls");
    let port = rs.tls.unwrap();
    let d = &rs.dir;
    let out = outputs(&[
        format!("outputs.syslog.address=tls://127.0.0.1:{port}"),
        format!("outputs.syslog.tls.ca_file={}", d.join("ca.pem").display()),
        format!(
            "outputs.syslog.tls.cert_file={}",
            d.join("client.pem").display()
        ),
        format!(
            "outputs.syslog.tls.key_file={}",
            d.join("client-key.pem").display()
        ),
    ]);
    let a = alert("r", Priority::Critical, HOSTILE);
    out.submit(&a);
    let (raw, _) = rs.wait(Duration::from_secs(10), |l| !l.is_empty());
    let r = out.shutdown();
    assert_eq!(raw, [format!("imtls {}", format::rfc5424(&a, &header()))]);
    assert_eq!(
        (r.sinks[0].sent, r.sinks[0].failed),
        (1, 0),
        "{}",
        r.sinks[0]
    );

    // Default roots do not trust the test CA: handshake fails, counted, nothing arrives.
    let out = outputs(&[
        format!("outputs.syslog.address=tls://127.0.0.1:{port}"),
        "outputs.syslog.retry.max_attempts=2".into(),
    ]);
    out.submit(&alert("r", Priority::Critical, "must not arrive"));
    let t0 = Instant::now();
    while out.stats()[0].failed == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = out.shutdown();
    assert_eq!(
        (r.sinks[0].sent, r.sinks[0].failed),
        (0, 1),
        "{}",
        r.sinks[0]
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rs.lines("raw.log").len(), 1);
}
