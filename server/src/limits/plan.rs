//! Which limits apply to a request: the admission plan of a key for one request (its cost
//! counters with their periods and resets, its rate window and concurrency).

use std::time::Duration;

use app::domain::ApiKey;
use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, FixedOffset, TimeZone, Timelike, Utc,
};

use super::{usd_to_nanos, CostAsk, Counter, LimitKind, Plan, Window};

/// The facts of one request that limits depend on.
pub struct Facts<'a> {
    /// `claude`, `openai`, `gemini`.
    pub service: &'a str,
    pub model: &'a str,
    /// `None`: the request costs nothing (counting tokens).
    pub cost: Option<CostAsk>,
    pub now: DateTime<Utc>,
    pub tz_hours: i32,
}

fn offset(tz_hours: i32) -> FixedOffset {
    FixedOffset::east_opt(tz_hours * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// The next local midnight after `now`.
pub fn next_midnight(now: DateTime<Utc>, tz_hours: i32) -> DateTime<Utc> {
    let tz = offset(tz_hours);
    let local = now.with_timezone(&tz);
    let midnight =
        local.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default() + ChronoDuration::days(1);
    tz.from_local_datetime(&midnight)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now)
}

/// The first moment of the next local month after `now`.
pub fn next_month(now: DateTime<Utc>, tz_hours: i32) -> DateTime<Utc> {
    let tz = offset(tz_hours);
    let local = now.with_timezone(&tz).date_naive();
    let (y, m) = if local.month() == 12 {
        (local.year() + 1, 1)
    } else {
        (local.year(), local.month() + 1)
    };
    chrono::NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| tz.from_local_datetime(&t).single())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now)
}

/// The start of the current week for a reset on `day` (1 = Monday … 7) at `hour`, local time.
pub fn week_start(now: DateTime<Utc>, tz_hours: i32, day: u8, hour: u8) -> DateTime<Utc> {
    let tz = offset(tz_hours);
    let local = now.with_timezone(&tz);
    let day = u32::from(day.clamp(1, 7));
    let hour = u32::from(hour.min(23));
    let today = local.weekday().number_from_monday();
    let mut back = (7 + today - day) % 7;
    if back == 0 && local.hour() < hour {
        back = 7;
    }
    let date = local.date_naive() - ChronoDuration::days(i64::from(back));
    let start = date.and_hms_opt(hour, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&start)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now)
}

/// A model-limit pattern: a name, or a prefix ending in `*`, compared with the model by their
/// normalised names (`app::model_name`), so a limit holds for the dated, Vertex and Bedrock forms.
pub fn pattern_matches(pattern: &str, model: &str) -> bool {
    app::domain::model_matches(pattern, model)
}

/// The scope of a user's budget counters.
pub fn user_scope(user_id: &str) -> String {
    format!("u:{user_id}")
}

/// The admission plan of a request.
pub fn plan(key: &ApiKey, facts: &Facts<'_>) -> Plan {
    let tz = offset(facts.tz_hours);
    let local = facts.now.with_timezone(&tz);
    let day = local.format("%Y-%m-%d").to_string();
    let midnight = next_midnight(facts.now, facts.tz_hours);
    let daily_ttl = Some(Duration::from_secs(2 * 86_400));
    let mut counters = Vec::new();
    let mut add = |scope: &str,
                   id: String,
                   limit: f64,
                   ttl: Option<Duration>,
                   kind: LimitKind,
                   reset_at: Option<DateTime<Utc>>| {
        let limit_nanos = usd_to_nanos(limit);
        if limit_nanos > 0 {
            counters.push(Counter {
                scope: scope.to_string(),
                id,
                limit_nanos,
                ttl,
                kind,
                reset_at,
            });
        }
    };
    let k = key.id.as_str();
    add(
        k,
        format!("d:{day}"),
        key.daily_cost_limit,
        daily_ttl,
        LimitKind::Daily,
        Some(midnight),
    );
    add(
        k,
        "t".into(),
        key.total_cost_limit,
        None,
        LimitKind::Total,
        None,
    );
    let week = week_start(
        facts.now,
        facts.tz_hours,
        key.weekly_reset_day.max(1),
        key.weekly_reset_hour,
    );
    let week_id = week.with_timezone(&tz).format("%Y-%m-%dT%H").to_string();
    let week_ttl = Some(Duration::from_secs(8 * 86_400));
    let next_week = Some(week + ChronoDuration::days(7));
    add(
        k,
        format!("w:{week_id}"),
        key.weekly_cost_limit,
        week_ttl,
        LimitKind::Weekly,
        next_week,
    );
    if app::domain::model_family(facts.model).is_some()
        && app::domain::normalize_model(facts.model).starts_with("claude")
    {
        add(
            k,
            format!("wo:{week_id}"),
            key.weekly_opus_cost_limit,
            week_ttl,
            LimitKind::WeeklyOpus,
            next_week,
        );
    }
    if let Some(p) = key.platform_limits.get(facts.service) {
        let s = facts.service;
        add(
            k,
            format!("pd:{s}:{day}"),
            p.daily_cost,
            daily_ttl,
            LimitKind::PlatformDaily(s.into()),
            Some(midnight),
        );
        add(
            k,
            format!("pt:{s}"),
            p.total_cost,
            None,
            LimitKind::PlatformTotal(s.into()),
            None,
        );
    }
    for (pattern, l) in &key.model_limits {
        if pattern_matches(pattern, facts.model) {
            add(
                k,
                format!("md:{pattern}:{day}"),
                l.daily_cost,
                daily_ttl,
                LimitKind::ModelDaily(pattern.clone()),
                Some(midnight),
            );
            add(
                k,
                format!("mt:{pattern}"),
                l.total_cost,
                None,
                LimitKind::ModelTotal(pattern.clone()),
                None,
            );
        }
    }
    if let Some(user) = key.user_id.as_deref() {
        let scope = user_scope(user);
        let month = local.format("%Y-%m").to_string();
        add(
            &scope,
            format!("ud:{day}"),
            key.owner_budget.daily_cost,
            daily_ttl,
            LimitKind::UserDaily,
            Some(midnight),
        );
        add(
            &scope,
            format!("um:{month}"),
            key.owner_budget.monthly_cost,
            Some(Duration::from_secs(40 * 86_400)),
            LimitKind::UserMonthly,
            Some(next_month(facts.now, facts.tz_hours)),
        );
    }
    let window = (key.rate_limit_window > 0
        && (key.rate_limit_requests > 0 || key.token_limit > 0 || key.rate_limit_cost > 0.0))
        .then(|| Window {
            length: Duration::from_secs(u64::from(key.rate_limit_window) * 60),
            max_requests: key.rate_limit_requests,
            max_tokens: key.token_limit,
            max_cost_nanos: usd_to_nanos(key.rate_limit_cost),
        });
    Plan {
        key_id: key.id.clone(),
        concurrency: key.concurrency_limit,
        window,
        counters,
        cost: facts.cost.clone(),
        keys_version: None,
    }
}

