//! The fast evaluator against the reference one: same rules, same events,
//! the same alerts. The fast engine ([`Engine::compile`]) merges list
//! checks by field, memoises sub-conditions shared across rules per event
//! and runs the conditions as one jump-code program; the reference engine
//! ([`Engine::compile_reference`]) walks each rule's tree on its own, as the
//! evaluator did before. Both see every `rules test` case under `rules/tests`
//! and a fuzzed stream whose names, paths and arguments are drawn from the
//! rule files themselves (so list members, prefixes and needles are hit).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mamori_rules::event::{
    Ancestor, Container, Event, EvtType, ExecArgs, Fd, FdType, OpenArgs, Pod, Process,
};
use mamori_rules::yaml::{self, SourceFile};
use mamori_rules::{Engine, LoadOptions, RuleMatching};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files as given, directories as their `*.yaml` files in name order.
fn read(paths: &[PathBuf]) -> Vec<Arc<SourceFile>> {
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
            SourceFile::new(f.display().to_string(), text)
        })
        .collect()
}

fn engines(files: &[Arc<SourceFile>], matching: RuleMatching) -> (Engine, Engine) {
    let opts = LoadOptions {
        rule_matching: matching,
        ..Default::default()
    };
    let (fast, report) = Engine::compile(files, &opts);
    assert!(!report.has_errors(), "{report}");
    let (reference, _) = Engine::compile_reference(files, &opts);
    assert_eq!(fast.active_rules(), reference.active_rules());
    (fast, reference)
}

/// A case's event: `ts` may be a duration, `proc.pid` defaults to 1 (as
/// `mamori rules test` reads them).
fn event(mut v: serde_json::Value) -> Event {
    if let Some(obj) = v.as_object_mut() {
        let ts = obj.entry("ts").or_insert(serde_json::json!(0));
        if let Some(text) = ts.as_str() {
            let ns = mamori_rules::duration::parse_ns(text).unwrap_or(0);
            *ts = serde_json::json!(ns);
        }
        let proc = obj.entry("proc").or_insert(serde_json::json!({}));
        if let Some(p) = proc.as_object_mut() {
            p.entry("pid").or_insert(serde_json::json!(1));
        }
    }
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// The events of each case of one test file, and its rule paths.
fn cases(file: &Path) -> (Vec<PathBuf>, Vec<(String, Vec<Event>)>) {
    let text = std::fs::read_to_string(file).unwrap();
    let docs = yaml::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
    let doc = yaml::to_json(&docs[0]);
    let dir = file.parent().unwrap();
    let rules = doc["rules"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|r| r.as_str())
                .map(|r| dir.join(r))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for c in doc["cases"].as_array().into_iter().flatten() {
        let mut evs: Vec<Event> = c["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| event(e.clone()))
            .collect();
        if let Some(f) = c["events_file"].as_str() {
            let recorded = std::fs::read_to_string(dir.join(f)).unwrap();
            evs.extend(
                recorded
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str::<Event>(l).unwrap()),
            );
        }
        out.push((c["name"].as_str().unwrap_or("?").to_string(), evs));
    }
    (rules, out)
}

#[test]
fn every_rules_test_case_alerts_the_same() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("rules/tests"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let (mut ncases, mut nalerts) = (0, 0);
    for file in &files {
        let (rules, cases) = cases(file);
        if rules.is_empty() {
            continue;
        }
        for matching in [RuleMatching::All, RuleMatching::First] {
            let (fast, reference) = engines(&read(&rules), matching);
            for (name, evs) in &cases {
                fast.reset_state();
                reference.reset_state();
                for ev in evs {
                    let (a, b) = (fast.evaluate(ev), reference.evaluate(ev));
                    assert_eq!(a, b, "{}: case {name:?}, event {ev:?}", file.display());
                    nalerts += a.len();
                }
                ncases += 1;
            }
        }
    }
    assert!(ncases >= 100, "only {ncases} cases found");
    assert!(
        nalerts >= 100,
        "the cases should fire rules ({nalerts} alerts)"
    );
}

/// xorshift64*: the same stream on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a str {
        &v[self.below(v.len())]
    }
}

/// Words and paths the rule files mention (list items, macro values).
struct Vocab {
    words: Vec<String>,
    paths: Vec<String>,
}

fn vocab(files: &[Arc<SourceFile>]) -> Vocab {
    let mut words = std::collections::BTreeSet::new();
    for f in files {
        for tok in f
            .text
            .split(|c: char| !(c.is_ascii_alphanumeric() || "_./:-~".contains(c)))
            .filter(|t| !t.is_empty() && t.len() <= 60)
        {
            words.insert(tok.trim_end_matches(['.', ':']).to_string());
        }
    }
    let words: Vec<String> = words.into_iter().filter(|w| !w.is_empty()).collect();
    let mut paths: Vec<String> = words
        .iter()
        .filter(|w| w.starts_with('/'))
        .cloned()
        .collect();
    paths.extend(["/etc/shadow", "/tmp/x", "/dev/shm/a", "/proc/1/environ"].map(String::from));
    Vocab { words, paths }
}

