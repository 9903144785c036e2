//! Stage 3: the condition language → an AST whose every node carries its
//! byte span in the condition text.
//!
//! The language is Falco's filter syntax. Grammar (EBNF; `'x'` is a literal,
//! keywords must end at a non-identifier character):
//!
//! ```text
//! Expr        ::= OrExpr
//! OrExpr      ::= AndExpr ( 'or' AndExpr )*
//! AndExpr     ::= NotExpr ( 'and' NotExpr )*
//! NotExpr     ::= 'not' NotExpr | Check            -- `not` binds tighter than `and`
//! Check       ::= '(' Expr ')'
//!               | Operand Condition
//!               | Identifier                         -- a macro reference
//! Operand     ::= Transformer '(' Operand ')' | Field
//! Transformer ::= 'tolower' | 'toupper' | 'b64' | 'basename' | 'len'
//! Field       ::= FieldName ( '[' FieldArg ']' )?
//! Condition   ::= 'exists'
//!               | CmpOp  ( Value | RhsOperand )
//!               | ListOp ( List  | Identifier | RhsOperand )
//! RhsOperand  ::= 'val' '(' Field ')' | Transformer '(' Operand ')'
//! CmpOp       ::= '=' | '==' | '!=' | '<' | '<=' | '>' | '>='
//!               | 'contains' | 'icontains' | 'bcontains' | 'startswith'
//!               | 'bstartswith' | 'endswith' | 'glob' | 'iglob' | 'regex'
//! ListOp      ::= 'in' | 'intersects' | 'pmatch'
//! List        ::= '(' ( Value ( ',' Value )* )? ')'
//! Value       ::= QuotedStr | BareStr
//!
//! Identifier  ::= [a-zA-Z_][a-zA-Z0-9_]*
//! FieldName   ::= Identifier ( '.' [a-zA-Z0-9_]+ )+
//! FieldArg    ::= QuotedStr | [^ \t\r\n\[\]"']+
//! QuotedStr   ::= '"' ( '\"' | [^"] )* '"' | "'" ( "\'" | [^'] )* "'"
//! BareStr     ::= [^ \t\r\n\f\v(),="']+
//! ```
//!
//! It is a recursive-descent parser; recursion (parentheses, `not`, nested
//! transformers) is capped at [`MAX_DEPTH`] so a hostile rule file cannot
//! overflow the stack. Values stay strings here: their meaning (number, IP,
//! CIDR, list reference) depends on the field and is decided by the compiler.
//!
//! The syntax tree is in `ast`, the token reader in `lexer`; this module is
//! the recursive descent, one method per grammar rule.

mod ast;
mod lexer;

pub use ast::{Check, Expr, FieldRef, Op, Operand, ParseError, Rhs, Span, Transformer, Value};

use lexer::{is_blank, is_ident_char, Parser};

/// Maximum nesting depth of parentheses / `not` / transformers.
pub const MAX_DEPTH: u32 = 200;

/// Parse a whole condition.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser::new(input);
    p.skip_blank();
    if p.at_end() {
        return Err(p.err("empty condition"));
    }
    let e = p.parse_or()?;
    p.skip_blank();
    if !p.at_end() {
        return Err(p.err(format!("unexpected '{}'", p.snippet())));
    }
    Ok(e)
}

/// Parse a lone operand (`proc.aname[2]`, `tolower(proc.name)`), as found in
/// exception `fields`.
pub fn parse_operand(input: &str) -> Result<Operand, ParseError> {
    let mut p = Parser::new(input);
    let o = p.parse_operand()?;
    p.skip_blank();
    if !p.at_end() {
        return Err(p.err(format!("unexpected '{}' after the field", p.snippet())));
    }
    Ok(o)
}

