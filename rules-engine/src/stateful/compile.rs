//! Compiling a `threshold:` / `sequence:` block: key and `distinct` fields
//! bound against [`crate::fields`], `tree: true` checked against its key,
//! step conditions compiled like the rule's own (the compiler passes its
//! condition compiler in), then simplified and specialized with the event
//! types they need.

use super::read::StatefulInfo;
use super::{SequenceSpec, Spec, ThresholdSpec};
use crate::compiler::{rule_fail, Fail};
use crate::diag::Code;
use crate::eval::{self, Node, Operand};
use crate::fields::{self, FieldId, ResolveError};
use crate::reader::CondText;
use crate::yaml::Mark;

/// Compile rule `rule`'s block; `condition` compiles a step's condition.
/// A sequence's steps come back as compiled, not yet [`finish`]ed.
pub(crate) fn spec(
    st: &StatefulInfo,
    rule: &str,
    mut condition: impl FnMut(&CondText) -> Result<Node, Fail>,
) -> Result<Spec, Fail> {
    match st {
        StatefulInfo::Threshold(t) => {
            let file = &t.ctx.file.name;
            let sum = bind(t.sum.as_slice(), rule, file)?.pop();
            if let (Some(op), Some((name, mark))) = (&sum, &t.sum) {
                if !op.field.ty().is_numeric() {
                    return Err(rule_fail(
                        rule,
                        file,
                        *mark,
                        Code::ErrValidate,
                        format!("'threshold.sum' field '{name}' is not numeric"),
                    ));
                }
            }
            Ok(Spec::Threshold(ThresholdSpec {
                by: bind(&t.by, rule, file)?,
                distinct: bind(&t.distinct, rule, file)?,
                sum,
                count: t.count,
                within_ns: t.within_ns,
                max_keys: t.max_keys,
            }))
        }
        StatefulInfo::Sequence(q) => {
            let file = &q.ctx.file.name;
            let by = bind(&q.by, rule, file)?;
            if q.tree
                && !(by.len() == 1
                    && matches!(by[0].field.id(), FieldId::ProcPid | FieldId::ProcPpid))
            {
                let mark = q.by.first().map(|b| b.1).unwrap_or(q.ctx.mark);
                return Err(rule_fail(
                    rule,
                    file,
                    mark,
                    Code::ErrValidate,
                    "'tree: true' needs 'by' to be exactly one of proc.pid, proc.ppid",
                ));
            }
            let mut steps = Vec::new();
            for step in &q.steps {
                steps.push((step.name.clone(), condition(&step.cond)?));
            }
            Ok(Spec::Sequence(SequenceSpec {
                by,
                tree: q.tree,
                within_ns: q.within_ns,
                steps,
                max_keys: q.max_keys,
            }))
        }
    }
}

/// Simplify and specialize a sequence's step conditions. Returns the spec,
/// the event types its steps need (bit mask) and whether a step can never
/// match any event mamori captures.
pub(crate) fn finish(mut spec: Spec) -> (Spec, eval::TypeMask, bool) {
    let (mut mask, mut never) = (0 as eval::TypeMask, false);
    if let Spec::Sequence(q) = &mut spec {
        q.steps = std::mem::take(&mut q.steps)
            .into_iter()
            .map(|(name, n)| {
                let n = eval::simplify(n);
                let (m, _) = eval::type_sets(&n);
                never |= m == 0 || matches!(n, Node::Const(false));
                mask |= m;
                let mut n = eval::specialize(n, m);
                eval::order_by_cost(&mut n);
                (name, n)
            })
            .collect();
    }
    (spec, mask, never)
}

/// Bind key fields (`proc.pid`, `fd.rip`, `k8s.pod.label[app]`).
fn bind(names: &[(String, Mark)], rule: &str, file: &str) -> Result<Vec<Operand>, Fail> {
    names
        .iter()
        .map(|(name, mark)| {
            let (n, arg) = match name.find('[') {
                Some(k) if name.ends_with(']') => (&name[..k], Some(&name[k + 1..name.len() - 1])),
                _ => (name.as_str(), None),
            };
            fields::resolve(n, arg)
                .map(|field| Operand {
                    field,
                    transforms: Vec::new(),
                })
                .map_err(|e| {
                    let why = match e {
                        ResolveError::Unknown => "is not a field mamori knows".to_string(),
                        ResolveError::Unsupported => {
                            "is a Falco field mamori does not provide".to_string()
                        }
                        ResolveError::BadArg(m) => m,
                    };
                    rule_fail(
                        rule,
                        file,
                        *mark,
                        Code::ErrValidate,
                        format!("key field '{name}' {why}"),
                    )
                })
        })
        .collect()
}
