//! Error diagnostics: codes, file, line, column and rule; wrong YAML;
//! one broken rule among good ones; hostile inputs.

use super::*;

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
