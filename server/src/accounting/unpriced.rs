//! Models without a price are never silent. `UNPRICED_MODEL_POLICY` decides what happens:
//! `fallback` (the default) bills them at `UNPRICED_FALLBACK_MODEL`'s price and flags the
//! request record; `refuse` answers 400 before anything goes upstream. Either way each one is
//! counted (`crs_unpriced_requests_total{outcome}`), logged (at most once a minute per model
//! per instance) and listed on the dashboard: a small document per model in the store, at most
//! [`MAX_MODELS`], written from memory every [`FLUSH_EVERY`] (never once per request).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use app::domain::UnpricedModel;
use chrono::{DateTime, Utc};

use super::pricing::{LivePricing, ModelPrice, FALLBACK_PRICE};
use crate::store::{DynStore, StoreError};

/// What the sightings are kept in: the table in force (which holds this instance's pending
/// sightings) and the store. The running service (`AppState`) is one.
pub trait Bookkeeping: Clone + Send + Sync + 'static {
    fn pricing(&self) -> &LivePricing;
    fn store(&self) -> &DynStore;
}

// The policy's setting is configuration; re-exported where the policy is applied.
pub use crate::config::UnpricedAction;

/// What happens to a model without a price, resolved against the table in force.
#[derive(Clone, Debug, PartialEq)]
pub struct UnpricedPolicy {
    pub action: UnpricedAction,
    /// The model whose price a fallback uses (with `(built-in)` when not from the table).
    pub fallback_model: String,
    pub fallback_price: ModelPrice,
}

impl UnpricedPolicy {
    /// [`FALLBACK_PRICE`], for tables that price no fallback model.
    pub fn built_in(action: UnpricedAction) -> Self {
        UnpricedPolicy {
            action,
            fallback_model: format!("{} (built-in)", super::pricing::DEFAULT_FALLBACK_MODEL),
            fallback_price: FALLBACK_PRICE,
        }
    }
}

/// A price to bill a request at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priced {
    pub price: ModelPrice,
    /// The model has no price: this is the fallback model's.
    pub fallback: bool,
}

/// A model without a price, under `UNPRICED_MODEL_POLICY=refuse`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("model {model:?} has no price")]
pub struct Unpriced {
    pub model: String,
}

/// How an unpriced request ended, the metric's only label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Fallback,
    Refused,
}

/// Models listed on the dashboard at most (one store document each).
pub const MAX_MODELS: usize = 100;
/// How long sightings gather in memory before one write per model.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Longer names are cut (a client chooses them).
const MAX_NAME: usize = 200;
/// The store documents listing unpriced models (one per model).
pub const DOC_KIND: &str = "unpriced_model";

#[derive(Clone, Copy)]
struct Seen {
    requests: u64,
    refused: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

#[derive(Default)]
struct Sightings {
    pending: HashMap<String, Seen>,
    warned: HashMap<String, Instant>,
    flush_scheduled: bool,
}

/// This instance's unpriced sightings not yet in the store, and when each model was last
/// logged.
#[derive(Default)]
pub struct UnpricedModels {
    inner: parking_lot::Mutex<Sightings>,
}

fn cut(model: &str) -> &str {
    match model.char_indices().nth(MAX_NAME) {
        Some((i, _)) => &model[..i],
        None => model,
    }
}

impl UnpricedModels {
    /// Records one sighting. Returns whether a write to the store should be scheduled (the
    /// first sighting since the last one was), and whether to log it.
    fn see(&self, model: &str, outcome: Outcome, now: DateTime<Utc>) -> (bool, bool) {
        let mut s = self.inner.lock();
        let model = cut(model);
        let due = match s.warned.get(model) {
            Some(at) => at.elapsed() >= WARN_EVERY,
            None => true,
        };
        if due {
            if s.warned.len() >= 4 * MAX_MODELS {
                s.warned.retain(|_, at| at.elapsed() < WARN_EVERY);
            }
            if s.warned.len() < 4 * MAX_MODELS {
                s.warned.insert(model.to_string(), Instant::now());
            }
        }
        // Names past the bound are still counted and logged, just not listed.
        if s.pending.len() < MAX_MODELS || s.pending.contains_key(model) {
            let e = s.pending.entry(model.to_string()).or_insert(Seen {
                requests: 0,
                refused: 0,
                first: now,
                last: now,
            });
            match outcome {
                Outcome::Fallback => e.requests += 1,
                Outcome::Refused => e.refused += 1,
            }
            e.last = now;
        }
        let schedule = !s.flush_scheduled;
        s.flush_scheduled = true;
        (schedule, due)
    }

    fn take(&self) -> HashMap<String, Seen> {
        let mut s = self.inner.lock();
        s.flush_scheduled = false;
        std::mem::take(&mut s.pending)
    }

