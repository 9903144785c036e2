//! Rule-loading benchmark: how long `Engine::load` takes for generated rule
//! files of 1k to 100k rules, in rules per second. Loading must stay linear
//! in the number of rules (a `ConfigMap` of 100k rules must not take
//! minutes): the last line compares the per-rule cost of the largest file
//! with the smallest's.
//!
//! `cargo run --release -p mamori-rules --example bench_load -- [MAX_RULES]`
//! (default 100,000). Called by `cargo xtask bench rules` after
//! `bench_rules`.
//!
//! Each generated rule comes with its own list and macro, uses a shared
//! list and macro too, and has an exception, so every stage of the loader
//! (YAML, reader, collector, lists, macros, rules) grows with the count.

use std::time::Instant;

use mamori_rules::{yaml::SourceFile, Engine, LoadOptions};

/// A rules file of `n` rules (with `n` lists and `n` macros besides).
fn generate(n: usize) -> String {
    let mut t = String::with_capacity(n * 520);
    t.push_str("- list: shared_shells\n  items: [bash, sh, zsh, dash, ksh]\n");
    t.push_str(
        "- macro: shared_spawn\n  condition: evt.type = execve and proc.name in (shared_shells)\n",
    );
    for i in 0..n {
        t.push_str(&format!(
            "- list: bins_{i}\n  items: [tool{i}, \"/opt/t{i}/bin/run\", helper{i}]\n\
             - macro: m_{i}\n  condition: (proc.name in (bins_{i}) or proc.pname = parent{i})\n\
             - rule: Generated rule {i}\n  desc: generated rule number {i}\n  \
             condition: >\n    (shared_spawn or (evt.type in (open, openat) and fd.name startswith /etc/app{i}/))\n    and m_{i} and not proc.aname[2] = init{i}\n  \
             output: \"rule {i} %proc.name %fd.name %proc.cmdline\"\n  priority: warning\n  tags: [generated, t{i}]\n  \
             exceptions:\n    - name: known\n      fields: [proc.name, fd.directory]\n      values: [[tool{i}, /etc/app{i}]]\n"
        ));
    }
    t
}

fn main() {
    let max: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let sizes: Vec<usize> = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]
        .into_iter()
        .filter(|&n| n <= max)
        .collect();
    println!("rule loading (generated rules, each with a list, a macro and an exception):");
    let mut per_rule = Vec::new();
    for &n in &sizes {
        let text = generate(n);
        let bytes = text.len();
        let files = [SourceFile::new("generated.yaml", text)];
        let t = Instant::now();
        let (engine, report) = match Engine::load(&files, &LoadOptions::default()) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{n} rules: load failed: {e}");
                std::process::exit(1);
            }
        };
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.rules_total, n);
        drop(engine);
        per_rule.push(secs / n as f64);
        println!(
            "  {n:>7} rules ({:>5.1} MB): {secs:>7.3} s, {:>8.0} rules/s",
            bytes as f64 / 1e6,
            n as f64 / secs
        );
    }
    if let (Some(first), Some(last)) = (per_rule.first(), per_rule.last()) {
        println!(
            "per-rule cost, {} rules vs {}: {:.2}x (1.0 is linear)",
            sizes[sizes.len() - 1],
            sizes[0],
            last / first
        );
    }
}
