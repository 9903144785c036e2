//! Event-type indexing and rule matching, unknown and unsupported fields,
//! host names, and output rendering.

use super::*;

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
        rule("Mprotect", "evt.type = mprotect and proc.name = a"),
    );
    let (e, r) = load(&yaml);
    let s = |n: &str| e.rules().iter().find(|r| r.name == n).unwrap().clone();
    assert_eq!(s("Exec").evttypes, ["execve", "execveat"]);
    assert_eq!(s("Any").evttypes.len(), EvtType::ALL.len());
    assert!(!s("NotOpen").evttypes.contains(&"openat"));
    assert!(s("NotOpen").evttypes.contains(&"connect"));
    assert!(matches!(
        s("Mprotect").status,
        Status::Inactive { code: Code::UnsupportedEvttype, ref reason } if reason.contains("mprotect")
    ));
    // What the sensor selects its table-driven syscalls by: the types the
    // rules name, never all of them for a rule without an evt.type check.
    let (e2, _) = load(&format!(
        "{}{}",
        rule("Ptrace", "evt.type = ptrace and proc.name = a"),
        rule("Any", "proc.name = a"),
    ));
    assert_eq!(e2.needed_types(), [EvtType::Ptrace]);
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
        "evt.type = execve and proc.sname contains CAP_SYS_ADMIN",
    ));
    assert!(!r.has_errors());
    assert!(matches!(&e.rules()[0].status,
        Status::Inactive { code: Code::UnsupportedField, reason } if reason.contains("proc.sname")));
    let d = r.with_code(Code::UnsupportedField).next().unwrap();
    assert_eq!((d.line, d.col), (3, 36));

    // Strict mode: the same is an error.
    let (_, r) = Engine::from_sources(
        &[(
            "t.yaml",
            &rule("R", "evt.type = execve and proc.sname contains X"),
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
    let (e, _) = load(&rule("R", "evt.type = mprotect and proc.sname contains X"));
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
    use mamori_rules::HostNames;
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
