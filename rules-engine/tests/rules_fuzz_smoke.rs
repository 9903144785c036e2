//! A bounded, deterministic stand-in for the cargo-fuzz targets (see
//! `fuzz/`), so every `cargo test` run throws a few thousand hostile
//! conditions and rule files at the loader: errors are fine, panics are not.

use mamori_rules::event::{Event, EvtType, Process};
use mamori_rules::{parser, Engine, LoadOptions};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "(",
    ")",
    "(",
    ")",
    " and ",
    " or ",
    "not ",
    "not(",
    " = ",
    " != ",
    " < ",
    " >= ",
    " in ",
    " pmatch ",
    " contains ",
    " icontains ",
    " glob ",
    " regex ",
    " exists",
    " startswith ",
    " bcontains ",
    "proc.name",
    "proc.aname[2]",
    "proc.aname[",
    "evt.type",
    "fd.name",
    "fd.sport",
    "evt.arg.flags",
    "tolower(",
    "b64(",
    "len(",
    "val(",
    "basename(",
    "macro_x",
    "list_y",
    "'",
    "\"",
    "\\",
    ",",
    "(a, b)",
    "(/etc, /usr)",
    "'*.pem'",
    "'[a-'",
    "\"(\"",
    "0x1f",
    "-1",
    "é",
    "\n",
    "\t",
    "..",
    ".",
    "[",
    "]",
    "=",
    "<",
    ">",
    "!",
    "%",
    "1.2.3.4/24",
    "true",
];

fn random_condition(rng: &mut Rng) -> String {
    let n = 1 + rng.below(24);
    (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect()
}

#[test]
fn random_conditions_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut ok = 0;
    for _ in 0..20_000 {
        let text = random_condition(&mut rng);
        match parser::parse(&text) {
            Ok(e) => {
                ok += 1;
                let s = e.span();
                assert!(s.start <= s.end && s.end <= text.len(), "{text:?}");
            }
            Err(e) => assert!(e.offset <= text.len(), "{text:?}: {e:?}"),
        }
    }
    assert!(
        ok > 100,
        "the generator should produce some valid conditions ({ok})"
    );
    // Random bytes too.
    for _ in 0..5_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parser::parse(&text);
    }
}

const SEED: &str = "\
- list: shells
  items: [bash, sh]
- macro: spawned
  condition: evt.type in (execve, execveat)
- rule: Shell
  desc: d
  condition: spawned and proc.name in (shells) and not proc.aname[1] = sshd
  output: \"%proc.name %(proc.cmdline) %fd.name\"
  priority: warning
  exceptions:
    - name: e
      fields: [proc.name, proc.cwd]
      comps: [=, startswith]
      values: [[sh, /tmp]]
";

#[test]
fn mutated_rule_files_never_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let ev = Event::new(
        1,
        EvtType::Execve,
        0,
        Process {
            pid: 1,
            name: "sh".into(),
            argv: vec!["sh".into(), "-c".into(), "id".into()],
            ..Default::default()
        },
    );
    let (e, r) = Engine::from_sources(&[("seed.yaml", SEED)], &LoadOptions::default());
    assert!(!r.has_errors(), "{r}");
    assert_eq!(e.evaluate(&ev).len(), 1);
    let bytes = SEED.as_bytes();
    for _ in 0..1_500 {
        let mut m = bytes.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len().max(1));
            match rng.below(4) {
                0 => {
                    m.remove(at);
                }
                1 => m.insert(at, b"():,[]{}-'\"\n #&*!|>%"[rng.below(20)]),
                2 => {
                    let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    m.splice(at..at, tok.iter().copied());
                }
                _ => {
                    let end = (at + rng.below(16)).min(m.len());
                    let chunk: Vec<u8> = m[at..end].to_vec();
                    m.splice(at..at, chunk);
                }
            }
        }
        let text = String::from_utf8_lossy(&m);
        let (engine, report) = Engine::from_sources(&[("m.yaml", &text)], &LoadOptions::default());
        for d in &report.diagnostics {
            assert!(d.line >= 1 && d.col >= 1, "{d}");
        }
        let _ = engine.evaluate(&ev);
    }
}
