//! Platform facts of this host, gathered once with `sysinfo` (the values are
//! `remote_agents_ops::Facts`).

pub use remote_agents_ops::Facts;

/// Reads the facts of the running host.
pub fn gather() -> Facts {
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

#[cfg(test)]
mod tests {

    #[test]
    fn facts_of_this_host_are_filled_in() {
        let facts = crate::facts::gather();
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
