//! `GET /healthz` for liveness/readiness probes (`mamori run --health-addr`).
//!
//! Deliberately tiny: one request per connection, a bounded read with a
//! timeout, and a fixed answer — `503 starting` until the kernel programs
//! are attached, then `200 ok` while the pipeline keeps finishing drain
//! passes, `503 stalled` once it has not for [`STALLED_AFTER`]. A pipeline
//! that is merely busy (a flood) still beats: it yields between bounded
//! passes. Nothing here touches the event path.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::pipeline::Heartbeat;

/// No completed drain pass for this long means the pipeline is stuck.
pub const STALLED_AFTER: Duration = Duration::from_secs(10);

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

/// Bind `addr` and serve in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, ready: Ready) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let state = ready.state();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let _ = conn.write_all(respond(&buf[..n], state).as_bytes()).await;
                let _ = conn.shutdown().await;
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
}
