//! Lists, macros, rule overrides (append, replace, enable, redefinition)
//! and exceptions.

use super::*;

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
