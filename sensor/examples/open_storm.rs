//! The event source of `cargo xtask bench capture`'s drain measurement:
//! THREADS threads calling `open` on PATH (and `close` when it succeeds) for
//! SECS seconds, paced to RATE opens per second in total (0: as fast as they
//! can). Prints the number of opens made.
//!
//! Why paced: unpaced producers on a 2-core machine take the CPU the reader
//! needs, so what they measure is the machine's split between them, not
//! whether the reader keeps up at a given rate. A path that does not exist
//! makes each event cheap to produce (one syscall, no file to set up), so a
//! rate can be reached with CPU to spare for the reader.
//!
//! Usage: `open_storm THREADS RATE SECS PATH`.

use std::{
    ffi::CString,
    time::{Duration, Instant},
};

fn arg<T: std::str::FromStr>(v: Option<String>, what: &str) -> T {
    v.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        eprintln!("open_storm: bad or missing {what}; usage: open_storm THREADS RATE SECS PATH");
        std::process::exit(2)
    })
}

/// Opens per pacing step: the clock is read once per batch.
const BATCH: u64 = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: u64 = arg(args.next(), "THREADS");
    let rate: u64 = arg(args.next(), "RATE");
    let secs: f64 = arg(args.next(), "SECS");
    let path: String = arg(args.next(), "PATH");
    if threads == 0 || !(0.0..=60.0).contains(&secs) {
        eprintln!("open_storm: THREADS must be > 0 and SECS at most 60");
        std::process::exit(2);
    }
    let Ok(cpath) = CString::new(path) else {
        eprintln!("open_storm: PATH contains a NUL byte");
        std::process::exit(2)
    };
    let dur = Duration::from_secs_f64(secs);
    let per_thread = rate as f64 / threads as f64;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let cpath = cpath.clone();
            std::thread::spawn(move || {
                let mut done = 0u64;
                loop {
                    let elapsed = start.elapsed();
                    if elapsed >= dur {
                        break;
                    }
                    if rate > 0 {
                        let due = (elapsed.as_secs_f64() * per_thread) as u64;
                        if done >= due {
                            std::thread::sleep(Duration::from_micros(100));
                            continue;
                        }
                    }
                    for _ in 0..BATCH {
                        // SAFETY: a valid NUL-terminated path; the fd, when
                        // one is returned, is closed right away.
                        unsafe {
                            let fd = libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                            if fd >= 0 {
                                libc::close(fd);
                            }
                        }
                    }
                    done += BATCH;
                }
                done
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    println!("{total}");
}