impl Parser<'_> {
    fn parse_or(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let start = self.pos;
        let mut items = vec![self.parse_and()?];
        let mut end = self.pos;
        loop {
            self.skip_blank();
            if self.at_keyword("or") {
                self.pos += 2;
                items.push(self.parse_and()?);
                end = self.pos;
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::Or(Vec::new(), Span::default()))
        } else {
            Expr::Or(items, Span::new(start, end))
        })
    }

    fn parse_and(&mut self) -> Result<Expr, ParseError> {
        self.skip_blank();
        let start = self.pos;
        let mut items = vec![self.parse_not()?];
        let mut end = self.pos;
        loop {
            self.skip_blank();
            if self.at_keyword("and") {
                self.pos += 3;
                items.push(self.parse_not()?);
                end = self.pos;
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items
                .pop()
                .unwrap_or(Expr::And(Vec::new(), Span::default()))
        } else {
            Expr::And(items, Span::new(start, end))
        })
    }

    fn parse_not(&mut self) -> Result<Expr, ParseError> {
        self.skip_blank();
        let mut starts = Vec::new();
        while self.at_keyword("not") {
            starts.push(self.pos);
            self.pos += 3;
            self.skip_blank();
            if starts.len() as u32 > MAX_DEPTH {
                return Err(self.err(format!("expression nesting exceeds {MAX_DEPTH} levels")));
            }
        }
        let mut e = self.parse_check()?;
        let end = self.pos;
        while let Some(s) = starts.pop() {
            e = Expr::Not(Box::new(e), Span::new(s, end));
        }
        Ok(e)
    }

    fn parse_check(&mut self) -> Result<Expr, ParseError> {
        self.skip_blank();
        let start = self.pos;
        match self.peek() {
            None => return Err(self.err("unexpected end of condition")),
            Some(b'(') => {
                self.pos += 1;
                let e = self.parse_or()?;
                self.skip_blank();
                if self.peek() != Some(b')') {
                    return Err(if self.at_end() {
                        ParseError {
                            message: "unbalanced parenthesis: '(' is never closed".into(),
                            offset: start,
                        }
                    } else {
                        self.err(format!("expected ')' but found '{}'", self.snippet()))
                    });
                }
                self.pos += 1;
                return Ok(e);
            }
            Some(b')') => return Err(self.err("unbalanced parenthesis: unexpected ')'")),
            _ => {}
        }
        let Some(word) = self.lex_ident() else {
            return Err(self.err(format!(
                "expected a field, a macro name or '(' but found '{}'",
                self.snippet()
            )));
        };
        if matches!(word, "and" | "or" | "not") {
            self.pos = start;
            return Err(self.err(format!("unexpected keyword '{word}'")));
        }
        let lhs = if self.peek() == Some(b'(') && Transformer::from_name(word).is_some() {
            self.pos = start;
            self.parse_operand()?
        } else if self.peek() == Some(b'.') {
            self.pos = start;
            Operand::Field(self.parse_field()?)
        } else {
            return Ok(Expr::Macro(word.to_string(), Span::new(start, self.pos)));
        };
        self.parse_condition(lhs, start)
    }

    /// `Transformer '(' Operand ')' | Field`
    fn parse_operand(&mut self) -> Result<Operand, ParseError> {
        self.skip_blank();
        let start = self.pos;
        let Some(word) = self.lex_ident() else {
            return Err(self.err("expected a field or a transformer"));
        };
        if self.peek() == Some(b'(') {
            let Some(t) = Transformer::from_name(word) else {
                self.pos = start;
                return Err(self.err(format!("unknown transformer '{word}'")));
            };
            self.pos += 1;
            self.enter()?;
            let inner = self.parse_operand()?;
            self.depth -= 1;
            self.skip_blank();
            if self.peek() != Some(b')') {
                return Err(self.err(format!("expected ')' after {word}(...")));
            }
            self.pos += 1;
            return Ok(Operand::Transform(
                t,
                Box::new(inner),
                Span::new(start, self.pos),
            ));
        }
        self.pos = start;
        Ok(Operand::Field(self.parse_field()?))
    }

    fn parse_field(&mut self) -> Result<FieldRef, ParseError> {
        let start = self.pos;
        let b = self.bytes();
        if self.lex_ident().is_none() {
            return Err(self.err("expected a field name"));
        }
        let mut segments = 1;
        while self.peek() == Some(b'.') && b.get(self.pos + 1).is_some_and(|&c| is_ident_char(c)) {
            self.pos += 1;
            while self.peek().is_some_and(is_ident_char) {
                self.pos += 1;
            }
            segments += 1;
        }
        if segments < 2 {
            self.pos = start;
            return Err(self.err("expected a field name (class.field)"));
        }
        let name = self.s[start..self.pos].to_string();
        let mut arg = None;
        if self.peek() == Some(b'[') {
            self.pos += 1;
            let a = if matches!(self.peek(), Some(b'"') | Some(b'\'')) {
                self.lex_quoted()?
            } else {
                let s = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !is_blank(c) && !matches!(c, b'[' | b']' | b'"' | b'\''))
                {
                    self.pos += 1;
                }
                if s == self.pos {
                    return Err(self.err("empty field argument"));
                }
                self.s[s..self.pos].to_string()
            };
            if self.peek() != Some(b']') {
                return Err(self.err("expected ']' to close the field argument"));
            }
            self.pos += 1;
            arg = Some(a);
        }
        Ok(FieldRef {
            name,
            arg,
            span: Span::new(start, self.pos),
        })
    }

    fn parse_condition(&mut self, lhs: Operand, start: usize) -> Result<Expr, ParseError> {
        self.skip_blank();
        let op_start = self.pos;
        let Some(op) = self.lex_op() else {
            return Err(self.err(format!(
                "expected an operator after '{}' but found '{}'",
                lhs.field(),
                self.snippet()
            )));
        };
        let op_span = Span::new(op_start, self.pos);
        let rhs = if op == Op::Exists {
            Rhs::None
        } else {
            self.skip_blank();
            if let Some(o) = self.try_rhs_operand()? {
                Rhs::Operand(o)
            } else if op.is_list_op() {
                if self.peek() == Some(b'(') {
                    self.parse_list()?
                } else {
                    let s = self.pos;
                    match self.lex_ident() {
                        Some(name) => Rhs::List(
                            vec![Value {
                                text: name.to_string(),
                                quoted: false,
                                span: Span::new(s, self.pos),
                            }],
                            Span::new(s, self.pos),
                        ),
                        None => {
                            return Err(self.err(format!(
                                "expected a list '(...)' or a list name after '{}'",
                                op.as_str()
                            )))
                        }
                    }
                }
            } else {
                Rhs::Value(self.parse_value()?)
            }
        };
        Ok(Expr::Check(Box::new(Check {
            lhs,
            op,
            op_span,
            rhs,
            span: Span::new(start, self.pos),
        })))
    }

    /// `val(field)` or `transformer(...)` on the right side, if present.
    fn try_rhs_operand(&mut self) -> Result<Option<Operand>, ParseError> {
        let save = self.pos;
        let Some(word) = self.lex_ident() else {
            return Ok(None);
        };
        if self.peek() != Some(b'(') {
            self.pos = save;
            return Ok(None);
        }
        if word == "val" {
            self.pos += 1;
            self.skip_blank();
            let f = self.parse_field()?;
            self.skip_blank();
            if self.peek() != Some(b')') {
                return Err(self.err("expected ')' to close val("));
            }
            self.pos += 1;
            return Ok(Some(Operand::Field(f)));
        }
        if Transformer::from_name(word).is_some() {
            self.pos = save;
            return Ok(Some(self.parse_operand()?));
        }
        self.pos = save;
        Ok(None)
    }

    fn parse_list(&mut self) -> Result<Rhs, ParseError> {
        let start = self.pos;
        self.pos += 1; // '('
        let mut items = Vec::new();
        self.skip_blank();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(Rhs::List(items, Span::new(start, self.pos)));
        }
        loop {
            self.skip_blank();
            items.push(self.parse_value()?);
            self.skip_blank();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Rhs::List(items, Span::new(start, self.pos)));
                }
                None => {
                    return Err(ParseError {
                        message: "unbalanced parenthesis: list '(' is never closed".into(),
                        offset: start,
                    })
                }
                _ => {
                    return Err(self.err(format!(
                        "expected ',' or ')' in list but found '{}'",
                        self.snippet()
                    )))
                }
            }
        }
    }

    fn parse_value(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'"') | Some(b'\'')) {
            let text = self.lex_quoted()?;
            return Ok(Value {
                text,
                quoted: true,
                span: Span::new(start, self.pos),
            });
        }
        while self
            .peek()
            .is_some_and(|c| !is_blank(c) && !matches!(c, b'(' | b')' | b',' | b'=' | b'"' | b'\''))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err(format!("expected a value but found '{}'", self.snippet())));
        }
        Ok(Value {
            text: self.s[start..self.pos].to_string(),
            quoted: false,
            span: Span::new(start, self.pos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: &Expr) -> &Check {
        match e {
            Expr::Check(c) => c,
            other => panic!("not a check: {other:?}"),
        }
    }

    #[test]
    fn every_operator_parses_with_positions() {
        let ops = [
            ("=", Op::Eq),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            ("<=", Op::Le),
            (">", Op::Gt),
            (">=", Op::Ge),
            ("contains", Op::Contains),
            ("icontains", Op::IContains),
            ("bcontains", Op::BContains),
            ("startswith", Op::StartsWith),
            ("bstartswith", Op::BStartsWith),
            ("endswith", Op::EndsWith),
            ("glob", Op::Glob),
            ("iglob", Op::IGlob),
            ("regex", Op::Regex),
        ];
        for (text, op) in ops {
            let cond = format!("  proc.name {text} abc");
            let e = parse(&cond).unwrap();
            let c = check(&e);
            assert_eq!(c.op, op, "{text}");
            assert_eq!(c.span, Span::new(2, cond.len()), "{text}");
            assert_eq!(c.lhs.span(), Span::new(2, 11), "{text}");
            assert_eq!(c.op_span, Span::new(12, 12 + text.len()), "{text}");
            let Rhs::Value(v) = &c.rhs else { panic!() };
            assert_eq!(v.text, "abc");
            assert_eq!(v.span, Span::new(13 + text.len(), cond.len()));
        }
        for (text, op) in [
            ("in", Op::In),
            ("intersects", Op::Intersects),
            ("pmatch", Op::PMatch),
        ] {
            let cond = format!("fd.name {text} (/a, \"b c\")");
            let e = parse(&cond).unwrap();
            let c = check(&e);
            assert_eq!(c.op, op);
            let Rhs::List(items, span) = &c.rhs else {
                panic!()
            };
            assert_eq!(span.start, 9 + text.len());
            assert_eq!(items[0].text, "/a");
            assert_eq!(items[1].text, "b c");
            assert!(items[1].quoted);
        }
        let e = parse("fd.name exists").unwrap();
        assert_eq!(check(&e).op, Op::Exists);
        assert_eq!(check(&e).rhs, Rhs::None);
    }

    #[test]
    fn precedence_not_and_or() {
        // a and not b or c  ==  (a and (not b)) or c
        let e = parse("m_a and not m_b or m_c").unwrap();
        let Expr::Or(items, span) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(*span, Span::new(0, 22));
        let Expr::And(and, aspan) = &items[0] else {
            panic!()
        };
        assert_eq!(*aspan, Span::new(0, 15));
        assert!(
            matches!(&and[1], Expr::Not(inner, s) if matches!(**inner, Expr::Macro(ref n, _) if n == "m_b") && *s == Span::new(8, 15))
        );
        assert!(matches!(&items[1], Expr::Macro(n, s) if n == "m_c" && *s == Span::new(19, 22)));
        // parentheses override
        let e = parse("m_a and (m_b or m_c)").unwrap();
        assert!(matches!(&e, Expr::And(v, _) if matches!(v[1], Expr::Or(..))));
        // not(…) without a blank
        let e = parse("not(m_a)").unwrap();
        assert!(matches!(e, Expr::Not(..)));
        let e = parse("not not m_a").unwrap();
        assert!(matches!(e, Expr::Not(ref i, _) if matches!(**i, Expr::Not(..))));
    }

    #[test]
    fn fields_args_and_transformers() {
        let e = parse("proc.aname[2] = sshd").unwrap();
        let f = check(&e).lhs.field();
        assert_eq!(f.name, "proc.aname");
        assert_eq!(f.arg.as_deref(), Some("2"));
        let e = parse("evt.arg.flags contains O_TRUNC").unwrap();
        assert_eq!(check(&e).lhs.field().name, "evt.arg.flags");
        let e = parse("tolower(basename(proc.exe)) = bash").unwrap();
        let c = check(&e);
        assert!(
            matches!(&c.lhs, Operand::Transform(Transformer::ToLower, inner, s)
            if matches!(**inner, Operand::Transform(Transformer::Basename, _, _)) && *s == Span::new(0, 27))
        );
        let e = parse("proc.name = val(proc.pname)").unwrap();
        assert!(
            matches!(&check(&e).rhs, Rhs::Operand(Operand::Field(f)) if f.name == "proc.pname")
        );
        let e = parse("proc.name in shell_binaries").unwrap();
        assert!(matches!(&check(&e).rhs, Rhs::List(v, _) if v[0].text == "shell_binaries"));
        let e = parse("len(proc.args) > 3").unwrap();
        assert!(matches!(
            check(&e).lhs,
            Operand::Transform(Transformer::Len, _, _)
        ));
    }

    #[test]
    fn errors_have_offsets() {
        let err = parse("(proc.name = a").unwrap_err();
        assert!(err.message.contains("unbalanced"), "{err:?}");
        assert_eq!(err.offset, 0);
        let err = parse("proc.name = a)").unwrap_err();
        assert_eq!(err.offset, 13);
        let err = parse("proc.name bogus x").unwrap_err();
        assert!(err.message.contains("expected an operator"));
        assert_eq!(err.offset, 10);
        let err = parse("proc.name in (a, b").unwrap_err();
        assert!(err.message.contains("never closed"));
        assert!(parse("").is_err());
        assert!(parse("a and").is_err());
        assert!(parse("and a").is_err());
        assert!(parse("proc.name = 'x").is_err());
    }

    #[test]
    fn depth_is_capped() {
        let deep = format!("{}m{}", "(".repeat(10_000), ")".repeat(10_000));
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("nesting"));
        let nots = format!("{}m", "not ".repeat(10_000));
        assert!(parse(&nots).is_err());
        let tr = format!(
            "{}proc.name{} = a",
            "tolower(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(parse(&tr).is_err());
    }
}
