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
