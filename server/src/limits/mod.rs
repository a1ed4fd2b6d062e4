//! May this key make this request? Admission is one atomic step in the store that checks every
//! applicable limit — the key's concurrency, its rate window, daily, total and weekly cost, cost
//! per platform and per model, and its owner's budget — and reserves the most the request can
//! cost, all or nothing; when only a shorter answer fits, the request's output limit is lowered
//! to it. When the request ends (completed, failed or abandoned), the settlement replaces the
//! reservation with what it actually cost. Spent plus reserved never passes a limit.
//!
//! - `admission`: the decision, a pure function (`admit.lua` mirrors it for Redis).
//! - `client`: client restrictions (Claude Code, Gemini CLI, Codex CLI).
//! - `settlement`: the end of a request — its slots released, its reservation settled.

pub mod admission;
pub mod client;
mod settlement;

pub use settlement::{release, settle};

use std::time::Duration;

use app::domain::ApiKey;
use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, FixedOffset, TimeZone, Timelike, Utc,
};
use serde::{Deserialize, Serialize};

use crate::scheduler::leases::Lease;

/// Which limit a counter enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    Daily,
    Total,
    Weekly,
    /// The original's weekly limit for Claude-family models.
    WeeklyOpus,
    PlatformDaily(String),
    PlatformTotal(String),
    ModelDaily(String),
    ModelTotal(String),
    /// The owning user's budget across all their keys.
    UserDaily,
    UserMonthly,
}

impl LimitKind {
    /// The original's `code` for a cost refusal.
    pub fn code(&self) -> &'static str {
        match self {
            LimitKind::Daily => "daily_cost_limit_exceeded",
            LimitKind::Total => "total_cost_limit_exceeded",
            LimitKind::Weekly => "weekly_cost_limit_exceeded",
            LimitKind::WeeklyOpus => "weekly_opus_cost_limit_exceeded",
            LimitKind::PlatformDaily(_) => "platform_daily_cost_limit_exceeded",
            LimitKind::PlatformTotal(_) => "platform_total_cost_limit_exceeded",
            LimitKind::ModelDaily(_) => "model_daily_cost_limit_exceeded",
            LimitKind::ModelTotal(_) => "model_total_cost_limit_exceeded",
            LimitKind::UserDaily => "user_daily_budget_exceeded",
            LimitKind::UserMonthly => "user_monthly_budget_exceeded",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            LimitKind::Daily => "daily cost limit".into(),
            LimitKind::Total => "total cost limit".into(),
            LimitKind::Weekly => "weekly cost limit".into(),
            LimitKind::WeeklyOpus => "weekly Claude cost limit".into(),
            LimitKind::PlatformDaily(p) => format!("daily cost limit for {p}"),
            LimitKind::PlatformTotal(p) => format!("total cost limit for {p}"),
            LimitKind::ModelDaily(m) => format!("daily cost limit for {m}"),
            LimitKind::ModelTotal(m) => format!("total cost limit for {m}"),
            LimitKind::UserDaily => "daily budget of the key's owner".into(),
            LimitKind::UserMonthly => "monthly budget of the key's owner".into(),
        }
    }
}

/// One spending counter (`id` names its period, e.g. `d:2026-11-26`), kept under `scope`: the
/// key's id, or `u:<user id>` for the owner's budget shared by all their keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    pub scope: String,
    pub id: String,
    pub limit_nanos: u64,
    /// How long the counter is kept after its last write (`None`: forever).
    pub ttl: Option<Duration>,
    pub kind: LimitKind,
    pub reset_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub length: Duration,
    pub max_requests: u64,
    pub max_tokens: u64,
    pub max_cost_nanos: u64,
}

