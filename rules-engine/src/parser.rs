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

use std::fmt;

/// Maximum nesting depth of parentheses / `not` / transformers.
pub const MAX_DEPTH: u32 = 200;

/// Byte range in the condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>, Span),
    Or(Vec<Expr>, Span),
    Not(Box<Expr>, Span),
    Macro(String, Span),
    Check(Box<Check>),
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::And(_, s) | Expr::Or(_, s) | Expr::Not(_, s) | Expr::Macro(_, s) => *s,
            Expr::Check(c) => c.span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub lhs: Operand,
    pub op: Op,
    pub op_span: Span,
    pub rhs: Rhs,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    pub name: String,
    pub arg: Option<String>,
    pub span: Span,
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.arg {
            Some(a) => write!(f, "{}[{}]", self.name, a),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transformer {
    ToLower,
    ToUpper,
    B64,
    Basename,
    Len,
}

impl Transformer {
    pub fn from_name(s: &str) -> Option<Transformer> {
        Some(match s {
            "tolower" => Transformer::ToLower,
            "toupper" => Transformer::ToUpper,
            "b64" => Transformer::B64,
            "basename" => Transformer::Basename,
            "len" => Transformer::Len,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(FieldRef),
    Transform(Transformer, Box<Operand>, Span),
}

impl Operand {
    pub fn span(&self) -> Span {
        match self {
            Operand::Field(f) => f.span,
            Operand::Transform(_, _, s) => *s,
        }
    }

    /// The field at the bottom of a transformer chain.
    pub fn field(&self) -> &FieldRef {
        match self {
            Operand::Field(f) => f,
            Operand::Transform(_, inner, _) => inner.field(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    None,
    Value(Value),
    List(Vec<Value>, Span),
    Operand(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    In,
    Intersects,
    PMatch,
    Exists,
}

impl Op {
    pub fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::PMatch,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Operators whose right side is a list.
    pub fn is_list_op(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    /// Parse an operator as written in an exception's `comps`.
    pub fn from_comp(s: &str) -> Option<Op> {
        Some(match s {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            w => return Op::from_word(w),
        })
    }
}

/// A syntax error at a byte offset of the condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub offset: usize,
}

/// Parse a whole condition.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: input,
        pos: 0,
        depth: 0,
    };
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
    let mut p = Parser {
        s: input,
        pos: 0,
        depth: 0,
    };
    let o = p.parse_operand()?;
    p.skip_blank();
    if !p.at_end() {
        return Err(p.err(format!("unexpected '{}' after the field", p.snippet())));
    }
    Ok(o)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    depth: u32,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x08)
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            message: msg.into(),
            offset: self.pos,
        }
    }

    fn snippet(&self) -> String {
        let rest = &self.s[self.pos..];
        let end = rest
            .char_indices()
            .nth(20)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let mut out = rest[..end].replace('\n', " ");
        if end < rest.len() {
            out.push('…');
        }
        out
    }

    fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            if is_blank(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("expression nesting exceeds {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Is the keyword `kw` at the cursor (followed by a non-identifier char)?
    fn at_keyword(&self, kw: &str) -> bool {
        let b = self.bytes();
        b[self.pos..].starts_with(kw.as_bytes())
            && b.get(self.pos + kw.len())
                .is_none_or(|&c| !is_ident_char(c) && c != b'.')
    }

    fn lex_ident(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        let start = self.pos;
        if !b.get(start).is_some_and(|&c| is_ident_start(c)) {
            return None;
        }
        let mut end = start + 1;
        while b.get(end).is_some_and(|&c| is_ident_char(c)) {
            end += 1;
        }
        self.pos = end;
        Some(&self.s[start..end])
    }

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

    fn lex_op(&mut self) -> Option<Op> {
        let b = self.bytes();
        let rest = &b[self.pos..];
        let sym = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("=", Op::Eq),
        ];
        for (t, op) in sym {
            if rest.starts_with(t.as_bytes()) {
                self.pos += t.len();
                return Some(op);
            }
        }
        let save = self.pos;
        if let Some(w) = self.lex_ident() {
            if let Some(op) = Op::from_word(w) {
                return Some(op);
            }
        }
        self.pos = save;
        None
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

    /// A quoted string; `\<quote>` and `\\` are unescaped, other backslashes kept
    /// (so regexes like `"\d+"` survive).
    fn lex_quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let quote = self.bytes()[self.pos];
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c as u32 == quote as u32 {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, n)) if n as u32 == quote as u32 || n == '\\' => out.push(n),
                    Some((_, n)) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err(ParseError {
            message: "unterminated quoted string".into(),
            offset: start,
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
    fn keywords_need_word_boundaries() {
        // `android` and `order` are macro names, not `and`/`or`.
        let e = parse("android or order").unwrap();
        assert!(matches!(&e, Expr::Or(v, _) if v.len() == 2));
        let e = parse("notable").unwrap();
        assert!(matches!(e, Expr::Macro(ref n, _) if n == "notable"));
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

    #[test]
    fn quoted_escapes() {
        let e = parse(r#"proc.cmdline regex "a\"b\d""#).unwrap();
        let Rhs::Value(v) = &check(&e).rhs else {
            panic!()
        };
        assert_eq!(v.text, r#"a"b\d"#);
    }
}
