//! `fleetctl mapreduce run`: a declared `MapReduceJob` (`run JOB -f DIR`) or one given by
//! flags, run from fleetctl as the coordinator. fleetctl joins the room as a send-only peer, the
//! same way the fan-out commands do.
//!
//! Input flags (exactly one kind per job):
//! - `--input-files GLOB` (repeatable): each targeted host expands the glob itself and feeds each
//!   matching file to the map on that host (needs the hosts' shell grant for the redirection).
//! - `--input-command CMD`: a shell line run here on the caller; its output lines are split
//!   into partitions and shipped.
//! - `--input-local FILE`: a text file here, split at line boundaries and shipped in chunks.
//! - `--input-item ITEM` (repeatable): inline items, one line each, split into partitions.
//! - `--input KIND:VALUE` is the same with the kind spelled in the value: `files:GLOB`,
//!   `command:CMD`, `local:FILE`, `item:ITEM`; a value without a known kind is a local file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use remote_agents_spec::Reducer;
use tokio_util::sync::CancellationToken;

use crate::fleetctl::fleet::{ConnectFlags, resolve_settings};
use crate::output::Output;
use remote_agents_node::fleet::connection::{Connection, fleetctl_dir};
use remote_agents_node::mapreduce::{
    CallerSide, Command, JobInput, JobPlan, JobReport, ReduceStep,
};
use remote_agents_ops::{parse_duration, parse_size};

