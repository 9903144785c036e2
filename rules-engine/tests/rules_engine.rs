//! Rule-engine semantics: boolean logic, operators, lists, macros,
//! overrides, exceptions, indexing, outputs, and error diagnostics.

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

// ---------------------------------------------------------------- lists & macros

#[test]
fn lists_expand_nest_append_and_replace() {
    let yaml = format!(
        "- list: shells\n  items: [bash, sh]\n\
         - list: interpreters\n  items: [shells, python3, '\"ruby\"']\n\
         - list: shells\n  items: [zsh]\n  override:\n    items: append\n\
         {}{}{}",
        rule("Shell", "evt.type = execve and proc.name in (shells)"),
        rule(
            "Interp",
            "evt.type = execve and proc.name in (interpreters, perl)"
        ),
        rule("Bare", "evt.type = execve and proc.name in shells"),
    );
    let e = load_ok(&yaml);
    // Falco expands a list inside a list with the referenced list's final
    // items (appends included), so interpreters covers zsh too.
    assert_eq!(fired(&e, &exec("zsh", &[])), ["Shell", "Interp", "Bare"]);
    assert_eq!(fired(&e, &exec("ruby", &[])), ["Interp"]);
    assert_eq!(fired(&e, &exec("perl", &[])), ["Interp"]);
    assert_eq!(fired(&e, &exec("bash", &[])), ["Shell", "Interp", "Bare"]);

    let replaced = format!(
        "- list: l\n  items: [a]\n- list: l\n  items: [b]\n  override:\n    items: replace\n{}",
        rule("R", "evt.type = execve and proc.name in (l)")
    );
    let e = load_ok(&replaced);
    assert!(fired(&e, &exec("a", &[])).is_empty());
    assert_eq!(fired(&e, &exec("b", &[])), ["R"]);

    // deprecated append: true still works, with a warning
    let (e, r) = load(&format!(
        "- list: l\n  items: [a]\n- list: l\n  items: [b]\n  append: true\n{}",
        rule("R", "evt.type = execve and proc.name in (l)")
    ));
    assert!(r.with_code(Code::DeprecatedItem).count() == 1);
    assert_eq!(fired(&e, &exec("a", &[])), ["R"]);
    assert_eq!(fired(&e, &exec("b", &[])), ["R"]);
}

#[test]
fn macros_expand_append_replace_and_respect_visibility() {
    let yaml = format!(
        "- macro: is_exec\n  condition: evt.type = execve\n\
         - macro: is_sh\n  condition: proc.name = sh\n\
         - macro: is_sh\n  condition: or proc.name = dash\n  override:\n    condition: append\n\
         {}",
        rule("R", "is_exec and (is_sh)")
    );
    let e = load_ok(&yaml);
    assert_eq!(fired(&e, &exec("dash", &[])), ["R"]);
    assert_eq!(fired(&e, &exec("sh", &[])), ["R"]);
    assert!(fired(&e, &exec("bash", &[])).is_empty());

    let replaced = format!(
        "- macro: m\n  condition: proc.name = a\n- macro: m\n  condition: proc.name = b\n  override:\n    condition: replace\n{}",
        rule("R", "evt.type = execve and m")
    );
    let e = load_ok(&replaced);
    assert_eq!(fired(&e, &exec("b", &[])), ["R"]);
    assert!(fired(&e, &exec("a", &[])).is_empty());

    // A rule may use a macro defined after it; a macro may not.
    let later = format!(
        "{}- macro: m\n  condition: proc.name = a\n",
        rule("R", "evt.type = execve and m")
    );
    assert_eq!(fired(&load_ok(&later), &exec("a", &[])), ["R"]);
    let (_, r) = load(&format!(
        "- macro: outer\n  condition: inner\n- macro: inner\n  condition: proc.name = a\n{}",
        rule("R", "evt.type = execve and outer")
    ));
    let d = r.errors().next().expect("visibility error");
    assert!(d.message.contains("used before it is defined"), "{d}");

    // Cycles are an error, not a stack overflow.
    let (_, r) = load(&format!(
        "- macro: x\n  condition: y\n- macro: y\n  condition: x\n  override:\n    condition: replace\n- macro: x\n  condition: y\n  override:\n    condition: replace\n{}",
        rule("R", "evt.type = execve and x")
    ));
    assert!(r.has_errors());
}

