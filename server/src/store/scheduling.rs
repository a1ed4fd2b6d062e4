//! Scheduling's storage: the pick step the scheduler asks for (a [`PickRequest`]) and its
//! answer, the snapshot the pick decision reads and its decision, sticky sessions, concurrency
//! leases and named locks — the live coordination between requests and relay instances. The
//! decision itself is `scheduler::pick::decide` (and its Lua mirror), which the engines receive
//! in their [`Rules`](super::Rules).

use std::time::Duration;

use app::domain::Cooldown;

use super::StoreError;

/// `(scope, lease id)`, e.g. `("acct:<id>", "<request id>")`.
pub type Lease = (String, String);

/// The lease scope of an account's concurrency slots.
pub fn account_lease_scope(account_id: &str) -> String {
    format!("acct:{account_id}")
}

/// The lease scope of a key's concurrency slots. The braces are a Redis Cluster hash tag: all
/// of one key's limiter state lives in one slot.
pub fn key_lease_scope(key_id: &str) -> String {
    format!("key{{{key_id}}}")
}

/// One account the scheduler may pick, in the caller's preference order.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub priority: u32,
    /// 0 = unlimited.
    pub max_concurrency: u32,
}

#[derive(Clone, Debug)]
pub struct StickyRequest {
    pub key: String,
    pub ttl: Duration,
    /// The mapping's lifetime is renewed when less than this is left.
    pub renew_below: Duration,
}

/// The scheduling step, atomic in the store: the engine reads the candidates' rests, slots and
/// pick stamps and the session's mapping, lets `scheduler::pick` decide (on Redis its mirror,
/// `pick.lua`), then takes the slot, stamps the pick and maps the session.
#[derive(Clone, Debug)]
pub struct PickRequest {
    /// The accounts version the candidates were computed from; a newer one answers `Stale`.
    pub known_version: u64,
    /// The keys version the request's key copy was read at (a copy from memory): a newer one
    /// fails the pick with `StoreError::KeyChanged` before anything is taken.
    pub keys_version: Option<u64>,
    pub candidates: Vec<Candidate>,
    pub sticky: Option<StickyRequest>,
    pub family: Option<String>,
    pub lease_id: String,
    pub lease_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pick {
    /// Accounts changed since the candidates were computed: reload and ask again.
    Stale,
    Chosen {
        account_id: String,
        sticky: bool,
    },
    /// Nothing free: why the first candidate was refused, or that there was none.
    Unavailable(Refused),
}

/// One candidate as the store sees it when the request arrives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CandidateState {
    pub id: String,
    pub priority: u32,
    /// The stamp of its last pick (ms; 0 = never picked).
    pub last_pick_ms: i64,
    /// Its live rest: the whole account's, else the request's model family's.
    pub resting: Option<Cooldown>,
    /// Concurrency slots; 0 = unlimited.
    pub max_concurrency: u32,
    /// Requests in flight on it (live leases).
    pub held: u32,
}

/// The session's live sticky mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub account_id: String,
    /// Lifetime left (ms); `None`: it does not expire.
    pub ttl_left_ms: Option<i64>,
}

/// The request's session, when it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct StickyState {
    pub mapped: Option<Mapped>,
    pub renew_below_ms: i64,
}

/// Everything the decision reads; candidates in the caller's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub candidates: Vec<CandidateState>,
    pub sticky: Option<StickyState>,
    /// The newest pick stamp of any account.
    pub newest_pick_ms: i64,
}

/// What becomes of the session's sticky mapping when an account is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StickyWrite {
    /// No session, or its mapping is kept as it is.
    Keep,
    /// The mapping was used and has little life left: its lifetime starts again.
    Renew,
    /// The session is mapped to the chosen account (replacing a dropped mapping).
    Set,
}

/// The candidate chosen, and what becomes of the session's mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index into the snapshot's candidates: take a slot on it (if it has slots).
    pub index: usize,
    /// Chosen because the session's mapping named it.
    pub sticky_hit: bool,
    pub sticky: StickyWrite,
    /// The chosen account's new pick stamp (and the newest of all).
    pub stamp_ms: i64,
}

/// Why nothing was picked.
#[derive(Clone, Debug, PartialEq)]
pub enum Refused {
    /// The first candidate refused rests (until `cooldown.until_ms`).
    Resting {
        account_id: String,
        cooldown: Cooldown,
    },
    /// The first candidate refused has all its slots busy.
    Busy { account_id: String },
    /// There was no candidate.
    NoCandidate,
}

/// The pick decision: a choice, or why nothing is free.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Chosen(Choice),
    Refused {
        why: Refused,
        /// The session's mapping named an account that is gone or not free: delete it.
        drop_sticky: bool,
    },
}

/// The pick step, sticky sessions, concurrency leases and named locks.
#[async_trait::async_trait]
pub trait SchedulingStore: Send + Sync + 'static {
    /// The scheduling step: one round trip.
    async fn pick_account(&self, request: &PickRequest) -> Result<Pick, StoreError>;

    // Sticky sessions.
    async fn get_sticky(&self, session: &str) -> Result<Option<String>, StoreError>;
    async fn set_sticky(
        &self,
        session: &str,
        account_id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn delete_sticky(&self, session: &str) -> Result<(), StoreError>;
    /// Sticky mappings this process holds in memory (the embedded engine; Redis expires its
    /// own keys): a bound the attack battery checks.
    fn sticky_in_memory(&self) -> Option<usize> {
        None
    }

    // Concurrency leases: at most `limit` live leases per scope; a lease expires after `ttl`
    // so a crashed instance cannot hold a slot forever.
    async fn acquire_lease(
        &self,
        scope: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    async fn release_lease(&self, scope: &str, lease_id: &str) -> Result<(), StoreError>;
    async fn count_leases(&self, scope: &str) -> Result<u32, StoreError>;
    /// Extends live leases (long streams), in one round trip.
    async fn refresh_leases(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// A lock shared by every relay instance (token refresh): `true` if `owner` holds it now.
    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError>;
}
