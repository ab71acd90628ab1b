//! Target selectors (`Selector::parse`, then matching). The first line is the selector; each
//! further line describes a host to match it against: `name tag… key=value…`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remote_agents_spec::{HostFacts, Selector};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (selector_text, hosts) = text.split_once('\n').unwrap_or((text, ""));
    let selector = match Selector::parse(selector_text) {
        Ok(selector) => selector,
        Err(error) => {
            assert!(
                error.position <= selector_text.chars().count(),
                "error position past the end: {error} in {selector_text:?}"
            );
            let _ = error.to_string();
            return;
        }
    };
    let _ = selector.uses_facts();
    let _ = selector.as_str();
    let mut candidates = vec![
        HostFacts::new("web-1").with_tag("web"),
        HostFacts::new("db-1")
            .with_tag("db")
            .with_fact("os", "linux")
            .with_fact("region", "eu"),
    ];
    for line in hosts.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut host = HostFacts::new(name);
        for word in words {
            host = match word.split_once('=') {
                Some((key, value)) => host.with_fact(key, value),
                None => host.with_tag(word),
            };
        }
        candidates.push(host);
    }
    for host in &candidates {
        let _ = selector.matches(host);
    }
});
