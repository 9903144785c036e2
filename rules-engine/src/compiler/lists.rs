//! Lists: each list's items with earlier lists it names expanded (honouring
//! visibility), and the expansion of list names inside a condition's value
//! list (`in (shell_binaries, bash)`). Also tracks which lists are used, for
//! the "unused list" warning.

use super::Compiler;
use crate::parser::{Span, Value};

fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

impl Compiler<'_> {
    /// Expand every list's items once, in definition order.
    pub(super) fn compile_lists(&mut self) {
        let col = self.col;
        for l in &col.lists {
            let mut items = Vec::new();
            for it in &l.items {
                match self.lists.get(it.as_str()) {
                    Some((idx, sub)) if *idx < l.visibility => {
                        items.extend(sub.iter().cloned());
                        self.list_used.insert(it.as_str(), true);
                    }
                    _ => items.push(unquote(it).to_string()),
                }
            }
            self.lists.insert(&l.name, (l.index, items));
            self.list_used.entry(&l.name).or_insert(false);
        }
    }

    /// Expand unquoted list names inside a value list.
    pub(super) fn expand(&mut self, items: &[Value]) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for v in items {
            if !v.quoted {
                if let Some((_, list)) = self.lists.get(v.text.as_str()) {
                    if let Some(u) = self.list_used.get_mut(v.text.as_str()) {
                        *u = true;
                    }
                    out.extend(list.iter().map(|s| (s.clone(), v.span)));
                    continue;
                }
            }
            out.push((v.text.clone(), v.span));
        }
        out
    }
}
