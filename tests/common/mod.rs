//! Helpers shared by the end-to-end tests (included with `#[path]`).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Spawn `cmd` (a `mamori` invocation with piped stdout) and wait, at most
/// 60 s, until it reports on stderr that its programs are attached. Returns
/// the child, the stderr lines so far, and a receiver for the rest.
pub fn spawn_until_attached(mut cmd: Command) -> (Child, Vec<String>, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mamori");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mamori did not attach; stderr: {log:?}");
        };
        let ready = line.contains("attached");
        log.push(line);
        if ready {
            return (child, log, rx);
        }
    }
}
