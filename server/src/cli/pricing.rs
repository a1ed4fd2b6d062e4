//! `crs pricing update --file F | --url U` and `crs pricing show`: the table in
//! `PRICING_FILE`. An update is checked (valid JSON pricing at least one model; a download
//! must match its SHA-256) and then replaces the file at once; a running relay notices the change
//! within `PRICING_WATCH_SECONDS` and reloads it.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use crs::{
    accounting::pricing::{download_verified, sha256_hex, write_atomically, Expected, Pricing},
    config::Config,
};

use super::{Failure, Outcome};

#[derive(Subcommand)]
pub enum PricingCommand {
    /// Replace PRICING_FILE with a checked table from a file or a URL.
    Update(UpdateArgs),
    /// The table PRICING_FILE holds: model count and SHA-256.
    Show,
}

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "url"])))]
pub struct UpdateArgs {
    /// A LiteLLM-format table (model_prices_and_context_window.json).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Download the table; it must match the SHA-256 published at --sha256-url (default: the
    /// URL with ".sha256" appended) or given with --sha256.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Where the download's SHA-256 hex digest is published.
    #[arg(long, value_name = "URL", requires = "url", conflicts_with = "sha256")]
    pub sha256_url: Option<String>,
    /// The download's expected SHA-256 (64 hex digits).
    #[arg(long, value_name = "HEX", requires = "url")]
    pub sha256: Option<String>,
    /// Check the table only; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn http_url(u: &str, flag: &str) -> Result<(), Failure> {
    match reqwest::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") => Ok(()),
        _ => Err(Failure::Usage(format!(
            "{flag} {u:?} is not an http(s) URL"
        ))),
    }
}

pub async fn run(command: PricingCommand, config: Config) -> Outcome {
    match command {
        PricingCommand::Show => {
            let p =
                Pricing::load(&config.pricing_file).map_err(|e| Failure::Failed(e.to_string()))?;
            println!(
                "{}: {} models, sha256 {}",
                config.pricing_file.display(),
                p.len(),
                p.sha256()
            );
            Ok(())
        }
        PricingCommand::Update(a) => update(a, config).await,
    }
}

async fn update(a: UpdateArgs, config: Config) -> Outcome {
    let (raw, origin) = match (&a.file, &a.url) {
        (Some(f), _) => (
            std::fs::read(f)
                .map_err(|e| Failure::Failed(format!("cannot read {}: {e}", f.display())))?,
            format!("file:{}", f.display()),
        ),
        (None, Some(url)) => {
            http_url(url, "--url")?;
            if let Some(h) = &a.sha256_url {
                http_url(h, "--sha256-url")?;
            }
            let digest_url = a
                .sha256_url
                .clone()
                .unwrap_or_else(|| format!("{url}.sha256"));
            let expected = match &a.sha256 {
                Some(hex) => Expected::Hex(hex),
                None => Expected::At(&digest_url),
            };
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(120))
                .build()
                .map_err(|e| Failure::Failed(e.to_string()))?;
            let raw = download_verified(&client, url, expected)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?;
            (raw, format!("url:{url}"))
        }
        (None, None) => return Err(Failure::Usage("give --file or --url".into())),
    };
    let table = Pricing::parse_table(&raw, &origin).map_err(|e| Failure::Failed(e.to_string()))?;
    let target = &config.pricing_file;
    if a.dry_run {
        println!(
            "{origin}: {} models, sha256 {} (dry run: {} unchanged)",
            table.len(),
            sha256_hex(&raw),
            target.display()
        );
        return Ok(());
    }
    write_atomically(target, &raw).map_err(|e| Failure::Failed(e.to_string()))?;
    println!(
        "{}: {} models from {origin}, sha256 {}; a running relay reloads it within {} s",
        target.display(),
        table.len(),
        sha256_hex(&raw),
        config.pricing_watch_interval.as_secs().max(1)
    );
    Ok(())
}