/// What a request may cost, in rated nano-dollars: the input estimate, and the output at its
/// price up to the output limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostAsk {
    pub input_nanos: u64,
    /// Rated output price per 1,000 tokens, rounded up.
    pub output_per_ktok: u64,
    /// The output limit the request runs with: its own, else the model's, else the default.
    pub max_output: u64,
    /// The smallest answer worth admitting (`MIN_OUTPUT_TOKENS`).
    pub min_output: u64,
}

/// Bounds that keep the admission arithmetic exact in Lua's doubles (below 2^53): no model
/// answers with more tokens, and no price is this high.
pub const MAX_OUTPUT_TOKENS: u64 = 2_000_000;
pub const MAX_OUTPUT_PER_KTOK: u64 = 4_000_000_000;

/// Everything admission must check for one request of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub key_id: String,
    pub concurrency: u32,
    pub window: Option<Window>,
    pub counters: Vec<Counter>,
    /// What the request may cost; `None` for requests that cost nothing (`count_tokens`):
    /// they pass concurrency and the rate window, and reserve nothing.
    pub cost: Option<CostAsk>,
    /// The keys version the key's copy was read at, when it came from memory: a newer one
    /// fails admission with `StoreError::KeyChanged` before anything is taken.
    pub keys_version: Option<u64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.concurrency == 0 && self.window.is_none() && self.counters.is_empty()
    }

    pub fn lease_scope(&self) -> String {
        crate::store::key_lease_scope(&self.key_id)
    }
}

/// Why admission said no.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    Concurrency {
        current: u64,
        limit: u64,
    },
    WindowRequests {
        current: u64,
        limit: u64,
        reset_at_ms: i64,
    },
    WindowTokens {
        current: u64,
        limit: u64,
        reset_at_ms: i64,
    },
    WindowCost {
        current_nanos: u64,
        limit_nanos: u64,
        reset_at_ms: i64,
    },
    Cost {
        kind: LimitKind,
        /// Spent plus reserved by requests in flight.
        current_nanos: u64,
        limit_nanos: u64,
        reset_at: Option<DateTime<Utc>>,
        /// What the smallest answer would have cost.
        needed_nanos: u64,
    },
}

/// A counter a reservation holds: (scope, id, TTL).
pub type HeldCounter = (String, String, Option<Duration>);

/// What admission reserved, to be settled when the request ends.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reservation {
    pub key_id: String,
    pub counters: Vec<HeldCounter>,
    pub window: bool,
    /// When the reserved window started (ms), so a settlement never touches a newer window.
    pub window_start_ms: i64,
    pub reserved_nanos: u64,
    /// `Some(n)`: the request's output limit was lowered to `n` tokens to fit a cost limit.
    pub output_limit: Option<u64>,
    pub lease: Option<Lease>,
}

impl Reservation {
    /// The reservation a granted plan holds.
    pub fn of(plan: &Plan, grant: &admission::Grant, lease_id: &str) -> Self {
        Reservation {
            key_id: plan.key_id.clone(),
            counters: plan
                .counters
                .iter()
                .map(|c| (c.scope.clone(), c.id.clone(), c.ttl))
                .collect(),
            window: plan.window.is_some(),
            window_start_ms: grant.window_start_ms,
            reserved_nanos: grant.reserve_nanos,
            output_limit: grant.output_limit,
            lease: (plan.concurrency > 0).then(|| (plan.lease_scope(), lease_id.to_string())),
        }
    }
}

/// The end of a request: leases to release and, with a reservation, the actual cost and tokens.
#[derive(Clone, Debug, Default)]
pub struct Settlement {
    pub leases: Vec<Lease>,
    pub reservation: Option<Reservation>,
    pub actual_nanos: u64,
    pub tokens: u64,
}

pub const NANOS_PER_USD: f64 = 1e9;

pub fn usd_to_nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * NANOS_PER_USD).round() as u64
    } else {
        0
    }
}

