//! `crs healthcheck`: GET /health of the local relay; exit 0 when healthy, 1 otherwise. The
//! Docker image's HEALTHCHECK uses it, so the image needs no curl.

use std::{net::IpAddr, time::Duration};

use clap::Args;

use super::{Failure, Outcome};

#[derive(Args)]
pub struct HealthcheckArgs {
    /// The health URL. Default: http://127.0.0.1:$PORT/health (HOST instead of 127.0.0.1 when
    /// it is a specific address).
    #[arg(long)]
    pub url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

fn default_url() -> Result<String, Failure> {
    let _ = dotenvy::dotenv();
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let port: u16 = match var("PORT") {
        None => 3000,
        Some(p) => p
            .parse()
            .map_err(|_| Failure::Usage(format!("PORT={p:?} is not a valid value")))?,
    };
    let host: IpAddr = match var("HOST") {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(h) => h
            .parse()
            .map_err(|_| Failure::Usage(format!("HOST={h:?} is not a valid value")))?,
    };
    let host = match host {
        h if h.is_unspecified() && h.is_ipv4() => IpAddr::from([127, 0, 0, 1]),
        h if h.is_unspecified() => IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        h => h,
    };
    Ok(match host {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/health"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/health"),
    })
}

pub async fn run(args: HealthcheckArgs) -> Outcome {
    let url = match args.url {
        Some(u) => u,
        None => default_url()?,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let resp =
        client.get(&url).send().await.map_err(|e| {
            Failure::Failed(format!("unhealthy: {url}: {}", chain(&e.without_url())))
        })?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_success() && body["status"] == "healthy" {
        println!(
            "healthy: store {} {}",
            body["store"]["engine"].as_str().unwrap_or("?"),
            body["store"]["status"].as_str().unwrap_or("?")
        );
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "unhealthy: {url} answered HTTP {} ({})",
            status.as_u16(),
            body["status"].as_str().unwrap_or("no status")
        )))
    }
}

use crs::error_chain as chain;
