//! Which account serves a request, in this order: the key's dedicated account or group →
//! the session's sticky account → the shared pool; only accounts that are active,
//! schedulable, support the model, are not resting and have a free concurrency slot; by
//! priority (lower first), then least recently used.
//!
//! - `session`: the sticky-session key of a request;
//! - `cooldown`: what an upstream failure says about the account;
//! - `health`: recording that (rests, blocks, error history);
//! - `leases`: concurrency slots held by requests in flight;
//! - `pick`: the pick itself, a pure decision (`pick.lua` beside it runs it on Redis).
//!
//! One store round trip per pick: account records are cached by version, and the store's
//! pick step checks rests, takes the slot and maintains stickiness atomically.

pub mod cooldown;
pub mod health;
pub mod leases;
pub mod pick;
pub mod session;

use app::domain::AccountStatus;
use std::{collections::HashMap, sync::Arc, time::Duration};

use app::domain::{AccountGroup, AccountType, ApiKey, Platform};
use parking_lot::Mutex;

use crate::store::{
    account_lease_scope, Candidate, DynStore, Pick, PickRequest, Refused, StickyRequest,
    StoredAccount,
};

/// Scheduling settings from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub sticky_ttl: Duration,
    pub sticky_renew_below: Duration,
    pub lease_ttl: Duration,
    pub dedicated_fallback: bool,
}

struct Snapshot {
    version: u64,
    accounts: Vec<StoredAccount>,
    groups: HashMap<String, AccountGroup>,
}

#[derive(Default)]
pub struct Scheduler {
    cache: Mutex<Option<Arc<Snapshot>>>,
}

/// What one request asks of the scheduler.
pub struct Ask<'a> {
    pub key: &'a ApiKey,
    /// Account types that speak the request's protocol.
    pub platforms: &'a [Platform],
    pub model: &'a str,
    /// Sticky-session key, if the request has a session.
    pub session: Option<&'a session::Session>,
    /// Accounts already tried for this request (failover).
    pub exclude: &'a [String],
    /// The request's id, used as the concurrency lease id.
    pub lease_id: &'a str,
    /// The keys version of the request's key copy, when it came from memory and nothing
    /// checked it yet (see `auth::key_cache`).
    pub key_copy: Option<u64>,
}

/// The chosen account, and the concurrency slot taken on it (release when the request ends).
pub struct Selected {
    pub account: StoredAccount,
    pub sticky: bool,
    pub lease: Option<leases::Lease>,
}

