//! fleetctl: the fleet CLI. This module owns argument parsing and the offline commands over
//! spec files (`validate`, `diff`/`plan`, `explain`, `convert`); online commands (`apply`,
//! `exec`, `status`, ...) join [`Command`] as further variants with their own modules.

pub mod chat_text;
pub mod connect;
pub mod cp;
pub mod desired;
pub mod fleet;
pub mod mapreduce;
mod offline;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Output;
use std::path::PathBuf;

/// Exit status: 0 ok / no changes, 1 invalid spec / changes found, 2 error (like `kubectl diff`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_ERROR: u8 = 2;
/// `fleetctl apply` of a spec with a Rollout: a wave reached the failure threshold, the rollout
/// halted (and the hosts that took the new generation were rolled back).
pub const EXIT_ROLLOUT_HALTED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Declare, check and operate a fleet of machines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// The enum is built once per process from argv, so the size difference between variants costs
// nothing; boxing a flattened clap subcommand would only complicate the derive.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files; exit 0 when valid, 1 when not (diagnostics on stderr).
    Validate(ValidateArgs),
    /// Show what would change going from --against (or, without it, the live fleet) to -f;
    /// exit 0 no changes, 1 changes or drift, 2 error.
    #[command(alias = "plan")]
    Diff(DiffArgs),
    /// Validate, plan against the live fleet, sign and publish a new generation; with --wait,
    /// block until every host reports it (exit 1 if any host failed or timed out).
    Apply(desired::ApplyArgs),
    /// Per host: applied generation, sync state, health, mode and drift.
    Status(desired::StatusArgs),
    /// List hosts, schedules or jobs of the live fleet.
    Get(desired::GetArgs),
    /// The generations applied to the fleet.
    History(desired::HistoryArgs),
    /// Publish an older generation's content as a new generation.
    Rollback(desired::RollbackArgs),
    /// Make an operator key (prints the public key for the spec's `operators`).
    Keygen(desired::KeygenArgs),
    /// Show a host's effective config and where each value was set.
    Explain(ExplainArgs),
    /// Print the spec in the other spelling (YAML <-> KDL); comments are not carried over.
    Convert(ConvertArgs),
    /// Fan-out operations on the live fleet (exec, read, write, git, search); exit 1 when any
    /// host is not ok.
    #[command(flatten)]
    Fleet(crate::fleetctl::fleet::FleetCommand),
    /// The stored history of fan-outs, or one job in full.
    Jobs(crate::fleetctl::fleet::JobsCommand),
    /// MapReduce jobs over the fleet: `fleetctl mapreduce run ...`.
    #[command(subcommand)]
    Mapreduce(crate::fleetctl::mapreduce::MapReduceCommand),
    /// Copy a file HOST:PATH HOST:PATH, LOCAL HOST:PATH or HOST:PATH LOCAL (binary-safe,
    /// SHA-256 verified, no partial file on failure); a progress line when stderr is a terminal.
    Cp(crate::fleetctl::cp::CpArgs),
}

/// `-o text|json|yaml` for commands whose output is data.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec files or folders (folders are read recursively for .yaml, .yml and .kdl files).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The desired state to compare (the new side).
    #[arg(short = 'f', long = "filename", required = true)]
    pub path: PathBuf,
    /// The old side: a path, or a git revision of the repository that holds -f (the same
    /// folder is read at that revision). Without it, -f is compared with the live fleet.
    #[arg(long)]
    pub against: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
    #[command(flatten)]
    pub connect: crate::fleetctl::fleet::ConnectFlags,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The host name.
    pub host: String,
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// A live fact of the host, KEY=VALUE (e.g. os=linux); repeatable.
    #[arg(long = "fact", value_parser = parse_fact)]
    pub facts: Vec<(String, String)>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Spelling {
    Yaml,
    Kdl,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    #[arg(long = "to", value_enum)]
    pub to: Spelling,
}

fn parse_fact(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

/// Runs one command that talks to the live fleet on a fresh runtime.
fn online(future: impl std::future::Future<Output = anyhow::Result<u8>>) -> anyhow::Result<u8> {
    tokio::runtime::Runtime::new()?.block_on(future)
}

/// Runs a parsed command and returns the process exit status. Errors are printed to stderr.
pub fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Validate(args) => offline::validate(&args),
        Command::Diff(args) => match &args.against {
            Some(against) => offline::diff(&args, against),
            None => online(desired::diff_live(&args.path, &args.connect)),
        },
        Command::Apply(args) => online(desired::apply(&args)),
        Command::Status(args) => online(desired::status(&args)),
        Command::Get(args) => online(desired::get(&args)),
        Command::History(args) => online(desired::history(&args)),
        Command::Rollback(args) => online(desired::rollback(&args)),
        Command::Keygen(args) => desired::keygen(&args),
        Command::Explain(args) => offline::explain(&args),
        Command::Convert(args) => offline::convert(&args),
        Command::Fleet(command) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(crate::fleetctl::fleet::run(command))),
        Command::Jobs(command) if command.declared => online(desired::declared_runs(&command)),
        Command::Jobs(command) => crate::fleetctl::fleet::jobs_command(&command),
        Command::Mapreduce(command) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(crate::fleetctl::mapreduce::run(command))),
        Command::Cp(args) => online(crate::fleetctl::cp::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fleetctl: error: {error:#}");
            EXIT_ERROR
        }
    }
}
