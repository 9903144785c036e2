//! CLI handlers for the rule-authoring commands: `rules validate`,
//! `rules list`, `rules test`, `fields` and `replay`.
//!
//! Thin wrappers over [`mamori_rules::Engine`]: they load, print what the
//! engine reports (text for people, `--json` for tools) and turn the result
//! into an exit code. The `rules test` case format is documented in
//! `rules/README.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::lines::{next_line, Line};
use crate::detect::rule_files;
use mamori_rules::alert::Alert;
use mamori_rules::event::Event;
use mamori_rules::{yaml, Engine, LoadReport, RuleMatching, Status};
use mamori_rules::{ArgKind, FIELDS};

/// The shipped rules directory: `rules/` of the workspace when run from a
/// checkout, else `./rules`.
pub fn default_rules_dir() -> PathBuf {
    let from_checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    if from_checkout.is_dir() {
        from_checkout
    } else {
        PathBuf::from("rules")
    }
}

pub(crate) fn rule_paths(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![default_rules_dir()]
    } else {
        paths.to_vec()
    }
}

fn print_report_text(report: &LoadReport) {
    for d in &report.diagnostics {
        println!("{d}");
    }
}

/// `mamori rules validate PATH...`: exit 0 when every file loads without errors.
pub fn validate(paths: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let (engine, report) = rule_files::compile(
        &rule_paths(paths),
        &rule_files::options(RuleMatching::First),
    );
    if json {
        let out = serde_json::json!({
            "ok": !report.has_errors(),
            "report": report,
            "rules": engine.rules(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_report_text(&report);
        println!("{}", report.summary());
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `mamori rules list PATH...`: every rule with priority, event types, status.
pub fn list(paths: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let (engine, report) = rule_files::compile(
        &rule_paths(paths),
        &rule_files::options(RuleMatching::First),
    );
    if json {
        println!("{}", serde_json::to_string_pretty(engine.rules())?);
    } else {
        let mut out = std::io::stdout().lock();
        for r in engine.rules() {
            let mut status = match &r.status {
                Status::Active => "active".to_string(),
                Status::Disabled => "disabled".to_string(),
                Status::Inactive { reason, .. } => format!("inactive: {reason}"),
                Status::Invalid { reason } => format!("invalid: {reason}"),
            };
            if let Some(kind) = r.stateful {
                status = format!("{status} ({kind})");
            }
            let types = if r.evttypes.is_empty() {
                "-".to_string()
            } else {
                r.evttypes.join(",")
            };
            writeln!(
                out,
                "{:<60} {:<13} {:<40} {} [{}]",
                r.name,
                r.priority.as_str(),
                types,
                status,
                r.tags.join(",")
            )?;
        }
        writeln!(out, "{}", report.summary())?;
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `mamori fields [--json]`: the field registry.
pub fn fields(json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(FIELDS)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for f in FIELDS {
        let name = match f.arg {
            ArgKind::None => f.name.to_string(),
            ArgKind::Ancestor => format!("{}[N]", f.name),
            ArgKind::SyscallArg => format!("{}.NAME / {}[N]", f.name, f.name),
            ArgKind::Key => format!("{}[KEY]", f.name),
        };
        writeln!(out, "{name:<32} {:<8} {}", f.ty.as_str(), f.desc)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn load_engine(paths: &[PathBuf], matching: RuleMatching) -> anyhow::Result<(Engine, LoadReport)> {
    match rule_files::load(paths, &rule_files::options(matching)) {
        Ok(x) => Ok(x),
        Err(mamori_rules::LoadError::Invalid { report }) => {
            for d in report.errors() {
                eprintln!("{d}");
            }
            bail!("{} error(s) loading rules", report.errors().count())
        }
    }
}

/// Parse one event from JSON, filling the keys a hand-written case may omit.
/// `ts` may be nanoseconds or a duration (`2s`, `150ms`) since time 0.
fn event_from_json(mut v: serde_json::Value) -> anyhow::Result<Event> {
    if let Some(obj) = v.as_object_mut() {
        let ts = obj.entry("ts").or_insert(serde_json::json!(0));
        if let Some(text) = ts.as_str() {
            let ns = if text.trim() == "0" {
                Some(0)
            } else {
                mamori_rules::duration::parse_ns(text)
            };
            *ts = serde_json::json!(ns.with_context(|| format!(
                "ts '{text}' is neither nanoseconds nor a duration like 2s or 150ms"
            ))?);
        }
        let proc = obj.entry("proc").or_insert(serde_json::json!({}));
        if let Some(p) = proc.as_object_mut() {
            p.entry("pid").or_insert(serde_json::json!(1));
        }
    }
    Ok(serde_json::from_value(v)?)
}

/// `mamori replay EVENTS.jsonl --rules PATH...`: alerts as JSON lines.
/// A recorded event line longer than this is skipped (a capture line is a
/// few KiB; the bound keeps a hostile file from taking all memory).
pub const MAX_REPLAY_LINE: usize = 1 << 20;

pub fn replay(events: &Path, rules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (engine, _report) = load_engine(&rule_paths(rules), RuleMatching::First)?;
    let file =
        std::fs::File::open(events).with_context(|| format!("opening {}", events.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut n_events, mut n_alerts, mut n_bad) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    while let Some(line) = next_line(&mut reader, &mut buf, MAX_REPLAY_LINE)
        .with_context(|| format!("reading {}", events.display()))?
    {
        lineno += 1;
        let skip = |why: &dyn std::fmt::Display, n_bad: &mut u64| {
            *n_bad += 1;
            eprintln!("{}:{lineno}: skipped: {why}", events.display());
        };
        let bytes = match line {
            Line::Text(b) => b,
            Line::TooLong => {
                skip(
                    &format!("line longer than {MAX_REPLAY_LINE} bytes"),
                    &mut n_bad,
                );
                continue;
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                skip(&format!("not UTF-8 ({e})"), &mut n_bad);
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let ev: Event = match serde_json::from_str(text) {
            Ok(ev) => ev,
            Err(e) => {
                skip(&e, &mut n_bad);
                continue;
            }
        };
        n_events += 1;
        for a in engine.evaluate(&ev) {
            n_alerts += 1;
            serde_json::to_writer(&mut out, &a)?;
            out.write_all(b"\n")?;
        }
        buf = bytes;
    }
    out.flush()?;
    eprintln!("{n_events} events, {n_alerts} alerts, {n_bad} unreadable lines");
    Ok(ExitCode::SUCCESS)
}

/// One `rules test` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Rule files/directories, relative to the test file.
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    /// Events written in the case.
    #[serde(default)]
    events: Vec<serde_json::Value>,
    /// A recording (`mamori capture --json` output), relative to the test
    /// file; its events run after `events`.
    #[serde(default)]
    events_file: Option<String>,
    /// Alerts that must be produced.
    #[serde(default)]
    expect: Vec<Expect>,
    /// Rules that must not fire. With neither `expect` nor `not_expect`, the
    /// case expects no alert at all.
    #[serde(default)]
    not_expect: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    rule: String,
    /// Subset of `output_fields` that must match.
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
    /// Exact number of alerts of this rule (default: at least one).
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    priority: Option<String>,
}

fn test_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in dirs {
        if d.is_file() {
            files.push(d.clone());
            continue;
        }
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.retain(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        });
        v.sort();
        files.extend(v);
    }
    files
}

/// `Ok(None)` for a rules file (a YAML list) found among the tests.
fn read_test_file(path: &Path) -> anyhow::Result<Option<TestFile>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs = yaml::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: YAML syntax error: {}",
            path.display(),
            e.mark.line,
            e.mark.col,
            e.message
        )
    })?;
    let doc = docs
        .first()
        .map(yaml::to_json)
        .unwrap_or(serde_json::Value::Null);
    if doc.is_array() {
        return Ok(None);
    }
    serde_json::from_value(doc)
        .map(Some)
        .with_context(|| format!("{}: not a rules test file", path.display()))
}

/// Most events one `repeat:` may generate.
const MAX_REPEAT: u64 = 100_000;

/// Expand `repeat: N` + `vary: {path: step}` in case events: the event is
/// emitted N times, the i-th (from 0) with `step * i` added to each varied
/// value: numbers; IP address strings count up as addresses; other text
/// counts up its trailing number (`/tmp/f-7`); `ts` may use a duration step
/// such as `100ms`. Paths are dotted, with indexes into lists
/// (`fd.rport`, `proc.argv.2`).
fn expand_events(events: &[serde_json::Value]) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for (n, v) in events.iter().enumerate() {
        let at = |m: String| format!("event #{}: {m}", n + 1);
        let mut base = v.clone();
        let obj = base.as_object_mut();
        let (repeat, vary) = match obj {
            Some(o) => (o.remove("repeat"), o.remove("vary")),
            None => (None, None),
        };
        let Some(repeat) = repeat else {
            if vary.is_some() {
                return Err(at("'vary' needs 'repeat'".into()));
            }
            out.push(base);
            continue;
        };
        let count = repeat
            .as_u64()
            .filter(|c| (1..=MAX_REPEAT).contains(c))
            .ok_or_else(|| at(format!("'repeat' must be 1 to {MAX_REPEAT}")))?;
        let vary: Vec<(String, serde_json::Value)> = match vary {
            None => Vec::new(),
            Some(serde_json::Value::Object(m)) => m.into_iter().collect(),
            Some(_) => return Err(at("'vary' must map field paths to steps".into())),
        };
        if let Some(o) = base.as_object_mut() {
            if vary.iter().any(|(p, _)| p == "ts") {
                o.entry("ts").or_insert(0.into());
            }
            if let Some(serde_json::Value::String(t)) = o.get("ts") {
                let ns = mamori_rules::duration::parse_ns(t)
                    .ok_or_else(|| at(format!("bad ts '{t}'")))?;
                o.insert("ts".into(), ns.into());
            }
        }
        for i in 0..count {
            let mut e = base.clone();
            for (path, step) in &vary {
                let step = match step {
                    serde_json::Value::String(d) if path == "ts" => {
                        mamori_rules::duration::parse_ns(d)
                            .map(|ns| ns as i128)
                            .ok_or_else(|| at(format!("bad ts step '{d}'")))?
                    }
                    other => other
                        .as_i64()
                        .map(i128::from)
                        .ok_or_else(|| at(format!("step of '{path}' must be an integer")))?,
                };
                let slot = path
                    .split('.')
                    .try_fold(&mut e, |cur, k| match cur {
                        serde_json::Value::Array(a) => a.get_mut(k.parse::<usize>().ok()?),
                        other => other.get_mut(k),
                    })
                    .ok_or_else(|| at(format!("'vary' path '{path}' is not in the event")))?;
                *slot = add_step(slot, step * i128::from(i)).ok_or_else(|| {
                    at(format!(
                        "cannot step '{path}' (not a number, an IP or text ending in digits)"
                    ))
                })?;
            }
            out.push(e);
        }
    }
    Ok(out)
}

fn add_step(v: &serde_json::Value, by: i128) -> Option<serde_json::Value> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if let Some(n) = v.as_i64() {
        return i64::try_from(i128::from(n) + by).ok().map(Into::into);
    }
    if let Some(n) = v.as_u64() {
        return u64::try_from(i128::from(n) + by).ok().map(Into::into);
    }
    let text = v.as_str()?;
    let Ok(ip) = text.parse::<IpAddr>() else {
        let stem = text.trim_end_matches(|c: char| c.is_ascii_digit());
        let n: i128 = text[stem.len()..].parse().ok()?;
        return Some(format!("{stem}{}", n + by).into());
    };
    let next = match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
            u32::try_from(i128::from(u32::from(a)) + by).ok()?,
        )),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).checked_add_signed(by)?)),
    };
    Some(next.to_string().into())
}

