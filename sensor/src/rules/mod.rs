//! Falco-compatible rule engine (placeholder until it lands).
