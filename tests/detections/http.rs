//! A tiny HTTP/1.1 server for the detections test: the local upload target
//! of `curl -T` and the fake container runtime API on a unix socket.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// One request a [`HttpServer`] answered: method, target, body.
pub(crate) type Request = (String, String, Vec<u8>);

/// A tiny HTTP/1.1 server on 127.0.0.1 answering 200 to everything; records
/// each request. Stopped and joined on drop.
pub(crate) struct HttpServer {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// On 127.0.0.1, an ephemeral port.
    pub(crate) fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        HttpServer::serve(port, move || {
            let (s, _) = listener.accept().ok()?;
            s.set_nonblocking(false).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(Box::new(s) as Box<dyn ReadWrite>)
        })
    }

    /// On a unix socket at `path` (like a container runtime's API).
    pub(crate) fn start_unix(path: &Path) -> HttpServer {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        HttpServer::serve(0, move || {
            let (s, _) = listener.accept().ok()?;
            s.set_nonblocking(false).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            Some(Box::new(s) as Box<dyn ReadWrite>)
        })
    }

    fn serve(
        port: u16,
        mut accept: impl FnMut() -> Option<Box<dyn ReadWrite>> + Send + 'static,
    ) -> HttpServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                match accept() {
                    Some(s) => {
                        if let Some(req) = serve_one(s) {
                            seen2.lock().unwrap().push(req);
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn serve_one(mut s: Box<dyn ReadWrite>) -> Option<Request> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 65536 {
            return None;
        }
        match s.read(&mut b) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let mut words = head.split_whitespace();
    let method = words.next()?.to_uppercase();
    let target = String::from_utf8_lossy(&buf[..head_end])
        .split_whitespace()
        .nth(1)?
        .to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    if head.contains("expect: 100-continue") {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&b[..n]),
        }
    }
    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        .ok()?;
    Some((method, target, body))
}
