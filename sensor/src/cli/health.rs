//! `GET /healthz` for liveness/readiness probes and `GET /metrics` for
//! Prometheus (`mamori run --health-addr`).
//!
//! Deliberately tiny: one request per connection, read within
//! [`REQUEST_TIMEOUT`] and at most [`MAX_REQUEST`] bytes (`431` past that),
//! at most [`MAX_CONNECTIONS`] at once (a connection past that gets `503
//! busy` at once and is closed, so idle clients cannot pile up tasks), and a
//! fixed answer — `503 starting` until the kernel programs
//! are attached, then `200 ok` while the pipeline keeps finishing drain
//! passes, `503 stalled` once it has not for [`STALLED_AFTER`]. A pipeline
//! that is merely busy (a flood) still beats: it yields between bounded
//! passes. `/metrics` is the [`Metrics`] exposition, encoded per request
//! (OpenMetrics when the scraper asks for it, else labelled as Prometheus
//! text 0.0.4, which the same body parses as). Nothing here touches the
//! event path.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::{metrics::Metrics, pipeline::Heartbeat};

/// No completed drain pass for this long means the pipeline is stuck.
pub const STALLED_AFTER: Duration = Duration::from_secs(10);

/// Connections served at once; more are answered `503 busy` and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// The longest request (line and headers) read; a longer one gets `431`.
pub const MAX_REQUEST: usize = 4096;

/// The whole request must arrive within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

const BUSY: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy\n";
const TOO_LARGE: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Readiness shared between the sensor start-up and the endpoint: the
/// pipeline's heartbeat, once it is attached.
#[derive(Clone, Default)]
pub struct Ready(Arc<OnceLock<Heartbeat>>);

impl Ready {
    /// The pipeline is attached; from now on its heartbeat decides.
    pub fn set(&self, heartbeat: Heartbeat) {
        let _ = self.0.set(heartbeat);
    }

    pub fn state(&self) -> State {
        match self.0.get() {
            None => State::Starting,
            Some(h) => match h.since_last() {
                Some(d) if d >= STALLED_AFTER => State::Stalled,
                _ => State::Ok,
            },
        }
    }
}

/// What `/healthz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Ok,
    Stalled,
}

/// The response for a raw request (pure; unit-tested).
pub fn respond(request: &[u8], state: State) -> &'static str {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    match (method, path, state) {
        (Some(b"GET" | b"HEAD"), Some(b"/healthz"), State::Ok) => {
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        }
        (Some(b"GET" | b"HEAD"), Some(b"/healthz"), State::Starting) => {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstarting\n"
        }
        (Some(b"GET" | b"HEAD"), Some(b"/healthz"), State::Stalled) => {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstalled\n"
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `GET /metrics`, or `None` for any other request.
pub fn metrics_response(request: &[u8], metrics: &Metrics) -> Option<String> {
    let text = std::str::from_utf8(request).ok()?;
    let mut lines = text.lines();
    let mut parts = lines.next()?.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    if !matches!(method, "GET" | "HEAD") || path.split('?').next() != Some("/metrics") {
        return None;
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
        })
    });
    let body = if method == "HEAD" {
        String::new()
    } else {
        metrics.encode()
    };
    Some(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if openmetrics { OPENMETRICS } else { PROMETHEUS_TEXT },
        body.len()
    ))
}

/// Read one request head (up to the blank line, the end of input or the
/// timeout); `None` when it exceeds [`MAX_REQUEST`].
async fn read_request(conn: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => n,
            };
            if buf.len() + n > MAX_REQUEST {
                return false;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return true;
            }
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(false) => None,
        // Complete, closed, or timed out: answer what arrived.
        Ok(true) | Err(_) => Some(buf),
    }
}

/// Bind `addr` and serve in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    ready: Ready,
    metrics: Option<Arc<Metrics>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Full: say so without reading, bounded by a short timeout.
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_millis(200), async {
                        let _ = conn.write_all(BUSY.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    })
                    .await;
                });
                continue;
            };
            let ready = ready.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let req = read_request(&mut conn).await;
                let answer: std::borrow::Cow<'static, str> = match &req {
                    Some(req) => match metrics.as_deref().and_then(|m| metrics_response(req, m)) {
                        Some(text) => text.into(),
                        None => respond(req, ready.state()).into(),
                    },
                    None => TOO_LARGE.into(),
                };
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                    if req.is_none() {
                        // Unread input would turn the close into a reset that
                        // can destroy the answer: read a little of it first.
                        let mut sink = [0u8; 1024];
                        for _ in 0..16 {
                            if matches!(conn.read(&mut sink).await, Ok(0) | Err(_)) {
                                break;
                            }
                        }
                    }
                })
                .await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_readiness_and_path() {
        let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(respond(get, State::Ok).starts_with("HTTP/1.1 200"));
        assert!(respond(get, State::Starting).starts_with("HTTP/1.1 503"));
        assert!(respond(get, State::Starting).ends_with("starting\n"));
        assert!(respond(get, State::Stalled).ends_with("\r\n\r\nstalled\n"));
        assert!(respond(b"GET /other HTTP/1.1\r\n\r\n", State::Ok).starts_with("HTTP/1.1 404"));
        assert!(respond(b"POST /healthz HTTP/1.1\r\n\r\n", State::Ok).starts_with("HTTP/1.1 404"));
        assert!(respond(b"", State::Ok).starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn starting_then_ok_while_the_pipeline_beats() {
        let ready = Ready::default();
        assert_eq!(ready.state(), State::Starting);
        ready.set(Heartbeat::default());
        // Attached, no pass finished yet: not stalled.
        assert_eq!(ready.state(), State::Ok);
        let beating = Ready::default();
        beating.set(Heartbeat::beaten_ago(Duration::from_secs(1)));
        assert_eq!(beating.state(), State::Ok);
        let stuck = Ready::default();
        stuck.set(Heartbeat::beaten_ago(
            STALLED_AFTER + Duration::from_secs(1),
        ));
        assert_eq!(stuck.state(), State::Stalled);
    }

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(req);
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    }

    /// Idle connections beyond the cap are answered `503 busy` at once; a
    /// request head beyond the size cap gets `431`; a request split across
    /// writes is still read whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_and_request_size_are_capped() {
        let ready = Ready::default();
        ready.set(Heartbeat::default());
        let addr = serve("127.0.0.1:0".parse().unwrap(), ready, None)
            .await
            .unwrap();
        let ok = tokio::task::spawn_blocking(move || {
            let idle: Vec<_> = (0..MAX_CONNECTIONS)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(200));
            let t0 = std::time::Instant::now();
            let busy = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
            assert!(
                busy.starts_with("HTTP/1.1 503") && busy.ends_with("busy\n"),
                "{busy}"
            );
            assert!(t0.elapsed() < Duration::from_secs(1), "answered at once");
            drop(idle);
            std::thread::sleep(Duration::from_millis(200));
            let big = format!(
                "GET /healthz HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(MAX_REQUEST)
            );
            let r = get(addr, big.as_bytes());
            assert!(r.starts_with("HTTP/1.1 431"), "{r}");
            // Split across two writes.
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            c.write_all(b"Host: x\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
}
