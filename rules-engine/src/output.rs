//! Output strings: `%field` and `%(field)` substitution, compiled once per
//! rule into literal and field segments.
//!
//! A field token is `%` followed by a field name (letters, digits, `_`, `.`)
//! and an optional `[arg]`; trailing dots belong to the text
//! (`file=%fd.name.` renders the name followed by a period). `%%` and a `%`
//! not followed by a name are literal. Missing values render as `<NA>`,
//! like Falco.

use crate::event::Event;
use crate::fields::{self, EvalCtx, ResolveError, Value};

use super::eval::Operand;
use super::stateful::machine::StateView;

#[derive(Debug)]
enum Seg {
    Lit(String),
    Field {
        key: String,
        operand: Option<Operand>,
    },
    /// A value of a stateful rule's firing (`%threshold.count`,
    /// `%seq.read.fd.name`, ...).
    State {
        key: String,
        what: StateSeg,
    },
}

#[derive(Debug)]
enum StateSeg {
    Count,
    Values,
    Window,
    Elapsed,
    /// A field of an earlier sequence step's event: (step, index among
    /// that step's captured values, field).
    Step(usize, usize, Operand),
}

/// Which stateful fields an output may name: none for plain rules,
/// `threshold.*` for threshold rules, `seq.*` (with the step names) for
/// sequences.
#[derive(Debug, Clone, Default)]
pub(crate) enum StateFields {
    #[default]
    None,
    Threshold,
    Sequence(Vec<String>),
}

/// Most distinct values `%threshold.values` lists before `,...`.
const MAX_LISTED_VALUES: usize = 32;

/// `10s`, `250ms`, `2.500s`: a window or elapsed time for people.
pub(crate) fn format_duration(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns < 1_000_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}

/// A compiled output format.
#[derive(Debug, Default)]
pub(crate) struct OutputFormat {
    segs: Vec<Seg>,
}

/// A problem in an output string, at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutputIssue {
    pub offset: usize,
    pub field: String,
    pub message: String,
    /// `true`: a Falco field mamori lacks (renders `<NA>`); `false`: an error.
    pub unsupported: bool,
}

impl OutputFormat {
    /// Compile; unsupported Falco fields are reported but still compile
    /// (to `<NA>`), unknown names make the whole format fail.
    #[cfg(test)]
    pub(crate) fn compile(fmt: &str) -> (OutputFormat, Vec<OutputIssue>) {
        OutputFormat::compile_with(fmt, &StateFields::None)
    }

    /// Compile an output that may also name the stateful fields `state` allows.
    pub(crate) fn compile_with(fmt: &str, state: &StateFields) -> (OutputFormat, Vec<OutputIssue>) {
        let mut segs = Vec::new();
        let mut issues = Vec::new();
        let mut lit = String::new();
        let b = fmt.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                let ch_end = next_char(fmt, i);
                lit.push_str(&fmt[i..ch_end]);
                i = ch_end;
                continue;
            }
            let start = i;
            i += 1;
            if b.get(i) == Some(&b'%') {
                lit.push('%');
                i += 1;
                continue;
            }
            let Some(tok) = field_token(fmt, i) else {
                lit.push('%');
                continue;
            };
            if !lit.is_empty() {
                segs.push(Seg::Lit(std::mem::take(&mut lit)));
            }
            segs.push(field_seg(&tok, start, state, &mut issues));
            i = tok.after;
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        // Number each step's fields in output order: the order captured.
        let mut per_step = std::collections::HashMap::new();
        for seg in &mut segs {
            if let Seg::State {
                what: StateSeg::Step(i, j, _),
                ..
            } = seg
            {
                let n = per_step.entry(*i).or_insert(0usize);
                *j = *n;
                *n += 1;
            }
        }
        (OutputFormat { segs }, issues)
    }

    /// What a sequence keeps of step `step`'s event: the values of the
    /// fields the output names for it (`%seq.<step>.<field>`), in order.
    pub(crate) fn capture_step(&self, step: usize, cx: &EvalCtx<'_>) -> Vec<Value<'static>> {
        self.segs
            .iter()
            .filter_map(|seg| match seg {
                Seg::State {
                    what: StateSeg::Step(i, _, op),
                    ..
                } if *i == step => Some(op.get(cx).into_owned()),
                _ => None,
            })
            .collect()
    }

    /// The keys of the fields (and stateful values) this format shows.
    pub(crate) fn field_keys(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Field { key, .. } | Seg::State { key, .. } => Some(key.as_str()),
            Seg::Lit(_) => None,
        })
    }

    /// Whether the format is exactly one field and no text.
    pub(crate) fn single_field(&self) -> bool {
        matches!(self.segs.as_slice(), [Seg::Field { .. }])
    }

    /// Render into `out`; when `fields` is given, also record each field's value.
    #[cfg(test)]
    pub(crate) fn render(
        &self,
        ev: &Event,
        out: &mut String,
        fields: Option<&mut serde_json::Map<String, serde_json::Value>>,
    ) {
        self.render_with(ev, None, out, fields)
    }

    /// [`OutputFormat::render`] for a stateful rule's firing.
    pub(crate) fn render_with(
        &self,
        ev: &Event,
        state: Option<&StateView>,
        out: &mut String,
        mut fields: Option<&mut serde_json::Map<String, serde_json::Value>>,
    ) {
        let cx = crate::fields::EvalCtx::new(ev);
        for seg in &self.segs {
            match seg {
                Seg::Lit(s) => out.push_str(s),
                Seg::State { key, what } => {
                    let v = state_value(what, state);
                    v.render(out);
                    if let Some(map) = fields.as_deref_mut() {
                        map.insert(key.clone(), v.to_json());
                    }
                }
                Seg::Field { key, operand } => {
                    let v = operand
                        .as_ref()
                        .map(|o| o.get(&cx))
                        .unwrap_or(Value::Missing);
                    v.render(out);
                    if let Some(map) = fields.as_deref_mut() {
                        map.insert(key.clone(), v.to_json());
                    }
                }
            }
        }
    }
}

