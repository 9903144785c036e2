//! Expansion bounds: macros that double per level and lists of lists are
//! an error naming the macro or list, found before anything is expanded
//! (each test would need gigabytes if the tree were built); and loading
//! time linear in the number of rules.

use super::*;

use std::time::{Duration, Instant};

/// `e1` is one check; `e{k}` is `(e{k-1} or e{k-1})`: e30 is 2^29 checks.
fn doubling_macros(levels: usize) -> String {
    let mut t = String::from("- macro: e1\n  condition: proc.name = a\n");
    for k in 2..=levels {
        t.push_str(&format!(
            "- macro: e{k}\n  condition: (e{0} or e{0})\n",
            k - 1
        ));
    }
    t
}

fn errors(r: &LoadReport) -> Vec<&Diagnostic> {
    r.errors().collect()
}

#[test]
fn doubling_macros_are_an_error_naming_the_macro() {
    let text = format!(
        "{}{}",
        doubling_macros(30),
        rule("Bomb", "evt.type = execve and e30")
    );
    assert!(text.len() < 1700, "{}", text.len());
    let t = Instant::now();
    let (_, r) = load(&text);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let errs = errors(&r);
    assert_eq!(errs.len(), 1, "{r}");
    let d = errs[0];
    assert_eq!(d.code, Code::ErrCompileCondition);
    assert_eq!(d.item.as_ref().unwrap().name, "Bomb");
    // A check and its value are two terms: e17 is the first level past
    // 100,000 (2^17).
    assert!(
        d.message
            .contains("macro 'e30' expands to 1073741824 terms")
            && d.message
                .contains("the first macro past the bound is 'e17'"),
        "{}",
        d.message
    );
    assert_eq!((d.line, d.col), (2 * 30 + 3, 14), "{d}");
    // Below the bound the same chain loads and matches.
    let text = format!(
        "{}{}",
        doubling_macros(10),
        rule("Ok", "evt.type = execve and e10")
    );
    let e = load_ok(&text);
    assert_eq!(fired(&e, &exec("a", &[])), vec!["Ok"]);
    // Unused, the chain costs nothing.
    let (_, r) = load(&doubling_macros(60));
    assert!(!r.has_errors(), "{r}");
}

#[test]
fn lists_of_lists_are_an_error_naming_the_list() {
    let mut text = String::from("- list: l0\n  items: [a, b]\n");
    for k in 1..=30 {
        text.push_str(&format!("- list: l{k}\n  items: [l{0}, l{0}]\n", k - 1));
    }
    text.push_str(&rule("R", "evt.type = execve and proc.name in (l30)"));
    assert!(text.len() < 1400, "{}", text.len());
    let t = Instant::now();
    let (_, r) = load(&text);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let errs = errors(&r);
    let d = errs[0];
    assert_eq!(d.code, Code::ErrValidate, "{r}");
    assert_eq!(d.item.as_ref().unwrap().kind, "list");
    // l16 holds 2^17 items, the first past 100,000.
    assert_eq!(d.item.as_ref().unwrap().name, "l16", "{r}");
    assert!(
        d.message.contains("expands to more than 100000 terms"),
        "{}",
        d.message
    );
    assert_eq!(d.line, 2 * 16 + 1);
}

#[test]
fn a_rule_naming_big_lists_many_times_is_bounded() {
    let items: Vec<String> = (0..40_000).map(|i| format!("p{i}")).collect();
    let list = format!("- list: big\n  items: [{}]\n", items.join(", "));
    // Two references fit, three do not.
    let two = format!(
        "{list}{}",
        rule("Two", "evt.type = execve and proc.name in (big, big)")
    );
    load_ok(&two);
    let three = format!(
        "{list}{}",
        rule("Three", "evt.type = execve and (proc.name in (big) or proc.pname in (big) or proc.aname in (big))")
    );
    let d = first_error_of(&three);
    assert!(
        d.message
            .contains("the rule's condition expands to more than 100000 terms"),
        "{d}"
    );
    // Exceptions naming the list count too.
    let ex = format!(
        "{list}- rule: Ex\n  desc: d\n  condition: evt.type = execve and proc.name in (big, big)\n  output: o\n  priority: info\n  exceptions:\n    - name: e\n      fields: proc.pname\n      values: [big]\n"
    );
    let d = first_error_of(&ex);
    assert!(
        d.message.contains("expands to more than 100000 terms"),
        "{d}"
    );
    assert_eq!(d.line, 9, "{d}");
}

#[test]
fn all_rules_together_are_bounded() {
    let items: Vec<String> = (0..45_000).map(|i| format!("p{i}")).collect();
    let mut text = format!("- list: big\n  items: [{}]\n", items.join(", "));
    for i in 0..30 {
        text.push_str(&rule(
            &format!("R{i}"),
            "evt.type = execve and proc.name in (big, big)",
        ));
    }
    let t = Instant::now();
    let (_, r) = load(&text);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let errs = errors(&r);
    assert!(!errs.is_empty(), "{r}");
    assert!(
        errs[0]
            .message
            .contains("the rules of this load together expand to more than"),
        "{}",
        errs[0]
    );
}

fn first_error_of(text: &str) -> Diagnostic {
    let (_, r) = load(text);
    let d = r.errors().next().cloned();
    d.unwrap_or_else(|| panic!("no error: {r}"))
}

/// `n` distinct rules, each with its own list and macro.
fn many_rules(n: usize) -> String {
    let mut t = String::new();
    for i in 0..n {
        t.push_str(&format!(
            "- list: l{i}\n  items: [a{i}, b{i}]\n- macro: m{i}\n  condition: proc.name in (l{i})\n{}",
            rule(&format!("R{i}"), &format!("evt.type = execve and m{i}"))
        ));
    }
    t
}

/// Seconds to load `text`, the best of three runs.
fn load_secs(text: &str) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let (_, r) = load(text);
            assert!(!r.has_errors(), "{r}");
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

#[test]
fn loading_is_linear_in_the_number_of_rules() {
    // Eight times the rules may cost at most ~twice as much per rule (a
    // search over earlier rules per rule made this ratio ~4 in a debug build).
    let small = load_secs(&many_rules(2_000)) / 2_000.0;
    let big = load_secs(&many_rules(16_000)) / 16_000.0;
    let ratio = big / small;
    assert!(
        ratio < 2.5,
        "per-rule cost grew {ratio:.2}x from 2k to 16k rules"
    );
}
