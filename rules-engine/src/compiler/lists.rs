//! Lists: each list's items with earlier lists it names expanded (honouring
//! visibility), and the expansion of list names inside a condition's value
//! list (`in (shell_binaries, bash)`). Also tracks which lists are used, for
//! the "unused list" warning.

use super::bounds::{self, Size, MAX_LIST};
use super::Compiler;
use crate::diag::Code;
use crate::parser::{Span, Value};

/// A list with the lists it names expanded, and its expanded size.
pub(super) struct ListEntry {
    /// The list's position in definition order (for visibility).
    pub index: usize,
    pub items: Vec<String>,
    pub size: Size,
}

fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

impl Compiler<'_> {
    /// Expand every list's items once, in definition order. A list that
    /// would grow past [`MAX_LIST`], or lists together past the load's total,
    /// is an error at that list (it is left empty, so nothing downstream
    /// copies it).
    pub(super) fn compile_lists(&mut self) {
        let col = self.col;
        let total_limit = bounds::total_limit(col.input_bytes);
        let mut total = Size::default();
        for l in &col.lists {
            let mut items = Vec::new();
            let mut size = Size::default();
            let mut over = None;
            for it in &l.items {
                let add = match self.lists.get(it.as_str()) {
                    Some(sub) if sub.index < l.visibility => sub.size,
                    _ => Size::value(unquote(it).len()),
                };
                size = size.add(add);
                if size.over(MAX_LIST) {
                    over = Some(format!(
                        "list '{}' expands to more than {}",
                        l.name,
                        bounds::describe(MAX_LIST)
                    ));
                    break;
                }
                if total.add(size).over(total_limit) {
                    over = Some(format!(
                        "list '{}' takes the lists of this load past {} in all",
                        l.name,
                        bounds::describe(total_limit)
                    ));
                    break;
                }
                match self.lists.get(it.as_str()) {
                    Some(sub) if sub.index < l.visibility => {
                        items.extend(sub.items.iter().cloned());
                        self.list_used.insert(it.as_str(), true);
                    }
                    _ => items.push(unquote(it).to_string()),
                }
            }
            if let Some(msg) = over {
                self.diags.push(super::item_diag(
                    "list",
                    &l.name,
                    &l.ctx.file.name,
                    l.ctx.mark,
                    Code::ErrValidate,
                    msg,
                ));
                items = Vec::new();
                size = Size::default();
            }
            total = total.add(size);
            let entry = ListEntry {
                index: l.index,
                items,
                size,
            };
            self.lists.insert(&l.name, entry);
            self.list_used.entry(&l.name).or_insert(false);
        }
    }

    /// Expand unquoted list names inside a value list.
    pub(super) fn expand(&mut self, items: &[Value]) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for v in items {
            if !v.quoted {
                if let Some(ListEntry { items: list, .. }) = self.lists.get(v.text.as_str()) {
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
