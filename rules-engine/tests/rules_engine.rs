//! Rule-engine semantics: boolean logic, operators, lists, macros,
//! overrides, exceptions, indexing, outputs, and error diagnostics.
//!
//! This file holds the event builders, the logic table and the operators;
//! `rules_engine/` holds the other groups (definitions, matching, errors,
//! expansion bounds, Falco's loader semantics).

#[path = "rules_engine/bounds.rs"]
mod bounds;
#[path = "rules_engine/definitions.rs"]
mod definitions;
#[path = "rules_engine/errors.rs"]
mod errors;
#[path = "rules_engine/falco_semantics.rs"]
mod falco_semantics;
#[path = "rules_engine/matching.rs"]
mod matching;

use mamori_rules::event::{
    Ancestor, Container, Event, EvtType, ExecArgs, Fd, FdType, OpenArgs, Process,
};
use mamori_rules::{
    Code, Diagnostic, Engine, LoadOptions, LoadReport, RuleMatching, Severity, Status,
};

fn load(yaml: &str) -> (Engine, LoadReport) {
    Engine::from_sources(
        &[("t.yaml", yaml)],
        &LoadOptions {
            rule_matching: RuleMatching::All,
            hostname: Some("test-host".into()),
            ..Default::default()
        },
    )
}

fn load_ok(yaml: &str) -> Engine {
    let (e, r) = load(yaml);
    let errs: Vec<String> = r.errors().map(|d| d.to_string()).collect();
    assert!(errs.is_empty(), "unexpected errors:\n{}", errs.join("\n"));
    e
}

fn rule(name: &str, cond: &str) -> String {
    format!(
        "- rule: {name}\n  desc: test\n  condition: {cond}\n  output: \"%proc.name %fd.name\"\n  priority: warning\n"
    )
}

