//! Falco's `append_output`: extra text and extra JSON fields added to the
//! output of the rules an entry matches, so a deployment can make every
//! alert carry the process, container and pod without editing rule files.
//!
//! An entry matches a rule when every condition it gives holds: `source`
//! (mamori's rules are all `syscall`), `rule` (the exact name), `tags` (the
//! rule has all of them); an entry with none matches every rule. Entries
//! apply in order. `extra_output` is appended to the text after a space;
//! `extra_fields` go to `output_fields` only (never into the text), each
//! either a field name (`proc.pid`) or `name: format` (`home: "${HOME}"`,
//! `where: "%container.name"`).
//!
//! mamori's one addition, `skip_shown_fields: true`: a word of
//! `extra_output` whose `%fields` the rule's own output already shows is
//! left out, so a default that adds the pod and container to every rule does
//! not repeat them in rules that already name them.

use crate::event::Event;
use crate::output::{OutputFormat, StateFields};
use crate::stateful::machine::StateView;

/// One `append_output` entry, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutput {
    /// `match.source`: the rule's source must equal it.
    pub source: Option<String>,
    /// `match.rule`: the rule's exact name.
    pub rule: Option<String>,
    /// `match.tags`: the rule must carry every one.
    pub tags: Vec<String>,
    /// Text appended to the rule's output after a space.
    pub extra_output: Option<String>,
    /// Fields added to `output_fields` only.
    pub extra_fields: Vec<ExtraField>,
    /// Leave out the words of `extra_output` whose fields the rule's output
    /// already shows (mamori extension; Falco always appends).
    pub skip_shown_fields: bool,
}

/// One `extra_fields` item: a key and the output format that gives its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraField {
    pub name: String,
    pub format: String,
}

impl ExtraField {
    /// A bare field name (`proc.pid`): its own key, its value.
    pub fn field(name: &str) -> ExtraField {
        ExtraField {
            name: name.to_string(),
            format: format!("%{name}"),
        }
    }
}

impl AppendOutput {
    /// Whether this entry applies to a rule.
    pub fn matches(&self, rule: &str, source: &str, tags: &[String]) -> bool {
        self.source.as_deref().is_none_or(|s| s == source)
            && self.rule.as_deref().is_none_or(|r| r == rule)
            && self.tags.iter().all(|t| tags.iter().any(|x| x == t))
    }

    /// Check every format of the entry: the first unknown field or
    /// malformed token, as a message naming the key it sits in.
    pub fn check(&self) -> Result<(), String> {
        let mut formats: Vec<(String, &str)> = Vec::new();
        if let Some(t) = &self.extra_output {
            formats.push(("extra_output".into(), t));
        }
        for f in &self.extra_fields {
            formats.push((format!("extra_fields.{}", f.name), &f.format));
        }
        for (key, fmt) in formats {
            let (_, issues) = OutputFormat::compile_with(fmt, &StateFields::None);
            if let Some(i) = issues.iter().find(|i| !i.unsupported) {
                return Err(format!("{key}: {}", i.message));
            }
        }
        Ok(())
    }
}

/// What the matching entries add to one rule, compiled.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    text: Option<OutputFormat>,
    fields: Vec<(String, OutputFormat)>,
}

impl Appended {
    /// Compile what `entries` add to rule `rule` whose output is `own`;
    /// `None` when nothing applies.
    pub(crate) fn for_rule(
        entries: &[AppendOutput],
        rule: &str,
        source: &str,
        tags: &[String],
        own: &OutputFormat,
    ) -> Option<Box<Appended>> {
        let mut words: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        let mut shown: Vec<String> = own.field_keys().map(str::to_string).collect();
        for e in entries.iter().filter(|e| e.matches(rule, source, tags)) {
            if let Some(t) = &e.extra_output {
                if e.skip_shown_fields {
                    for w in t.split_whitespace() {
                        let (f, _) = OutputFormat::compile_with(w, &StateFields::None);
                        let keys: Vec<&str> = f.field_keys().collect();
                        if keys.is_empty() || keys.iter().any(|k| !shown.iter().any(|s| s == k)) {
                            shown.extend(keys.iter().map(|k| k.to_string()));
                            words.push(w.to_string());
                        }
                    }
                } else if !t.trim().is_empty() {
                    words.push(t.trim().to_string());
                }
            }
            for f in &e.extra_fields {
                let (fmt, _) = OutputFormat::compile_with(&f.format, &StateFields::None);
                fields.push((f.name.clone(), fmt));
            }
        }
        if words.is_empty() && fields.is_empty() {
            return None;
        }
        let text = (!words.is_empty())
            .then(|| OutputFormat::compile_with(&words.join(" "), &StateFields::None).0);
        Some(Box::new(Appended { text, fields }))
    }

