//! A relay request's admission: model and client restrictions, then the store's atomic
//! admission step (waiting for a concurrency slot while the queue timeout allows), and the
//! [`Reserved`] guard that gives the reservation back however the request ends.

use std::time::Duration;

use app::domain::ApiKey;
use chrono::Utc;

use super::{
    capitalise, client, cost_ask, plan, refusal_message, release, usd, Facts, Plan, Refusal,
    Reservation,
};

/// Why a request was not admitted. The relay answers each in its caller's protocol
/// (`RelayError: From<Denied>`), so this layer names no HTTP status.
#[derive(Debug)]
pub enum Denied {
    /// `UNPRICED_MODEL_POLICY=refuse` and the model has no price.
    Unpriced(crate::accounting::Unpriced),
    /// The key may not use this service or model.
    PermissionDenied(String),
    /// The client is not one the key allows (its allowed clients).
    ClientNotAllowed(Vec<String>),
    /// A limit refused (or the concurrency queue timed out).
    Limited(Refusal),
    /// The store's admission step failed (or found the key copy out of date).
    Store(crate::store::StoreError),
}

impl From<crate::accounting::Unpriced> for Denied {
    fn from(u: crate::accounting::Unpriced) -> Self {
        Denied::Unpriced(u)
    }
}

impl From<crate::store::StoreError> for Denied {
    fn from(e: crate::store::StoreError) -> Self {
        Denied::Store(e)
    }
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

/// What the key may do with this request: model blacklist, client restriction, then one atomic
/// admission of every limit (skipped for keys without limits). Waits for a concurrency slot
/// while `CONCURRENCY_QUEUE_TIMEOUT_MS` allows.
pub async fn admit_request(
    state: &crate::state::AppState,
    stored: &crate::store::StoredKey,
    headers: &axum::http::HeaderMap,
    r: &RequestFacts<'_>,
) -> Result<Admission, Denied> {
    // UNPRICED_MODEL_POLICY=refuse: a model that cannot be billed never goes upstream.
    crate::accounting::unpriced::check(state, r.model)?;
    let key = &stored.key;
    if key.model_blocked(r.model) {
        return Err(Denied::PermissionDenied(format!(
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
        return Err(Denied::ClientNotAllowed(key.allowed_clients.clone()));
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
                return Err(Denied::Limited(refusal));
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
