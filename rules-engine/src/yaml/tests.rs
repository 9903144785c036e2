//! Tests of the YAML reader: positions, errors and expansion bounds.
use super::*;

#[test]
fn marks_are_one_based_and_maps_keep_first_key_position() {
    let docs = parse("- rule: x\n  condition: evt.type = open\n").unwrap();
    let NodeKind::Seq(items) = &docs[0].kind else {
        panic!("not a seq")
    };
    assert_eq!(items[0].mark, Mark { line: 1, col: 3 });
    let cond = items[0].get("condition").unwrap();
    assert_eq!(cond.mark, Mark { line: 2, col: 14 });
}

#[test]
fn folded_condition_offsets_map_to_source_lines() {
    let text = "- macro: m\n  condition: >\n    evt.type = open\n    and proc.nmae = x\n";
    let file = SourceFile::new("t.yaml", text);
    let docs = parse(text).unwrap();
    let NodeKind::Seq(items) = &docs[0].kind else {
        panic!()
    };
    let cond = items[0].get("condition").unwrap();
    let NodeKind::Scalar(value, style) = &cond.kind else {
        panic!()
    };
    let src = ScalarSource {
        file,
        mark: cond.mark,
        style: *style,
    };
    let off = value.find("proc.nmae").unwrap();
    assert_eq!(src.position(value, off), Mark { line: 4, col: 9 });
    assert_eq!(src.position(value, 0), Mark { line: 3, col: 5 });
}

#[test]
fn syntax_error_has_position() {
    let err = parse("- rule: x\n  a: [\n").unwrap_err();
    assert_eq!(err.mark.line, 3);
}

/// Nine lists of nine aliases of the level below: 9^10 scalars if expanded.
pub(crate) fn billion_laughs(key: &str) -> String {
    let mut t = format!("- {key}: l0\n  items: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..10 {
        let row = vec![format!("*a{}", i - 1); 9].join(",");
        t.push_str(&format!("- {key}: l{i}\n  items: &a{i} [{row}]\n"));
    }
    t
}

#[test]
fn alias_expansion_is_bounded_by_size_with_the_alias_position() {
    let text = billion_laughs("list");
    assert!(text.len() < 700, "{}", text.len());
    let t = std::time::Instant::now();
    let err = parse(&text).unwrap_err();
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        err.message
            .contains("expand the document by more than 32 MiB"),
        "{}",
        err.message
    );
    // Level 6 (line 14) copies 9^6 scalars in all: the bound falls there,
    // at one of its aliases.
    assert!((12..=16).contains(&err.mark.line), "{:?}", err.mark);
    assert!(err.mark.col > 11, "{:?}", err.mark);
}

#[test]
fn alias_count_and_nesting_are_bounded() {
    let mut text = String::from("a: &x 1\nb: [");
    text.push_str(&vec!["*x"; MAX_ALIASES + 1].join(","));
    text.push_str("]\n");
    let err = parse(&text).unwrap_err();
    assert!(
        err.message.contains("more than 10000 aliases"),
        "{}",
        err.message
    );
    assert_eq!(err.mark.line, 2);
    let deep = format!(
        "{}1{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    let err = parse(&deep).unwrap_err();
    assert!(
        err.message.contains("nested deeper than 128"),
        "{}",
        err.message
    );
    let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
}

#[test]
fn flow_lists_at_the_key_indentation_load_as_in_falco() {
    let text = "- list: a\n  items: [\n  x, \"y\"\n  ]\n- list: b\n  items: [\n    x, y\n]\n- list: c\n  items: [x,\n  y]\n";
    let docs = parse(text).unwrap();
    let NodeKind::Seq(items) = &docs[0].kind else {
        panic!()
    };
    for item in items {
        let v = item.get("items").unwrap();
        let NodeKind::Seq(vals) = &v.kind else {
            panic!("{v:?}")
        };
        let vals: Vec<_> = vals.iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(vals, ["x", "y"]);
    }
    // Positions are the original ones.
    let a = items[0].get("items").unwrap();
    let NodeKind::Seq(vals) = &a.kind else {
        panic!()
    };
    assert_eq!(vals[0].mark, Mark { line: 3, col: 3 });
    assert_eq!(vals[1].mark, Mark { line: 3, col: 6 });
    // A real indentation error is still reported where it is.
    let err = parse("a:\n  b: 1\n c: 2\n").unwrap_err();
    assert_eq!(err.mark.line, 3);
}

#[test]
fn aliases_resolve() {
    let docs = parse("a: &x [1, 2]\nb: *x\n").unwrap();
    let b = docs[0].get("b").unwrap();
    assert!(matches!(&b.kind, NodeKind::Seq(v) if v.len() == 2));
}
