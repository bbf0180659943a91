//! Router-level tests: see tests/api.rs for the full behaviour over real flags.