fn fuzz_process(rng: &mut Rng, v: &Vocab) -> Process {
    let name: String = rng.pick(&v.words).chars().take(15).collect();
    let exepath = match rng.below(3) {
        0 => rng.pick(&v.paths).to_string(),
        1 => format!("/usr/bin/{name}"),
        _ => format!("/tmp/{}", rng.pick(&v.words)),
    };
    let mut argv = vec![name.clone()];
    for _ in 0..rng.below(5) {
        argv.push(match rng.below(3) {
            0 => rng.pick(&v.paths).to_string(),
            _ => rng.pick(&v.words).to_string(),
        });
    }
    let ancestors: Vec<Ancestor> = (0..rng.below(5))
        .map(|k| {
            let n = rng.pick(&v.words).to_string();
            Ancestor {
                pid: 100 - k as u32,
                exepath: format!("/usr/bin/{n}"),
                argv: vec![n.clone(), rng.pick(&v.words).to_string()],
                name: n,
            }
        })
        .collect();
    let uid = [0, 1000, 33][rng.below(3)];
    Process {
        pid: 1000 + rng.below(50) as u32,
        ppid: 100,
        name,
        exepath,
        argv,
        cwd: Some(rng.pick(&v.paths).to_string()),
        uid,
        loginuid: if rng.below(2) == 0 { -1 } else { 1000 },
        user: Some(rng.pick(&v.words).to_string()),
        tty: (rng.below(3) == 0) as u32 * 34816,
        exe_from_memfd: rng.below(20) == 0,
        start_ts: 1,
        ancestors: ancestors.into(),
        ..Default::default()
    }
}

fn fuzz_container(rng: &mut Rng, v: &Vocab) -> Option<Arc<Container>> {
    if rng.below(2) == 0 {
        return None;
    }
    let pod = (rng.below(2) == 0).then(|| {
        Arc::new(Pod {
            uid: "u".into(),
            name: Some(rng.pick(&v.words).to_string()),
            namespace: Some(rng.pick(&v.words).to_string()),
            ..Default::default()
        })
    });
    Some(Arc::new(Container {
        id: if rng.below(4) == 0 {
            "host".into()
        } else {
            "0123456789ab".into()
        },
        image: Some(format!("{}:1", rng.pick(&v.words))),
        image_repository: Some(rng.pick(&v.words).to_string()),
        privileged: Some(rng.below(2) == 0),
        pod,
        ..Default::default()
    }))
}

fn fuzz_event(rng: &mut Rng, v: &Vocab, i: u64) -> Event {
    let proc = fuzz_process(rng, v);
    let ts = 1_700_000_000_000_000_000 + i * 1_000_000;
    let res = [0, 3, -2, -13, -115][rng.below(5)];
    let types = [
        EvtType::Execve,
        EvtType::Execveat,
        EvtType::Openat,
        EvtType::Open,
        EvtType::Openat2,
        EvtType::Creat,
        EvtType::Connect,
    ];
    let t = types[rng.below(types.len())];
    let mut ev = Event::new(ts, t, res, proc);
    ev.container = fuzz_container(rng, v);
    match t {
        EvtType::Execve | EvtType::Execveat => {
            ev.exec = Some(ExecArgs {
                filename: ev.proc.exepath.clone(),
                ..Default::default()
            });
        }
        EvtType::Connect => {
            let ips = ["127.0.0.1", "10.0.0.5", "169.254.169.254", "8.8.8.8", "::1"];
            let rip = ips[rng.below(ips.len())];
            let rport = [22u16, 53, 443, 4444, 6443, 10250][rng.below(6)];
            let v6 = rip.contains(':');
            ev.fd = Some(Fd {
                fd_type: if v6 { FdType::Ipv6 } else { FdType::Ipv4 },
                num: 4,
                name: format!("10.0.0.2:40000->{rip}:{rport}"),
                sip: Some(if v6 { "::1" } else { "10.0.0.2" }.parse().unwrap()),
                sport: Some(40000),
                rip: Some(rip.parse().unwrap()),
                rport: Some(rport),
                server: false,
                l4proto: Some(if rng.below(3) == 0 { "udp" } else { "tcp" }.into()),
            });
        }
        _ => {
            let path = rng.pick(&v.paths).to_string();
            ev.fd = Some(Fd {
                fd_type: FdType::File,
                num: if res >= 0 { res } else { -1 },
                name: path.clone(),
                sip: None,
                sport: None,
                rip: None,
                rport: None,
                server: false,
                l4proto: None,
            });
            ev.open = Some(OpenArgs {
                flags: [0, 1, 2, 0o101, 0o1102, 0o2000000][rng.below(6)],
                path,
                ..Default::default()
            });
        }
    }
    ev
}

/// Falco's stable rules and the shipped ones on a fuzzed stream: the same
/// rules match (`all` and `first`) and the same alerts come out, stateful
/// ones included.
#[test]
fn fuzzed_events_match_the_same_rules_and_alerts() {
    let mut paths = vec![repo().join("../shared/falco-rules/falco_rules.yaml")];
    assert!(
        paths[0].is_file(),
        "Falco rules missing at {}",
        paths[0].display()
    );
    paths.push(repo().join("rules"));
    let files = read(&paths);
    let v = vocab(&files);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let events: Vec<Event> = (0..20_000).map(|i| fuzz_event(&mut rng, &v, i)).collect();
    let mut matched = 0;
    for matching in [RuleMatching::All, RuleMatching::First] {
        let (fast, reference) = engines(&files, matching);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for ev in &events {
            fast.matching_rules(ev, &mut a);
            reference.matching_rules(ev, &mut b);
            assert_eq!(a, b, "{ev:?}");
            matched += a.len();
        }
    }
    let (fast, reference) = engines(&files, RuleMatching::All);
    let mut alerts = 0;
    for ev in &events {
        let (a, b) = (fast.evaluate(ev), reference.evaluate(ev));
        assert_eq!(a, b, "{ev:?}");
        alerts += a.len();
    }
    assert!(
        matched >= 200 && alerts >= 100,
        "the stream should fire rules ({matched} matches, {alerts} alerts)"
    );
}
