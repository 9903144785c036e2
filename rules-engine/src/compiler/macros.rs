//! Macros and the condition tree: each macro is parsed once (a syntax error
//! is reported at the macro), then expanded into every condition that names
//! it — honouring visibility (a macro sees only items defined before it),
//! rejecting cycles and capping the nesting depth. [`Compiler::expr`] walks a
//! parsed condition into an [`Node`], flattening nested `and` / `or`.

use super::{Compiler, Fail, RuleCx};
use crate::diag::{Code, Diagnostic, ItemRef};
use crate::eval::Node;
use crate::parser::{self, Expr, Span};
use crate::reader::CondText;

/// How far macro expansion may nest.
const MAX_MACRO_DEPTH: usize = 64;

impl Compiler<'_> {
    /// Parse every macro's condition once.
    pub(super) fn parse_macros(&mut self) {
        for (i, m) in self.col.macros.iter().enumerate() {
            self.macros.insert(&m.name, i);
            match parser::parse(&m.cond.text) {
                Ok(e) => self.macro_asts.push(Some(e)),
                Err(e) => {
                    let (file, mark) = m.cond.position(e.offset);
                    self.diags.push(Diagnostic {
                        severity: Code::ErrCompileCondition.severity(),
                        code: Code::ErrCompileCondition,
                        message: e.message,
                        file: file.to_string(),
                        line: mark.line,
                        col: mark.col,
                        item: Some(ItemRef {
                            kind: "macro",
                            name: m.name.clone(),
                        }),
                    });
                    self.macro_asts.push(None);
                }
            }
        }
    }

    /// Compile a parsed condition (or part of one) whose text is `src`;
    /// `vis` is the visibility of the macro it comes from (`usize::MAX` in a
    /// rule: rules see every macro).
    /// Compile `items`; a result that `split` opens up (a nested node of
    /// the same kind) is spliced in, any other is kept whole.
    fn flatten(
        &mut self,
        items: &[Expr],
        src: &CondText,
        rcx: &mut RuleCx,
        vis: usize,
        split: fn(Node) -> Result<Vec<Node>, Node>,
    ) -> Result<Box<[Node]>, Fail> {
        let mut out = Vec::with_capacity(items.len());
        for i in items {
            match split(self.expr(i, src, rcx, vis)?) {
                Ok(inner) => out.extend(inner),
                Err(n) => out.push(n),
            }
        }
        Ok(out.into_boxed_slice())
    }

    pub(super) fn expr(
        &mut self,
        e: &Expr,
        src: &CondText,
        rcx: &mut RuleCx,
        vis: usize,
    ) -> Result<Node, Fail> {
        Ok(match e {
            // Nested and/or of the same kind are flattened into one node.
            Expr::And(items, _) => Node::And(self.flatten(items, src, rcx, vis, |n| match n {
                Node::And(inner) => Ok(inner.into_vec()),
                n => Err(n),
            })?),
            Expr::Or(items, _) => Node::Or(self.flatten(items, src, rcx, vis, |n| match n {
                Node::Or(inner) => Ok(inner.into_vec()),
                n => Err(n),
            })?),
            Expr::Not(inner, _) => match self.expr(inner, src, rcx, vis)? {
                Node::Not(n) => *n,
                n => Node::Not(Box::new(n)),
            },
            Expr::Macro(name, span) => self.macro_ref(name, *span, src, rcx, vis)?,
            Expr::Check(c) => self.check(c, src, rcx)?,
        })
    }

    /// Expand a macro named in a condition.
    fn macro_ref(
        &mut self,
        name: &str,
        span: Span,
        src: &CondText,
        rcx: &mut RuleCx,
        vis: usize,
    ) -> Result<Node, Fail> {
        let fail = |this: &Self, rcx: &RuleCx, msg: String| {
            this.fail(rcx, src, span, Code::ErrCompileCondition, msg)
        };
        let idx = match self.macros.get(name) {
            Some(&i) if self.col.macros[i].index < vis => i,
            Some(_) => {
                return Err(fail(
                    self,
                    rcx,
                    format!("macro '{name}' is used before it is defined"),
                ))
            }
            None => return Err(fail(self, rcx, format!("undefined macro '{name}'"))),
        };
        if rcx.stack.contains(&idx) {
            return Err(fail(self, rcx, format!("macro '{name}' references itself")));
        }
        if rcx.stack.len() >= MAX_MACRO_DEPTH {
            return Err(fail(
                self,
                rcx,
                format!("macros nested deeper than {MAX_MACRO_DEPTH} levels"),
            ));
        }
        self.macro_used[idx] = true;
        let col = self.col;
        let m = &col.macros[idx];
        let Some(ast) = self.macro_asts[idx].take() else {
            return Err(fail(
                self,
                rcx,
                format!("macro '{name}' has a syntax error (reported at the macro)"),
            ));
        };
        rcx.stack.push(idx);
        let res = self.expr(&ast, &m.cond, rcx, m.visibility);
        rcx.stack.pop();
        self.macro_asts[idx] = Some(ast);
        res
    }

    /// Falco resolves every macro, used or not: a macro whose condition
    /// names a macro that is not defined (or not yet, where it stands) is an
    /// error at the reference. Used macros report this through the rules
    /// that expand them; this covers the unused ones.
    pub(super) fn check_unused_macro_refs(&mut self) {
        let col = self.col;
        for (i, m) in col.macros.iter().enumerate() {
            if self.macro_used[i] {
                continue;
            }
            let Some(ast) = &self.macro_asts[i] else {
                continue;
            };
            let mut refs = Vec::new();
            macro_refs(ast, &mut refs);
            for (name, span) in refs {
                let msg = match self.macros.get(name) {
                    None => format!("undefined macro '{name}'"),
                    Some(&j) if col.macros[j].index >= m.visibility => {
                        format!("macro '{name}' is used before it is defined")
                    }
                    Some(_) => continue,
                };
                let (file, mark) = m.cond.position(span.start);
                self.diags.push(Diagnostic {
                    severity: Code::ErrCompileCondition.severity(),
                    code: Code::ErrCompileCondition,
                    message: msg,
                    file: file.to_string(),
                    line: mark.line,
                    col: mark.col,
                    item: Some(ItemRef {
                        kind: "macro",
                        name: m.name.clone(),
                    }),
                });
            }
        }
    }
}

/// The macro names a condition refers to, with their spans.
fn macro_refs<'e>(e: &'e Expr, out: &mut Vec<(&'e str, Span)>) {
    match e {
        Expr::And(items, _) | Expr::Or(items, _) => {
            for i in items {
                macro_refs(i, out);
            }
        }
        Expr::Not(inner, _) => macro_refs(inner, out),
        Expr::Macro(name, span) => out.push((name, *span)),
        Expr::Check(_) => {}
    }
}