// ---------------------------------------------------------------- rules: override & co

#[test]
fn rule_override_append_replace_enable_and_redefinition() {
    let base = rule("R", "evt.type = execve and proc.name = a");
    let yaml = format!(
        "{base}\
         - rule: R\n  condition: or proc.name = b\n  output: extra=%proc.pid\n  tags: [t2]\n  override:\n    condition: append\n    output: append\n    tags: append\n\
         - rule: R\n  priority: critical\n  override:\n    priority: replace\n"
    );
    let e = load_ok(&yaml);
    // appended text is joined with a space: "evt.type = execve and proc.name = a or proc.name = b"
    assert_eq!(fired(&e, &exec("b", &[])), ["R"]);
    let a = e.evaluate(&exec("a", &[]));
    assert_eq!(a[0].priority, mamori_rules::alert::Priority::Critical);
    assert!(a[0].output.ends_with("a <NA> extra=100"), "{}", a[0].output);
    assert_eq!(a[0].tags, ["t2"]);

    // enabled-only item disables; a later one re-enables
    let e = load_ok(&format!("{base}- rule: R\n  enabled: false\n"));
    assert_eq!(e.rules()[0].status, Status::Disabled);
    assert!(fired(&e, &exec("a", &[])).is_empty());
    let e = load_ok(&format!(
        "{base}- rule: R\n  enabled: false\n- rule: R\n  enabled: true\n"
    ));
    assert_eq!(fired(&e, &exec("a", &[])), ["R"]);

    // deprecated append: true on a rule appends the condition
    let (e, r) = load(&format!(
        "{base}- rule: R\n  condition: or proc.name = c\n  append: true\n"
    ));
    assert!(!r.has_errors());
    assert_eq!(fired(&e, &exec("c", &[])), ["R"]);

    // Same name again: the later definition replaces the earlier one in
    // place (Falco semantics), with a LOAD_RULE_REDEFINED warning.
    let yaml = format!(
        "{}{}{}",
        rule("First", "evt.type = execve and proc.name = a"),
        rule("Second", "evt.type = execve and proc.name = a"),
        rule("First", "evt.type = execve and proc.name = z"),
    );
    let (e, r) = load(&yaml);
    assert!(!r.has_errors());
    let w = r
        .with_code(Code::RuleRedefined)
        .next()
        .expect("redefinition warning");
    assert_eq!((w.line, w.col), (11, 3));
    assert!(w.message.contains("t.yaml:1:3"), "{w}");
    assert_eq!(e.rules().len(), 2);
    assert_eq!(e.rules()[0].name, "First");
    assert_eq!(fired(&e, &exec("a", &[])), ["Second"]);
    assert_eq!(fired(&e, &exec("z", &[])), ["First"]);

    // override of something that does not exist: error with position
    let (_, r) = load("- rule: Nope\n  condition: and x\n  override:\n    condition: append\n");
    let d = r.errors().next().unwrap();
    assert_eq!((d.code, d.line, d.col), (Code::ErrValidate, 1, 3));
}