/// A store's refusal, told in the plan's terms. `what` is `concurrency`, `window_*`, or the
/// index of the refusing cost counter.
pub fn refusal_from(
    plan: &Plan,
    what: &str,
    current: i64,
    limit: i64,
    reset_ms: i64,
    needed: i64,
) -> Refusal {
    let (current, limit) = (current.max(0) as u64, limit.max(0) as u64);
    match what {
        "concurrency" => Refusal::Concurrency { current, limit },
        "window_requests" => Refusal::WindowRequests {
            current,
            limit,
            reset_at_ms: reset_ms,
        },
        "window_tokens" => Refusal::WindowTokens {
            current,
            limit,
            reset_at_ms: reset_ms,
        },
        "window_cost" => Refusal::WindowCost {
            current_nanos: current,
            limit_nanos: limit,
            reset_at_ms: reset_ms,
        },
        index => {
            let counter = index
                .parse::<usize>()
                .ok()
                .and_then(|i| plan.counters.get(i));
            Refusal::Cost {
                kind: counter.map(|c| c.kind.clone()).unwrap_or(LimitKind::Total),
                current_nanos: current,
                limit_nanos: limit,
                reset_at: counter.and_then(|c| c.reset_at),
                needed_nanos: needed.max(0) as u64,
            }
        }
    }
}

fn usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD
}

fn iso_ms(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(crate::auth::api_key::format_time)
}

/// The refusal's message, after the original's (in English).
pub fn refusal_message(r: &Refusal) -> String {
    match r {
        Refusal::Concurrency { limit, .. } => {
            format!("Concurrency limit exceeded: too many concurrent requests. Limit: {limit} concurrent requests")
        }
        Refusal::WindowRequests { limit, .. } => {
            format!("Rate limit exceeded: request limit reached ({limit} requests)")
        }
        Refusal::WindowTokens { limit, .. } => {
            format!("Rate limit exceeded: token limit reached ({limit} tokens)")
        }
        Refusal::WindowCost { limit_nanos, .. } => {
            format!(
                "Rate limit exceeded: cost limit reached (${:.2})",
                usd(*limit_nanos)
            )
        }
        Refusal::Cost {
            kind,
            current_nanos,
            limit_nanos,
            needed_nanos,
            ..
        } => format!(
            "{} reached (${:.2}): ${:.4} remains, and the smallest answer needs ${:.4}",
            capitalise(&kind.describe()),
            usd(*limit_nanos),
            usd(limit_nanos.saturating_sub(*current_nanos)),
            usd(*needed_nanos)
        ),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The original's extra fields of a refusal (`code` goes inside `error`).
pub fn refusal_fields(r: &Refusal) -> serde_json::Value {
    use serde_json::json;
    match r {
        Refusal::Concurrency { current, limit } => {
            json!({"currentConcurrency": current, "concurrencyLimit": limit})
        }
        Refusal::WindowRequests {
            current,
            limit,
            reset_at_ms,
        } => {
            json!({"currentRequests": current, "requestLimit": limit, "resetAt": iso_ms(*reset_at_ms),
                   "remainingMinutes": ((reset_at_ms - Utc::now().timestamp_millis()).max(0) + 59_999) / 60_000})
        }
        Refusal::WindowTokens {
            current,
            limit,
            reset_at_ms,
        } => {
            json!({"currentTokens": current, "tokenLimit": limit, "resetAt": iso_ms(*reset_at_ms)})
        }
        Refusal::WindowCost {
            current_nanos,
            limit_nanos,
            reset_at_ms,
        } => {
            json!({"currentCost": usd(*current_nanos), "costLimit": usd(*limit_nanos), "resetAt": iso_ms(*reset_at_ms)})
        }
        Refusal::Cost {
            kind,
            current_nanos,
            limit_nanos,
            reset_at,
            needed_nanos,
        } => json!({
            "code": kind.code(),
            "currentCost": usd(*current_nanos),
            "costLimit": usd(*limit_nanos),
            "remainingCost": usd(limit_nanos.saturating_sub(*current_nanos)),
            "minimumRequestCost": usd(*needed_nanos),
            "resetAt": reset_at.map(crate::auth::api_key::format_time),
        }),
    }
}

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

/// What admission needs to know of a request besides its key.
pub struct RequestFacts<'a> {
    pub service: &'a str,
    pub model: &'a str,
    pub path: &'a str,
    /// The request names its session (`metadata.user_id`): a Claude Code signal.
    pub has_user_id: bool,
    /// The body the upstream will receive: its size is the input estimate.
    pub body: &'a [u8],
    /// The request's own output limit, when it sets one.
    pub requested_output: Option<u64>,
    /// `false` for requests that cost nothing (counting tokens): concurrency and the rate
    /// window only.
    pub costs: bool,
}

/// An admitted request: what it holds, and the output limit its upstream request must carry.
#[derive(Debug, Default)]
pub struct Admission {
    pub reservation: Reserved,
    /// Set when the body must say it: the limit was lowered to fit a cost limit, or the request
    /// named none and its reservation assumed one (so the upstream cannot answer past it).
    pub output_limit: Option<u64>,
}

/// An admission's reservation (and the key's concurrency slot in it) until a relay attempt
/// takes it over ([`Reserved::take`]): if the request ends first — the client went away, an
/// early return, a panic — dropping this releases it, so nothing stays counted.
#[derive(Default)]
pub struct Reserved {
    held: Option<(crate::state::AppState, Reservation)>,
}

impl Reserved {
    fn new(state: &crate::state::AppState, reservation: Reservation) -> Self {
        Reserved {
            held: Some((state.clone(), reservation)),
        }
    }

    /// Hands the reservation over to whoever settles it now; the guard is disarmed.
    pub fn take(mut self) -> Option<Reservation> {
        self.held.take().map(|(_, r)| r)
    }

    pub fn is_some(&self) -> bool {
        self.held.is_some()
    }

    pub fn reservation(&self) -> Option<&Reservation> {
        self.held.as_ref().map(|(_, r)| r)
    }
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reserved")
            .field(&self.held.as_ref().map(|(_, r)| r))
            .finish()
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Some((state, reservation)) = self.held.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                release(&state, None, Some(reservation));
            }
        }
    }
}