fn check_case(engine: &Engine, case: &TestCase, base: &Path) -> Result<(), String> {
    // Stateful rules start every case with empty memory.
    engine.reset_state();
    let mut alerts: Vec<Alert> = Vec::new();
    for (i, v) in expand_events(&case.events)?.into_iter().enumerate() {
        let ev = event_from_json(v).map_err(|e| format!("event #{}: {e}", i + 1))?;
        alerts.extend(engine.evaluate(&ev));
    }
    if let Some(f) = &case.events_file {
        let path = base.join(f);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("events_file {}: {e}", path.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let ev: Event = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
            alerts.extend(engine.evaluate(&ev));
        }
    }
    if case.events.is_empty() && case.events_file.is_none() {
        return Err("the case has neither events nor events_file".into());
    }
    let fired: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
    for exp in &case.expect {
        let matching: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.rule == exp.rule)
            .filter(|a| {
                exp.fields
                    .iter()
                    .all(|(k, v)| a.output_fields.get(k) == Some(v))
            })
            .filter(|a| {
                exp.priority
                    .as_deref()
                    .is_none_or(|p| a.priority.as_str().eq_ignore_ascii_case(p))
            })
            .collect();
        let ok = match exp.count {
            Some(n) => matching.len() == n,
            None => !matching.is_empty(),
        };
        if !ok {
            let got: Vec<String> = alerts
                .iter()
                .filter(|a| a.rule == exp.rule)
                .map(|a| serde_json::Value::Object(a.output_fields.clone()).to_string())
                .collect();
            return Err(format!(
                "expected rule '{}'{}{} to fire; fired: {fired:?}{}",
                exp.rule,
                if exp.fields.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", serde_json::Value::Object(exp.fields.clone()))
                },
                exp.count
                    .map(|n| format!(" {n} time(s)"))
                    .unwrap_or_default(),
                if got.is_empty() {
                    String::new()
                } else {
                    format!("; its fields: {}", got.join(" "))
                },
            ));
        }
    }
    for name in &case.not_expect {
        if fired.contains(&name.as_str()) {
            return Err(format!("rule '{name}' must not fire but did"));
        }
    }
    if case.expect.is_empty() && case.not_expect.is_empty() && !alerts.is_empty() {
        return Err(format!("expected no alert, got {fired:?}"));
    }
    Ok(())
}

