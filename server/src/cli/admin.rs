//! `crs admin reset-password`: a new password for the built-in admin account.

use std::io::BufRead;

use chrono::Utc;
use clap::{Args, Subcommand};
use crs::{
    auth::{admin::hash_password, api_key::format_time},
    config::Config,
    crypto::random_hex,
    store::AdminCredentials,
};

use super::{open, Failure, Outcome};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Set a new admin password: generated and printed once, or read from stdin.
    ResetPassword(ResetArgs),
}

#[derive(Args)]
pub struct ResetArgs {
    /// Read the new password (at least 8 characters) from the first line of stdin instead of
    /// generating one (a password on the command line would show in the process list).
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn run(command: AdminCommand, config: Config) -> Outcome {
    match command {
        AdminCommand::ResetPassword(a) => reset(a, config).await,
    }
}

async fn reset(args: ResetArgs, config: Config) -> Outcome {
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::Usage(format!("cannot read the password from stdin: {e}")))?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.chars().count() < 8 || p.len() > app::bounds::PASSWORD_MAX_BYTES {
            return Err(Failure::Usage(format!(
                "the password must be 8 characters to {} bytes",
                app::bounds::PASSWORD_MAX_BYTES
            )));
        }
        (p, false)
    } else {
        (random_hex(12), true)
    };
    let state = open(config).await?;
    let current = state.store.get_admin().await?;
    let username = match &current {
        Some(a) => a.username.clone(),
        None => state.config.admin_username.clone(),
    };
    // A new generation ends every session signed in with the old password.
    let session_generation = current.map_or(0, |a| a.session_generation.wrapping_add(1));
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?
        .map_err(Failure::Failed)?;
    state
        .store
        .put_admin(&AdminCredentials {
            username: username.clone(),
            password_hash: hash,
            updated_at: format_time(Utc::now()),
            session_generation,
        })
        .await?;
    if generated {
        eprintln!("New password of admin user {username:?} (shown once):");
        println!("{password}");
    } else {
        println!("password of admin user {username:?} changed");
    }
    Ok(())
}