    fn pending(&self) -> Vec<(String, Seen)> {
        let s = self.inner.lock();
        s.pending.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The price of `model` under `policy`: its own, the fallback model's (flagged), or a refusal.
pub fn price_for(
    pricing: &super::Pricing,
    model: &str,
    policy: &UnpricedPolicy,
) -> Result<Priced, Unpriced> {
    match pricing.price(model) {
        Some(p) => Ok(Priced {
            price: *p,
            fallback: false,
        }),
        None => match policy.action {
            UnpricedAction::Fallback => Ok(Priced {
                price: policy.fallback_price,
                fallback: true,
            }),
            UnpricedAction::Refuse => Err(Unpriced {
                model: cut(model).to_string(),
            }),
        },
    }
}

/// Admission's check: under `refuse`, a model without a price is refused (and noted).
pub fn check(state: &impl Bookkeeping, model: &str) -> Result<(), Unpriced> {
    let pricing = state.pricing().load();
    match price_for(&pricing, model, pricing.unpriced_policy()) {
        Ok(_) => Ok(()),
        Err(u) => {
            note(state, model, Outcome::Refused);
            Err(u)
        }
    }
}

/// A finished request billed at the fallback price (`fallback`; otherwise nothing happens).
pub fn seen(state: &impl Bookkeeping, model: &str, fallback: bool) {
    if fallback {
        note(state, model, Outcome::Fallback);
    }
}

/// Counts, logs (rate-limited) and queues one unpriced request for the dashboard.
pub fn note(state: &impl Bookkeeping, model: &str, outcome: Outcome) {
    let label = match outcome {
        Outcome::Fallback => "fallback",
        Outcome::Refused => "refused",
    };
    crate::telemetry::unpriced_request(label);
    let (schedule, warn) = state.pricing().unpriced().see(model, outcome, Utc::now());
    if warn {
        let pricing = state.pricing().load();
        let policy = pricing.unpriced_policy();
        tracing::warn!(
            model = cut(model),
            outcome = label,
            fallback_model = %policy.fallback_model,
            "model has no price in the pricing table (see the dashboard's unpriced models; add it to the overrides file)"
        );
    }
    if schedule {
        let state = state.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(FLUSH_EVERY).await;
            if let Err(e) = flush(&state).await {
                tracing::warn!(error = %e, "unpriced models not written to the store");
            }
        });
    }
}

/// Adds this instance's pending sightings to the store's documents.
pub async fn flush(state: &impl Bookkeeping) -> Result<(), StoreError> {
    let pending = state.pricing().unpriced().take();
    if pending.is_empty() {
        return Ok(());
    }
    let store = state.store();
    let mut listed = store.list_docs(DOC_KIND).await?.len();
    for (model, seen) in pending {
        let id = doc_id(&model);
        let existing = match store.get_doc(DOC_KIND, &id).await? {
            Some(raw) => serde_json::from_str::<UnpricedModel>(&raw).ok(),
            None => None,
        };
        let doc = match existing {
            Some(mut d) => {
                d.requests += seen.requests;
                d.refused += seen.refused;
                d.last_seen = d.last_seen.max(format_time(seen.last));
                d
            }
            None if listed >= MAX_MODELS => continue,
            None => {
                listed += 1;
                UnpricedModel {
                    model,
                    requests: seen.requests,
                    refused: seen.refused,
                    first_seen: format_time(seen.first),
                    last_seen: format_time(seen.last),
                }
            }
        };
        store
            .put_doc(DOC_KIND, &id, &crate::store::to_json(&doc)?)
            .await?;
    }
    Ok(())
}

/// The unpriced models for the dashboard: the store's, with this instance's pending sightings
/// added, most recent first.
pub async fn list(state: &impl Bookkeeping) -> Result<Vec<UnpricedModel>, StoreError> {
    let mut by_model: HashMap<String, UnpricedModel> = HashMap::new();
    for raw in state.store().list_docs(DOC_KIND).await? {
        if let Ok(d) = serde_json::from_str::<UnpricedModel>(&raw) {
            by_model.insert(d.model.clone(), d);
        }
    }
    for (model, seen) in state.pricing().unpriced().pending() {
        let d = by_model
            .entry(model.clone())
            .or_insert_with(|| UnpricedModel {
                model,
                first_seen: format_time(seen.first),
                ..Default::default()
            });
        d.requests += seen.requests;
        d.refused += seen.refused;
        d.last_seen = d.last_seen.clone().max(format_time(seen.last));
    }
    let mut out: Vec<UnpricedModel> = by_model.into_values().collect();
    out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.model.cmp(&b.model)));
    out.truncate(MAX_MODELS);
    Ok(out)
}

/// A store id for a model name (any characters a client sent, so hashed).
fn doc_id(model: &str) -> String {
    super::pricing::sha256_hex(model.as_bytes())[..32].to_string()
}

fn format_time(t: DateTime<Utc>) -> String {
    crate::timestamps::format_time(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_are_bounded_and_warn_once_a_minute() {
        let m = UnpricedModels::default();
        let now = Utc::now();
        assert_eq!(m.see("x", Outcome::Fallback, now), (true, true));
        assert_eq!(
            m.see("x", Outcome::Refused, now),
            (false, false),
            "one flush scheduled, one warning a minute"
        );
        for i in 0..3 * MAX_MODELS {
            m.see(&format!("m{i}"), Outcome::Fallback, now);
        }
        let pending = m.take();
        assert_eq!(pending.len(), MAX_MODELS);
        assert_eq!((pending["x"].requests, pending["x"].refused), (1, 1));
        assert!(m.inner.lock().warned.len() <= 4 * MAX_MODELS);
        // Taken: the next sighting schedules the next write.
        assert!(m.see("x", Outcome::Fallback, now).0);
        let long = "é".repeat(1000);
        m.see(&long, Outcome::Fallback, now);
        assert!(m
            .pending()
            .iter()
            .all(|(k, _)| k.chars().count() <= MAX_NAME));
    }
}
