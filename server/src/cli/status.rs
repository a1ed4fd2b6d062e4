//! `crs status`: the store's health, keys, accounts by state, today's usage, the pricing table.

use std::time::Instant;

use clap::Args;
use crs::{admin, config::Config};
use serde_json::json;

use super::{open, print_json, usd, Failure, Outcome};

#[derive(Args)]
pub struct StatusArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs, config: Config) -> Outcome {
    let state = open(config).await?;
    let t = Instant::now();
    state.store.ping().await?;
    let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
    let summary = admin::dashboard::summary(&state)
        .await
        .map_err(|e| Failure::Failed(e.message()))?;
    let pricing = state.pricing.status();
    if args.json {
        return print_json(&json!({
            "store": {"engine": summary.store_engine, "status": "ok", "latencyMs": latency_ms},
            "keys": {"total": summary.total_keys, "active": summary.active_keys},
            "accounts": {
                "total": summary.total_accounts,
                "schedulable": summary.schedulable_accounts,
                "byState": summary.accounts_by_state.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            },
            "today": summary.today,
            "pricing": {"models": pricing.models, "source": pricing.source, "sha256": pricing.sha256},
        }));
    }
    let t = &summary.today;
    println!("store:    {} ok ({latency_ms:.1} ms)", summary.store_engine);
    println!(
        "keys:     {} ({} active)",
        summary.total_keys, summary.active_keys
    );
    let states: Vec<String> = summary
        .accounts_by_state
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!(
        "accounts: {} ({} schedulable): {}",
        summary.total_accounts,
        summary.schedulable_accounts,
        states.join(", ")
    );
    println!(
        "today:    {} requests, {} input / {} output / {} cache tokens, cost {}",
        t.requests,
        t.input_tokens,
        t.output_tokens,
        t.cache_create_5m_tokens + t.cache_create_1h_tokens + t.cache_read_tokens,
        usd(t.cost_nanos)
    );
    println!(
        "pricing:  {} models from {} (sha256 {})",
        pricing.models,
        pricing.source,
        pricing.sha256.get(..12).unwrap_or_default()
    );
    Ok(())
}
