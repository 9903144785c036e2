//! Falco's loader semantics, each with Falco's documented behaviour as the
//! expected result: what must fail a load even when nothing uses it, and
//! what `skip-if-unknown-filter` covers.

use super::*;

fn has_error(r: &LoadReport, needle: &str) -> bool {
    r.errors().any(|d| d.message.contains(needle))
}

#[test]
fn an_unused_macro_naming_an_undefined_macro_is_an_error() {
    // Falco: "Undefined macro 'foo' used in filter", whether or not a rule
    // uses the macro (e.g. a redefinition that breaks it).
    let (_, r) = load(&format!(
        "- macro: m\n  condition: proc.name = a\n- macro: m\n  condition: foo\n{}",
        rule("R", "evt.type = execve")
    ));
    let d = r.errors().next().unwrap_or_else(|| panic!("no error: {r}"));
    assert_eq!(d.code, Code::ErrCompileCondition);
    assert!(d.message.contains("undefined macro 'foo'"), "{d}");
    assert_eq!((d.line, d.col), (4, 14), "{d}");
    assert_eq!(d.item.as_ref().unwrap().name, "m");
    // Naming a macro defined only later is an error too.
    let (_, r) = load("- macro: a\n  condition: b\n- macro: b\n  condition: proc.name = x\n");
    assert!(
        has_error(&r, "macro 'b' is used before it is defined"),
        "{r}"
    );
    // A used macro's bad reference is reported once, through the rule.
    let (_, r) = load(&format!(
        "- macro: m\n  condition: foo\n{}",
        rule("R", "evt.type = execve and m")
    ));
    assert_eq!(r.errors().count(), 1, "{r}");
}

#[test]
fn exception_fields_are_checked_even_without_values() {
    // Falco validates an exception's fields when the rule loads, values or
    // not.
    let text = "- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: info\n  exceptions:\n    - name: e\n      fields: [proc.name, proc.nmae]\n";
    let (_, r) = load(text);
    let d = r.errors().next().unwrap_or_else(|| panic!("no error: {r}"));
    assert!(
        d.message.contains("'proc.nmae' is not a known field"),
        "{d}"
    );
    assert_eq!(d.line, 8, "{d}");
    let (_, r) = load(&text.replace("[proc.name, proc.nmae]", "proc.nmae"));
    assert!(has_error(&r, "'proc.nmae' is not a known field"), "{r}");
    // Known fields without values: fine; a Falco field mamori lacks too.
    load_ok(&text.replace("proc.nmae", "proc.pname"));
    load_ok(&text.replace("proc.nmae", "proc.is_exe_upper_layer"));
    // Under skip-if-unknown-filter the rule is skipped instead.
    let (e, r) = load(&format!("{text}  skip-if-unknown-filter: true\n"));
    assert!(!r.has_errors(), "{r}");
    assert!(matches!(
        &e.rules()[0].status,
        Status::Inactive {
            code: Code::UnknownFilter,
            ..
        }
    ));
}

#[test]
fn skip_if_unknown_filter_covers_the_output_too() {
    let text = "- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: \"%proc.name %proc.nmae\"\n  priority: info\n";
    let (_, r) = load(text);
    assert!(has_error(&r, "unknown output field 'proc.nmae'"), "{r}");
    // Falco skips the rule rather than failing the load.
    let (e, r) = load(&format!("{text}  skip-if-unknown-filter: true\n"));
    assert!(!r.has_errors(), "{r}");
    match &e.rules()[0].status {
        Status::Inactive { code, reason } => {
            assert_eq!(*code, Code::UnknownFilter);
            assert!(reason.contains("proc.nmae"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn required_engine_version_is_checked_as_falco_does() {
    let with = |v: &str| {
        format!(
            "- required_engine_version: {v}\n{}",
            rule("R", "evt.type = execve")
        )
    };
    // What Falco's own files require, and older forms, load.
    for v in ["0.57.0", "0.26.0", "\"0.31.0\"", "9", "0.0.1"] {
        let (_, r) = load(&with(v));
        assert!(!r.has_errors(), "{v}: {r}");
    }
    // Newer than the engine mamori implements: an error, as in an old Falco.
    let (_, r) = load(&with("0.58.0"));
    let d = r.errors().next().unwrap_or_else(|| panic!("no error: {r}"));
    assert!(
        d.message.contains("require engine version 0.58.0")
            && d.message.contains("Falco's engine version 0.57.0"),
        "{d}"
    );
    assert_eq!((d.line, d.col), (1, 28), "{d}");
    assert!(has_error(
        &load(&with("1.0.0")).1,
        "require engine version 1.0.0"
    ));
    assert!(has_error(
        &load(&with("99")).1,
        "require engine version 0.99.0"
    ));
    // Neither a number nor a version: an error.
    for v in ["latest", "0.57", "0.57.x", "-1", "[1]"] {
        let (_, r) = load(&with(v));
        assert!(r.has_errors(), "{v} accepted: {r}");
    }
}

#[test]
fn required_plugin_versions_are_checked_for_shape() {
    let ok = "- required_plugin_versions:\n  - name: k8saudit\n    version: 0.7.0\n    alternatives:\n      - name: k8saudit-eks\n        version: 0.4.0\n";
    let (_, r) = load(ok);
    assert!(!r.has_errors(), "{r}");
    assert_eq!(r.diagnostics.len(), 0, "{r}");
    let (_, r) = load(&ok.replace("0.7.0", "seven"));
    assert!(
        has_error(&r, "plugin version 'seven' is not a version"),
        "{r}"
    );
    let (_, r) = load("- required_plugin_versions:\n  - name: json\n");
    assert!(has_error(&r, "has no 'version'"), "{r}");
}
