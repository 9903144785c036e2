//! Falco's parser (yaml-cpp), libyaml and PyYAML accept a flow collection
//! that spans lines with its items, or its closing bracket, at (or left of)
//! the indentation of the key that holds it:
//!
//! ```yaml
//! - list: allowed_users
//!   items: [
//!   root, admin
//! ]
//! ```
//!
//! yaml-rust2 follows the YAML spec strictly and rejects that ("invalid
//! indentation"). Rule files in the wild use it, so when a file fails that
//! way, [`indent_flow_lines`] re-indents such continuation lines just past
//! the key (adding spaces, so the values do not change: inside a flow
//! collection line breaks and indentation fold away) and the reader parses
//! again, mapping every position back to the original columns.
//!
//! The scan is a small line-based tokenizer: it follows quotes, comments,
//! block scalars (`|`, `>`, whose text may hold brackets) and flow depth,
//! and treats `[` / `{` as a collection only where a value starts, so a
//! bracket inside a plain scalar (`proc.aname[2] = x`) is text.

/// Scan state carried from one line to the next.
#[derive(Default)]
struct Scan {
    /// Open `[` / `{` levels.
    depth: usize,
    /// The column past which the open collection's lines must sit.
    open_col: usize,
    /// Inside a quoted scalar spanning lines.
    quote: Option<char>,
    /// Inside a block scalar whose header line was indented this much.
    block: Option<usize>,
}

impl Scan {
    /// Follow one line's tokens (from its first non-blank, `indent`).
    fn line(&mut self, chars: &[char], indent: usize) {
        let mut at_value = self.depth == 0 && self.quote.is_none();
        let mut first = None;
        let mut prev = ' ';
        let mut i = indent;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied().unwrap_or('\n');
            let blank_next = next.is_whitespace();
            if let Some(q) = self.quote {
                if q == '"' && c == '\\' {
                    i += 2;
                    prev = ' ';
                    continue;
                }
                if c == q {
                    if q == '\'' && next == '\'' {
                        i += 2;
                        continue;
                    }
                    self.quote = None;
                }
            } else if c == '#' && prev.is_whitespace() {
                return;
            } else if self.depth > 0 {
                match c {
                    '[' | '{' => self.depth += 1,
                    ']' | '}' => self.depth -= 1,
                    '"' | '\'' if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => {
                        self.quote = Some(c)
                    }
                    _ => {}
                }
            } else if at_value {
                match c {
                    ' ' | '\t' => {}
                    '-' | '?' if blank_next => {}
                    '&' | '!' => {
                        while i + 1 < chars.len() && !chars[i + 1].is_whitespace() {
                            i += 1;
                        }
                    }
                    '[' | '{' => {
                        self.depth = 1;
                        self.open_col = first.unwrap_or(i);
                        at_value = false;
                    }
                    '"' | '\'' => {
                        self.quote = Some(c);
                        at_value = false;
                    }
                    '|' | '>' => {
                        self.block = Some(indent);
                        return;
                    }
                    _ => at_value = false,
                }
                if !matches!(c, ' ' | '\t' | '-' | '?') {
                    first.get_or_insert(i);
                }
            } else if c == ':' && blank_next {
                at_value = true;
            }
            prev = c;
            i += 1;
        }
    }
}

/// `text` with continuation lines of multi-line flow collections indented
/// past the key that opened them, and the spaces added per line (0-based);
/// `None` when no line needed it.
pub(crate) fn indent_flow_lines(text: &str) -> Option<(String, Vec<u32>)> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut shifts = Vec::new();
    let mut st = Scan::default();
    for line in text.split_inclusive('\n') {
        let chars: Vec<char> = line.chars().collect();
        let indent = chars.iter().take_while(|&&c| c == ' ').count();
        let blank = line.trim().is_empty();
        if let Some(b) = st.block {
            if blank || indent > b {
                out.push_str(line);
                shifts.push(0);
                continue;
            }
            st.block = None;
        }
        let shift = if st.depth > 0 && st.quote.is_none() && !blank && indent <= st.open_col {
            st.open_col + 1 - indent
        } else {
            0
        };
        out.extend(std::iter::repeat_n(' ', shift));
        out.push_str(line);
        shifts.push(shift as u32);
        st.line(&chars, indent);
    }
    shifts.iter().any(|&s| s > 0).then_some((out, shifts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_move_past_the_key_only_inside_flows() {
        let text = "- list: a\n  items: [\n  x, y\n]\n- rule: r\n  condition: >\n    proc.aname[2] = x and [\n  desc: \"[\"\n  tags: [a,\n    b]\n";
        let (out, shifts) = indent_flow_lines(text).unwrap();
        assert_eq!(shifts, vec![0, 0, 1, 3, 0, 0, 0, 0, 0, 0]);
        assert!(out.contains("\n   x, y\n   ]\n"), "{out}");
        assert!(indent_flow_lines("a: [1,\n    2]\nb: '['\nc: x[1]\n").is_none());
    }
}