    /// Append to a rendered alert: text after a space (its fields also into
    /// `map`), extra fields into `map` only.
    pub(crate) fn render(
        &self,
        ev: &Event,
        view: Option<&StateView>,
        text: &mut String,
        map: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        if let Some(t) = &self.text {
            // A folded YAML output (`output: >`) ends in a newline: the
            // appended words go on the same line.
            let kept = text.trim_end().len();
            text.truncate(kept);
            if !text.is_empty() {
                text.push(' ');
            }
            t.render_with(ev, view, text, Some(map));
        }
        let mut scratch = String::new();
        for (name, fmt) in &self.fields {
            scratch.clear();
            let mut inner = serde_json::Map::new();
            fmt.render_with(ev, view, &mut scratch, Some(&mut inner));
            // A bare `%field` keeps its typed JSON value; anything else is
            // the rendered text.
            let value = match (fmt.single_field(), inner.into_iter().next()) {
                (true, Some((_, v))) => v,
                _ => serde_json::Value::String(scratch.clone()),
            };
            map.insert(name.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, LoadOptions};

    const RULES: &str = r#"
- rule: Shell
  desc: d
  condition: evt.type = execve and proc.name = bash
  output: >
    shell cmd=%proc.cmdline pid=%proc.pid
  priority: WARNING
  tags: [shell, container]
- rule: Other
  desc: d
  condition: evt.type = execve and proc.name = ls
  output: "ls run"
  priority: NOTICE
  tags: [shell]
"#;

    fn exec(name: &str) -> Event {
        let proc = crate::event::Process {
            pid: 42,
            name: name.into(),
            argv: vec![name.into(), "-x".into()],
            ..Default::default()
        };
        Event::new(1, crate::event::EvtType::Execve, 0, proc)
    }

    /// The output after Falco's `time: Priority ` prefix.
    fn body(a: &crate::alert::Alert) -> &str {
        let after_time = a.output.split_once(": ").map_or("", |(_, r)| r);
        after_time.split_once(' ').map_or("", |(_, r)| r)
    }

    fn engine(append: Vec<AppendOutput>) -> Engine {
        let opts = LoadOptions {
            append_output: append,
            ..Default::default()
        };
        let (e, report) = Engine::from_sources(&[("r.yaml", RULES)], &opts);
        assert!(!report.has_errors(), "{report}");
        e
    }

    #[test]
    fn match_conditions_all_must_hold() {
        let tags = vec!["shell".to_string(), "container".to_string()];
        let e = AppendOutput {
            tags: vec!["shell".into(), "container".into()],
            source: Some("syscall".into()),
            ..Default::default()
        };
        assert!(e.matches("Shell", "syscall", &tags));
        assert!(!e.matches("Other", "syscall", &tags[..1]));
        assert!(!e.matches("Shell", "k8s_audit", &tags));
        let by_name = AppendOutput {
            rule: Some("Other".into()),
            ..Default::default()
        };
        assert!(by_name.matches("Other", "syscall", &[]));
        assert!(!by_name.matches("Shell", "syscall", &tags));
        assert!(AppendOutput::default().matches("Anything", "syscall", &[]));
    }

    #[test]
    fn extra_output_and_fields_are_appended_to_matching_rules_only() {
        let e = engine(vec![AppendOutput {
            tags: vec!["container".into()],
            extra_output: Some("run by %proc.name".into()),
            extra_fields: vec![
                ExtraField::field("proc.pid"),
                ExtraField {
                    name: "team".into(),
                    format: "payments-%proc.name".into(),
                },
            ],
            ..Default::default()
        }]);
        let a = e.evaluate(&exec("bash"));
        assert_eq!(a.len(), 1);
        assert_eq!(body(&a[0]), "shell cmd=bash -x pid=42 run by bash");
        assert_eq!(a[0].output_fields["proc.pid"], 42);
        assert_eq!(a[0].output_fields["team"], "payments-bash");
        assert_eq!(a[0].output_fields["proc.name"], "bash");
        let b = e.evaluate(&exec("ls"));
        assert_eq!(body(&b[0]), "ls run");
        assert!(!b[0].output_fields.contains_key("team"));
    }

    #[test]
    fn skip_shown_fields_drops_words_the_rule_already_shows() {
        let e = engine(vec![AppendOutput {
            extra_output: Some("pid=%proc.pid name=%proc.name".into()),
            skip_shown_fields: true,
            ..Default::default()
        }]);
        assert_eq!(
            body(&e.evaluate(&exec("bash"))[0]),
            "shell cmd=bash -x pid=42 name=bash"
        );
        assert_eq!(body(&e.evaluate(&exec("ls"))[0]), "ls run pid=42 name=ls");
        let plain = engine(vec![AppendOutput {
            extra_output: Some("pid=%proc.pid".into()),
            ..Default::default()
        }]);
        assert_eq!(
            body(&plain.evaluate(&exec("bash"))[0]),
            "shell cmd=bash -x pid=42 pid=42"
        );
    }

    #[test]
    fn check_names_the_key_with_an_unknown_field() {
        let bad = AppendOutput {
            extra_fields: vec![ExtraField::field("proc.nosuch")],
            ..Default::default()
        };
        let err = bad.check().unwrap_err();
        assert!(err.starts_with("extra_fields.proc.nosuch:"), "{err}");
        let bad_text = AppendOutput {
            extra_output: Some("x=%nosuch.field".into()),
            ..Default::default()
        };
        assert!(bad_text.check().unwrap_err().starts_with("extra_output:"));
        assert!(AppendOutput::default().check().is_ok());
    }
}
