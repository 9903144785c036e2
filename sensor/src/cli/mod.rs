//! The commands behind the binary (`src/main.rs` only parses arguments):
//! `run` and `capture` (the live pipeline with their last stages), the
//! rule-authoring commands, and the health endpoint `run` serves.

pub mod capture;
pub mod health;
mod lines;
pub mod rules;
pub mod rules_events;
pub mod run;
