//! Falco's own rule files as a compatibility corpus. They are read from
//! `../shared/falco-rules` (beside the repository) at test time; nothing of
//! them is copied into this repository.

use std::path::PathBuf;

use std::sync::Arc;

use mamori_rules::{yaml::SourceFile, Code, Engine, LoadOptions, LoadReport, Status};

/// Read rule files (the engine itself does no I/O).
fn read(paths: &[PathBuf]) -> Vec<Arc<SourceFile>> {
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            SourceFile::new(p.display().to_string(), text)
        })
        .collect()
}

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
    Engine::compile(&read(&paths), &LoadOptions::default())
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
        engine.active_rules() >= 15,
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
        "Disallowed SSH Connection Non Standard Port",
        "Contact K8S API Server From Container",
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
        engine.active_rules() >= 36,
        "active: {}",
        engine.active_rules()
    );
}

/// The process-name index must not change which rules match, nor their order.
#[test]
fn name_index_matches_unindexed_evaluation() {
    use mamori_rules::event::{Ancestor, Container, Event, EvtType, Fd, FdType, OpenArgs, Process};
    use mamori_rules::RuleMatching;
    let dir = corpus_dir();
    let paths = vec![
        dir.join("falco_rules.yaml"),
        dir.join("falco-incubating_rules.yaml"),
    ];
    for matching in [RuleMatching::All, RuleMatching::First] {
        let opts = LoadOptions {
            rule_matching: matching,
            ..Default::default()
        };
        let (engine, _) = Engine::compile(&read(&paths), &opts);
        let names = [
            "bash", "sh", "grep", "find", "nc", "ncat", "cat", "python3", "crontab", "shred",
            "useradd", "curl", "apt", "nmap",
        ];
        let files = [
            "/etc/shadow",
            "/etc/passwd",
            "/root/.ssh/authorized_keys",
            "/var/log/syslog",
            "/proc/1/environ",
            "/dev/x",
            "/etc/../etc/shadow",
            "/home/a/.bashrc",
        ];
        let args = [
            vec![],
            vec!["-e".to_string(), "/bin/sh".to_string()],
            vec!["-r".to_string(), "BEGIN RSA PRIVATE".to_string()],
            vec!["/dev/shm/x".to_string()],
        ];
        let (mut checked, mut hits) = (0, 0);
        for (k, name) in names.iter().enumerate() {
            for (j, a) in args.iter().enumerate() {
                for t in [EvtType::Execve, EvtType::Openat, EvtType::Connect] {
                    for file in files {
                        let mut argv = vec![name.to_string()];
                        argv.extend(a.iter().cloned());
                        let ev = Event {
                            ts: 1,
                            evt_type: t,
                            res: if j == 3 { -2 } else { 3 },
                            proc: Process {
                                pid: 10,
                                name: name.to_string(),
                                exepath: format!("/usr/bin/{name}"),
                                argv,
                                cwd: Some("/dev/shm/".into()),
                                uid: (k % 2) as u32,
                                ancestors: vec![Ancestor {
                                    pid: 1,
                                    name: names[(k + j) % names.len()].to_string(),
                                    ..Default::default()
                                }]
                                .into(),
                                ..Default::default()
                            },
                            fd: Some(match t {
                                EvtType::Connect => Fd {
                                    fd_type: FdType::Ipv4,
                                    num: 3,
                                    name: "127.0.0.1:1->127.0.0.2:4444".into(),
                                    sip: Some("127.0.0.1".parse().unwrap()),
                                    sport: Some(1),
                                    rip: Some("127.0.0.2".parse().unwrap()),
                                    rport: Some(4444),
                                    server: false,
                                    l4proto: Some(if j % 2 == 0 { "udp" } else { "tcp" }.into()),
                                },
                                _ => Fd {
                                    fd_type: FdType::File,
                                    num: 3,
                                    name: file.into(),
                                    sip: None,
                                    sport: None,
                                    rip: None,
                                    rport: None,
                                    server: false,
                                    l4proto: None,
                                },
                            }),
                            open: (t == EvtType::Openat).then(|| OpenArgs {
                                flags: (j % 3) as u32,
                                path: file.into(),
                                ..Default::default()
                            }),
                            exec: None,
                            lifecycle: None,
                            container: (k % 3 == 0).then(|| {
                                Container {
                                    id: "0123456789ab".into(),
                                    image: Some("docker.io/library/alpine:3".into()),
                                    ..Default::default()
                                }
                                .into()
                            }),
                            drops: None,
                            args: None,
                            caps: None,
                            flow: None,
                            dns: None,
                        };
                        let (mut a, mut b) = (Vec::new(), Vec::new());
                        engine.matching_rules(&ev, &mut a);
                        engine.matching_rules_unindexed(&ev, &mut b);
                        assert_eq!(a, b, "{ev:?}");
                        checked += 1;
                        hits += a.len();
                    }
                }
            }
        }
        assert!(
            hits > 20,
            "the events should exercise matching rules ({hits} of {checked})"
        );
    }
}

/// "Contact K8S API Server From Container" compares fd.sip.name with the API
/// server's in-cluster names; mamori resolves them without DNS (here from an
/// explicit table, in a pod from KUBERNETES_SERVICE_HOST).
#[test]
fn contact_k8s_api_server_from_container_fires() {
    use mamori_rules::event::{Container, Event, EvtType, Fd, FdType, Process};
    use mamori_rules::HostNames;
    let mut names = HostNames::default();
    names.add_kubernetes_api("198.51.100.1".parse().unwrap());
    let opts = LoadOptions {
        host_names: names,
        ..Default::default()
    };
    let (engine, report) = Engine::compile(&read(&[corpus_dir().join("falco_rules.yaml")]), &opts);
    assert!(!report.has_errors());
    let rule = "Contact K8S API Server From Container";
    let status = &engine
        .rules()
        .iter()
        .find(|r| r.name == rule)
        .unwrap()
        .status;
    assert_eq!(*status, Status::Active);
    let connect = |rip: &str| Event {
        ts: 1,
        evt_type: EvtType::Connect,
        res: 0,
        proc: Process {
            pid: 5,
            name: "curl".into(),
            exepath: "/usr/bin/curl".into(),
            argv: vec!["curl".into(), "https://kubernetes.default".into()],
            ..Default::default()
        },
        fd: Some(Fd {
            fd_type: FdType::Ipv4,
            num: 3,
            name: format!("198.51.100.7:40000->{rip}:443"),
            sip: Some("198.51.100.7".parse().unwrap()),
            sport: Some(40000),
            rip: Some(rip.parse().unwrap()),
            rport: Some(443),
            server: false,
            l4proto: Some("tcp".into()),
        }),
        open: None,
        exec: None,
        lifecycle: None,
        container: Some(
            Container {
                id: "0123456789ab".into(),
                image: Some("docker.io/library/alpine:3.19".into()),
                ..Default::default()
            }
            .into(),
        ),
        drops: None,
        args: None,
        caps: None,
        flow: None,
        dns: None,
    };
    let fired =
        |ev: &Event| -> Vec<String> { engine.evaluate(ev).into_iter().map(|a| a.rule).collect() };
    assert_eq!(fired(&connect("198.51.100.1")), [rule]);
    assert!(fired(&connect("198.51.100.2")).is_empty());
    let mut host = connect("198.51.100.1");
    host.container = None;
    assert!(fired(&host).is_empty());
}