#[test]
fn exceptions_compile_to_falco_semantics() {
    let yaml = "\
- list: allowed_readers
  items: [backup, restic]
- rule: R
  desc: d
  condition: evt.type = openat and fd.name startswith /etc
  output: o
  priority: notice
  exceptions:
    - name: by_proc_and_path
      fields: [proc.name, fd.name]
      comps: [=, startswith]
      values:
        - [vim, /etc/hosts]
        - [nano, /etc/motd]
    - name: by_proc
      fields: proc.name
      values: [allowed_readers, ed]
    - name: by_path_prefix
      fields: fd.name
      comps: pmatch
      values: [/etc/ssl]
    - name: by_tuple_list
      fields: [proc.name, fd.directory]
      comps: [in, =]
      values:
        - [[less, more], /etc/default]
- rule: R
  exceptions:
    - name: by_proc
      values: [sed]
  override:
    exceptions: append
";
    let e = load_ok(yaml);
    let with = |name: &str, path: &str| {
        let mut ev = open(path, 0, 3);
        ev.proc.name = name.into();
        fired(&e, &ev)
    };
    assert_eq!(with("cat", "/etc/hosts"), ["R"]);
    assert!(with("vim", "/etc/hosts").is_empty());
    assert!(with("vim", "/etc/hosts.deny").is_empty()); // startswith
    assert_eq!(with("vim", "/etc/motd"), ["R"]);
    assert!(with("nano", "/etc/motd").is_empty());
    assert!(with("backup", "/etc/x").is_empty());
    assert!(with("restic", "/etc/x").is_empty());
    assert!(with("ed", "/etc/x").is_empty());
    assert!(with("sed", "/etc/x").is_empty()); // appended value
    assert!(with("cat", "/etc/ssl/certs/a.pem").is_empty());
    assert_eq!(with("cat", "/etc/ssl2"), ["R"]);
    assert!(with("less", "/etc/default/grub").is_empty());
    assert_eq!(with("less", "/etc/other/grub"), ["R"]);

    // bad exception definitions are LOAD_ERR_VALIDATE with position
    for bad in [
        "    - name: x\n      fields: [proc.name, fd.name]\n      comps: [=]\n      values: [[a, b]]\n",
        "    - name: x\n      fields: proc.name\n      comps: =\n      values: [a]\n",
        "    - name: x\n      fields: [proc.name]\n      comps: [nope]\n      values: [[a]]\n",
        "    - name: x\n      fields: [proc.name, fd.name]\n      values: [[a]]\n",
    ] {
        let (_, r) = load(&format!(
            "- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: info\n  exceptions:\n{bad}"
        ));
        let d = r.errors().next().unwrap_or_else(|| panic!("no error for {bad}"));
        assert_eq!(d.code, Code::ErrValidate, "{d}");
        assert!(d.line >= 7, "{d}");
    }
}

// ---------------------------------------------------------------- indexing & matching

#[test]
fn event_type_indexing_and_rule_matching() {
    let yaml = format!(
        "{}{}{}{}",
        rule("Exec", "evt.type in (execve, execveat) and proc.name = a"),
        rule("Any", "proc.name = a"),
        rule(
            "NotOpen",
            "not evt.type in (open, openat, openat2, creat) and proc.name = a"
        ),
        rule("Setuid", "evt.type = setuid and proc.name = a"),
    );
    let (e, r) = load(&yaml);
    let s = |n: &str| e.rules().iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(s("Exec").evttypes, ["execve", "execveat"]);
    assert_eq!(s("Any").evttypes.len(), EvtType::ALL.len());
    assert!(!s("NotOpen").evttypes.contains(&"openat"));
    assert!(s("NotOpen").evttypes.contains(&"connect"));
    assert!(matches!(
        s("Setuid").status,
        Status::Inactive { code: Code::UnsupportedEvttype, ref reason } if reason.contains("setuid")
    ));
    let no_evt: Vec<&Diagnostic> = r.with_code(Code::NoEvttype).collect();
    assert_eq!(no_evt.len(), 1);
    assert_eq!(no_evt[0].item.as_ref().unwrap().name, "Any");
    assert_eq!(fired(&e, &exec("a", &[])), ["Exec", "Any", "NotOpen"]);
    let mut o = open("/x", 0, 3);
    o.proc.name = "a".into();
    assert_eq!(fired(&e, &o), ["Any"]);

    // first match only
    let (e, _) = Engine::from_sources(&[("t.yaml", &yaml)], &LoadOptions::default());
    assert_eq!(fired(&e, &exec("a", &[])), ["Exec"]);

    // warn_evttypes: false silences LOAD_NO_EVTTYPE
    let (_, r) = load("- rule: R\n  desc: d\n  condition: proc.name = a\n  output: o\n  priority: info\n  warn_evttypes: false\n");
    assert_eq!(r.with_code(Code::NoEvttype).count(), 0);
}

