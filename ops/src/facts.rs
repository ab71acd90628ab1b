//! Platform facts of a host (OS family, distro, kernel, arch, shell, hostname, CPUs, memory), as
//! a node advertises them to peers inside the encrypted session.

use serde::{Deserialize, Serialize};

/// What a peer or a selector (`os:linux`, `fact:arch=x86_64`) may know about this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Facts {
    /// `linux`, `macos`, `windows`, … (Rust's `std::env::consts::OS`).
    pub os_family: String,
    /// Distribution id and version, e.g. `debian 12`.
    pub distro: String,
    /// Long human-readable OS description.
    pub os_long: String,
    pub kernel: String,
    pub arch: String,
    /// The login shell of the node's user (`$SHELL`), or empty.
    pub shell: String,
    pub hostname: String,
    pub cpus: usize,
    pub memory_bytes: u64,
}

impl Facts {
    /// The facts as strings, as advertised to peers and matched by `fact:KEY=VALUE` selectors.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        let mut map = std::collections::BTreeMap::new();
        if let Ok(serde_json::Value::Object(object)) = serde_json::to_value(self) {
            for (key, value) in object {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, text);
            }
        }
        map
    }
}
