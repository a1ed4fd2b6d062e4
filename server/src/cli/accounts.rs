//! `crs accounts list|pause|resume`: upstream accounts and their scheduling state.

use app::domain::AccountRow;
use clap::{Args, Subcommand};
use crs::{admin::accounts, config::Config, state::AppState};
use serde_json::json;

use super::{open, print_json, print_table, usd, Failure, Outcome};

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// List the accounts with their state (normal, cooling_down, rate_limited, blocked, error,
    /// paused) and today's usage.
    List(ListArgs),
    /// Take an account out of scheduling (requests go to the others); in-flight ones finish.
    Pause(AccountRef),
    /// Put a paused account back into scheduling.
    Resume(ResumeArgs),
}

#[derive(Args)]
pub struct ListArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AccountRef {
    /// The account's id, or its exact name when that is unique.
    pub account: String,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The account's id, or its exact name when that is unique.
    pub account: String,
    /// Also lift its error state and every rest period (as the admin's "reset status").
    #[arg(long)]
    pub reset: bool,
}

pub async fn run(command: AccountsCommand, config: Config) -> Outcome {
    let state = open(config).await?;
    match command {
        AccountsCommand::List(a) => list(&state, a.json).await,
        AccountsCommand::Pause(r) => set_schedulable(&state, &r.account, false, false).await,
        AccountsCommand::Resume(r) => set_schedulable(&state, &r.account, true, r.reset).await,
    }
}

async fn rows(state: &AppState) -> Result<Vec<AccountRow>, Failure> {
    accounts::rows(state)
        .await
        .map_err(|e| Failure::Failed(e.message()))
}

async fn list(state: &AppState, as_json: bool) -> Outcome {
    let accounts = rows(state).await?;
    if as_json {
        return print_json(&json!(accounts));
    }
    let table: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.name.clone(),
                a.platform.clone(),
                a.state.clone(),
                a.priority.to_string(),
                format!("{} req {}", a.today.requests, usd(a.today.cost_nanos)),
                a.reason.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "NAME", "PLATFORM", "STATE", "PRIORITY", "TODAY", "REASON",
        ],
        &table,
    );
    Ok(())
}

async fn resolve(state: &AppState, wanted: &str) -> Result<AccountRow, Failure> {
    let accounts = rows(state).await?;
    if let Some(a) = accounts.iter().find(|a| a.id == wanted) {
        return Ok(a.clone());
    }
    let named: Vec<&AccountRow> = accounts.iter().filter(|a| a.name == wanted).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Failure::Failed(format!(
            "no account with id or name {wanted:?}"
        ))),
        _ => Err(Failure::Failed(format!(
            "{} accounts are named {wanted:?}: give the id",
            named.len()
        ))),
    }
}

async fn set_schedulable(state: &AppState, wanted: &str, on: bool, reset: bool) -> Outcome {
    let a = resolve(state, wanted).await?;
    let failed = |e: crs::admin::AdminError| Failure::Failed(e.message());
    if a.schedulable != on {
        accounts::toggle_schedulable(state, &a.id)
            .await
            .map_err(failed)?;
    }
    if reset {
        accounts::reset_status(state, &a.id).await.map_err(failed)?;
    }
    let now = resolve(state, &a.id).await?;
    println!(
        "account {:?} ({}) {}: state {}",
        now.name,
        now.id,
        if on { "resumed" } else { "paused" },
        now.state
    );
    Ok(())
}
