//! Falco exceptions → conditions. Each exception of a rule becomes an
//! `and not (...)` term, built as an AST (never as re-parsed text) and then
//! compiled like the rule's own condition:
//!
//! * `fields: proc.name` (one field): `values` is a flat list and `comps`
//!   (default `in`) must be a list operator: `not proc.name in (values)`;
//! * `fields: [a, b]`: each value is a tuple, `comps` (default `=` each) a
//!   list of the same length: `not ((a = v1 and b = v2) or ...)`.
//!
//! An exception without values adds nothing.

use super::{Compiler, Fail, RuleCx};
use crate::diag::Code;
use crate::eval::Node;
use crate::fields::{self, ResolveError};
use crate::parser::{self, Check, Expr, Op, Operand as AstOperand, Rhs as AstRhs, Span, Value};
use crate::reader::{CondText, ExFields, ExValue, ExceptionInfo, RuleInfo};
use crate::yaml::Mark;

impl Compiler<'_> {
    /// Turn a rule's exceptions into `not (...)` terms.
    pub(super) fn exceptions(&mut self, r: &RuleInfo, rcx: &mut RuleCx) -> Result<Vec<Node>, Fail> {
        let mut out = Vec::new();
        for ex in &r.exceptions {
            if let Some(e) = self.exception(ex, rcx)? {
                out.push(Node::Not(Box::new(e)));
            }
        }
        Ok(out)
    }

    fn exception(&mut self, ex: &ExceptionInfo, rcx: &mut RuleCx) -> Result<Option<Node>, Fail> {
        let src = CondText::synthetic(&ex.ctx.file, ex.ctx.mark);
        let Some(fields) = &ex.fields else {
            return Err(self.ex_err(ex, rcx, ex.ctx.mark, "has no 'fields'"));
        };
        // Falco checks the fields even when no values use them.
        match fields {
            ExFields::One(f, m) => self.known_field(ex, f, *m, rcx)?,
            ExFields::Many(fs) => {
                for (f, m) in fs {
                    self.known_field(ex, f, *m, rcx)?;
                }
            }
        }
        let expr = match fields {
            ExFields::One(f, fmark) => self.single_field(ex, f, *fmark, rcx)?,
            ExFields::Many(fs) => self.field_tuples(ex, fs, rcx)?,
        };
        let Some(expr) = expr else {
            return Ok(None);
        };
        self.charge(&expr, &src, rcx)?;
        self.expr(&expr, &src, rcx, usize::MAX).map(Some)
    }

    /// `fields: f` with a flat list of values.
    fn single_field(
        &self,
        ex: &ExceptionInfo,
        f: &str,
        fmark: Mark,
        rcx: &RuleCx,
    ) -> Result<Option<Expr>, Fail> {
        let op = match &ex.comps {
            None => Op::In,
            Some(ExFields::One(c, cmark)) => self.ex_comp(ex, rcx, c, *cmark)?,
            Some(ExFields::Many(_)) => {
                return Err(self.ex_err(
                    ex,
                    rcx,
                    ex.ctx.mark,
                    "fields and comps must both be strings",
                ))
            }
        };
        if !op.is_list_op() {
            return Err(self.ex_err(
                ex,
                rcx,
                ex.ctx.mark,
                "when fields is a single value, comps must be one of (in, pmatch, intersects)",
            ));
        }
        let mut vals = Vec::new();
        for v in &ex.values {
            match v {
                ExValue::Scalar(s) => vals.push(value(s)),
                ExValue::List(_, m) => {
                    return Err(self.ex_err(ex, rcx, *m, "expected values to be a list of strings"))
                }
            }
        }
        if vals.is_empty() {
            return Ok(None);
        }
        Ok(Some(check(
            self.ex_field(ex, rcx, f, fmark)?,
            op,
            AstRhs::List(vals, Span::default()),
        )))
    }

    /// `fields: [a, b, ...]` with a tuple per value.
    fn field_tuples(
        &self,
        ex: &ExceptionInfo,
        fs: &[(String, Mark)],
        rcx: &RuleCx,
    ) -> Result<Option<Expr>, Fail> {
        let comps: Vec<(Op, Mark)> = match &ex.comps {
            None => fs.iter().map(|(_, m)| (Op::Eq, *m)).collect(),
            Some(ExFields::Many(cs)) => cs
                .iter()
                .map(|(c, m)| self.ex_comp(ex, rcx, c, *m).map(|o| (o, *m)))
                .collect::<Result<_, _>>()?,
            Some(ExFields::One(_, m)) => {
                return Err(self.ex_err(
                    ex,
                    rcx,
                    *m,
                    "fields is a list, so comps must be a list too",
                ))
            }
        };
        if comps.len() != fs.len() {
            return Err(self.ex_err(
                ex,
                rcx,
                ex.ctx.mark,
                "fields and comps lists must have equal length",
            ));
        }
        let mut alts = Vec::new();
        for tuple in &ex.values {
            let ExValue::List(vals, tmark) = tuple else {
                return Err(self.ex_err(
                    ex,
                    rcx,
                    ex.ctx.mark,
                    "each entry of values must be a list",
                ));
            };
            if vals.len() != fs.len() {
                return Err(self.ex_err(
                    ex,
                    rcx,
                    *tmark,
                    "fields and values lists must have equal length",
                ));
            }
            let mut terms = Vec::new();
            for (k, v) in vals.iter().enumerate() {
                let lhs = self.ex_field(ex, rcx, &fs[k].0, fs[k].1)?;
                let op = comps[k].0;
                let rhs = match v {
                    ExValue::List(items, _) => AstRhs::List(
                        items
                            .iter()
                            .filter_map(|i| match i {
                                ExValue::Scalar(s) => Some(value(s)),
                                _ => None,
                            })
                            .collect(),
                        Span::default(),
                    ),
                    ExValue::Scalar(s) if op.is_list_op() => {
                        AstRhs::List(vec![value(s)], Span::default())
                    }
                    ExValue::Scalar(s) => AstRhs::Value(Value {
                        quoted: true,
                        ..value(s)
                    }),
                };
                terms.push(check(lhs, op, rhs));
            }
            alts.push(Expr::And(terms, Span::default()));
        }
        if alts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Expr::Or(alts, Span::default())))
    }

    /// An error in exception `ex`, at `mark`.
    fn ex_err(&self, ex: &ExceptionInfo, rcx: &RuleCx, mark: Mark, msg: &str) -> Fail {
        let s = CondText::synthetic(&ex.ctx.file, mark);
        self.fail(
            rcx,
            &s,
            Span::default(),
            Code::ErrValidate,
            format!("exception '{}': {msg}", ex.name),
        )
    }

    /// An exception's field name, parsed as an operand.
    fn ex_field(
        &self,
        ex: &ExceptionInfo,
        rcx: &RuleCx,
        name: &str,
        mark: Mark,
    ) -> Result<AstOperand, Fail> {
        parser::parse_operand(name).map_err(|e| {
            let msg = format!("bad field '{name}': {}", e.message);
            self.ex_err(ex, rcx, mark, &msg)
        })
    }

    /// An exception field must be a field Falco knows (one mamori lacks is
    /// fine: it makes the rule inactive once a value uses it); an unknown
    /// name is an error, or under `skip-if-unknown-filter` skips the rule.
    fn known_field(
        &self,
        ex: &ExceptionInfo,
        f: &str,
        mark: Mark,
        rcx: &mut RuleCx,
    ) -> Result<(), Fail> {
        let op = self.ex_field(ex, rcx, f, mark)?;
        let fr = op.field();
        match fields::resolve(&fr.name, fr.arg.as_deref()) {
            Ok(_) | Err(ResolveError::Unsupported) => Ok(()),
            Err(_) if rcx.skip_unknown => {
                if rcx.unknown.is_none() {
                    rcx.unknown = Some((fr.to_string(), ex.ctx.file.name.clone(), mark));
                }
                Ok(())
            }
            Err(e) => {
                let what = match e {
                    ResolveError::BadArg(m) => m,
                    _ => format!("'{fr}' is not a known field (see `mamori fields`)"),
                };
                Err(self.ex_err(ex, rcx, mark, &what))
            }
        }
    }

    /// An exception's comparison operator.
    fn ex_comp(
        &self,
        ex: &ExceptionInfo,
        rcx: &RuleCx,
        comp: &str,
        mark: Mark,
    ) -> Result<Op, Fail> {
        Op::from_comp(comp).ok_or_else(|| {
            let msg = format!("'{comp}' is not a supported comparison operator");
            self.ex_err(ex, rcx, mark, &msg)
        })
    }
}

/// An unquoted value of a generated check.
fn value(text: &str) -> Value {
    Value {
        text: text.to_string(),
        quoted: false,
        span: Span::default(),
    }
}

/// A generated `lhs op rhs` check.
fn check(lhs: AstOperand, op: Op, rhs: AstRhs) -> Expr {
    Expr::Check(Box::new(Check {
        lhs,
        op,
        op_span: Span::default(),
        rhs,
        span: Span::default(),
    }))
}