/// The store's admission step, as a task of its own: if the request is dropped while the step
/// is in flight, what the step reserved is released when it lands (else it would stay
/// counted until its counters expire).
///
/// The reservation travels as a [`Reserved`] guard: if the request is dropped after the step
/// sent its answer but before reading it, the answer is dropped with the channel, and the
/// guard releases it then.
async fn admit_detached(
    state: &crate::state::AppState,
    plan: &Plan,
    lease_id: &str,
) -> Result<Result<Reserved, Refusal>, crate::store::StoreError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (st, plan, lease_id) = (state.clone(), plan.clone(), lease_id.to_string());
    tokio::spawn(async move {
        let admitted = st.store.admit(&plan, &lease_id, st.config.lease_ttl).await;
        // A failed send hands the guard back, and dropping it releases the reservation.
        let _ = tx.send(admitted.map(|a| a.map(|r| Reserved::new(&st, r))));
    });
    rx.await.map_err(|_| {
        crate::store::StoreError::Unavailable("the admission step did not finish".into())
    })?
}

/// Input tokens a body can hold at most, for the reservation: one token per three bytes.
/// Tokenizers make about one token of four bytes of English (and of the JSON around it) and
/// about one of three bytes of Chinese, so this is an overestimate for real prompts; the
/// model's context window (from the pricing table) caps it.
pub fn input_tokens_estimate(body_len: usize, max_input_tokens: Option<u64>) -> u64 {
    let estimate = (body_len as u64).div_ceil(3);
    max_input_tokens.map_or(estimate, |m| estimate.min(m))
}

