//! Fuzz the sensor's config loader: an arbitrary `mamori.yaml`, then `-o`
//! overrides and `MAMORI_*` variables (one per line after a NUL byte), all
//! layers applied, deserialized and validated: errors naming a key, never a
//! panic, and no input that makes the loader allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamori::config::{layers, parse_raw};
use serde_json::Value;

/// Whether a `{file: ...}` secret appears: validating it would read any
/// path the fuzzer names (a FIFO would block), so such inputs stop before
/// validation.
fn names_a_file(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("file") || m.values().any(names_a_file),
        Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, layers_text) = text.split_once('\0').unwrap_or((text, ""));
    let Ok(mut root) = layers::yaml_to_value(file, "fuzz.yaml") else {
        return;
    };
    if root.is_null() {
        root = Value::Object(Default::default());
    }
    let mut env = Vec::new();
    for line in layers_text.lines() {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("MAMORI_") => env.push((k.to_string(), v.to_string())),
            _ => {
                if layers::apply_override(&mut root, line).is_err() {
                    return;
                }
            }
        }
    }
    if layers::apply_env(&mut root, env).is_err() {
        return;
    }
    if names_a_file(&root) {
        let _ = parse_raw(root);
        return;
    }
    if let Ok(raw) = parse_raw(root) {
        let _ = raw.validate();
    }
});
