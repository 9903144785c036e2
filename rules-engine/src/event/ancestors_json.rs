//! Ancestor chains serialised once per chain, not once per event.
//!
//! Every event of a process shares its chain (one `Arc`) until something in
//! it changes, and a chain can be kilobytes of escaped argv (a container
//! shim's, an agent's): written out for each of a busy process's events it
//! was the largest cost of `capture --json`. The last few chains' JSON is
//! kept per thread, keyed by the `Arc` (held, so a pointer is never reused
//! while cached). Other serializers get the plain derived form.

use std::{cell::RefCell, sync::Arc};

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::Ancestor;

const SLOTS: usize = 16;

type Cache = Vec<(Arc<Vec<Ancestor>>, Box<RawValue>)>;

thread_local! {
    static CACHE: RefCell<(Cache, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

pub(super) fn serialize<S: Serializer>(a: &Arc<Vec<Ancestor>>, s: S) -> Result<S::Ok, S::Error> {
    // `RawValue` is only meaningful to serde_json's own serializers.
    if std::any::type_name::<S>().contains("serde_json::") {
        return CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let (slots, next) = &mut *c;
            if let Some((_, raw)) = slots.iter().find(|(k, _)| Arc::ptr_eq(k, a)) {
                return raw.serialize(s);
            }
            let raw = serde_json::value::to_raw_value(&**a).map_err(serde::ser::Error::custom)?;
            let out = raw.serialize(s);
            if slots.len() < SLOTS {
                slots.push((a.clone(), raw));
            } else {
                slots[*next] = (a.clone(), raw);
                *next = (*next + 1) % SLOTS;
            }
            out
        });
    }
    a.serialize(s)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::event::{Ancestor, Event, EvtType, Process};

    /// The cached chain JSON is exactly the derived form, for every chain,
    /// shared or not, through both serde_json writers and `to_value`.
    #[test]
    fn ancestor_chains_serialise_the_same_cached_or_not() {
        let chain = |n: u32, arg: &str| {
            Arc::new(
                (0..3)
                    .map(|i| Ancestor {
                        pid: n + i,
                        name: format!("p{i}"),
                        exepath: "/bin/x".into(),
                        argv: vec!["x".into(), format!("{arg} \"quoted\" \u{1b}[31m\n{i}")],
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let event = |a: &Arc<Vec<Ancestor>>| {
            let proc = Process {
                pid: 7,
                ancestors: a.clone(),
                ..Default::default()
            };
            Event::new(1, EvtType::Openat, 3, proc)
        };
        let expected = |a: &Arc<Vec<Ancestor>>| {
            let mut v = serde_json::to_value(event(&Arc::new(Vec::new()))).unwrap();
            v["proc"]["ancestors"] = serde_json::to_value(&**a).unwrap();
            v
        };
        // More chains than cache slots, each written several times, in turns.
        let chains: Vec<_> = (0..40).map(|n| chain(n * 10, &format!("arg{n}"))).collect();
        for round in 0..3 {
            for (i, a) in chains.iter().enumerate() {
                let text = serde_json::to_string(&event(a)).unwrap();
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(parsed, expected(a), "chain {i}, round {round}");
                let pretty = serde_json::to_string_pretty(&event(a)).unwrap();
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
                    expected(a)
                );
                assert_eq!(serde_json::to_value(event(a)).unwrap(), expected(a));
                let back: Event = serde_json::from_str(&text).unwrap();
                assert_eq!(*back.proc.ancestors, **a);
            }
        }
        // A changed chain (a new Arc) is never answered from the cache.
        let a = chain(1, "old");
        let first = serde_json::to_string(&event(&a)).unwrap();
        drop(a);
        let b = chain(1, "new");
        let second = serde_json::to_string(&event(&b)).unwrap();
        assert!(first.contains("old") && second.contains("new") && !second.contains("old"));
    }
}