/// The counters of a plan whose current spending the admin list and api-stats show.
pub fn visible_counters(
    key: &ApiKey,
    service_models: &[(&str, &str)],
    now: DateTime<Utc>,
    tz_hours: i32,
) -> Vec<Counter> {
    let mut out: Vec<Counter> = Vec::new();
    for (service, model) in service_models {
        let p = plan(
            key,
            &Facts {
                service,
                model,
                cost: None,
                now,
                tz_hours,
            },
        );
        for c in p.counters {
            if !out.iter().any(|o| o.id == c.id && o.scope == c.scope) {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::CostLimits;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn week_starts_honour_day_and_hour() {
        // 2026-11-26 is a Thursday. UTC offset 0.
        assert_eq!(
            week_start(at(2026, 11, 26, 10), 0, 1, 0),
            at(2026, 11, 23, 0)
        );
        assert_eq!(
            week_start(at(2026, 11, 26, 10), 0, 4, 9),
            at(2026, 11, 26, 9)
        );
        assert_eq!(
            week_start(at(2026, 11, 26, 8), 0, 4, 9),
            at(2026, 11, 19, 9),
            "before the reset hour: last week"
        );
        assert_eq!(
            week_start(at(2026, 11, 26, 10), 0, 5, 0),
            at(2026, 11, 20, 0)
        );
        // In UTC+8, 2026-11-26 20:00 UTC is Friday 04:00 local.
        assert_eq!(
            week_start(at(2026, 11, 26, 20), 8, 5, 0),
            at(2026, 11, 26, 16)
        );
        assert_eq!(next_midnight(at(2026, 11, 26, 20), 8), at(2026, 11, 27, 16));
    }

    #[test]
    fn plans_only_what_applies() {
        let mut key = ApiKey {
            id: "k".into(),
            ..Default::default()
        };
        let facts = Facts {
            service: "claude",
            model: "claude-opus-4-1",
            cost: None,
            now: at(2026, 11, 26, 10),
            tz_hours: 0,
        };
        assert!(plan(&key, &facts).is_empty());
        key.daily_cost_limit = 1.0;
        key.weekly_opus_cost_limit = 2.0;
        key.platform_limits.insert(
            "claude".into(),
            CostLimits {
                daily_cost: 0.0,
                total_cost: 3.0,
            },
        );
        key.platform_limits.insert(
            "openai".into(),
            CostLimits {
                daily_cost: 9.0,
                total_cost: 9.0,
            },
        );
        key.model_limits.insert(
            "claude-opus-*".into(),
            CostLimits {
                daily_cost: 0.5,
                total_cost: 0.0,
            },
        );
        key.model_limits.insert(
            "claude-sonnet-4".into(),
            CostLimits {
                daily_cost: 0.5,
                total_cost: 0.0,
            },
        );
        key.concurrency_limit = 2;
        key.rate_limit_window = 1;
        key.rate_limit_requests = 10;
        let p = plan(&key, &facts);
        let ids: Vec<&str> = p.counters.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "d:2026-11-26",
                "wo:2026-11-23T00",
                "pt:claude",
                "md:claude-opus-*:2026-11-26"
            ]
        );
        assert_eq!(p.counters[0].limit_nanos, 1_000_000_000);
        assert_eq!(p.counters[0].reset_at, Some(at(2026, 11, 27, 0)));
        assert_eq!(p.window.as_ref().unwrap().length, Duration::from_secs(60));
        assert_eq!(p.concurrency, 2);
        assert!(key.has_limits());
        let gpt = Facts {
            service: "openai",
            model: "gpt-5",
            ..facts
        };
        let ids: Vec<String> = plan(&key, &gpt)
            .counters
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(
            ids,
            vec!["d:2026-11-26", "pd:openai:2026-11-26", "pt:openai"]
        );
    }
}
