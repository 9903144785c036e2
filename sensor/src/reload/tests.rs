//! The reload thread against a real directory and real inotify: edits,
//! broken sets, touches and a ConfigMap-style `..data` symlink swap.

use super::*;
use std::os::unix::fs::symlink;

fn rule(name: &str) -> String {
    format!(
        "- rule: {name}\n  desc: d\n  condition: evt.type = open and fd.name = /tmp/x\n  output: o\n  priority: INFO\n"
    )
}

const BROKEN: &str = "- rule: broken\n  desc: d\n  condition: evt.type = open and nosuch.field = 1\n  output: o\n  priority: INFO\n";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mamori-reload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(paths: Vec<PathBuf>) -> Reloader {
    let src = Sources {
        rules: paths,
        opts: LoadOptions::default(),
        config: None,
        overrides: vec![],
    };
    let (_, _, sources) = load_rules(&src.rules, &src.opts).expect("the first set loads");
    Reloader::start(src, Snapshot::new(&sources, None), "node-1".into()).unwrap()
}

/// The next updates, waiting at most 5 s.
fn next(r: &Reloader) -> Vec<Update> {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Some(u) = r.take() {
            return u;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no reload within 5 s");
}

/// Nothing published within a debounce and a half.
fn quiet(r: &Reloader) {
    std::thread::sleep(DEBOUNCE * 3);
    assert!(r.take().is_none(), "an update nobody asked for");
}

fn rule_names(u: &[Update]) -> Vec<String> {
    match u {
        [Update::Swap(set)] => set
            .engine
            .as_ref()
            .expect("new rules")
            .rules()
            .iter()
            .map(|r| r.name.clone())
            .collect(),
        _ => panic!("expected one swap"),
    }
}

#[test]
fn an_edit_swaps_a_broken_set_is_rejected_with_its_diagnostics_and_a_touch_does_nothing() {
    let dir = temp_dir("edit");
    let f = dir.join("r.yaml");
    std::fs::write(&f, rule("a")).unwrap();
    let r = start(vec![dir.clone()]);
    std::fs::write(&f, rule("b")).unwrap();
    assert_eq!(rule_names(&next(&r)), ["b"]);

    std::fs::write(&f, BROKEN).unwrap();
    let u = next(&r);
    let [Update::Failed(a)] = u.as_slice() else {
        panic!("expected one failure alert");
    };
    assert_eq!(a.rule, RELOAD_FAILED);
    assert_eq!(a.source, "internal");
    assert!(a.output.contains("nosuch.field"), "{}", a.output);
    assert!(a.output.contains("r.yaml:3:"), "names where: {}", a.output);
    assert_eq!(r.counters().failures.load(Ordering::Relaxed), 1);
    assert_eq!(r.counters().reloads.load(Ordering::Relaxed), 1);

    // The running set's text back (after the rejected one) and an
    // unrelated file: nothing to swap, nothing to report.
    std::fs::write(&f, rule("b")).unwrap();
    quiet(&r);
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    quiet(&r);
    // The same broken set again is reported once, not on every touch.
    std::fs::write(&f, BROKEN).unwrap();
    assert!(matches!(next(&r).as_slice(), [Update::Failed(_)]));
    std::fs::write(dir.join("notes.txt"), "y").unwrap();
    quiet(&r);
    std::fs::write(&f, rule("b")).unwrap();
    quiet(&r);
    // SIGHUP with nothing changed: only a reopen.
    r.trigger().send(Cause::Hangup).unwrap();
    assert!(matches!(next(&r).as_slice(), [Update::Reopen]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_configmap_style_data_symlink_swap_reloads() {
    // The layout kubelet makes: rules.yaml -> ..data/rules.yaml,
    // ..data -> ..v1; an update writes ..v2, points ..data_tmp at it and
    // renames ..data_tmp over ..data.
    let dir = temp_dir("configmap");
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/rules.yaml"), rule("v1")).unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/rules.yaml", dir.join("rules.yaml")).unwrap();
    let r = start(vec![dir.clone()]);

    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/rules.yaml"), rule("v2")).unwrap();
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    assert_eq!(rule_names(&next(&r)), ["v2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quoted_errors_are_one_line_each_and_count_the_rest() {
    let errs: Vec<String> = (0..5).map(|i| format!("e{i}\n  detail")).collect();
    assert_eq!(quote_errors(&errs), "e0; e1; e2 (and 2 more)");
}

#[test]
fn a_config_change_restarts_the_outputs_and_a_bad_one_is_rejected_whole() {
    let dir = temp_dir("config");
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("r.yaml"), rule("a")).unwrap();
    let conf = dir.join("mamori.yaml");
    let file_out = |name: &str| {
        format!(
            "outputs:\n  stdout:\n    enabled: false\n  file:\n    path: {}\n",
            dir.join(name).display()
        )
    };
    std::fs::write(&conf, file_out("one.jsonl")).unwrap();
    let src = Sources {
        rules: vec![rules.clone()],
        opts: LoadOptions::default(),
        config: Some(conf.clone()),
        overrides: vec![],
    };
    let (_, _, sources) = load_rules(&src.rules, &src.opts).unwrap();
    let r = Reloader::start(src, Snapshot::new(&sources, Some(&conf)), "n".into()).unwrap();

    std::fs::write(&conf, file_out("two.jsonl")).unwrap();
    let u = next(&r);
    let [Update::Swap(set)] = u.as_slice() else {
        panic!("expected a swap");
    };
    assert!(set.engine.is_none(), "the rules did not change");
    let outputs = set.outputs.as_ref().expect("new outputs");
    assert_eq!(outputs.stats()[0].name, "file");
    assert!(
        dir.join("two.jsonl").exists(),
        "the new file sink opened its path"
    );

    // A typo in the config and a good rule change in one reload: rejected
    // whole, naming the key.
    std::fs::write(&conf, "outputs:\n  fiel: {}\n").unwrap();
    std::fs::write(rules.join("r.yaml"), rule("b")).unwrap();
    let u = next(&r);
    let [Update::Failed(a)] = u.as_slice() else {
        panic!("expected a failure");
    };
    assert!(a.output.contains("outputs.fiel"), "{}", a.output);
    drop(u);
    let _ = std::fs::remove_dir_all(&dir);
}