/// A field token of an output string: `%name`, `%name[arg]` or `%(name)`.
struct FieldToken<'a> {
    /// The whole token (`name[arg]`), the key of its value in alert fields.
    token: &'a str,
    name: &'a str,
    arg: Option<&'a str>,
    /// Byte offset just past the token.
    after: usize,
}

/// The field token after a `%` (`i` is the byte after it), or `None` when
/// that `%` is literal text.
fn field_token(fmt: &str, i: usize) -> Option<FieldToken<'_>> {
    let b = fmt.as_bytes();
    let (name_start, name_end, after) = if b.get(i) == Some(&b'(') {
        let close = fmt[i..].find(')')?;
        (i + 1, i + close, i + close + 1)
    } else {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.') {
            j += 1;
        }
        if j < b.len() && b[j] == b'[' {
            if let Some(close) = fmt[j..].find(']') {
                j += close + 1;
            }
        }
        // Trailing dots are punctuation, not part of the field.
        let mut end = j;
        while end > i && b[end - 1] == b'.' {
            end -= 1;
        }
        (i, end, end)
    };
    let token = fmt[name_start..name_end].trim();
    if token.is_empty() || !token.as_bytes()[0].is_ascii_alphabetic() {
        return None;
    }
    let (name, arg) = match token.find('[') {
        Some(k) if token.ends_with(']') => (&token[..k], Some(&token[k + 1..token.len() - 1])),
        _ => (token, None),
    };
    Some(FieldToken {
        token,
        name,
        arg,
        after,
    })
}

/// The segment a field token compiles to: a stateful value, or an event
/// field (`None` when it cannot be read: it renders `<NA>`). Problems go to
/// `issues`, at the `%`'s offset `start`.
fn field_seg(
    tok: &FieldToken<'_>,
    start: usize,
    state: &StateFields,
    issues: &mut Vec<OutputIssue>,
) -> Seg {
    let token = tok.token;
    let mut issue = |message: String, unsupported: bool| {
        issues.push(OutputIssue {
            offset: start,
            field: token.to_string(),
            message,
            unsupported,
        })
    };
    if tok.name.starts_with("threshold.") || tok.name.starts_with("seq.") {
        match state_seg(tok.name, tok.arg, state) {
            Ok(what) => {
                return Seg::State {
                    key: token.to_string(),
                    what,
                }
            }
            Err(message) => issue(message, false),
        }
        return Seg::Field {
            key: token.to_string(),
            operand: None,
        };
    }
    let operand = match fields::resolve(tok.name, tok.arg) {
        Ok(field) => Some(Operand {
            field,
            transforms: Vec::new(),
        }),
        Err(ResolveError::Unsupported) => {
            issue(format!("output field '{token}' is a Falco field mamori does not provide; it renders as <NA>"), true);
            None
        }
        Err(ResolveError::Unknown) => {
            issue(format!("unknown output field '{token}'"), false);
            None
        }
        Err(ResolveError::BadArg(m)) => {
            issue(m, false);
            None
        }
    };
    Seg::Field {
        key: token.to_string(),
        operand,
    }
}

