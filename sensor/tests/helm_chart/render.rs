//! A renderer for the subset of Go templates and sprig functions the chart
//! is written in (see the top of `helm_chart.rs`), and `render`: every
//! template rendered with values.yaml and overrides, parsed as YAML.

use std::{collections::HashMap, path::PathBuf};

use yaml_rust2::{yaml::Hash, Yaml, YamlLoader};

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/mamori")
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(chart_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(crate) fn load_one(src: &str, what: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(src).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(docs.len(), 1, "{what}: one document");
    docs.remove(0)
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Expr(String),
    If(String, Vec<Node>, Vec<Node>),
    With(String, Vec<Node>, Vec<Node>),
}

/// Split into text and actions, applying `{{-` / `-}}` trimming.
fn lex(src: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unclosed action");
        let mut body = &after[..end];
        if let Some(b) = body.strip_prefix('-') {
            assert!(b.starts_with([' ', '\n', '\t']), "`{{-` needs a space");
            text = text.trim_end().to_string();
            body = b;
        }
        trim_next = false;
        if let Some(b) = body.strip_suffix('-') {
            assert!(b.ends_with([' ', '\n', '\t']), "`-}}` needs a space");
            trim_next = true;
            body = b;
        }
        out.push((false, text));
        out.push((true, body.trim().to_string()));
        rest = &after[end + 2..];
    }
    let mut text = rest.to_string();
    if trim_next {
        text = text.trim_start().to_string();
    }
    out.push((false, text));
    out
}

/// Build the tree; `define` blocks go into `defs`.
fn parse(tokens: &[(bool, String)], defs: &mut HashMap<String, Vec<Node>>) -> Vec<Node> {
    fn block(
        toks: &[(bool, String)],
        i: &mut usize,
        defs: &mut HashMap<String, Vec<Node>>,
    ) -> (Vec<Node>, Vec<Node>, bool) {
        let mut main = Vec::new();
        let mut alt = Vec::new();
        let mut in_else = false;
        while *i < toks.len() {
            let (is_action, s) = &toks[*i];
            *i += 1;
            let cur = if in_else { &mut alt } else { &mut main };
            if !is_action {
                if !s.is_empty() {
                    cur.push(Node::Text(s.clone()));
                }
                continue;
            }
            if s.starts_with("/*") {
                assert!(s.ends_with("*/"), "comment {s}");
                continue;
            }
            let (kw, arg) = s.split_once(' ').unwrap_or((s.as_str(), ""));
            match kw {
                "end" => return (main, alt, true),
                "else" => {
                    assert!(arg.is_empty(), "`else {arg}` is outside the subset");
                    in_else = true;
                }
                "if" | "with" => {
                    let (t, e, closed) = block(toks, i, defs);
                    assert!(closed, "unclosed {kw}");
                    let n = if kw == "if" {
                        Node::If(arg.to_string(), t, e)
                    } else {
                        Node::With(arg.to_string(), t, e)
                    };
                    let cur = if in_else { &mut alt } else { &mut main };
                    cur.push(n);
                }
                "define" => {
                    let name = arg.trim().trim_matches('"').to_string();
                    let (body, _, closed) = block(toks, i, defs);
                    assert!(closed, "unclosed define {name}");
                    defs.insert(name, body);
                }
                "range" | "template" | "tpl" | "block" => panic!("`{kw}` is outside the subset"),
                _ => cur.push(Node::Expr(s.clone())),
            }
        }
        (main, alt, false)
    }
    let mut i = 0;
    let (nodes, _, closed) = block(tokens, &mut i, defs);
    assert!(!closed, "stray end");
    nodes
}

struct Renderer {
    defs: HashMap<String, Vec<Node>>,
    root: Yaml,
}

fn truthy(v: &Yaml) -> bool {
    match v {
        Yaml::Boolean(b) => *b,
        Yaml::Integer(i) => *i != 0,
        Yaml::Real(r) => r != "0" && r != "0.0",
        Yaml::String(s) => !s.is_empty(),
        Yaml::Array(a) => !a.is_empty(),
        Yaml::Hash(h) => !h.is_empty(),
        Yaml::Null | Yaml::BadValue => false,
        Yaml::Alias(_) => true,
    }
}

fn as_text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => String::new(),
        other => panic!("printing a collection without toYaml: {other:?}"),
    }
}

/// Split on `sep` outside quotes and parentheses.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quoted) = (0, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn stable_hash(s: &str) -> String {
    let mut out = String::new();
    for seed in 0..4u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// Block-style YAML, as sprig's toYaml (no trailing newline).
