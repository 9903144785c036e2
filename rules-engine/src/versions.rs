//! `required_engine_version` and `required_plugin_versions`, checked as
//! Falco checks them: a file that needs a newer engine than the one mamori
//! implements (or names a version Falco could not parse) fails the load,
//! rather than loading with fields or syntax mamori lacks.

use crate::diag::Code;
use crate::reader::{ItemCx, R};
use crate::yaml::{Node, NodeKind};

/// The Falco rules-engine version mamori implements, for
/// `required_engine_version`: the version Falco's rule files that mamori is
/// tested against require (`falco_rules.yaml`: `0.57.0`). A file requiring
/// a newer engine may use fields or syntax mamori lacks, and fails to load
/// as it would in a Falco that old.
pub const FALCO_ENGINE_VERSION: (u64, u64, u64) = (0, 57, 0);

/// A version as Falco reads `required_engine_version`: `x.y.z`, or a bare
/// number `n` (the old engine numbering, which Falco reads as `0.n.0`).
fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let num = |p: &str| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    };
    let parts: Vec<&str> = s.trim().split('.').collect();
    match parts.as_slice() {
        [n] => Some((0, num(n)?, 0)),
        [a, b, c] => Some((num(a)?, num(b)?, num(c)?)),
        _ => None,
    }
}

/// `- required_engine_version: V`: a version (see [`parse_version`]) no
/// newer than [`FALCO_ENGINE_VERSION`], else the load fails, as in Falco.
pub(crate) fn check_engine_version(cx: &ItemCx, v: &Node) -> R<()> {
    let text = cx.string(v, "required_engine_version")?;
    let Some(want) = parse_version(text) else {
        return Err(cx.err(
            Code::ErrValidate,
            v.mark,
            format!("required_engine_version '{text}' is neither a number nor a version x.y.z"),
        ));
    };
    if want > FALCO_ENGINE_VERSION {
        let (a, b, c) = FALCO_ENGINE_VERSION;
        return Err(cx.err(
            Code::ErrValidate,
            v.mark,
            format!(
                "rules require engine version {}.{}.{}, but mamori implements Falco's engine version {a}.{b}.{c}",
                want.0, want.1, want.2
            ),
        ));
    }
    Ok(())
}

/// `- required_plugin_versions: [{name, version, alternatives}]`: checked
/// for shape and versions as Falco does; returns how many plugins it names.
pub(crate) fn check_plugin_versions(cx: &ItemCx, v: &Node) -> R<usize> {
    let NodeKind::Seq(items) = &v.kind else {
        return Err(cx.err(
            Code::ErrYamlValidate,
            v.mark,
            "required_plugin_versions must be a list",
        ));
    };
    let check = |p: &Node| -> R<()> {
        let need = |key: &str| {
            p.get(key).ok_or_else(|| {
                cx.err(
                    Code::ErrYamlValidate,
                    p.mark,
                    format!("required_plugin_versions entry has no '{key}'"),
                )
            })
        };
        cx.string(need("name")?, "name")?;
        let ver = need("version")?;
        let text = cx.string(ver, "version")?;
        if parse_version(text).is_none_or(|_| text.split('.').count() != 3) {
            return Err(cx.err(
                Code::ErrValidate,
                ver.mark,
                format!("plugin version '{text}' is not a version x.y.z"),
            ));
        }
        Ok(())
    };
    for p in items {
        check(p)?;
        if let Some(NodeKind::Seq(alts)) = p.get("alternatives").map(|a| &a.kind) {
            for a in alts {
                check(a)?;
            }
        }
    }
    Ok(items.len())
}
