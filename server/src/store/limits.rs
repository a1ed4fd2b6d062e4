//! The limits' storage: what admission asks the store for (a [`Plan`]) and what it answers (a
//! [`Reservation`] or a [`Refusal`]), the snapshot the decision reads and its verdict, and the
//! settlement that ends a request. The types live here, under the limits, because the engines
//! keep and exchange them; the decision itself is `limits::admission::decide` (and its Lua
//! mirror), which the engines receive in their [`Rules`](super::Rules).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{key_lease_scope, scheduling::Lease, StoreError};

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
        key_lease_scope(&self.key_id)
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
    pub fn of(plan: &Plan, grant: &Grant, lease_id: &str) -> Self {
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

/// The state of one cost counter when the request arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterState {
    pub spent: u64,
    /// Reserved by requests in flight.
    pub reserved: u64,
}

/// The key's rate window as stored (before any reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    pub start_ms: i64,
    pub requests: u64,
    pub tokens: u64,
    pub cost: u64,
    pub reserved: u64,
}

/// Everything the decision reads, in the plan's order of counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests of the key in flight (live leases).
    pub held: u64,
    pub window: WindowState,
    pub counters: Vec<CounterState>,
}

/// An admission: what to reserve, and the output limit the request must run with when its own
/// did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub reserve_nanos: u64,
    /// `Some(n)`: the request's output limit was lowered to `n` tokens.
    pub output_limit: Option<u64>,
    /// The window the request counts in (ms; 0 without a window), and whether it starts now.
    pub window_start_ms: i64,
    pub window_reset: bool,
}

/// The admission decision: admit with a grant, or refuse.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Admit(Grant),
    Refuse(Refusal),
}

/// Admission, settlement and what a key's limits have used.
#[async_trait::async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Admission: every limit of the plan checked and the estimate reserved, atomically.
    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError>;
    /// The settlement of a request that ends without usage to record.
    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError>;
    /// What was spent on each counter `(scope, id)` (reserved amounts excluded), and the key's
    /// rate window `(started ms, requests, tokens, cost)` if one is running.
    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError>;
}
