//! The stateful rules' memory across the engine: counters, reset, and the
//! carry-over of state to a reloaded rule set for rules that did not change.

use super::{eval, output, Engine, Machine, StateStats};

/// A stable fingerprint of a stateful rule's compiled parts. The `Debug`
/// forms are deterministic (the matchers' sets use a fixed hasher) and
/// `DefaultHasher::new()` has fixed keys.
pub(super) fn definition_hash(
    node: &eval::Node,
    spec: &crate::stateful::Spec,
    out: &output::OutputFormat,
    mask: eval::TypeMask,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{node:?}|{spec:?}|{out:?}|{mask}").hash(&mut h);
    h.finish()
}

impl Engine {
    /// Counters of every stateful rule (keys, evictions, alerts, ...).
    pub fn state_stats(&self) -> Vec<StateStats> {
        self.rules
            .iter()
            .filter_map(|r| r.state.as_ref().map(Machine::stats))
            .collect()
    }

    /// Take over the memory of `old`'s stateful rules whose definition did
    /// not change (same name, same compiled condition, steps, window, key and
    /// output), for a reload with no lost state. `old`'s machines are moved,
    /// not copied: the caller swaps `self` in and drops `old`. Returns how
    /// many rules kept their state.
    pub fn carry_state_from(&mut self, old: &mut Engine) -> usize {
        let mut carried = 0;
        for r in self.rules.iter_mut().filter(|r| r.state.is_some()) {
            let same = old
                .rules
                .iter_mut()
                .find(|o| o.name == r.name && o.state.is_some() && o.definition == r.definition);
            if let Some(o) = same {
                r.state = o.state.take();
                carried += 1;
            }
        }
        carried
    }

    /// Forget what the stateful rules remember (between independent tests).
    pub fn reset_state(&self) {
        for r in &self.rules {
            if let Some(m) = &r.state {
                m.reset();
            }
        }
    }
}
