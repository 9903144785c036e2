//! Loading in layers: YAML text → a JSON value tree, then the overrides
//! applied to that tree, weakest first: `MAMORI_*` environment variables,
//! then `-o KEY=VALUE`. Only after the last layer is the tree deserialized,
//! so every layer is checked by the same rules and errors name the key path.

use serde_json::Value;

use super::ConfigError;

/// Read YAML text into a JSON value tree (maps keep string keys).
pub fn yaml_to_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
        origin: origin.into(),
        msg: e.to_string(),
    })?;
    match docs.into_iter().next() {
        None => Ok(Value::Object(Default::default())),
        Some(doc) => convert_yaml(doc, origin),
    }
}

fn convert_yaml(y: yaml_rust2::Yaml, origin: &str) -> Result<Value, ConfigError> {
    use yaml_rust2::Yaml;
    let bad = |msg: String| ConfigError::Yaml {
        origin: origin.into(),
        msg,
    };
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad(format!("bad number {s}")))?,
        Yaml::String(s) => Value::String(s),
        Yaml::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| convert_yaml(v, origin))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(bad(format!("unsupported map key {other:?}"))),
                };
                m.insert(k, convert_yaml(v, origin)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) => return Err(bad("YAML aliases are not supported".into())),
        Yaml::BadValue => return Err(bad("bad value".into())),
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
const ENV_ROOTS: &[&str] = &["outputs"];

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