#[derive(Debug, Clone, Subcommand)]
pub enum MapReduceCommand {
    /// Run a job: a declared MapReduceJob (`run JOB -f DIR`) or one given by flags
    /// (`run --target SEL --input-local FILE --map CMD --reduce sum`). Exit 0 when every
    /// partition committed and the reduce ran, 1 when some failed (listed), 2 on errors.
    Run(Box<RunArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// The name of a declared MapReduceJob (read from -f).
    pub job: Option<String>,
    /// Spec files or folders holding the job.
    #[arg(short = 'f', long = "filename")]
    pub paths: Vec<PathBuf>,
    /// Which hosts run the map: `all`, a tag, `name:GLOB`, ... (overrides the spec's target).
    #[arg(long, short = 't')]
    pub target: Option<String>,
    /// Input as KIND:VALUE (files:GLOB, command:CMD, local:FILE, item:ITEM); a bare value is a
    /// local file.
    #[arg(long)]
    pub input: Vec<String>,
    /// A file glob each host expands for itself (repeatable).
    #[arg(long)]
    pub input_files: Vec<String>,
    /// A shell line run here; its output lines are the input.
    #[arg(long)]
    pub input_command: Option<String>,
    /// A local text file, shipped to the hosts in chunks.
    #[arg(long)]
    pub input_local: Option<PathBuf>,
    /// An inline item (repeatable).
    #[arg(long)]
    pub input_item: Vec<String>,
    /// The map step as a shell line (the hosts' policy must grant a shell).
    #[arg(long, conflicts_with = "map_arg")]
    pub map: Option<String>,
    /// The map step as argv, one word per flag, run without a shell:
    /// `--map-arg awk --map-arg '{print $1}'`.
    #[arg(long, allow_hyphen_values = true)]
    pub map_arg: Vec<String>,
    /// `sum`, `count`, `concat` (built in), or a shell line fed every map output on stdin in
    /// partition order.
    #[arg(long, conflicts_with = "reduce_arg")]
    pub reduce: Option<String>,
    /// The reduce step as argv, one word per flag.
    #[arg(long, allow_hyphen_values = true)]
    pub reduce_arg: Vec<String>,
    /// Run the reduce command on this host instead of here.
    #[arg(long)]
    pub reduce_on: Option<String>,
    /// Partitions per host for shipped input (default 1, or the spec's).
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Retries of a failed partition (default 2, or the spec's).
    #[arg(long)]
    pub retries: Option<u32>,
    /// Map attempts in flight per host.
    #[arg(long, default_value_t = 2)]
    pub per_host: usize,
    /// Map attempts in flight across all hosts (default: no cap beyond --per-host), for hosts
    /// that share cores or a file server.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Time one map attempt may take.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Largest shipped partition, in bytes (suffixes K, M, G): large input is cut further.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub chunk_size: usize,
    /// Largest map output kept per partition, in bytes (suffixes K, M, G).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub max_output: usize,
    /// No progress lines on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn reduce_from(text: &str) -> ReduceStep {
    match text {
        "sum" => ReduceStep::Builtin(Reducer::Sum),
        "count" => ReduceStep::Builtin(Reducer::Count),
        "concat" => ReduceStep::Builtin(Reducer::Concat),
        line => ReduceStep::Command(Command::Shell(line.to_string())),
    }
}

/// The job's input from the input flags, if any were given.
fn input_from_flags(args: &RunArgs) -> anyhow::Result<Option<JobInput>> {
    let mut files = args.input_files.clone();
    let mut items = args.input_item.clone();
    let mut command = args.input_command.clone();
    let mut local = args.input_local.clone();
    for value in &args.input {
        match value.split_once(':') {
            Some(("files", glob)) => files.push(glob.to_string()),
            Some(("item", item)) => items.push(item.to_string()),
            Some(("command", line)) => {
                anyhow::ensure!(command.is_none(), "give one input command");
                command = Some(line.to_string());
            }
            Some(("local", path)) => {
                anyhow::ensure!(local.is_none(), "give one local input file");
                local = Some(PathBuf::from(path));
            }
            _ => {
                anyhow::ensure!(local.is_none(), "give one local input file");
                local = Some(PathBuf::from(value));
            }
        }
    }
    let mut kinds = Vec::new();
    if !files.is_empty() {
        kinds.push(JobInput::Files(files));
    }
    if let Some(line) = command {
        kinds.push(JobInput::Command(Command::Shell(line)));
    }
    if let Some(path) = local {
        kinds.push(JobInput::Local(path));
    }
    if !items.is_empty() {
        kinds.push(JobInput::Items(items));
    }
    anyhow::ensure!(
        kinds.len() <= 1,
        "give one kind of input (files, command, local file or items)"
    );
    Ok(kinds.pop())
}

/// Builds the plan: the declared job (if named) with the flags laid over it.
pub fn plan_from_args(args: &RunArgs) -> anyhow::Result<JobPlan> {
    let map = match (&args.map, args.map_arg.is_empty()) {
        (Some(line), _) => Some(Command::Shell(line.clone())),
        (None, false) => Some(Command::Argv(args.map_arg.clone())),
        (None, true) => None,
    };
    let reduce = match (&args.reduce, args.reduce_arg.is_empty()) {
        (Some(text), _) => Some(reduce_from(text)),
        (None, false) => Some(ReduceStep::Command(Command::Argv(args.reduce_arg.clone()))),
        (None, true) => None,
    };
    let input = input_from_flags(args)?;
    let mut plan = match &args.job {
        Some(name) => {
            anyhow::ensure!(
                !args.paths.is_empty(),
                "job {name:?}: pass the spec with -f DIR"
            );
            let files = remote_agents_node::sources::read_paths(&args.paths)?;
            let (model, diagnostics) = remote_agents_spec::load(&files);
            if remote_agents_spec::has_errors(&diagnostics) {
                for diagnostic in &diagnostics {
                    eprintln!("{diagnostic}");
                }
                anyhow::bail!("the spec files have errors");
            }
            let (_, job) = model
                .jobs()
                .find(|(_, job)| job.metadata.name == *name)
                .with_context(|| {
                    let names: Vec<&str> = model
                        .jobs()
                        .map(|(_, j)| j.metadata.name.as_str())
                        .collect();
                    format!("no MapReduceJob named {name:?} in the spec (declared: {names:?})")
                })?;
            let mut plan = JobPlan::from_spec(name, &job.spec)?;
            if let Some(target) = &args.target {
                plan.target = target.clone();
            }
            if let Some(input) = input {
                plan.input = input;
            }
            if let Some(map) = map {
                plan.map = map;
            }
            if let Some(reduce) = reduce {
                plan.reduce = reduce;
            }
            plan
        }
        None => JobPlan {
            name: "adhoc".into(),
            target: args
                .target
                .clone()
                .context("--target is required without a declared job")?,
            input: input.context(
                "an input is required: --input-files, --input-command, --input-local or \
                 --input-item",
            )?,
            partitions_per_host: 1,
            chunk_bytes: remote_agents_node::mapreduce::DEFAULT_CHUNK_BYTES,
            map: map.context("a map step is required: --map CMD or --map-arg ...")?,
            reduce: reduce.context(
                "a reduce step is required: --reduce sum|count|concat|CMD or --reduce-arg ...",
            )?,
            reduce_on: None,
            retries: 2,
            slots_per_host: 2,
            max_in_flight: None,
            attempt_timeout: remote_agents_node::mapreduce::DEFAULT_ATTEMPT_TIMEOUT,
            max_output_bytes: remote_agents_node::mapreduce::DEFAULT_MAX_OUTPUT,
        },
    };
    if let Some(partitions) = args.partitions {
        plan.partitions_per_host = partitions.max(1) as usize;
    }
    if let Some(retries) = args.retries {
        plan.retries = retries;
    }
    plan.reduce_on = args.reduce_on.clone();
    plan.slots_per_host = args.per_host.max(1);
    plan.max_in_flight = args.max_in_flight;
    plan.attempt_timeout = args.timeout;
    plan.chunk_bytes = args.chunk_size;
    plan.max_output_bytes = args.max_output;
    Ok(plan)
}

/// Runs `fleetctl mapreduce ...`; returns the exit code.
pub async fn run(command: MapReduceCommand) -> anyhow::Result<u8> {
    let MapReduceCommand::Run(args) = command;
    let plan = plan_from_args(&args)?;
    let settings = resolve_settings(&args.connect)?;
    let dir = fleetctl_dir(&settings)?;
    let connection = Connection::open(&settings, &dir, args.connect.connect_timeout).await?;
    let progress: Option<remote_agents_node::mapreduce::Progress> = if args.quiet {
        None
    } else {
        let live = std::io::stderr().is_terminal();
        Some(Arc::new(
            move |done: usize, total: usize, message: String| {
                if live {
                    eprint!("\r\x1b[2K[{done}/{total}] {message}");
                } else {
                    eprintln!("[{done}/{total}] {message}");
                }
            },
        ))
    };
    let cancel = CancellationToken::new();
    {
        // Ctrl-C stops the job and cancels the attempts in flight on the hosts.
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        });
    }
    let report = remote_agents_node::mapreduce::run(
        &connection.net,
        &connection.agent_id,
        &CallerSide::Process,
        plan,
        progress,
        cancel,
    )
    .await?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
    print_report(&report, args.output)?;
    Ok(if report.complete { 0 } else { 1 })
}

