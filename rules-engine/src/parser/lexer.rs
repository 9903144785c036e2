//! The lexer: a byte cursor over the condition text and the tokens read at
//! it (identifiers, keywords at a word boundary, operators, quoted strings),
//! with the error and depth bookkeeping the recursive descent shares.

use super::{Op, ParseError, MAX_DEPTH};

/// The parser state: the text, the cursor, and the current nesting depth.
pub(super) struct Parser<'a> {
    pub(super) s: &'a str,
    pub(super) pos: usize,
    pub(super) depth: u32,
}

pub(super) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

pub(super) fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

pub(super) fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x08)
}

impl<'a> Parser<'a> {
    pub(super) fn new(s: &'a str) -> Parser<'a> {
        Parser {
            s,
            pos: 0,
            depth: 0,
        }
    }

    pub(super) fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    pub(super) fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            message: msg.into(),
            offset: self.pos,
        }
    }

    pub(super) fn snippet(&self) -> String {
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

    pub(super) fn skip_blank(&mut self) {
        while let Some(c) = self.peek() {
            if is_blank(c) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    pub(super) fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("expression nesting exceeds {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Is the keyword `kw` at the cursor (followed by a non-identifier char)?
    pub(super) fn at_keyword(&self, kw: &str) -> bool {
        let b = self.bytes();
        b[self.pos..].starts_with(kw.as_bytes())
            && b.get(self.pos + kw.len())
                .is_none_or(|&c| !is_ident_char(c) && c != b'.')
    }

    pub(super) fn lex_ident(&mut self) -> Option<&'a str> {
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

    pub(super) fn lex_op(&mut self) -> Option<Op> {
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

    /// A quoted string; `\<quote>` and `\\` are unescaped, other backslashes kept
    /// (so regexes like `"\d+"` survive).
    pub(super) fn lex_quoted(&mut self) -> Result<String, ParseError> {
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
    use crate::parser::{parse, Expr, Rhs};

    #[test]
    fn keywords_need_word_boundaries() {
        // `android` and `order` are macro names, not `and`/`or`.
        let e = parse("android or order").unwrap();
        assert!(matches!(&e, Expr::Or(v, _) if v.len() == 2));
        let e = parse("notable").unwrap();
        assert!(matches!(e, Expr::Macro(ref n, _) if n == "notable"));
    }

    #[test]
    fn quoted_escapes() {
        let e = parse(r#"proc.cmdline regex "a\"b\d""#).unwrap();
        let Expr::Check(c) = &e else { panic!() };
        let Rhs::Value(v) = &c.rhs else { panic!() };
        assert_eq!(v.text, r#"a"b\d"#);
    }
}