fn to_yaml(v: &Yaml) -> String {
    fn scalar(v: &Yaml) -> String {
        match v {
            Yaml::String(s) => {
                let plain = !s.is_empty()
                    && !s.contains([
                        ':', '#', '{', '}', '[', ']', ',', '&', '*', '!', '|', '>', '\'', '"', '%',
                        '@', '`',
                    ])
                    && !s.starts_with([' ', '-', '?'])
                    && !s.ends_with(' ')
                    && YamlLoader::load_from_str(s)
                        .ok()
                        .and_then(|d| d.into_iter().next())
                        .is_some_and(|y| matches!(y, Yaml::String(_)));
                if plain {
                    s.clone()
                } else {
                    quote(s)
                }
            }
            Yaml::Null => "null".into(),
            other => as_text(other),
        }
    }
    fn emit(v: &Yaml, indent: usize, out: &mut Vec<String>) {
        let pad = " ".repeat(indent);
        match v {
            Yaml::Hash(h) if h.is_empty() => out.push(format!("{pad}{{}}")),
            Yaml::Array(a) if a.is_empty() => out.push(format!("{pad}[]")),
            Yaml::Hash(h) => {
                for (k, val) in h {
                    let key = scalar(k);
                    match val {
                        Yaml::String(s) if s.contains('\n') => {
                            out.push(format!("{pad}{key}: |"));
                            for l in s.trim_end_matches('\n').lines() {
                                out.push(format!("{pad}  {l}"));
                            }
                        }
                        Yaml::Hash(x) if !x.is_empty() => {
                            out.push(format!("{pad}{key}:"));
                            emit(val, indent + 2, out);
                        }
                        Yaml::Array(x) if !x.is_empty() => {
                            out.push(format!("{pad}{key}:"));
                            emit(val, indent, out);
                        }
                        Yaml::Hash(_) => out.push(format!("{pad}{key}: {{}}")),
                        Yaml::Array(_) => out.push(format!("{pad}{key}: []")),
                        _ => out.push(format!("{pad}{key}: {}", scalar(val))),
                    }
                }
            }
            Yaml::Array(a) => {
                for item in a {
                    let mut sub = Vec::new();
                    emit(item, indent + 2, &mut sub);
                    let first = sub[0].trim_start().to_string();
                    out.push(format!("{pad}- {first}"));
                    out.extend(sub.into_iter().skip(1));
                }
            }
            other => out.push(format!("{pad}{}", scalar(other))),
        }
    }
    let mut out = Vec::new();
    emit(v, 0, &mut out);
    out.join("\n")
}

fn indent_lines(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Renderer {
    fn lookup(&self, base: &Yaml, path: &str) -> Yaml {
        let mut cur = base.clone();
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            cur = match &cur {
                Yaml::Hash(h) => h
                    .get(&Yaml::String(seg.into()))
                    .cloned()
                    .unwrap_or(Yaml::Null),
                Yaml::Null => Yaml::Null,
                other => panic!("field {seg} of a non-map {other:?}"),
            };
        }
        cur
    }

    fn arg(&self, tok: &str, dot: &Yaml) -> Yaml {
        if let Some(inner) = tok.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            return self.pipeline(inner, dot);
        }
        if tok.starts_with('"') {
            return Yaml::String(
                tok[1..tok.len() - 1]
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\"),
            );
        }
        if let Ok(i) = tok.parse::<i64>() {
            return Yaml::Integer(i);
        }
        if let Some(p) = tok.strip_prefix('$') {
            return self.lookup(&self.root, p);
        }
        if tok == "." {
            return dot.clone();
        }
        if let Some(p) = tok.strip_prefix('.') {
            if matches!(dot, Yaml::Hash(_)) || p.starts_with("Values") {
                return self.lookup(dot, p);
            }
        }
        panic!("argument {tok:?} is outside the subset")
    }

    fn call(&self, f: &str, mut args: Vec<Yaml>) -> Yaml {
        let s = |v: &Yaml| as_text(v);
        let n = |v: &Yaml| match v {
            Yaml::Integer(i) => *i as usize,
            other => panic!("{f}: integer expected, got {other:?}"),
        };
        let want = |k: usize| assert_eq!(args.len(), k, "{f} takes {k} arguments");
        match f {
            "default" => {
                want(2);
                let v = args.pop().unwrap();
                if truthy(&v) {
                    v
                } else {
                    args.pop().unwrap()
                }
            }
            "trunc" => {
                want(2);
                Yaml::String(s(&args[1]).chars().take(n(&args[0])).collect())
            }
            "trimSuffix" => {
                want(2);
                let v = s(&args[1]);
                Yaml::String(v.strip_suffix(&s(&args[0])).unwrap_or(&v).to_string())
            }
            "quote" => {
                want(1);
                Yaml::String(quote(&s(&args[0])))
            }
            "toYaml" => {
                want(1);
                Yaml::String(to_yaml(&args[0]))
            }
            "nindent" => {
                want(2);
                Yaml::String(format!("\n{}", indent_lines(n(&args[0]), &s(&args[1]))))
            }
            "indent" => {
                want(2);
                Yaml::String(indent_lines(n(&args[0]), &s(&args[1])))
            }
            "sha256sum" => {
                want(1);
                Yaml::String(stable_hash(&s(&args[0])))
            }
            "not" => {
                want(1);
                Yaml::Boolean(!truthy(&args[0]))
            }
            "eq" => {
                want(2);
                Yaml::Boolean(args[0] == args[1])
            }
            "include" => {
                want(2);
                let name = s(&args[0]);
                let body = self
                    .defs
                    .get(&name)
                    .unwrap_or_else(|| panic!("no template {name}"));
                Yaml::String(self.render_nodes(body, &args[1]))
            }
            other => panic!("function {other} is outside the subset"),
        }
    }

    fn pipeline(&self, expr: &str, dot: &Yaml) -> Yaml {
        let mut piped: Option<Yaml> = None;
        for cmd in split_top(expr, '|') {
            let words = split_top(&cmd, ' ');
            let first = &words[0];
            let is_fn = first
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
            piped = Some(if is_fn {
                let mut args: Vec<Yaml> = words[1..].iter().map(|w| self.arg(w, dot)).collect();
                args.extend(piped.take());
                self.call(first, args)
            } else {
                assert!(words.len() == 1 && piped.is_none(), "bad command {cmd:?}");
                self.arg(first, dot)
            });
        }
        piped.expect("empty pipeline")
    }

    fn render_nodes(&self, nodes: &[Node], dot: &Yaml) -> String {
        let mut out = String::new();
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Expr(e) => out.push_str(&as_text(&self.pipeline(e, dot))),
                Node::If(c, t, e) => {
                    let branch = if truthy(&self.pipeline(c, dot)) { t } else { e };
                    out.push_str(&self.render_nodes(branch, dot));
                }
                Node::With(c, t, e) => {
                    let v = self.pipeline(c, dot);
                    if truthy(&v) {
                        out.push_str(&self.render_nodes(t, &v));
                    } else {
                        out.push_str(&self.render_nodes(e, dot));
                    }
                }
            }
        }
        out
    }
}