/// Why no account serves a request. The relay answers each in its caller's protocol
/// (`RelayError: From<NotServed>`); the scheduler names no HTTP status.
#[derive(Debug)]
pub enum NotServed {
    /// The key's dedicated account rests from a rate limit until then (a stored time).
    DedicatedRateLimited(String),
    /// The key's dedicated account or group cannot serve (the message says why).
    DedicatedUnavailable(String),
    /// No account of the service serves the model at all.
    ModelUnavailable(String),
    /// Accounts serve the model, but none is available now.
    NoAccount(String),
    /// The accounts kept changing under three picks in a row.
    Unsettled,
    /// The store failed (or found the request's key copy out of date).
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for NotServed {
    fn from(e: crate::store::StoreError) -> Self {
        NotServed::Store(e)
    }
}

impl NotServed {
    /// A store that did not answer: no point in picking again on fresh records.
    fn is_unavailable(&self) -> bool {
        matches!(self, NotServed::Store(e) if !matches!(e, crate::store::StoreError::KeyChanged))
            || matches!(self, NotServed::Unsettled)
    }
}

/// Why the key's bound account or group serves no request now.
#[derive(Debug)]
enum Unserved {
    /// Ruled out before the pick: `not_found`, `inactive_or_error`, `blocked`,
    /// `not_schedulable`, `unavailable`.
    Ineligible(&'static str),
    /// The pick refused.
    Refused(Refused),
}

impl Unserved {
    fn into_error(self, what: &str) -> NotServed {
        let reason = match self {
            Unserved::Refused(Refused::Resting { cooldown, .. })
                if cooldown.class == cooldown::CooldownClass::RateLimit.as_str() =>
            {
                let until = chrono::DateTime::from_timestamp_millis(cooldown.until_ms)
                    .map(crate::timestamps::format_time)
                    .unwrap_or_default();
                return NotServed::DedicatedRateLimited(until);
            }
            Unserved::Refused(Refused::Resting { cooldown, .. }) => {
                format!("temporarily_unavailable: {}", cooldown.class)
            }
            Unserved::Refused(Refused::Busy { .. }) => "concurrency_full".to_string(),
            Unserved::Refused(Refused::NoCandidate) => "unavailable".to_string(),
            Unserved::Ineligible(reason) => reason.to_string(),
        };
        NotServed::DedicatedUnavailable(format!(
            "The {what} bound to this API key is unavailable ({reason})"
        ))
    }
}

enum Binding<'a> {
    Account(&'a str),
    Group(&'a str),
}

impl Scheduler {
    async fn snapshot(&self, store: &DynStore, force: bool) -> Result<Arc<Snapshot>, NotServed> {
        if !force {
            if let Some(s) = self.cache.lock().clone() {
                return Ok(s);
            }
        }
        let snap = store.account_snapshot(None).await?;
        let fresh = Arc::new(Snapshot {
            version: snap.version,
            accounts: snap.accounts.unwrap_or_default(),
            groups: snap
                .groups
                .unwrap_or_default()
                .into_iter()
                .map(|g| (g.id.clone(), g))
                .collect(),
        });
        *self.cache.lock() = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forgets the cached accounts (after an admin change made by this instance).
    pub fn invalidate(&self) {
        *self.cache.lock() = None;
    }

    pub async fn select(
        &self,
        store: &DynStore,
        settings: &Settings,
        ask: &Ask<'_>,
    ) -> Result<Selected, NotServed> {
        let mut force = false;
        for _ in 0..3 {
            let snap = self.snapshot(store, force).await?;
            match self.select_in(store, settings, ask, &snap).await {
                Ok(Some(selected)) => return Ok(selected),
                // Accounts changed meanwhile: reload and pick again.
                Ok(None) => force = true,
                // A refusal decided on cached records is confirmed on fresh ones first.
                Err(e) if !force && !e.is_unavailable() => force = true,
                Err(e) => return Err(e),
            }
        }
        Err(NotServed::Unsettled)
    }

    async fn select_in(
        &self,
        store: &DynStore,
        settings: &Settings,
        ask: &Ask<'_>,
        snap: &Snapshot,
    ) -> Result<Option<Selected>, NotServed> {
        let usable = |a: &StoredAccount| {
            ask.platforms.contains(&a.account.platform)
                && a.account.is_schedulable()
                && a.account.supports_model(ask.model)
                && !ask.exclude.contains(&a.account.id)
        };
        let service = ask
            .platforms
            .first()
            .map(|p| p.service())
            .unwrap_or("claude");
        let bound = match service {
            "openai" => ask.key.openai_account_id.as_deref(),
            "gemini" => ask.key.gemini_account_id.as_deref(),
            _ => ask
                .key
                .claude_account_id
                .as_deref()
                .or(ask.key.claude_console_account_id.as_deref()),
        };
        let binding = bound
            .filter(|b| !b.is_empty())
            .map(|b| {
                b.strip_prefix("responses:")
                    .or_else(|| b.strip_prefix("api:"))
                    .unwrap_or(b)
            })
            .map(|b| match b.strip_prefix("group:") {
                Some(g) => Binding::Group(g),
                None => Binding::Account(b),
            });
        let fallback = ask.key.allow_dedicated_fallback || settings.dedicated_fallback;

        if let Some(binding) = binding {
            let (members, what): (Vec<&StoredAccount>, &str) = match binding {
                Binding::Account(id) => (
                    snap.accounts
                        .iter()
                        .filter(|a| a.account.id == id)
                        .collect(),
                    "dedicated account",
                ),
                Binding::Group(g) => {
                    let ids = snap
                        .groups
                        .get(g)
                        .map(|g| g.members.as_slice())
                        .unwrap_or_default();
                    (
                        snap.accounts
                            .iter()
                            .filter(|a| ids.contains(&a.account.id))
                            .collect(),
                        "account group",
                    )
                }
            };
            let static_reason = match members.first() {
                None => Some("not_found"),
                Some(a)
                    if members.len() == 1
                        && !(a.account.is_active && a.account.status != AccountStatus::Error) =>
                {
                    Some("inactive_or_error")
                }
                Some(a) if members.len() == 1 && a.account.status == AccountStatus::Blocked => {
                    Some("blocked")
                }
                Some(a) if members.len() == 1 && !a.account.schedulable => Some("not_schedulable"),
                _ => None,
            };
            let candidates: Vec<&StoredAccount> =
                members.into_iter().filter(|a| usable(a)).collect();
            let unserved = if candidates.is_empty() {
                Unserved::Ineligible(static_reason.unwrap_or("unavailable"))
            } else {
                match self.pick(store, settings, ask, snap, &candidates).await? {
                    Picked::Chosen(s) => return Ok(Some(s)),
                    Picked::Stale => return Ok(None),
                    Picked::Nothing(why) => Unserved::Refused(why),
                }
            };
            if !fallback {
                return Err(unserved.into_error(what));
            }
        }

        // The shared pool: dedicated accounts serve only their keys.
        let pool: Vec<&StoredAccount> = snap
            .accounts
            .iter()
            .filter(|a| a.account.account_type == AccountType::Shared && usable(a))
            .collect();
        if pool.is_empty() {
            let supported = snap.accounts.iter().any(|a| {
                ask.platforms.contains(&a.account.platform) && a.account.supports_model(ask.model)
            });
            if !supported {
                return Err(NotServed::ModelUnavailable(format!(
                    "No {} account serves the requested model: {}",
                    service_name(service),
                    ask.model
                )));
            }
            return Err(NotServed::NoAccount(format!(
                "No available {} accounts support the requested model: {}",
                service_name(service),
                ask.model
            )));
        }
        match self.pick(store, settings, ask, snap, &pool).await? {
            Picked::Chosen(s) => Ok(Some(s)),
            Picked::Stale => Ok(None),
            Picked::Nothing(_) => Err(NotServed::NoAccount(format!(
                "No available {} accounts support the requested model: {} (all are resting or busy)",
                service_name(service),
                ask.model
            ))),
        }
    }

    async fn pick(
        &self,
        store: &DynStore,
        settings: &Settings,
        ask: &Ask<'_>,
        snap: &Snapshot,
        accounts: &[&StoredAccount],
    ) -> Result<Picked, NotServed> {
        let mut candidates: Vec<Candidate> = accounts
            .iter()
            .map(|a| Candidate {
                id: a.account.id.clone(),
                priority: a.account.priority,
                max_concurrency: a.account.max_concurrency,
            })
            .collect();
        candidates.sort_by_key(|c| c.priority);
        let family = app::domain::model_family(ask.model).map(str::to_string);
        let req = PickRequest {
            known_version: snap.version,
            keys_version: ask.key_copy,
            candidates,
            sticky: ask.session.map(|s| StickyRequest {
                key: session::sticky_key(
                    ask.platforms
                        .first()
                        .map(|p| p.service())
                        .unwrap_or("claude"),
                    &ask.key.id,
                    s,
                ),
                ttl: settings.sticky_ttl,
                renew_below: settings.sticky_renew_below,
            }),
            family,
            lease_id: ask.lease_id.to_string(),
            lease_ttl: settings.lease_ttl,
        };
        let t = std::time::Instant::now();
        let picked = store.pick_account(&req).await?;
        crate::telemetry::store_round_trip(store.engine(), "pick", t.elapsed());
        match picked {
            Pick::Stale => Ok(Picked::Stale),
            Pick::Chosen { account_id, sticky } => {
                let Some(account) = snap.accounts.iter().find(|a| a.account.id == account_id)
                else {
                    return Ok(Picked::Stale);
                };
                let lease = (account.account.max_concurrency > 0)
                    .then(|| (account_lease_scope(&account_id), ask.lease_id.to_string()));
                Ok(Picked::Chosen(Selected {
                    account: account.clone(),
                    sticky,
                    lease,
                }))
            }
            Pick::Unavailable(why) => Ok(Picked::Nothing(why)),
        }
    }
}

/// What one pick among candidates came to.
// Returned once per pick and taken apart at once: boxing the choice would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Picked {
    Chosen(Selected),
    /// The snapshot is out of date: reload and pick again.
    Stale,
    /// No candidate is free, and why.
    Nothing(Refused),
}

fn service_name(service: &str) -> &'static str {
    match service {
        "openai" => "OpenAI",
        "gemini" => "Gemini",
        _ => "Claude",
    }
}

#[cfg(test)]
mod tests;