fn exec(name: &str, args: &[&str]) -> Event {
    let mut argv = vec![name.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    Event {
        ts: 1_000,
        evt_type: EvtType::Execve,
        res: 0,
        proc: Process {
            pid: 100,
            tid: 100,
            ppid: 99,
            name: name.into(),
            exepath: format!("/usr/bin/{name}"),
            argv,
            uid: 1000,
            gid: 1000,
            loginuid: 1000,
            user: Some("alice".into()),
            ancestors: vec![
                Ancestor {
                    pid: 99,
                    name: "bash".into(),
                    exepath: "/usr/bin/bash".into(),
                    argv: vec!["bash".into()],
                },
                Ancestor {
                    pid: 1,
                    name: "systemd".into(),
                    exepath: "/usr/lib/systemd/systemd".into(),
                    argv: vec!["/sbin/init".into()],
                },
            ]
            .into(),
            ..Default::default()
        },
        fd: None,
        open: None,
        exec: Some(ExecArgs {
            filename: format!("/usr/bin/{name}"),
            ..Default::default()
        }),
        lifecycle: None,
        container: None,
        drops: None,
        args: None,
        caps: None,
        flow: None,
        dns: None,
    }
}

fn open(path: &str, flags: u32, res: i64) -> Event {
    let mut e = exec("cat", &[path]);
    e.evt_type = EvtType::Openat;
    e.res = res;
    e.exec = None;
    e.fd = Some(Fd {
        fd_type: FdType::File,
        num: if res >= 0 { res } else { -1 },
        name: path.into(),
        sip: None,
        sport: None,
        rip: None,
        rport: None,
        server: false,
        l4proto: None,
    });
    e.open = Some(OpenArgs {
        flags,
        path: path.into(),
        ..Default::default()
    });
    e
}

fn connect(rip: &str, rport: u16) -> Event {
    let mut e = exec("curl", &["x"]);
    e.evt_type = EvtType::Connect;
    e.exec = None;
    e.fd = Some(Fd {
        fd_type: FdType::Ipv4,
        num: 5,
        name: format!("127.0.0.1:40000->{rip}:{rport}"),
        sip: Some("127.0.0.1".parse().unwrap()),
        sport: Some(40000),
        rip: Some(rip.parse().unwrap()),
        rport: Some(rport),
        server: false,
        l4proto: Some("tcp".into()),
    });
    e
}

fn fired(e: &Engine, ev: &Event) -> Vec<String> {
    e.evaluate(ev).into_iter().map(|a| a.rule).collect()
}

fn matches(cond: &str, ev: &Event) -> bool {
    let e = load_ok(&rule("R", &format!("'{}'", cond.replace('\'', "''"))));
    assert_eq!(e.active_rules(), 1, "{cond}: {:?}", e.rules()[0].status);
    !e.evaluate(ev).is_empty()
}

// ---------------------------------------------------------------- logic table

type Truth = fn(bool, bool, bool) -> bool;

// The truth functions spell out each expression literally, on purpose.
#[allow(clippy::nonminimal_bool, clippy::overly_complex_bool_expr)]
const LOGIC: &[(&str, Truth)] = &[
    ("a", |a, _, _| a),
    ("not a", |a, _, _| !a),
    ("a and b", |a, b, _| a && b),
    ("a or b", |a, b, _| a || b),
    ("a and b or c", |a, b, c| (a && b) || c),
    ("a or b and c", |a, b, c| a || (b && c)),
    ("not a and b", |a, b, _| !a && b),
    ("not (a and b)", |a, b, _| !(a && b)),
    ("not a or b", |a, b, _| !a || b),
    ("a and not b", |a, b, _| a && !b),
    ("a or not b", |a, b, _| a || !b),
    ("not not a", |a, _, _| a),
    ("(a or b) and c", |a, b, c| (a || b) && c),
    ("a and (b or c)", |a, b, c| a && (b || c)),
    ("not (a or b) and c", |a, b, c| !(a || b) && c),
    ("a and b and c", |a, b, c| a && b && c),
    ("a or b or c", |a, b, c| a || b || c),
    ("not a and not b", |a, b, _| !a && !b),
    ("not (not a or not b)", |a, b, _| a && b),
    ("((a))", |a, _, _| a),
    ("a and (b and (c))", |a, b, c| a && b && c),
    ("(a and b) or (not a and c)", |a, b, c| {
        (a && b) || (!a && c)
    }),
    ("a or b and not c or not a", |_, _, _| true),
    ("not a and b or c and not a", |a, b, c| {
        (!a && b) || (c && !a)
    }),
    ("not(a)and(b)", |a, b, _| !a && b),
    ("a and not(b or c)", |a, b, c| a && !(b || c)),
    ("(a or b) and (b or c) and (a or c)", |a, b, c| {
        (a || b) && (b || c) && (a || c)
    }),
    ("not (a and b and c)", |a, b, c| !(a && b && c)),
    ("a and b or a and c", |a, b, c| (a && b) || (a && c)),
    ("not a or not b or not c", |a, b, c| !a || !b || !c),
    ("(not a)", |a, _, _| !a),
    ("a and not not b", |a, b, _| a && b),
    ("not (a or (b and not c))", |a, b, c| !(a || (b && !c))),
    ("a or (b or (c or a))", |a, b, c| a || b || c),
    ("(a and b) and not (b and c)", |a, b, c| {
        (a && b) && !(b && c)
    }),
    ("a and b or not a and not b", |a, b, _| a == b),
    ("(a or b) and not (a and b)", |a, b, _| a != b),
    ("not (a and (b or not c))", |a, b, c| !(a && (b || !c))),
    ("a or not (b or not c)", |a, b, c| a || !(b || !c)),
    ("a and (b or c) and not (b and c)", |a, b, c| {
        a && (b || c) && !(b && c)
    }),
    ("not a and not b and not c", |a, b, c| !a && !b && !c),
];

#[test]
fn boolean_logic_table_with_macros_and_with_fields() {
    let atoms = [
        ("a", "user.uid = 1"),
        ("b", "group.gid = 1"),
        ("c", "proc.pid = 1"),
    ];
    for (expr, truth) in LOGIC {
        // Once through macros, once with the checks written inline.
        let inline: String = expr
            .split_inclusive(|c: char| !c.is_ascii_alphanumeric())
            .map(|tok| {
                let word = tok.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
                let rest = &tok[word.len()..];
                match atoms.iter().find(|(n, _)| *n == word) {
                    Some((_, check)) => format!("{check}{rest}"),
                    None => tok.to_string(),
                }
            })
            .collect();
        for cond in [expr.to_string(), inline] {
            let mut yaml = String::new();
            for (n, check) in atoms {
                yaml.push_str(&format!("- macro: {n}\n  condition: {check}\n"));
            }
            yaml.push_str(&rule("R", &format!("evt.type = execve and ({cond})")));
            let e = load_ok(&yaml);
            for bits in 0..8u32 {
                let (a, b, c) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                let mut ev = exec("x", &[]);
                ev.proc.uid = if a { 1 } else { 0 };
                ev.proc.gid = if b { 1 } else { 0 };
                ev.proc.pid = if c { 1 } else { 0 };
                assert_eq!(
                    !e.evaluate(&ev).is_empty(),
                    truth(a, b, c),
                    "{cond} with a={a} b={b} c={c}"
                );
            }
        }
    }
    assert!(LOGIC.len() >= 40);
}

// ---------------------------------------------------------------- operators

#[test]
fn every_operator_evaluates_like_falco() {
    let ev = exec("python3", &["-c", "import os"]);
    let cases: &[(&str, bool)] = &[
        ("proc.name = python3", true),
        ("proc.name == python3", true),
        ("proc.name = python", false),
        ("proc.name != python", true),
        ("proc.pid < 101", true),
        ("proc.pid <= 100", true),
        ("proc.pid > 100", false),
        ("proc.pid >= 100", true),
        ("proc.pid = 0x64", true),
        ("proc.cmdline contains \"-c import\"", true),
        ("proc.cmdline icontains \"IMPORT OS\"", true),
        ("proc.cmdline contains \"IMPORT\"", false),
        ("proc.name bcontains 7468", true),
        ("proc.name bstartswith 7079", true),
        ("proc.name bstartswith 7468", false),
        ("proc.name startswith pyth", true),
        ("proc.name endswith on3", true),
        ("proc.exepath glob '/usr/*/python?'", true),
        ("proc.exepath glob '/usr/bin/[a-p]ython3'", true),
        ("proc.exepath iglob '/USR/BIN/PYTHON3'", true),
        ("proc.exepath glob '/bin/*'", false),
        ("proc.name in (bash, python3)", true),
        ("proc.name in (bash, sh)", false),
        ("proc.name intersects (python3)", true),
        ("proc.exepath pmatch (/usr/bin)", true),
        ("proc.exepath pmatch (/usr/bi)", false),
        ("proc.cwd exists", false),
        ("proc.name exists", true),
        ("proc.name regex 'py[a-z]+[0-9]'", true),
        ("proc.name regex 'py'", false),
        ("proc.aname[1] = bash", true),
        ("proc.aname[2] = systemd", true),
        ("proc.aname[0] = python3", true),
        ("proc.aname = systemd", true),
        ("proc.aname = python3", false),
        ("proc.aname != sshd", true),
        ("proc.aname != bash", false),
        ("proc.apid[2] = 1", true),
        ("proc.pname = bash", true),
        ("proc.pexe = bash", true),
        ("proc.aexepath[2] = /usr/lib/systemd/systemd", true),
        ("tolower(proc.name) = python3", true),
        ("toupper(proc.name) = PYTHON3", true),
        ("basename(proc.exepath) = python3", true),
        ("len(proc.name) = 7", true),
        ("len(proc.name) > 7", false),
        ("proc.name = val(proc.aname[0])", true),
        ("proc.pname = val(proc.name)", false),
        ("user.name = alice", true),
        ("user.loginuid = 1000", true),
        ("evt.dir = <", true),
        ("evt.res = SUCCESS", true),
        ("evt.failed = false", true),
        ("evt.category = process", true),
        ("container.id exists", false),
        ("container.id != host", false),
        ("not container.id = host", true),
        ("proc.args = \"-c import os\"", true),
        ("evt.arg.filename = /usr/bin/python3", true),
    ];
    for (cond, want) in cases {
        assert_eq!(
            matches(&format!("evt.type = execve and {cond}"), &ev),
            *want,
            "{cond}"
        );
    }
    let b64 = {
        let mut e = exec("sh", &["-c", "aWQ="]);
        e.proc.argv = vec!["sh".into(), "aWQ=".into()];
        e
    };
    assert!(matches("evt.type = execve and b64(proc.args) = id", &b64));
}

#[test]
fn open_fields_evaluate_like_falco() {
    let o = open("/etc/shadow", 0o2000001, -13);
    for (cond, want) in [
        ("evt.res = EACCES", true),
        ("evt.rawres = -13", true),
        ("evt.failed = true", true),
        ("evt.is_open_write = true", true),
        ("evt.is_open_read = true", false),
        ("evt.arg.flags contains O_WRONLY", true),
        ("evt.arg.flags contains O_CLOEXEC", true),
        ("evt.rawarg.flags = 524289", true),
        ("evt.arg.name = /etc/shadow", true),
        ("fd.directory = /etc", true),
        ("fd.filename = shadow", true),
        ("fd.typechar = 'f'", true),
        ("fd.type = file", true),
        ("fd.num < 0", true),
        ("fd.name in (/etc/shadow, /etc/sudoers)", true),
        ("evt.arg.oldpath exists", false),
    ] {
        assert_eq!(
            matches(&format!("evt.type = openat and {cond}"), &o),
            want,
            "{cond}"
        );
    }
}

#[test]
fn connect_fields_evaluate_like_falco() {
    let c = connect("192.0.2.10", 443);
    for (cond, want) in [
        ("fd.sip = 192.0.2.10", true),
        ("fd.rip = 192.0.2.10", true),
        ("fd.cip = 127.0.0.1", true),
        ("fd.sport = 443", true),
        ("fd.lport = 40000", true),
        ("fd.port = 40000", true),
        ("fd.ip = 192.0.2.10", true),
        ("fd.snet = 192.0.2.0/24", true),
        ("fd.net = 192.0.2.0/24", true),
        ("fd.rnet = 198.51.100.0/24", false),
        // either-end fields: != holds only if neither end equals
        ("fd.net != 127.0.0.0/8", false),
        ("fd.ip != 192.0.2.10", false),
        ("fd.port != 443", false),
        ("fd.port != 22", true),
        ("fd.sip in (192.0.2.10, 192.0.2.11)", true),
        ("fd.sip in (192.0.2.0/28)", true),
        ("fd.sport in (80, 8080)", false),
        ("fd.l4proto = tcp", true),
        ("fd.sockfamily = ip", true),
        ("fd.connected = true", true),
        ("fd.name = '127.0.0.1:40000->192.0.2.10:443'", true),
        ("evt.category = net", true),
    ] {
        assert_eq!(
            matches(&format!("evt.type = connect and {cond}"), &c),
            want,
            "{cond}"
        );
    }
}

#[test]
fn constant_fields_fold_at_load() {
    // Falco's never_true idiom: `evt.num = 0` is never true (mamori does not
    // number events), so `and not never_true` folds away and a rule that
    // needs it is inactive with its own code.
    let yaml = format!(
        "- macro: never_true\n  condition: (evt.num=0)\n{}{}",
        rule(
            "Tuned",
            "evt.type = execve and proc.name = a and not never_true"
        ),
        rule("Never", "evt.type = execve and never_true"),
    );
    let (e, r) = load(&yaml);
    assert!(!r.has_errors());
    assert_eq!(e.rules()[0].status, Status::Active);
    assert!(matches!(
        e.rules()[1].status,
        Status::Inactive {
            code: Code::NeverTrue,
            ..
        }
    ));
    assert_eq!(fired(&e, &exec("a", &[])), ["Tuned"]);
    // evt.dir is always '<': `evt.dir = >` can never match.
    let (e, _) = load(&rule("Enter", "evt.type = execve and evt.dir = >"));
    assert!(matches!(
        e.rules()[0].status,
        Status::Inactive {
            code: Code::NeverTrue,
            ..
        }
    ));
}

#[test]
fn missing_values_make_every_comparison_false() {
    let ev = exec("x", &[]);
    for cond in [
        "container.id = host",
        "container.id != host",
        "container.id in (host)",
        "container.name contains a",
        "fd.name startswith /",
        "proc.aname[5] != bash",
    ] {
        assert!(
            !matches(&format!("evt.type = execve and {cond}"), &ev),
            "{cond}"
        );
        assert!(
            matches(&format!("evt.type = execve and not {cond}"), &ev),
            "not {cond}"
        );
    }
    let mut in_container = ev.clone();
    in_container.container = Some(
        Container {
            id: "0123456789ab".into(),
            name: Some("web".into()),
            image: Some("registry.local:5000/team/app:1.2".into()),
            ..Default::default()
        }
        .into(),
    );
    let mut in_pod = in_container.clone();
    in_pod.container = Some(
        Container {
            id: "0123456789ab".into(),
            full_id: "0123456789ab".repeat(5) + "0123",
            runtime: Some("containerd".into()),
            image: Some("registry.local:5000/team/app:1.2".into()),
            image_repository: Some("registry.local:5000/team/app".into()),
            image_tag: Some("1.2".into()),
            image_digest: Some("sha256:abcd".into()),
            privileged: Some(true),
            pod: Some(std::sync::Arc::new(mamori_rules::event::Pod {
                uid: "8f4e-uid".into(),
                name: Some("api-7d9f".into()),
                namespace: Some("payments".into()),
                labels: [("app".to_string(), "api".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into(),
    );
    for (cond, want) in [
        ("k8s.ns.name = payments", true),
        ("k8s.pod.name startswith api-", true),
        ("k8s.pod.uid = 8f4e-uid", true),
        ("k8s.pod.label[app] = api", true),
        ("k8s.pod.label.app in (api, web)", true),
        ("k8s.pod.label[tier] exists", false),
        ("container.privileged = true", true),
        ("container.image.digest = 'sha256:abcd'", true),
        ("container.type = containerd", true),
        ("container.full_id startswith 0123456789ab0123", true),
    ] {
        assert_eq!(
            matches(&format!("evt.type = execve and {cond}"), &in_pod),
            want,
            "{cond}"
        );
        assert!(
            !matches(&format!("evt.type = execve and {cond}"), &in_container),
            "{cond}"
        );
    }
    for (cond, want) in [
        ("container.id != host", true),
        (
            "container.image.repository = registry.local:5000/team/app",
            true,
        ),
        ("container.image.tag = '1.2'", true),
        ("k8s.ns.name exists", false),
    ] {
        assert_eq!(
            matches(&format!("evt.type = execve and {cond}"), &in_container),
            want,
            "{cond}"
        );
    }
}