fn state_seg(name: &str, arg: Option<&str>, state: &StateFields) -> Result<StateSeg, String> {
    match (name, state) {
        ("threshold.count", StateFields::Threshold) => Ok(StateSeg::Count),
        ("threshold.values", StateFields::Threshold) => Ok(StateSeg::Values),
        ("threshold.window" | "seq.window", StateFields::Threshold | StateFields::Sequence(_)) => {
            Ok(StateSeg::Window)
        }
        ("threshold.elapsed", StateFields::Threshold)
        | ("seq.elapsed", StateFields::Sequence(_)) => Ok(StateSeg::Elapsed),
        (_, StateFields::Sequence(steps)) if name.starts_with("seq.") => {
            let rest = &name["seq.".len()..];
            let (step, field) = rest.split_once('.').unwrap_or((rest, ""));
            let Some(i) = steps.iter().position(|s| s == step) else {
                return Err(format!(
                    "'%{name}': no sequence step named '{step}' (steps: {})",
                    steps.join(", ")
                ));
            };
            match fields::resolve(field, arg) {
                Ok(field) => Ok(StateSeg::Step(
                    i,
                    0,
                    Operand {
                        field,
                        transforms: Vec::new(),
                    },
                )),
                Err(_) => Err(format!("'%{name}': '{field}' is not a field mamori provides")),
            }
        }
        (_, StateFields::None) => Err(format!(
            "'%{name}' only exists in rules with a 'threshold' or 'sequence' block"
        )),
        _ => Err(format!(
            "unknown stateful output field '%{name}' (threshold: threshold.count, threshold.values, threshold.window, threshold.elapsed; sequence: seq.<step>.<field>, seq.window, seq.elapsed)"
        )),
    }
}

fn state_value<'a>(what: &StateSeg, state: Option<&'a StateView>) -> Value<'a> {
    let Some(st) = state else {
        return Value::Missing;
    };
    match what {
        StateSeg::Count => Value::Int(st.count as i64),
        StateSeg::Values => {
            let mut s = String::new();
            for (n, v) in st.values.iter().take(MAX_LISTED_VALUES).enumerate() {
                if n > 0 {
                    s.push(',');
                }
                match v {
                    // A multi-field value renders as a:b.
                    Value::List(parts) => {
                        for (k, p) in parts.iter().enumerate() {
                            if k > 0 {
                                s.push(':');
                            }
                            p.render(&mut s);
                        }
                    }
                    one => one.render(&mut s),
                }
            }
            if st.values.len() > MAX_LISTED_VALUES {
                s.push_str(",...");
            }
            Value::Str(s.into())
        }
        StateSeg::Window => Value::Str(format_duration(st.window_ns).into()),
        StateSeg::Elapsed => Value::Str(format_duration(st.elapsed_ns).into()),
        StateSeg::Step(i, j, _) => st
            .steps
            .get(*i)
            .and_then(|vals| vals.get(*j))
            .cloned()
            .unwrap_or(Value::Missing),
    }
}

fn next_char(s: &str, i: usize) -> usize {
    s[i..]
        .chars()
        .next()
        .map(|c| i + c.len_utf8())
        .unwrap_or(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EvtType, Process};

    #[test]
    fn renders_fields_and_na() {
        let ev = Event::new(
            0,
            EvtType::Execve,
            0,
            Process {
                name: "bash".into(),
                argv: vec!["bash".into(), "-i".into()],
                ..Default::default()
            },
        );
        let (f, issues) = OutputFormat::compile(
            "100% shell %proc.name (cmd=%(proc.cmdline) file=%fd.name. parent=%proc.aname[1] sess=%proc.sname)",
        );
        assert_eq!(issues.len(), 1);
        assert!(issues[0].unsupported);
        let mut out = String::new();
        let mut map = serde_json::Map::new();
        f.render(&ev, &mut out, Some(&mut map));
        assert_eq!(
            out,
            "100% shell bash (cmd=bash -i file=<NA>. parent=<NA> sess=<NA>)"
        );
        assert_eq!(map["proc.name"], "bash");
        assert!(map["fd.name"].is_null());
        assert!(map.contains_key("proc.aname[1]"));
        let (_, issues) = OutputFormat::compile("x=%proc.nmae");
        assert!(!issues[0].unsupported);
        assert_eq!(issues[0].offset, 2);
    }
}