fn print_report(report: &JobReport, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json | Output::Yaml => {
            print!("{}", output.data(report)?.unwrap_or_default())
        }
        Output::Text => {
            if let Some(result) = &report.result {
                print!("{result}");
            }
            eprintln!(
                "job {}: {}/{} partitions done on {} hosts, {} failed; {} attempts ({} backups, \
                 {} duplicates ignored); map {:.1} s, reduce {:.1} s, {} bytes shipped",
                report.job_id,
                report.done,
                report.partitions,
                report.hosts.len(),
                report.failed,
                report.attempts,
                report.backups,
                report.duplicates_ignored,
                report.map_ms as f64 / 1000.0,
                report.reduce_ms as f64 / 1000.0,
                report.shipped_bytes,
            );
            if !report.hosts_lost.is_empty() {
                eprintln!("hosts lost: {}", report.hosts_lost.join(", "));
            }
            for problem in &report.host_problems {
                eprintln!("host {}: {}", problem.host, problem.error);
            }
            for failure in &report.failed_partitions {
                eprintln!(
                    "partition {} ({}) failed on {} after {} attempts: {}",
                    failure.partition,
                    failure.input,
                    failure.host.as_deref().unwrap_or("no host"),
                    failure.attempts,
                    failure.error
                );
            }
            if let Some(error) = &report.reduce_error {
                eprintln!("reduce failed: {error}");
            }
            if !report.complete {
                eprintln!("incomplete: the result does not cover all the input");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: MapReduceCommand,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["x", "run"];
        argv.extend_from_slice(args);
        let MapReduceCommand::Run(args) = Wrapper::try_parse_from(argv).unwrap().command;
        *args
    }

    #[test]
    fn sizes_read_with_binary_units() {
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("3T").is_err());
    }

    #[test]
    fn imperative_flags_make_a_plan() {
        let args = parse(&[
            "--target",
            "all",
            "--input-local",
            "/tmp/words.txt",
            "--map",
            "wc -w",
            "--reduce",
            "sum",
            "--retries",
            "4",
        ]);
        let plan = plan_from_args(&args).unwrap();
        assert_eq!(plan.input, JobInput::Local("/tmp/words.txt".into()));
        assert_eq!(plan.map, Command::Shell("wc -w".into()));
        assert_eq!(plan.reduce, ReduceStep::Builtin(Reducer::Sum));
        assert_eq!(plan.retries, 4);
        let args = parse(&[
            "-t",
            "web",
            "--input",
            "files:/var/log/*.log",
            "--map-arg",
            "grep",
            "--map-arg",
            "-c",
            "--map-arg",
            "error",
            "--reduce",
            "sort | uniq -c",
        ]);
        let plan = plan_from_args(&args).unwrap();
        assert_eq!(plan.input, JobInput::Files(vec!["/var/log/*.log".into()]));
        assert_eq!(
            plan.map,
            Command::Argv(vec!["grep".into(), "-c".into(), "error".into()])
        );
        assert_eq!(
            plan.reduce,
            ReduceStep::Command(Command::Shell("sort | uniq -c".into()))
        );
    }

    #[test]
    fn two_kinds_of_input_or_a_missing_map_are_errors() {
        let args = parse(&[
            "-t",
            "all",
            "--input-item",
            "a",
            "--input-local",
            "/tmp/x",
            "--map",
            "cat",
            "--reduce",
            "concat",
        ]);
        let err = plan_from_args(&args).unwrap_err().to_string();
        assert!(err.contains("one kind of input"), "{err}");
        let args = parse(&["-t", "all", "--input-item", "a", "--reduce", "concat"]);
        let err = plan_from_args(&args).unwrap_err().to_string();
        assert!(err.contains("map step is required"), "{err}");
    }
}