#[test]
fn unknown_and_unsupported_fields() {
    // A Falco field mamori lacks: inactive with the field named.
    let (e, r) = load(&rule(
        "R",
        "evt.type = execve and thread.cap_effective contains CAP_SYS_ADMIN",
    ));
    assert!(!r.has_errors());
    assert!(matches!(&e.rules()[0].status,
        Status::Inactive { code: Code::UnsupportedField, reason } if reason.contains("thread.cap_effective")));
    let d = r.with_code(Code::UnsupportedField).next().unwrap();
    assert_eq!((d.line, d.col), (3, 36));

    // Strict mode: the same is an error.
    let (_, r) = Engine::from_sources(
        &[(
            "t.yaml",
            &rule("R", "evt.type = execve and thread.cap_effective contains X"),
        )],
        &LoadOptions {
            strict_fields: true,
            ..Default::default()
        },
    );
    assert!(r.has_errors());

    // A typo: error, unless skip-if-unknown-filter.
    let (_, r) = load(&rule("R", "evt.type = execve and proc.nmae = x"));
    assert!(r.has_errors());
    let (e, r) = load(&format!(
        "{}  skip-if-unknown-filter: true\n",
        rule("R", "evt.type = execve and proc.nmae = x")
    ));
    assert!(!r.has_errors());
    assert!(matches!(
        &e.rules()[0].status,
        Status::Inactive {
            code: Code::UnknownFilter,
            ..
        }
    ));

    // Event types take precedence as the reason.
    let (e, _) = load(&rule(
        "R",
        "evt.type = ptrace and thread.cap_effective contains X",
    ));
    assert!(matches!(
        &e.rules()[0].status,
        Status::Inactive {
            code: Code::UnsupportedEvttype,
            ..
        }
    ));

    // A source other than syscall is skipped with a warning.
    let (e, r) = load(&format!(
        "{}  source: k8s_audit\n",
        rule("R", "ka.verb = create")
    ));
    assert!(!r.has_errors());
    assert_eq!(r.with_code(Code::UnknownSource).count(), 1);
    assert_eq!(e.active_rules(), 0);
}

#[test]
fn host_names_come_from_hosts_files_not_dns() {
    use mamori_rules::compiler::HostNames;
    let mut names = HostNames::default();
    names.add_hosts_file(
        "# comment\n198.51.100.9  metadata.internal md  # trailing\n::1 localhost6\nbogus line\n",
    );
    let opts = LoadOptions {
        rule_matching: RuleMatching::All,
        host_names: names,
        ..Default::default()
    };
    let yaml = format!(
        "{}{}{}",
        rule(
            "Md",
            "evt.type = connect and fd.sip.name = metadata.internal"
        ),
        rule("NotMd", "evt.type = connect and fd.sip.name != md"),
        rule(
            "Unknown",
            "evt.type = connect and fd.sip.name in (nowhere.example, \"MD.\")"
        ),
    );
    let (e, r) = Engine::from_sources(&[("t.yaml", &yaml)], &opts);
    assert!(!r.has_errors(), "{r}");
    assert_eq!(fired(&e, &connect("198.51.100.9", 80)), ["Md", "Unknown"]);
    assert_eq!(fired(&e, &connect("198.51.100.8", 80)), ["NotMd"]);
}

