//! The dashboard's summary (also `crs status`): keys, accounts by state, today's usage, the
//! trend of the last days, the models used today.

use app::domain::{DashboardSummary, ModelUsage, UsagePoint, ACCOUNT_STATES};
use chrono::Utc;

use super::AdminError;
use crate::{
    state::AppState,
    store::{buckets, Periods},
};

/// Days in the dashboard's usage trend.
const TREND_DAYS: i64 = 14;

pub async fn summary(state: &AppState) -> Result<DashboardSummary, AdminError> {
    let keys = state.all_keys().await?;
    let accounts = super::accounts::describe(state, state.store.list_accounts().await?).await?;
    let now = Utc::now();
    let tz = state.config.timezone_offset_hours;
    let today = Periods::at(now, tz);
    // One pipelined read: the trend's days, the last five minutes, then today's models.
    let days: Vec<String> = (0..TREND_DAYS)
        .rev()
        .map(|n| Periods::at(now - chrono::Duration::days(n), tz).day)
        .collect();
    let minutes: Vec<String> = (1..=5)
        .map(|n| Periods::at(now - chrono::Duration::minutes(n), tz).minute)
        .collect();
    let models = state.store.models_used(&today.day).await?;
    let names: Vec<String> = days
        .iter()
        .map(|d| buckets::global_day(d))
        .chain(minutes.iter().map(|m| buckets::global_minute(m)))
        .chain(models.iter().map(|m| buckets::model_day(m, &today.day)))
        .collect();
    let usage = state.store.usage(&names).await?;
    let unpriced_models = crate::accounting::unpriced::list(state).await?;
    let (trend_usage, rest) = usage.split_at(days.len());
    let (minute_usage, model_usage) = rest.split_at(minutes.len());
    let mut models: Vec<ModelUsage> = models
        .into_iter()
        .zip(model_usage)
        .filter(|(_, u)| u.requests > 0)
        .map(|(model, usage)| ModelUsage {
            model,
            usage: *usage,
        })
        .collect();
    models.sort_by(|a, b| {
        (b.usage.cost_nanos, b.usage.requests).cmp(&(a.usage.cost_nanos, a.usage.requests))
    });
    let live: Vec<_> = keys.iter().filter(|k| !k.key.is_deleted).collect();
    let by_state = ACCOUNT_STATES
        .iter()
        .map(|st| {
            let n = accounts.iter().filter(|a| a.state == *st).count() as u64;
            (st.to_string(), n)
        })
        .collect();
    Ok(DashboardSummary {
        username: String::new(),
        total_keys: live.len() as u64,
        active_keys: live.iter().filter(|k| k.key.is_active).count() as u64,
        total_accounts: accounts.len() as u64,
        schedulable_accounts: accounts.iter().filter(|a| a.state == "normal").count() as u64,
        accounts_by_state: by_state,
        today: trend_usage.last().copied().unwrap_or_default(),
        rpm: minute_usage.iter().map(|u| u.requests).sum::<u64>() as f64 / 5.0,
        tpm: minute_usage.iter().map(|u| u.all_tokens()).sum::<u64>() as f64 / 5.0,
        trend: days
            .into_iter()
            .zip(trend_usage)
            .map(|(period, usage)| UsagePoint {
                period,
                usage: *usage,
            })
            .collect(),
        models,
        store_engine: state.store.engine().to_string(),
        unpriced_models,
    })
}
