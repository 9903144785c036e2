//! `append_output:` — Falco's way to add fields to every rule's alert
//! without editing rule files, in Falco's shape:
//!
//! ```yaml
//! append_output:
//!   - match: {source: syscall, tags: [container], rule: "Some rule"}
//!     extra_output: "pod=%k8s.pod.name"
//!     extra_fields: [proc.pid, {team: "${TEAM}"}]
//!     skip_shown_fields: true   # mamori: don't repeat fields the rule shows
//! ```
//!
//! `${VAR}` in `extra_output` and `extra_fields` values is replaced by the
//! environment variable (an unset variable is an error naming the key), as
//! Falco expands its config. Without the key, mamori uses [`default`]: the
//! process, parent, command line, container and pod appended to every rule
//! whose own output lacks them, so every alert can be triaged.

use serde::Deserialize;

use mamori_rules::{AppendOutput, ExtraField};

use super::{key_err, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// One `extra_fields` item: `proc.pid` or `{name: format}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawExtraField {
    Field(String),
    Named(std::collections::BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAppend {
    #[serde(default, rename = "match")]
    matches: RawMatch,
    #[serde(default)]
    extra_output: Option<String>,
    #[serde(default)]
    extra_fields: Vec<RawExtraField>,
    #[serde(default)]
    skip_shown_fields: bool,
}

/// The entries mamori applies when the config has no `append_output` key.
pub fn default() -> Vec<AppendOutput> {
    vec![AppendOutput {
        source: Some("syscall".into()),
        extra_output: Some(
            "pid=%proc.pid ppid=%proc.ppid parent=%proc.pname cmdline=%proc.cmdline \
             container_id=%container.id container_name=%container.name \
             image=%container.image.repository k8s_ns=%k8s.ns.name k8s_pod=%k8s.pod.name"
                .into(),
        ),
        skip_shown_fields: true,
        ..Default::default()
    }]
}

/// Validate the raw entries (`None`: the key is absent, use [`default`]).
pub fn validate(
    raw: Option<Vec<RawAppend>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<AppendOutput>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(default());
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("append_output[{i}]");
        let mut extra_fields = Vec::new();
        for (j, f) in r.extra_fields.into_iter().enumerate() {
            let fkey = format!("{key}.extra_fields[{j}]");
            match f {
                RawExtraField::Field(name) => extra_fields.push(ExtraField::field(name.trim())),
                RawExtraField::Named(m) => {
                    for (name, format) in m {
                        extra_fields.push(ExtraField {
                            format: expand(&format, env).map_err(|e| key_err(&fkey, e))?,
                            name,
                        });
                    }
                }
            }
        }
        let extra_output = match r.extra_output {
            Some(t) => {
                Some(expand(&t, env).map_err(|e| key_err(format!("{key}.extra_output"), e))?)
            }
            None => None,
        };
        let entry = AppendOutput {
            source: r.matches.source,
            rule: r.matches.rule,
            tags: r.matches.tags,
            extra_output,
            extra_fields,
            skip_shown_fields: r.skip_shown_fields,
        };
        entry
            .check()
            .map_err(|e| key_err(format!("{key}.{}", e.split(':').next().unwrap_or("")), e))?;
        out.push(entry);
    }
    Ok(out)
}

/// Replace each `${VAR}` with the variable's value.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed `${{` in {text:?}"));
        };
        let name = &after[..end];
        match env(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<AppendOutput>, ConfigError> {
        let v = super::super::layers::yaml_to_value(yaml, "test").unwrap();
        let raw: Vec<RawAppend> = serde_json::from_value(v).unwrap();
        validate(Some(raw), &|k| {
            (k == "TEAM").then(|| "payments".to_string())
        })
    }

    #[test]
    fn falco_shape_is_read() {
        let a = parse(
            r#"
- match: {source: syscall, tags: [container, shell], rule: "Terminal shell in container"}
  extra_output: "on CPU %evt.cpu team ${TEAM}"
  extra_fields:
    - proc.pid
    - team: "${TEAM}"
"#,
        )
        .unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].source.as_deref(), Some("syscall"));
        assert_eq!(a[0].tags, ["container", "shell"]);
        assert_eq!(a[0].rule.as_deref(), Some("Terminal shell in container"));
        assert_eq!(
            a[0].extra_output.as_deref(),
            Some("on CPU %evt.cpu team payments")
        );
        assert_eq!(a[0].extra_fields[0], ExtraField::field("proc.pid"));
        assert_eq!(a[0].extra_fields[1].name, "team");
        assert_eq!(a[0].extra_fields[1].format, "payments");
        assert!(!a[0].skip_shown_fields);
    }

    #[test]
    fn errors_name_the_entry_and_key() {
        let e = parse("- extra_fields: [proc.nosuch]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("append_output[0].extra_fields"), "{e}");
        assert!(e.contains("proc.nosuch"), "{e}");
        let e = parse("- {}\n- extra_output: \"x ${NOPE}\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("append_output[1].extra_output"), "{e}");
        assert!(e.contains("NOPE is not set"), "{e}");
    }

    #[test]
    fn absent_key_means_the_default_and_it_checks() {
        let d = validate(None, &|_| None).unwrap();
        assert_eq!(d, default());
        for e in &d {
            e.check().unwrap();
        }
        assert!(validate(Some(Vec::new()), &|_| None).unwrap().is_empty());
    }
}
