//! Platform facts of this host (OS family, distro, kernel, arch, shell, hostname, CPUs, memory),
//! gathered once with `sysinfo` and advertised to peers inside the encrypted session.

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
    /// Reads the facts of the running host.
    pub fn gather() -> Self {
        use sysinfo::{MemoryRefreshKind, RefreshKind, System};
        let memory_bytes = System::new_with_specifics(
            RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .map(|s| s.total_memory())
        .unwrap_or(0);
        let distro_version = System::os_version().unwrap_or_default();
        let distro = format!("{} {}", System::distribution_id(), distro_version)
            .trim()
            .to_string();
        Facts {
            os_family: std::env::consts::OS.to_string(),
            distro,
            os_long: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            arch: std::env::consts::ARCH.to_string(),
            shell: std::env::var("SHELL").unwrap_or_default(),
            hostname: System::host_name().unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_host_are_filled_in() {
        let facts = Facts::gather();
        assert_eq!(facts.os_family, std::env::consts::OS);
        assert_eq!(facts.arch, std::env::consts::ARCH);
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0, "{facts:?}");
        assert_eq!(facts.to_map()["cpus"], facts.cpus.to_string());
        if cfg!(target_os = "linux") {
            assert!(!facts.kernel.is_empty(), "{facts:?}");
            assert!(!facts.hostname.is_empty(), "{facts:?}");
        }
    }
}