#[test]
fn output_rendering_and_alert_shape() {
    let yaml = "- rule: Shell\n  desc: d\n  condition: evt.type = execve and proc.name = bash\n  output: \"Shell (user=%user.name cmd=%proc.cmdline parent=%proc.aname[1] ctr=%container.id flags=%(evt.arg.flags))\"\n  priority: NOTICE\n  tags: [maturity_stable, shell]\n";
    let e = load_ok(yaml);
    let mut ev = exec("bash", &["-i"]);
    ev.ts = 1_700_000_000_000_000_123;
    let a = &e.evaluate(&ev)[0];
    assert_eq!(
        a.output,
        "22:13:20.000000123: Notice Shell (user=alice cmd=bash -i parent=bash ctr=<NA> flags=<NA>)"
    );
    assert_eq!(a.time, "2023-11-14T22:13:20.000000123Z");
    assert_eq!(a.hostname, "test-host");
    assert_eq!(a.source, "syscall");
    let j = serde_json::to_value(a).unwrap();
    assert_eq!(j["priority"], "Notice");
    assert_eq!(j["output_fields"]["proc.aname[1]"], "bash");
    assert!(j["output_fields"]["container.id"].is_null());
    assert_eq!(j["tags"][1], "shell");
    for k in [
        "time",
        "rule",
        "priority",
        "output",
        "output_fields",
        "source",
        "tags",
        "hostname",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
}

// ---------------------------------------------------------------- errors

fn first_error(yaml: &str) -> Diagnostic {
    let (_, r) = load(yaml);
    let d = r
        .errors()
        .next()
        .unwrap_or_else(|| panic!("no error for:\n{yaml}\n{r}"))
        .clone();
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.file, "t.yaml");
    d
}

#[test]
fn errors_carry_code_file_line_col_and_rule() {
    // typo'd field, inside a folded block: points at the field itself
    let d = first_error(
        "- rule: Typo\n  desc: d\n  condition: >\n    evt.type = execve\n    and proc.nmae = bash\n  output: o\n  priority: info\n",
    );
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileCondition, 5, 9));
    assert!(d.message.contains("proc.nmae"));
    assert_eq!(d.item.as_ref().unwrap().name, "Typo");
    assert_eq!(d.item.as_ref().unwrap().kind, "rule");

    // unbalanced parenthesis
    let d = first_error(&rule("Paren", "(evt.type = execve and proc.name = a"));
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileCondition, 3, 14));
    assert!(d.message.contains("unbalanced"));
    let d = first_error(&rule("Paren2", "evt.type = execve)"));
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileCondition, 3, 31));

    // unknown macro
    let d = first_error(&rule("Macro", "evt.type = execve and not_a_macro"));
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileCondition, 3, 36));
    assert!(d.message.contains("undefined macro 'not_a_macro'"));

    // bad regex
    let d = first_error(&rule("Re", "evt.type = execve and proc.name regex '(a'"));
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileCondition, 3, 52));
    assert!(d.message.contains("invalid regex"));

    // error inside a macro, reported where the macro text is
    let d = first_error(&format!(
        "- macro: m\n  condition: proc.name = a and fd.nope = 1\n{}",
        rule("UsesMacro", "evt.type = execve and m")
    ));
    assert_eq!((d.line, d.col), (2, 32));
    assert_eq!(d.item.as_ref().unwrap().name, "UsesMacro");

    // syntax error in a macro is reported at the macro
    let d = first_error("- macro: m\n  condition: proc.name = = a\n");
    assert_eq!((d.code, d.line), (Code::ErrCompileCondition, 2));
    assert_eq!(d.item.as_ref().unwrap().kind, "macro");

    // wrong operator / value for the field type
    let d = first_error(&rule("Op", "evt.type = execve and proc.name > 3"));
    assert_eq!((d.code, d.col), (Code::ErrCompileCondition, 46));
    let d = first_error(&rule("Val", "evt.type = connect and fd.sport = https"));
    assert_eq!((d.code, d.col), (Code::ErrCompileCondition, 48));
    let d = first_error(&rule(
        "Bool",
        "evt.type = openat and evt.is_open_read = yes",
    ));
    assert!(d.message.contains("true or false"));
    let d = first_error(&rule("Ip", "evt.type = connect and fd.sip = not-an-ip"));
    assert!(d.message.contains("IP"));

    // output with an unknown field
    let d = first_error("- rule: Out\n  desc: d\n  condition: evt.type = execve\n  output: \"x=%proc.nmae\"\n  priority: info\n");
    assert_eq!((d.code, d.line, d.col), (Code::ErrCompileOutput, 4, 11));

    // bad priority
    let d = first_error(
        "- rule: P\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: loud\n",
    );
    assert_eq!((d.code, d.line, d.col), (Code::ErrValidate, 5, 13));
}

