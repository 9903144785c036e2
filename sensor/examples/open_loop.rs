//! The timed loop of `cargo xtask bench capture`: N `openat`+`close` pairs
//! (`File::open` and drop) on PATH; prints ns per pair. A separate, optimised
//! process so that the harness's own code (xtask is a debug build) and
//! threads are not part of what is timed.
//!
//! Usage: `open_loop N [PATH]` (default `/etc/hostname`).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            eprintln!("usage: open_loop N [PATH]");
            std::process::exit(2)
        });
    let path = args.next().unwrap_or_else(|| "/etc/hostname".into());
    if let Err(e) = std::fs::File::open(&path) {
        eprintln!("open_loop: {path}: {e}");
        std::process::exit(1);
    }
    let start = Instant::now();
    for _ in 0..n {
        drop(std::fs::File::open(&path));
    }
    println!("{:.1}", start.elapsed().as_nanos() as f64 / n as f64);
}
