//! Operations subcommands of the `crs` binary. They work on the configured store directly
//! (the same `.env`, `DATA_DIR` or `REDIS_URL` as `crs serve`) through the admin's actions
//! (`crs::admin`), so the command line is held to the same rules and messages as the admin
//! pages and the admin API.
//!
//! Exit codes: 0 done, 1 failed (store unavailable, not found, download refused), 2 bad usage
//! or configuration. Every failure is one line on stderr.

pub mod accounts;
pub mod admin;
pub mod healthcheck;
pub mod keys;
pub mod pricing;
pub mod status;

use clap::Subcommand;
use crs::{admin::AdminError, config::Config, state::AppState};

#[derive(Subcommand)]
pub enum Command {
    /// The admin account: reset its password.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// API keys: create (the key is printed once), list, disable, enable.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Upstream accounts: list with their state, pause, resume.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Store health, accounts by state and today's usage.
    Status(status::StatusArgs),
    /// The pricing table: replace it from a file or a URL (a running relay reloads it).
    #[command(subcommand)]
    Pricing(pricing::PricingCommand),
    /// GET /health of the local relay: exit 0 when healthy, 1 otherwise (the Docker
    /// HEALTHCHECK; needs no curl).
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or configuration: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::BadRequest(m) | AdminError::Invalid(_, m) => Failure::Usage(m),
            other => Failure::Failed(other.message()),
        }
    }
}

impl From<crs::store::StoreError> for Failure {
    fn from(e: crs::store::StoreError) -> Self {
        Failure::Failed(format!("store: {e}"))
    }
}

pub type Outcome = Result<(), Failure>;

/// Runs one command; returns the process exit code.
pub async fn run(command: Command) -> i32 {
    // Diagnostics go to stderr (stdout is the command's output, e.g. JSON).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRS_CLI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let outcome = match command {
        // The health check needs only the address, not a valid configuration.
        Command::Healthcheck(args) => healthcheck::run(args).await,
        command => match Config::from_env() {
            Err(e) => Err(Failure::Usage(e.to_string())),
            Ok(config) => match command {
                Command::Admin(c) => admin::run(c, config).await,
                Command::Keys(c) => keys::run(c, config).await,
                Command::Accounts(c) => accounts::run(c, config).await,
                Command::Status(a) => status::run(a, config).await,
                Command::Pricing(c) => pricing::run(c, config).await,
                Command::Healthcheck(_) => Ok(()),
            },
        },
    };
    match outcome {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            eprintln!("crs: {m}");
            2
        }
        Err(Failure::Failed(m)) => {
            eprintln!("crs: {m}");
            1
        }
    }
}

/// The relay's state on the configured store, without serving: the admin functions run on it.
pub async fn open(mut config: Config) -> Result<AppState, Failure> {
    // A one-shot command neither watches nor downloads the pricing table.
    config.pricing_url = None;
    config.pricing_watch_interval = std::time::Duration::ZERO;
    let embedded = config.redis_url.is_none();
    let dir = config.data_dir.clone();
    crs::build_state(config).await.map_err(|e| {
        let msg = format!("{e:#}");
        if embedded && (msg.contains("lock") || msg.contains("already open")) {
            Failure::Failed(format!(
                "{msg} (the embedded store in {} is used by a running crs: stop it first, or use the admin API)",
                dir.display()
            ))
        } else {
            Failure::Failed(msg)
        }
    })
}

/// `"$1.50"`, `"-"` for no limit.
pub fn usd_limit(x: f64) -> String {
    if x > 0.0 {
        format!("${x:.2}")
    } else {
        "-".into()
    }
}

pub fn usd(nanos: u64) -> String {
    format!("${:.4}", nanos as f64 / 1e9)
}

/// Prints rows as a left-aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.push_str(c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Prints a JSON value (pretty).
pub fn print_json(v: &serde_json::Value) -> Outcome {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure::Failed(e.to_string()))?;
    println!("{text}");
    Ok(())
}
