//! The detection stage of `mamori run`: an event in, its alerts out.
//!
//! Rule alerts come from the rules crate's [`Engine`]; this stage adds the
//! alerts about mamori itself, so a gap in coverage is as visible as a
//! detection: a `drop` event (kernel losses) becomes `mamori internal:
//! kernel event drop`, and stateful-rule keys evicted while their window was
//! open become `mamori internal: stateful rule state evicted` (at most one a
//! minute). Every internal alert is built by [`Alert::internal`].

pub mod rule_files;

use std::time::{Duration, Instant};

use mamori_rules::{
    alert::{Alert, Priority},
    event::Event,
    Engine, StateStats,
};

/// Rules plus internal alerts, for one node.
pub struct Detector {
    engine: Engine,
    hostname: String,
    evictions: EvictionWatch,
}

impl Detector {
    pub fn new(engine: Engine, hostname: String) -> Detector {
        Detector {
            engine,
            hostname,
            evictions: EvictionWatch::default(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Swap in a reloaded rule set between two events, carrying the memory
    /// of unchanged stateful rules over; returns the old set (to be dropped
    /// off the hot path) and how many stateful rules kept their state.
    pub fn swap_engine(&mut self, mut new: Engine) -> (Engine, usize) {
        let carried = new.carry_state_from(&mut self.engine);
        let old = std::mem::replace(&mut self.engine, new);
        self.evictions.rebase(&self.engine);
        (old, carried)
    }

    /// The alerts `ev` raises, in order: the drop alert for a `drop` event,
    /// else the rules' alerts; then an eviction alert when one is due.
    pub fn evaluate(&mut self, ev: &Event) -> Vec<Alert> {
        let mut alerts = match drop_alert(ev, &self.hostname) {
            Some(a) => vec![a],
            None => self.engine.evaluate(ev),
        };
        alerts.extend(self.evictions.check(&self.engine, ev.ts, &self.hostname));
        alerts
    }
}

/// The alert for a `drop` event.
pub fn drop_alert(ev: &Event, hostname: &str) -> Option<Alert> {
    let d = ev.drops.as_ref()?;
    let mut fields = serde_json::Map::new();
    fields.insert("n_drops".into(), d.total().into());
    for (k, n) in d.by_kind() {
        fields.insert(format!("n_drops_{k}"), n.into());
    }
    fields.insert("n_drops_open_shed".into(), d.shed.into());
    Some(Alert::internal(
        ev.ts,
        "mamori internal: kernel event drop",
        Priority::Critical,
        &format!("{d} since the last report"),
        fields,
        hostname,
    ))
}

/// Turns stateful-rule evictions into an internal alert (at most one per
/// minute): a key pushed out while its window was open is a detection that
/// may have been missed, so it must be as visible as a kernel drop.
#[derive(Default)]
struct EvictionWatch {
    checked: Option<Instant>,
    reported: u64,
    /// Events since the clock was last read (it is read every 1024).
    calls: u32,
}

impl EvictionWatch {
    const EVERY: Duration = Duration::from_secs(60);

    /// After a swap: count evictions from what the new set's (partly
    /// carried) machines already hold.
    fn rebase(&mut self, engine: &Engine) {
        self.reported = engine.state_stats().iter().map(|s| s.evicted).sum();
    }

    fn check(&mut self, engine: &Engine, ts: u64, hostname: &str) -> Option<Alert> {
        self.calls = self.calls.wrapping_add(1);
        if self.checked.is_some() && !self.calls.is_multiple_of(1024) {
            return None;
        }
        let now = Instant::now();
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return None;
        }
        self.checked = Some(now);
        let stats = engine.state_stats();
        let total: u64 = stats.iter().map(|s| s.evicted).sum();
        if total <= self.reported {
            return None;
        }
        let new = total - self.reported;
        self.reported = total;
        Some(eviction_alert(&stats, new, ts, hostname))
    }
}

/// The alert for `new` stateful-rule keys evicted while live.
pub fn eviction_alert(stats: &[StateStats], new: u64, ts: u64, hostname: &str) -> Alert {
    let mut fields = serde_json::Map::new();
    fields.insert("n_evicted".into(), new.into());
    let per_rule: Vec<String> = stats
        .iter()
        .filter(|s| s.evicted > 0)
        .map(|s| {
            fields.insert(format!("evicted.{}", s.rule), s.evicted.into());
            format!("'{}' {} (cap {})", s.rule, s.evicted, s.max_keys)
        })
        .collect();
    Alert::internal(
        ts,
        "mamori internal: stateful rule state evicted",
        Priority::Warning,
        &format!(
            "{new} keys pushed out while their window was open since the last report; totals: {}",
            per_rule.join(", ")
        ),
        fields,
        hostname,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::drop_event;
    use mamori_rules::event::Drops;

    #[test]
    fn evictions_become_a_warning_internal_alert_once_per_check() {
        let rules = r#"
- rule: scan
  desc: d
  condition: evt.type = connect
  threshold: {by: proc.pid, count: 5, within: 10s, max_keys: 1}
  output: o
  priority: WARNING
"#;
        let (engine, _) = Engine::from_sources(&[("t.yaml", rules)], &Default::default());
        let mut w = EvictionWatch::default();
        assert!(w.check(&engine, 0, "n").is_none(), "nothing evicted yet");
        for pid in 1..4u32 {
            let ev: Event = serde_json::from_value(serde_json::json!({
                "ts": 1, "type": "connect", "res": 0, "proc": {"pid": pid, "name": "x"},
                "fd": {"type": "ipv4", "num": 3, "name": "x", "rip": "10.0.0.1", "rport": 80}
            }))
            .unwrap();
            engine.evaluate(&ev);
        }
        w.checked = None;
        let a = w.check(&engine, 7, "n").expect("2 live keys were evicted");
        assert_eq!(a.rule, "mamori internal: stateful rule state evicted");
        assert_eq!(a.source, "internal");
        assert_eq!(a.tags, ["mamori_internal"]);
        assert_eq!(a.output_fields["n_evicted"], 2);
        assert!(a.output.contains("'scan' 2 (cap 1)"), "{}", a.output);
        w.checked = None;
        assert!(w.check(&engine, 8, "n").is_none(), "no new evictions");
    }

    #[test]
    fn drops_become_a_critical_internal_alert() {
        let ev = drop_event(Drops {
            open: 7,
            connect: 2,
            shed: 5,
            ..Default::default()
        });
        let a = drop_alert(&ev, "node-1").expect("a drop event makes an alert");
        assert_eq!(a.rule, "mamori internal: kernel event drop");
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.output_fields["n_drops"], 9);
        assert_eq!(a.output_fields["n_drops_open"], 7);
        assert_eq!(a.output_fields["n_drops_open_shed"], 5);
        assert!(a.output.contains(
            "Critical mamori internal: kernel event drop. 9 events lost (exec=0 fork=0 exit=0 open=7 connect=2 syscalls=0 undecodable=0); 5 of the opens shed to keep room for exec, fork, exit and connect events"
        ), "{}", a.output);
        assert_eq!(a.hostname, "node-1");
        let mut quiet = ev.clone();
        quiet.drops = None;
        assert!(drop_alert(&quiet, "node-1").is_none());
    }
}
