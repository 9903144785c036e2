//! Falco's own rule files as a compatibility corpus. They are read from
//! `../shared/falco-rules` (beside the repository) at test time; nothing of
//! them is copied into this repository.

use std::path::PathBuf;

use mamori::rules::{Code, Engine, LoadOptions, LoadReport, Status};

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/falco-rules");
    assert!(
        dir.join("falco_rules.yaml").is_file() && dir.join("falco-incubating_rules.yaml").is_file(),
        "Falco rules corpus missing at {} (expected ../shared/falco-rules beside the repo)",
        dir.display()
    );
    dir
}

fn load(files: &[&str]) -> (Engine, LoadReport) {
    let dir = corpus_dir();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    Engine::compile_paths(&paths, &LoadOptions::default())
}

/// Every file parses completely, every macro and list resolves, every rule is
/// active or inactive with a precise reason; prints the counts.
fn check_corpus(files: &[&str]) -> Engine {
    let (engine, report) = load(files);
    let errors: Vec<String> = report.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "corpus errors:\n{}", errors.join("\n"));
    for r in engine.rules() {
        match &r.status {
            Status::Active => assert!(!r.evttypes.is_empty(), "{}", r.name),
            Status::Inactive { code, reason } => {
                assert!(
                    matches!(code, Code::UnsupportedField | Code::UnsupportedEvttype),
                    "{}: {code} {reason}",
                    r.name
                );
                assert!(
                    reason.contains("field '") || reason.contains("event types"),
                    "imprecise reason for {}: {reason}",
                    r.name
                );
                // Each inactive rule has its warning with a position.
                assert!(
                    report.diagnostics.iter().any(|d| d.code == *code
                        && d.line > 0
                        && d.item.as_ref().is_some_and(|i| i.name == r.name)),
                    "no diagnostic for inactive rule {}",
                    r.name
                );
            }
            other => panic!("rule {} is {other:?}", r.name),
        }
    }
    let by_code = |c: Code| {
        engine
            .rules()
            .iter()
            .filter(|r| matches!(&r.status, Status::Inactive { code, .. } if *code == c))
            .count()
    };
    println!(
        "{files:?}: {} rules, {} active, {} inactive ({} unsupported event types, {} unsupported fields)",
        report.rules_total,
        report.rules_active,
        report.rules_inactive,
        by_code(Code::UnsupportedEvttype),
        by_code(Code::UnsupportedField),
    );
    for r in engine.rules() {
        if let Status::Inactive { reason, .. } = &r.status {
            println!("  inactive: {}: {reason}", r.name);
        }
    }
    engine
}

#[test]
fn stable_rules_load_completely() {
    let engine = check_corpus(&["falco_rules.yaml"]);
    assert!(
        engine.active_rules() >= 12,
        "active: {}",
        engine.active_rules()
    );
    for name in [
        "Search Private Keys or Passwords",
        "Find AWS Credentials",
        "Read sensitive file untrusted",
        "Netcat Remote Code Execution in Container",
        "Run shell untrusted",
        "Terminal shell in container",
        "Execution from /dev/shm",
        "Clear Log Activities",
    ] {
        let r = engine
            .rules()
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("rule {name} missing"));
        assert_eq!(r.status, Status::Active, "{name}");
    }
}

#[test]
fn incubating_rules_load_completely_on_top_of_stable() {
    let engine = check_corpus(&["falco_rules.yaml", "falco-incubating_rules.yaml"]);
    assert!(
        engine.active_rules() >= 30,
        "active: {}",
        engine.active_rules()
    );
}