#[test]
fn wrong_yaml_types_and_syntax_are_diagnostics() {
    let cases: &[(&str, Code, u32, u32)] = &[
        ("- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: info\n  tags: shell\n", Code::ErrYamlValidate, 6, 9),
        ("- rule: R\n  desc: d\n  condition: [evt.type]\n  output: o\n  priority: info\n", Code::ErrYamlValidate, 3, 14),
        ("- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: info\n  enabled: maybe\n", Code::ErrYamlValidate, 6, 12),
        ("- rule: [R]\n", Code::ErrYamlValidate, 1, 9),
        ("- list: l\n  items: a\n", Code::ErrYamlValidate, 2, 10),
        ("- macro: m\n", Code::ErrYamlValidate, 1, 3),
        ("- rule: R\n  desc: d\n  output: o\n  priority: info\n", Code::ErrYamlValidate, 1, 3),
        ("rule: R\n", Code::ErrYamlValidate, 1, 1),
        ("- just a string\n", Code::ErrYamlValidate, 1, 3),
        ("- rule: R\n  condition: [\n", Code::ErrYamlParse, 3, 1),
        ("- rule: R\n\tcondition: x\n", Code::ErrYamlParse, 1, 9),
    ];
    for (yaml, code, line, col) in cases {
        let d = first_error(yaml);
        assert_eq!(
            (d.code, d.line, d.col),
            (*code, *line, *col),
            "{yaml:?}: {d}"
        );
    }
}

#[test]
fn one_broken_rule_does_not_stop_the_others() {
    let yaml = format!(
        "{}{}{}",
        rule("Good1", "evt.type = execve and proc.name = a"),
        rule("Bad", "evt.type = execve and ((("),
        rule("Good2", "evt.type = execve and proc.name = a"),
    );
    let (e, r) = load(&yaml);
    assert_eq!(r.errors().count(), 1);
    assert!(matches!(e.rules()[1].status, Status::Invalid { .. }));
    assert_eq!(fired(&e, &exec("a", &[])), ["Good1", "Good2"]);
    assert!(Engine::load(&[], &LoadOptions::default()).is_ok());
}

#[test]
fn hostile_inputs_do_not_panic() {
    let deep = format!(
        "evt.type = execve and {}proc.name = a{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let (_, r) = load(&rule("Deep", &deep));
    assert!(r.has_errors());
    let many_macros: String = (0..200)
        .map(|i| format!("- macro: m{i}\n  condition: m{}\n", i + 1))
        .collect::<String>()
        + "- macro: m200\n  condition: proc.name = a\n";
    let (_, r) = load(&format!(
        "{many_macros}{}",
        rule("R", "evt.type = execve and m0")
    ));
    assert!(r.has_errors()); // m0 cannot see m1 (defined later)
                             // Defined innermost first, every macro is visible: the expansion depth cap applies.
    let reversed: String =
        std::iter::once("- macro: m200\n  condition: proc.name = a\n".to_string())
            .chain(
                (0..200)
                    .rev()
                    .map(|i| format!("- macro: m{i}\n  condition: m{}\n", i + 1)),
            )
            .collect();
    let (_, r) = load(&format!(
        "{reversed}{}",
        rule("R", "evt.type = execve and m0")
    ));
    assert!(
        r.errors().any(|d| d.message.contains("nested deeper")),
        "{r}"
    );
    for junk in [
        "",
        "---\n",
        "- ~\n",
        "[[[[",
        "- rule: \"\\u0000\"\n",
        ":\n:\n",
        "- {rule: x, condition: !!binary aGk=}\n",
    ] {
        let _ = load(junk);
    }
}