/// The most a request can cost, in rated nano-dollars (see `admission`): its input estimate at
/// the model's highest input-side rate (input, cache writes), and its output at the output
/// rate, long-context rates when the estimate passes 200k tokens.
pub fn cost_ask(
    price: &crate::accounting::ModelPrice,
    rate: f64,
    body_len: usize,
    requested_output: Option<u64>,
    config: &crate::config::Config,
) -> CostAsk {
    let input_tokens = input_tokens_estimate(body_len, price.max_input_tokens);
    let rates = price.rates_for(input_tokens);
    let input_rate = rates
        .input
        .max(rates.cache_write_5m)
        .max(rates.cache_write_1h)
        .max(rates.cache_read);
    let rate = if rate.is_finite() && rate >= 0.0 {
        rate
    } else {
        1.0
    };
    let input_nanos = (input_tokens as f64 * input_rate * rate).ceil();
    let per_ktok = (rates.output * 1000.0 * rate).ceil();
    CostAsk {
        input_nanos: if input_nanos.is_finite() {
            input_nanos.min(1e15) as u64
        } else {
            0
        },
        output_per_ktok: if per_ktok.is_finite() {
            (per_ktok as u64).min(MAX_OUTPUT_PER_KTOK)
        } else {
            MAX_OUTPUT_PER_KTOK
        },
        max_output: requested_output
            .or(price.max_output_tokens)
            .unwrap_or(config.default_max_output_tokens)
            .min(MAX_OUTPUT_TOKENS),
        min_output: config.min_output_tokens,
    }
}

/// What the key may do with this request: model blacklist, client restriction, then one atomic
/// admission of every limit (skipped for keys without limits). Waits for a concurrency slot
/// while `CONCURRENCY_QUEUE_TIMEOUT_MS` allows.
pub async fn admit_request(
    state: &crate::state::AppState,
    stored: &crate::store::StoredKey,
    headers: &axum::http::HeaderMap,
    r: &RequestFacts<'_>,
) -> Result<Admission, crate::relay::error::RelayError> {
    use crate::relay::error::RelayError;
    // UNPRICED_MODEL_POLICY=refuse: a model that cannot be billed never goes upstream.
    crate::accounting::unpriced::check(state, r.model)?;
    let key = &stored.key;
    if key.model_blocked(r.model) {
        return Err(RelayError::PermissionDenied(format!(
            "This API key may not use model {}",
            r.model
        )));
    }
    // Counting tokens skips the client restriction, as in the original: Claude Code counts
    // without the signals it checks.
    if r.costs
        && key.enable_client_restriction
        && !key.allowed_clients.is_empty()
        && !client::allowed(&key.allowed_clients, headers, r.path, r.has_user_id)
    {
        return Err(RelayError::ClientNotAllowed(key.allowed_clients.clone()));
    }
    if !key.has_limits() {
        return Ok(Admission::default());
    }
    let cost = r.costs.then(|| {
        let price = crate::accounting::price_or_fallback(&state.pricing.load(), r.model);
        let rate = key.service_rate(r.service) * state.settings.get().service_rate(r.service);
        cost_ask(
            &price,
            rate,
            r.body.len(),
            r.requested_output,
            &state.config,
        )
    });
    let mut plan = plan(
        key,
        &Facts {
            service: r.service,
            model: r.model,
            cost,
            now: Utc::now(),
            tz_hours: state.config.timezone_offset_hours,
        },
    );
    // A copy from memory is checked here, the request's first store step.
    plan.keys_version = stored.cached_at;
    let lease_id = uuid::Uuid::new_v4().to_string();
    let deadline = tokio::time::Instant::now() + state.config.concurrency_queue_timeout;
    let mut wait = Duration::from_millis(50);
    loop {
        let t = std::time::Instant::now();
        let admitted = admit_detached(state, &plan, &lease_id).await?;
        crate::telemetry::store_round_trip(state.store.engine(), "admit", t.elapsed());
        match admitted {
            Ok(reserved) => {
                let Some(reservation) = reserved.reservation() else {
                    return Ok(Admission::default());
                };
                if let Some(l) = &reservation.lease {
                    state.leases.hold(l.clone());
                }
                warn_if_near(state, key, r.service, &plan);
                let output_limit = match (&plan.cost, reservation.output_limit) {
                    (_, Some(lowered)) => Some(lowered),
                    // The reservation assumed an output limit the request did not name.
                    (Some(cost), None)
                        if r.requested_output.is_none() && reservation.reserved_nanos > 0 =>
                    {
                        Some(cost.max_output)
                    }
                    _ => None,
                };
                if let Some(lowered) = reservation.output_limit {
                    tracing::info!(key = %key.id, model = r.model, requested = ?r.requested_output, lowered, "output limit lowered to fit a cost limit");
                }
                return Ok(Admission {
                    reservation: reserved,
                    output_limit,
                });
            }
            Err(Refusal::Concurrency { .. }) if tokio::time::Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 3 / 2).min(Duration::from_secs(1));
            }
            Err(refusal) => {
                if let Refusal::Cost { kind, .. } = &refusal {
                    state.notifier.notify(crate::notify::Event::new(
                        crate::notify::EventKind::QuotaExceeded,
                        key.id.clone(),
                        key.name.clone(),
                        r.service,
                        format!("{} ({})", refusal_message(&refusal), kind.code()),
                    ));
                }
                crate::telemetry::limit_rejected(match &refusal {
                    Refusal::Concurrency { .. } => "concurrency",
                    Refusal::WindowRequests { .. } => "window_requests",
                    Refusal::WindowTokens { .. } => "window_tokens",
                    Refusal::WindowCost { .. } => "window_cost",
                    Refusal::Cost { kind, .. } => kind.code(),
                });
                return Err(RelayError::Limited(refusal));
            }
        }
    }
}