/// `mamori rules test DIR...`: run test cases; rules come from `--rules`, else
/// from each file's `rules:` list (relative to the file), else the shipped
/// `rules/` directory.
pub fn test(dirs: &[PathBuf], rules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (mut passed, mut failed) = (0usize, 0usize);
    let files = test_files(dirs);
    if files.is_empty() {
        bail!("no test files (*.yaml, *.yml, *.json) under {dirs:?}");
    }
    for path in files {
        let tf = match read_test_file(&path) {
            Ok(Some(tf)) => tf,
            Ok(None) => continue, // a rules file beside the tests
            Err(e) => {
                println!("FAIL {}: {e:#}", path.display());
                failed += 1;
                continue;
            }
        };
        let rule_paths: Vec<PathBuf> = if !rules.is_empty() {
            rules.to_vec()
        } else if !tf.rules.is_empty() {
            let base = path.parent().unwrap_or(Path::new("."));
            tf.rules.iter().map(|r| base.join(r)).collect()
        } else {
            vec![default_rules_dir()]
        };
        let engine = match load_engine(&rule_paths, RuleMatching::All) {
            Ok((e, _)) => e,
            Err(e) => {
                println!("FAIL {}: {e:#}", path.display());
                failed += tf.cases.len().max(1);
                continue;
            }
        };
        for case in &tf.cases {
            match check_case(&engine, case, path.parent().unwrap_or(Path::new("."))) {
                Ok(()) => {
                    passed += 1;
                    println!("ok   {}: {}", path.display(), case.name);
                }
                Err(why) => {
                    failed += 1;
                    println!("FAIL {}: {}: {why}", path.display(), case.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
