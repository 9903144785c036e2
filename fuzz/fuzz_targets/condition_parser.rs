//! Fuzz the condition parser: any input must parse or fail with an error
//! whose offset lies inside the input; never panic or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mamori_rules::parser;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parser::parse(text) {
        Ok(expr) => {
            let span = expr.span();
            assert!(span.start <= span.end && span.end <= text.len());
        }
        Err(e) => assert!(e.offset <= text.len()),
    }
});
