//! Loading in layers: YAML text → a JSON value tree, then the overrides
//! applied to that tree, weakest first: `MAMORI_*` environment variables,
//! then `-o KEY=VALUE`. Only after the last layer is the tree deserialized,
//! so every layer is checked by the same rules and errors name the key path.

use mamori_rules::yaml::{self, NodeKind, Style};
use serde_json::Value;

use super::ConfigError;

/// Read YAML text into a JSON value tree (maps keep string keys).
///
/// The text goes through the rule engine's positioned YAML reader, so a
/// config file gets the same bounds as a rules file (aliases expanded within
/// a count and a size, nesting capped: a "billion laughs" file is an error
/// at the alias that crosses the bound, not gigabytes) and every error
/// names `line:col`.
pub fn yaml_to_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let docs = yaml::parse(text).map_err(|e| ConfigError::Yaml {
        origin: origin.into(),
        msg: format!("line {} column {}: {}", e.mark.line, e.mark.col, e.message),
    })?;
    match docs.first() {
        None => Ok(Value::Object(Default::default())),
        Some(doc) => convert(doc, origin),
    }
}

/// A node as JSON. Plain scalars are typed as YAML's core schema (and
/// `yaml-rust2`'s loader) types them: `null`/`~`/empty, booleans, integers
/// (also `0x`/`0o`), floats; quoted and block scalars stay strings.
fn convert(node: &yaml::Node, origin: &str) -> Result<Value, ConfigError> {
    use yaml_rust2::Yaml;
    let bad = |msg: String| ConfigError::Yaml {
        origin: origin.into(),
        msg: format!("line {} column {}: {msg}", node.mark.line, node.mark.col),
    };
    Ok(match &node.kind {
        NodeKind::Scalar(s, Style::Plain) => match Yaml::from_str(s) {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(b),
            Yaml::Integer(i) => Value::from(i),
            Yaml::Real(r) => r
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad(format!("bad number {r}")))?,
            _ => Value::String(s.clone()),
        },
        NodeKind::Scalar(s, _) => Value::String(s.clone()),
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .map(|v| convert(v, origin))
                .collect::<Result<_, _>>()?,
        ),
        NodeKind::Map(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                let key = match (&k.kind, convert(k, origin)?) {
                    (NodeKind::Scalar(s, _), _) if s.is_empty() => {
                        return Err(bad("empty map key".into()))
                    }
                    (NodeKind::Scalar(..), Value::String(s)) => s,
                    (NodeKind::Scalar(..), v @ (Value::Number(_) | Value::Bool(_))) => {
                        v.to_string()
                    }
                    _ => return Err(bad(format!("unsupported map key ({})", k.type_name()))),
                };
                m.insert(key, convert(v, origin)?);
            }
            Value::Object(m)
        }
    })
}

/// Set `key` (dotted path) to `value` in the tree, creating maps on the way.
pub fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::BadOverride { arg: key.into() });
    }
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(Default::default());
            } else {
                return Err(ConfigError::Key {
                    origin: "override".into(),
                    key: parts[..i].join("."),
                    msg: "is not a map, cannot set a key below it".into(),
                });
            }
        }
        let map = cur.as_object_mut().expect("made a map above");
        if i == parts.len() - 1 {
            map.insert((*p).to_string(), value);
            return Ok(());
        }
        cur = map.entry(p.to_string()).or_insert(Value::Null);
    }
    Ok(())
}

/// Parse an override value: `[a, b]` / `{env: X}` as YAML flow collections,
/// `true`, `10`, `1.5`, `null` as YAML scalars, anything else (including
/// `#channel` or `a: b`) as the literal string.
fn override_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let t = text.trim();
    if t.starts_with('[') || t.starts_with('{') {
        return yaml_to_value(t, origin);
    }
    match yaml_to_value(t, origin) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Null)) if !t.is_empty() => Ok(v),
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Apply one `-o KEY=VALUE`.
pub fn apply_override(root: &mut Value, arg: &str) -> Result<(), ConfigError> {
    let (key, val) = arg
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride { arg: arg.into() })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::BadOverride { arg: arg.into() });
    }
    let v = override_value(val, &format!("-o {key}"))?;
    set_path(root, key, v)
}

/// Top-level keys `MAMORI_*` variables may address.
const ENV_ROOTS: &[&str] = &["outputs", "append_output", "node_name", "gap"];

/// Apply `MAMORI_OUTPUTS__SYSLOG__ADDRESS=...`-style variables. Returns the
/// names of the variables used (for `-v` logging; values are never logged).
pub fn apply_env<I>(root: &mut Value, vars: I) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut used = Vec::new();
    let mut vars: Vec<_> = vars.into_iter().collect();
    vars.sort();
    for (name, val) in vars {
        let Some(rest) = name.strip_prefix("MAMORI_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let first = key.split('.').next().unwrap_or("");
        if !ENV_ROOTS.contains(&first) {
            continue;
        }
        let v = override_value(&val, &name)?;
        set_path(root, &key, v)?;
        used.push(name);
    }
    Ok(used)
}
