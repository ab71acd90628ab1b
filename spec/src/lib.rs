//! The fleet model (desired state): kinds, parsing of YAML and KDL into one model, validation
//! with source spans, target selectors, effective config with provenance, and plans.
//!
//! This crate is pure: it does no file, network or process I/O and never starts a runtime.
