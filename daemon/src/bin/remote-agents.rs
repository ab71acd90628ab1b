//! The node binary: parses arguments, sets up tracing to stderr (stdout is the MCP channel) and
//! calls the library.
// jemalloc: a thousand concurrent requests (a node under a fan-out, a caller fanning out to a
// thousand peers) spent ~10% of their CPU in glibc malloc's arena locking and consolidation.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use remote_agents::node_cli::{Cli, Command, ConfigCommand};
use remote_agents::output::Output;
use remote_agents_node::config::{ProcessEnv, Settings};
use remote_agents_node::service::{Role, launch, terminated};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter())),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("remote-agents: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("remote-agents: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The demo prints a story on stdout; its many in-process nodes only log warnings by default.
fn default_log_filter() -> &'static str {
    if std::env::args().nth(1).as_deref() == Some("demo") {
        "warn"
    } else {
        "info"
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config {
            command: ConfigCommand::Show(flags),
        } => {
            print!("{}", Settings::resolve(&flags.flags(), &ProcessEnv)?.show());
            Ok(())
        }
        Command::Demo(args) => remote_agents::demo::run(args).await,
        Command::Run(flags) => {
            remote_agents_node::service::run(Settings::resolve(&flags.node_flags(), &ProcessEnv)?)
                .await
        }
        Command::Mcp(flags) | Command::Hybrid(flags) => {
            let stop = terminated()?;
            let transport = flags.transport()?;
            let settings = Settings::resolve(&flags.node_flags(), &ProcessEnv)?;
            let running = launch(settings, Role::Mcp)?;
            remote_agents_mcp::McpServer::new(running.node.clone())
                .serve_on(transport, stop, &mut std::io::stderr())
                .await
        }
        Command::Audit {
            flags,
            limit,
            output,
            json,
        } => {
            let settings = Settings::resolve(&flags.flags(), &ProcessEnv)?;
            let output = if json { Output::Json } else { output };
            print!(
                "{}",
                remote_agents::audit_report::audit_report(&settings, limit, output)?
            );
            Ok(())
        }
        Command::Install(args) => remote_agents::install::service::install(&args),
        Command::Uninstall(args) => remote_agents::install::service::uninstall(&args),
        Command::InstallMcp(args) => remote_agents::install::mcp_clients::install(&args),
        Command::UninstallMcp(args) => remote_agents::install::mcp_clients::uninstall(&args),
        Command::Panel(args) => remote_agents::panel::run(args).await,
    }
}
