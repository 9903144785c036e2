//! `GET /healthz` for liveness/readiness probes (`mamori run --health-addr`).
//!
//! Deliberately tiny: one request per connection, a bounded read with a
//! timeout, and a fixed answer — `200 ok` once the kernel programs are
//! attached, `503 starting` before. Nothing here touches the event path.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Readiness shared between the sensor start-up and the endpoint.
#[derive(Clone, Default)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The response for a raw request (pure; unit-tested).
pub fn respond(request: &[u8], ready: bool) -> &'static str {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/healthz")) if ready => {
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        }
        (Some(b"GET" | b"HEAD"), Some(b"/healthz")) => {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstarting\n"
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
            let ready = ready.get();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let _ = conn.write_all(respond(&buf[..n], ready).as_bytes()).await;
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
        assert!(
            respond(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", true).starts_with("HTTP/1.1 200")
        );
        assert!(respond(b"GET /healthz HTTP/1.1\r\n\r\n", false).starts_with("HTTP/1.1 503"));
        assert!(respond(b"GET /other HTTP/1.1\r\n\r\n", true).starts_with("HTTP/1.1 404"));
        assert!(respond(b"POST /healthz HTTP/1.1\r\n\r\n", true).starts_with("HTTP/1.1 404"));
        assert!(respond(b"", true).starts_with("HTTP/1.1 404"));
    }
}
