//! Rule-engine benchmark: evaluate a stream of mixed exec/open/connect events
//! against Falco's stable rules (plus mamori's shipped `rules/`), on one core.
//!
//! `cargo run --release -p mamori-rules --example bench_rules -- [EVENTS] [RULES...]`
//! (default 1,000,000 events; default rules: `../shared/falco-rules/falco_rules.yaml`
//! beside the workspace, and `rules/`). Called by `cargo xtask bench rules`.
//!
//! The events (`events.rs`) are built in memory before timing. Every figure
//! is measured for the engine as it evaluates today (`fast`: merged lists,
//! per-event memo, jump-code program) and for the reference evaluator it is
//! checked against (`reference`: each rule's tree walked on its own, as
//! before), in interleaved rounds, so the ratio is not skewed by drift of a
//! shared machine. Reported: the whole stream (rules matched, alerts
//! rendered, stateful rules fed), its split into matching, stateful rules
//! and rendering, match-only cost per event type, a cache-resident working
//! set, and the first rule file alone (Falco's stable rules by default).
//! Alert counts of the two engines must be equal, or the run fails.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mamori_rules::event::{Event, EvtType};
use mamori_rules::{Engine, LoadOptions};

mod events;

/// Interleaved rounds per comparison (the median is reported).
const ROUNDS: usize = 3;

/// CPU time consumed by this thread, in seconds: unlike wall time it does
/// not count time the scheduler gave to other processes on a shared machine.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux; the call only writes into `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let (n, rules) = parse_args();
    let pair = load_engines(&rules);
    let events = events::make_events(n);
    let mut idx = Vec::with_capacity(16);
    warm_up(&pair, &events, &mut idx);
    let stream = compare(&pair, |e| time_stream(e, &events));
    println!(
        "whole stream ({n} events: match + render alerts + stateful rules): {}",
        stream.show()
    );
    for s in pair.fast.state_stats() {
        println!(
            "  stateful {:<58} alerts {:>6} keys {:>6} evicted {:>6}",
            s.rule, s.alerts, s.keys, s.evicted
        );
    }
    split(&pair.fast, &events, &mut idx);
    for t in [EvtType::Execve, EvtType::Openat, EvtType::Connect] {
        let subset: Vec<&Event> = events.iter().filter(|e| e.evt_type == t).collect();
        let r = compare(&pair, |e| (match_only(e, &subset, &mut idx), 0));
        println!(
            "  {t:<8} {:>8} events, match only: {}",
            subset.len(),
            r.show()
        );
    }
    let hot = &events[..events.len().min(1000)];
    let rounds = std::env::var("MAMORI_BENCH_HOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((n / hot.len().max(1)).max(1));
    let refs: Vec<&Event> = hot.iter().cycle().take(hot.len() * rounds).collect();
    let hot_rate = compare(&pair, |e| (match_only(e, &refs, &mut idx), 0));
    println!(
        "cache-resident working set ({} events x {rounds}), match only: {}",
        hot.len(),
        hot_rate.show()
    );
    let alone = (rules.len() > 1).then(|| {
        let first = load_engines(&rules[..1]);
        let r = compare(&first, |e| time_stream(e, &events));
        println!("{} alone, whole stream: {}", rules[0].display(), r.show());
        r
    });
    if std::env::var_os("MAMORI_BENCH_PROFILE").is_some() {
        println!("per-rule cost (every indexed rule evaluated):");
        for (name, n, m, ns) in pair.fast.profile(&events) {
            println!(
                "  {:>7.1} ns/eval {n:>8} evals {m:>7} matches  {name}",
                ns as f64 / n.max(1) as f64
            );
        }
    }
    let verdict = |rate: f64, target: f64| if rate >= target { "met" } else { "NOT met" };
    println!(
        "targets: whole stream >= 2,000,000 events/s/core: {}; cache-resident >= 4,000,000: {}",
        verdict(stream.fast, 2e6),
        verdict(hot_rate.fast, 4e6)
    );
    if let Some(a) = alone {
        println!(
            "         first rule file alone >= 5,000,000: {}",
            verdict(a.fast, 5e6)
        );
    }
}

/// The engine under test and the reference evaluator, on the same rules.
struct Pair {
    fast: Engine,
    reference: Engine,
}

/// Median events/s of each engine over interleaved rounds.
struct Compared {
    fast: f64,
    reference: f64,
}

