//! The fleet CLI binary: parses arguments, sets up tracing to stderr, calls the library.

// jemalloc: a thousand concurrent requests (a node under a fan-out, a caller fanning out to a
// thousand peers) spent ~10% of their CPU in glibc malloc's arena locking and consolidation.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use remote_agents::fleetctl::{Cli, run};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    std::process::ExitCode::from(run(Cli::parse()))
}