fn merge(base: &mut Yaml, over: &Yaml) {
    match (base, over) {
        (Yaml::Hash(b), Yaml::Hash(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv @ Yaml::Hash(_)) if matches!(v, Yaml::Hash(_)) => merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Render every template with values.yaml merged with `overrides` (YAML);
/// returns the parsed documents, by template file name.
pub(crate) fn render(overrides: &str) -> Vec<(String, Yaml)> {
    let mut values = load_one(&read("values.yaml"), "values.yaml");
    if !overrides.trim().is_empty() {
        merge(&mut values, &load_one(overrides, "overrides"));
    }
    let chart = load_one(&read("Chart.yaml"), "Chart.yaml");
    let mut root = Hash::new();
    root.insert(Yaml::String("Values".into()), values);
    let mut release = Hash::new();
    for (k, v) in [
        ("Name", "mamori"),
        ("Namespace", "security"),
        ("Service", "Helm"),
    ] {
        release.insert(Yaml::String(k.into()), Yaml::String(v.into()));
    }
    root.insert(Yaml::String("Release".into()), Yaml::Hash(release));
    let mut ch = Hash::new();
    for (k, key) in [
        ("Name", "name"),
        ("Version", "version"),
        ("AppVersion", "appVersion"),
    ] {
        ch.insert(Yaml::String(k.into()), chart[key].clone());
    }
    root.insert(Yaml::String("Chart".into()), Yaml::Hash(ch));

    let mut defs = HashMap::new();
    let helpers = parse(&lex(&read("templates/_helpers.tpl")), &mut defs);
    assert!(
        helpers
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty())),
        "_helpers.tpl has only defines"
    );
    let r = Renderer {
        defs: defs.clone(),
        root: Yaml::Hash(root.clone()),
    };
    let mut docs = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(chart_dir().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    for name in names {
        let mut d = defs.clone();
        let nodes = parse(&lex(&read(&format!("templates/{name}"))), &mut d);
        let text = r.render_nodes(&nodes, &Yaml::Hash(root.clone()));
        for part in text.split("\n---\n") {
            let parsed = YamlLoader::load_from_str(part)
                .unwrap_or_else(|e| panic!("{name} does not render to YAML: {e}\n{text}"));
            for doc in parsed {
                if !doc.is_null() {
                    docs.push((name.clone(), doc));
                }
            }
        }
    }
    docs
}

#[test]
fn renderer_follows_go_trimming_and_rejects_the_unknown() {
    let mut defs = HashMap::new();
    let nodes = parse(
        &lex("a:\n  {{- if .Values.x }}\n  b: {{ .Values.x | quote }}\n  {{- end }}\nc: 1\n"),
        &mut defs,
    );
    let mut root = Hash::new();
    let mut vals = Hash::new();
    vals.insert(Yaml::String("x".into()), Yaml::String("y".into()));
    root.insert(Yaml::String("Values".into()), Yaml::Hash(vals));
    let r = Renderer {
        defs,
        root: Yaml::Hash(root.clone()),
    };
    assert_eq!(
        r.render_nodes(&nodes, &Yaml::Hash(root)),
        "a:\n  b: \"y\"\nc: 1\n"
    );
    let bad = std::panic::catch_unwind(|| {
        parse(&lex("{{ range .Values.x }}{{ end }}"), &mut HashMap::new())
    });
    assert!(bad.is_err());
}