/// Share of a cost limit that raises a quota warning.
const WARN_AT: f64 = 0.8;
/// A key's cost limits are checked for a warning at most this often (per relay instance).
const WARN_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Off the request path: a quota warning when a cost limit of the key is 80% used.
fn warn_if_near(state: &crate::state::AppState, key: &ApiKey, service: &str, plan: &Plan) {
    use std::{collections::HashMap, sync::OnceLock, time::Instant};
    static CHECKED: OnceLock<parking_lot::Mutex<HashMap<String, Instant>>> = OnceLock::new();
    if plan.counters.is_empty() {
        return;
    }
    {
        let mut checked = CHECKED.get_or_init(Default::default).lock();
        if checked.len() > 100_000 {
            checked.retain(|_, t| t.elapsed() < WARN_CHECK_EVERY);
        }
        match checked.get(&key.id) {
            Some(t) if t.elapsed() < WARN_CHECK_EVERY => return,
            _ => {
                checked.insert(key.id.clone(), Instant::now());
            }
        }
    }
    let (state, plan) = (state.clone(), plan.clone());
    let (key_id, key_name, service) = (key.id.clone(), key.name.clone(), service.to_string());
    state.background.clone().spawn(async move {
        let ids: Vec<(String, String)> = plan
            .counters
            .iter()
            .map(|c| (c.scope.clone(), c.id.clone()))
            .collect();
        let Ok((spent, _)) = state.store.limit_usage(&key_id, &ids).await else {
            return;
        };
        for (c, spent) in plan.counters.iter().zip(spent) {
            let share = spent as f64 / c.limit_nanos.max(1) as f64;
            if (WARN_AT..1.0).contains(&share) {
                state.notifier.notify(crate::notify::Event::new(
                    crate::notify::EventKind::QuotaWarning,
                    key_id.clone(),
                    key_name.clone(),
                    service.clone(),
                    format!(
                        "{} is {:.0}% used (${:.2} of ${:.2})",
                        capitalise(&c.kind.describe()),
                        share * 100.0,
                        usd(spent),
                        usd(c.limit_nanos)
                    ),
                ));
                return;
            }
        }
    });
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
