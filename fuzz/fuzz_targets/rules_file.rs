//! Fuzz the whole loader (YAML reader, collector, parser, compiler) with an
//! arbitrary rules file, then evaluate one event: diagnostics, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamori_rules::event::{Event, EvtType, Process};
use mamori_rules::{Engine, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (engine, _report) = Engine::from_sources(&[("fuzz.yaml", text)], &LoadOptions::default());
    let ev = Event::new(
        1,
        EvtType::Execve,
        0,
        Process {
            pid: 1,
            name: "sh".into(),
            argv: vec!["sh".into(), "-c".into(), "id".into()],
            ..Default::default()
        },
    );
    let _ = engine.evaluate(&ev);
});
