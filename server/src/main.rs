//! The `crs` binary: parse the command line, load configuration, serve.

// The admin pages' view types nest deeply.
#![recursion_limit = "256"]

use clap::{Parser, Subcommand};

// Many small, short-lived allocations per request across worker threads: mimalloc spends far
// less time in them than glibc malloc, and keeps RSS flatter.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crs::config::Config;

mod cli;

#[derive(Parser)]
#[command(
    name = "crs",
    version,
    about = "Claude Relay Service: a self-hosted multi-account AI API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay and its admin (the default).
    Serve,
    /// admin, keys, accounts, status, pricing, healthcheck (server/src/cli/).
    #[command(flatten)]
    Ops(cli::Command),
    /// import-crs, export, restore (server/src/import_crs/, server/src/backup.rs).
    #[command(flatten)]
    Data(DataCommand),
}

/// The data commands of the `crs` binary: moving data in and out.
#[derive(Debug, clap::Subcommand)]
enum DataCommand {
    /// Import an original Claude Relay Service deployment from its Redis: keys (their `cr_`
    /// keys keep working), accounts, groups, limits and usage history.
    ImportCrs(crs::import_crs::Args),
    /// Write a JSON backup of keys, accounts, groups and settings (secrets stay encrypted).
    Export(crs::backup::ExportArgs),
    /// Restore a backup written by `crs export` (merging by id).
    Restore(crs::backup::RestoreArgs),
}

/// Runs a data command with the configuration from the environment; the exit code.
async fn run_data_command(cmd: DataCommand) -> i32 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crs: {e}");
            return 2;
        }
    };
    match cmd {
        DataCommand::ImportCrs(args) => crs::import_crs::cli(args, &config).await,
        DataCommand::Export(args) => crs::backup::export_cli(args, &config).await,
        DataCommand::Restore(args) => crs::backup::restore_cli(args, &config).await,
    }
}

/// Logs to stdout (text or JSON) and, when a collector is configured, traces over OTLP. The
/// trace provider is returned so that it can be flushed on shutdown.
fn init_logging(config: &Config) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::{
        fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
    };
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if config.log_json {
        fmt::layer().json().with_target(false).boxed()
    } else {
        fmt::layer().with_target(false).boxed()
    };
    let provider = match config
        .otel_endpoint
        .as_deref()
        .map(crs::telemetry::otlp_tracer_provider)
    {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            eprintln!("crs: {e}");
            std::process::exit(2);
        }
        None => None,
    };
    let otel = provider.as_ref().map(crs::telemetry::otel_layer);
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .init();
    provider
}

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc.h, v2 and v3; the
/// -sys crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed after a burst goes back to the OS at once instead of after mimalloc's delay:
/// the relay's peak RSS with 256 streams fell from ~74 to ~58 MB (idle 58 → 22 MB) at no
/// measurable throughput cost (README, Benchmarks). `MIMALLOC_PURGE_DELAY` still overrides.
fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer in mimalloc's option table; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
    }
}

fn main() {
    return_freed_memory_at_once();
    // Server-rendering the admin pages nests deeply (more so in debug builds): workers get a
    // larger stack than tokio's 2 MiB default.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("crs: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() {
    let cli = Cli::parse();
    // Operations commands: their own config loading, logs on stderr, exit codes 0/1/2.
    if let Some(Command::Ops(ops)) = cli.command {
        std::process::exit(crate::cli::run(ops).await);
    }
    if let Some(Command::Data(data)) = cli.command {
        std::process::exit(run_data_command(data).await);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crs: {e}");
            std::process::exit(2);
        }
    };
    let traces = init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Ops(_) => {} // handled above
        // Data commands, handled above too.
        Command::Data(_) => {}
        Command::Serve => {
            let running = match crs::start(config).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("crs: {e:#}");
                    std::process::exit(1);
                }
            };
            tracing::info!(url = %running.url(), store = running.state.store.engine(), "crs is serving");
            shutdown_signal().await;
            tracing::info!("shutting down: draining in-flight requests");
            running.stop().await;
            if let Some(p) = traces {
                // Spans still in the batch are sent before the process ends.
                let _ = p.shutdown();
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