impl Compared {
    fn show(&self) -> String {
        format!(
            "{:.0} events/s/core ({:.0} ns/event), reference evaluator {:.0} events/s/core ({:.0} ns/event): {:.2}x",
            self.fast,
            1e9 / self.fast,
            self.reference,
            1e9 / self.reference,
            self.fast / self.reference
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Run `f` on reference, fast, reference, fast, ... (state reset before
/// each run); `f` returns events/s and the alert count, which must agree.
fn compare(p: &Pair, mut f: impl FnMut(&Engine) -> (f64, u64)) -> Compared {
    let (mut fast, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        p.reference.reset_state();
        let (r, ra) = f(&p.reference);
        p.fast.reset_state();
        let (q, qa) = f(&p.fast);
        assert_eq!(ra, qa, "the engines produced different alert counts");
        reference.push(r);
        fast.push(q);
    }
    Compared {
        fast: median(fast),
        reference: median(reference),
    }
}

/// Load both engines, reporting the time each took and the load summary.
fn load_engines(rules: &[PathBuf]) -> Pair {
    let files = read_rules(rules);
    let opts = LoadOptions::default();
    let t = Instant::now();
    let (fast, report) = match Engine::load(&files, &opts) {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    };
    let fast_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let (reference, _) = Engine::compile_reference(&files, &opts);
    let ref_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "bench rules: {} ({}), loaded in {fast_ms:.1} ms (reference evaluator {ref_ms:.1} ms)",
        rules
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        report.summary()
    );
    Pair { fast, reference }
}

/// Warm up on the first 10,000 events; with MAMORI_BENCH_REPEAT, evaluate the
/// stream that many more times with the fast engine (for profilers).
fn warm_up(p: &Pair, events: &[Event], idx: &mut Vec<usize>) {
    for ev in events.iter().take(10_000) {
        p.fast.matching_rules(ev, idx);
        p.reference.matching_rules(ev, idx);
    }
    if let Some(r) = std::env::var("MAMORI_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        for _ in 0..r {
            for ev in events {
                p.fast.matching_rules(black_box(ev), idx);
            }
        }
    }
}

/// One pass over the stream (rules matched and alerts rendered, the
/// stateful rules fed) in thread CPU time: events/s and alerts.
fn time_stream(engine: &Engine, events: &[Event]) -> (f64, u64) {
    let (mut alerts, mut stateful) = (0u64, 0u64);
    let cpu0 = thread_cpu_secs();
    engine.matching_rules_batch(
        black_box(events),
        |e, r| {
            black_box(engine.alert(r, &events[e]));
            alerts += 1;
        },
        |_, a| {
            black_box(a);
            stateful += 1;
        },
    );
    let alerts = alerts + stateful;
    let secs = (thread_cpu_secs() - cpu0).max(f64::MIN_POSITIVE);
    (events.len() as f64 / secs, alerts)
}

/// Events/s of matching alone over `events`.
fn match_only(engine: &Engine, events: &[&Event], idx: &mut Vec<usize>) -> f64 {
    let cpu0 = thread_cpu_secs();
    for ev in events {
        engine.matching_rules(black_box(ev), idx);
    }
    events.len() as f64 / (thread_cpu_secs() - cpu0).max(f64::MIN_POSITIVE)
}

/// Where the fast engine's stream time goes: matching, the stateful rules,
/// rendering the alerts of the matches (ns per event of the stream).
fn split(engine: &Engine, events: &[Event], idx: &mut Vec<usize>) {
    let refs: Vec<&Event> = events.iter().collect();
    let matching = 1e9 / match_only(engine, &refs, idx);
    engine.reset_state();
    let mut fired = Vec::new();
    let cpu0 = thread_cpu_secs();
    for ev in events {
        engine.stateful_alerts(black_box(ev), &mut fired);
        fired.clear();
    }
    let stateful = (thread_cpu_secs() - cpu0) * 1e9 / events.len() as f64;
    let hits: Vec<(usize, usize)> = events
        .iter()
        .enumerate()
        .flat_map(|(i, ev)| {
            engine.matching_rules(ev, idx);
            idx.iter().map(move |&r| (i, r)).collect::<Vec<_>>()
        })
        .collect();
    let cpu0 = thread_cpu_secs();
    for &(i, r) in &hits {
        black_box(engine.alert(r, &events[i]));
    }
    let render = (thread_cpu_secs() - cpu0) * 1e9 / events.len() as f64;
    println!(
        "  split (fast engine, ns per event of the stream): matching {matching:.0}, stateful rules {stateful:.0}, rendering {} alerts {render:.0}",
        hits.len()
    );
}

/// EVENTS (default 1,000,000) and the rule paths (default: Falco's stable
/// rules beside the workspace, and `rules/`).
fn parse_args() -> (usize, Vec<PathBuf>) {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("EVENTS must be a number"))
        .unwrap_or(1_000_000);
    let mut rules: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if rules.is_empty() {
        let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let falco = ws.join("../shared/falco-rules/falco_rules.yaml");
        assert!(
            falco.is_file(),
            "Falco rules not found at {}",
            falco.display()
        );
        rules.push(falco);
        rules.push(ws.join("rules"));
    }
    (n, rules)
}

/// Rule files as the engine takes them: each path a file, or a directory of
/// `*.yaml` files read in name order.
fn read_rules(paths: &[PathBuf]) -> Vec<Arc<mamori_rules::yaml::SourceFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            mamori_rules::yaml::SourceFile::new(f.display().to_string(), text)
        })
        .collect()
}
