//! The YAML reader (`remote_agents_spec::load` of a `.yaml` file) and what runs on its model:
//! effective configs per declared host and conversion back to YAML and KDL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Callers hand the spec crate text, so bytes that are not UTF-8 never reach it.
    if let Ok(text) = std::str::from_utf8(data) {
        remote_agents_fuzz_common::check_load("fuzz.yaml", text);
    }
});

#[path = "common/spec.rs"]
mod remote_agents_fuzz_common;
