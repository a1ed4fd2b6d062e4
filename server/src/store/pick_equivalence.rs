//! Model-based test of the account pick: random sequences of picks (with and without a
//! session, for a model family or not, over any subset of the accounts in any order),
//! requests ending (with a usage record or not), rests, rests cleared and sessions forgotten
//! go to the pure decision (`scheduler::pick::decide` over a simulated store), the embedded
//! engine and the Redis engine (`pick.lua`); all three must decide the same every time.

use std::{collections::HashMap, time::Duration};

use app::domain::{AccountError, Cooldown, RequestRecord, TokenUsage};
use chrono::{Duration as ChronoDuration, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::scheduler::leases::Lease;
use crate::scheduler::pick::{self, CandidateState, Decision, Mapped, StickyState, StickyWrite};
use crate::testing::RedisServer;

const ACCOUNTS: usize = 4;
const FAMILIES: [&str; 2] = ["opus", "sonnet"];
const STICKY_TTL: Duration = Duration::from_secs(3600);
/// Rests end long after a case does (2100-01-01), so time cannot split the engines.
const REST_UNTIL_MS: i64 = 4_102_444_800_000;

#[derive(Clone, Debug)]
enum Op {
    Pick {
        /// Account indices, in the caller's order.
        candidates: Vec<usize>,
        session: Option<usize>,
        family: Option<usize>,
        /// Asked with an outdated accounts version.
        stale: bool,
    },
    /// The n-th request in flight ends; with a usage record (dated in the past or the
    /// future: neither may change the order) or without.
    Finish {
        which: usize,
        usage: Option<bool>,
    },
    Rest {
        account: usize,
        family: Option<usize>,
        rate_limit: bool,
    },
    Clear(usize),
    Forget(usize),
}

#[derive(Clone, Debug)]
struct Case {
    priorities: Vec<u32>,
    slots: Vec<u32>,
    renew_below: Duration,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    let pick = (
        prop::sample::subsequence((0..ACCOUNTS).collect::<Vec<_>>(), 0..=ACCOUNTS).prop_shuffle(),
        prop::option::of(0usize..3),
        prop::option::of(0usize..FAMILIES.len()),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(candidates, session, family, stale)| Op::Pick {
            candidates,
            session,
            family,
            stale,
        });
    let op = prop_oneof![
        8 => pick,
        4 => (0usize..8, prop::option::of(any::<bool>()))
            .prop_map(|(which, usage)| Op::Finish { which, usage }),
        2 => (0..ACCOUNTS, prop::option::of(0usize..FAMILIES.len()), any::<bool>())
            .prop_map(|(account, family, rate_limit)| Op::Rest { account, family, rate_limit }),
        1 => (0..ACCOUNTS).prop_map(Op::Clear),
        1 => (0usize..3).prop_map(Op::Forget),
    ];
    (
        // Few distinct priorities, so that the least-recent-pick order decides often.
        prop::collection::vec(prop::sample::select(vec![1u32, 5, 5]), ACCOUNTS),
        prop::collection::vec(0u32..3, ACCOUNTS),
        prop::sample::select(vec![Duration::ZERO, STICKY_TTL * 2]),
        prop::collection::vec(op, 1..60),
    )
        .prop_map(|(priorities, slots, renew_below, ops)| Case {
            priorities,
            slots,
            renew_below,
            ops,
        })
}

fn id(account: usize) -> String {
    format!("acct-{account}")
}

fn sticky_key(session: usize) -> String {
    format!("sticky-{session}")
}

fn cooldown(family: Option<usize>, rate_limit: bool) -> Cooldown {
    Cooldown {
        class: if rate_limit { "rate_limit" } else { "overload" }.into(),
        status: if rate_limit { 429 } else { 529 },
        until_ms: REST_UNTIL_MS,
        family: family.map(|f| FAMILIES[f].to_string()),
        message: "rest".into(),
    }
}

/// A request in flight: its account and its slot, if it took one.
#[derive(Clone, Debug)]
struct InFlight {
    account: usize,
    lease: Option<Lease>,
}

/// The pure model: the decision over a simulated store.
#[derive(Default)]
struct Model {
    /// Rests per (account, family).
    rests: HashMap<(usize, Option<usize>), Cooldown>,
    sticky: HashMap<usize, usize>,
    stamps: HashMap<usize, i64>,
    newest: i64,
    in_flight: Vec<InFlight>,
    clock: i64,
}

impl Model {
    fn pick(
        &mut self,
        c: &Case,
        candidates: &[usize],
        session: Option<usize>,
        family: Option<usize>,
        lease_id: &str,
    ) -> Pick {
        self.clock += 1;
        let held = |a: usize| {
            self.in_flight
                .iter()
                .filter(|r| r.account == a && r.lease.is_some())
                .count() as u32
        };
        let snapshot = pick::Snapshot {
            candidates: candidates
                .iter()
                .map(|&a| CandidateState {
                    id: id(a),
                    priority: c.priorities[a],
                    last_pick_ms: self.stamps.get(&a).copied().unwrap_or(0),
                    resting: self
                        .rests
                        .get(&(a, None))
                        .or_else(|| family.and_then(|f| self.rests.get(&(a, Some(f)))))
                        .cloned(),
                    max_concurrency: c.slots[a],
                    held: if c.slots[a] > 0 { held(a) } else { 0 },
                })
                .collect(),
            sticky: session.map(|s| StickyState {
                mapped: self.sticky.get(&s).map(|&a| Mapped {
                    account_id: id(a),
                    ttl_left_ms: Some(STICKY_TTL.as_millis() as i64),
                }),
                renew_below_ms: c.renew_below.as_millis() as i64,
            }),
            newest_pick_ms: self.newest,
        };
        match pick::decide(&snapshot, self.clock) {
            Decision::Refused { why, drop_sticky } => {
                if drop_sticky {
                    session.map(|s| self.sticky.remove(&s));
                }
                Pick::Unavailable(why)
            }
            Decision::Chosen(choice) => {
                let a = candidates[choice.index];
                self.stamps.insert(a, choice.stamp_ms);
                self.newest = choice.stamp_ms;
                if let (Some(s), true) = (session, choice.sticky != StickyWrite::Keep) {
                    self.sticky.insert(s, a);
                }
                self.in_flight.push(InFlight {
                    account: a,
                    lease: (c.slots[a] > 0)
                        .then(|| (account_lease_scope(&id(a)), lease_id.to_string())),
                });
                Pick::Chosen {
                    account_id: id(a),
                    sticky: choice.sticky_hit,
                }
            }
        }
    }
}

fn usage_event(account: usize, future: bool) -> UsageEvent {
    let at = if future {
        Utc::now() + ChronoDuration::days(1)
    } else {
        Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()
    };
    UsageEvent {
        key_id: "k".into(),
        account_id: id(account),
        service: "claude".into(),
        model: "claude-x".into(),
        usage: TokenUsage {
            input_tokens: 1,
            output_tokens: 1,
            ..Default::default()
        },
        cost_nanos: 1,
        at,
        record: RequestRecord {
            key_id: "k".into(),
            model: "claude-x".into(),
            ..Default::default()
        },
    }
}

fn fail(e: StoreError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

async fn run(c: &Case, redis: &RedisServer) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let engines: Vec<DynStore> = vec![
        Arc::new(embedded::EmbeddedStore::open(dir.path(), 3).expect("embedded")),
        Arc::new(
            redis::RedisStore::connect(&redis.url(), 3)
                .await
                .expect("redis"),
        ),
    ];
    let mut model = Model::default();
    for (n, op) in c.ops.iter().enumerate() {
        match op {
            Op::Pick {
                candidates,
                session,
                family,
                stale,
            } => {
                let lease_id = format!("lease-{n}");
                let expected = if *stale {
                    Pick::Stale
                } else {
                    model.pick(c, candidates, *session, *family, &lease_id)
                };
                let req = PickRequest {
                    known_version: u64::from(*stale),
                    keys_version: None,
                    candidates: candidates
                        .iter()
                        .map(|&a| Candidate {
                            id: id(a),
                            priority: c.priorities[a],
                            max_concurrency: c.slots[a],
                        })
                        .collect(),
                    sticky: session.map(|s| StickyRequest {
                        key: sticky_key(s),
                        ttl: STICKY_TTL,
                        renew_below: c.renew_below,
                    }),
                    family: family.map(|f| FAMILIES[f].to_string()),
                    lease_id,
                    lease_ttl: Duration::from_secs(600),
                };
                for store in &engines {
                    let got = store.pick_account(&req).await.map_err(fail)?;
                    prop_assert_eq!(&got, &expected, "engine {} at op {}", store.engine(), n);
                }
            }
            Op::Finish { which, usage } => {
                if model.in_flight.is_empty() {
                    continue;
                }
                let r = model.in_flight.remove(which % model.in_flight.len());
                for store in &engines {
                    match usage {
                        Some(future) => {
                            let settlement = Settlement {
                                leases: r.lease.iter().cloned().collect(),
                                ..Default::default()
                            };
                            store
                                .record_usage(&usage_event(r.account, *future), 0, &settlement)
                                .await
                                .map_err(fail)?;
                        }
                        None => {
                            if let Some((scope, lease)) = &r.lease {
                                store.release_lease(scope, lease).await.map_err(fail)?;
                            }
                        }
                    }
                }
            }
            Op::Rest {
                account,
                family,
                rate_limit,
            } => {
                let rest = cooldown(*family, *rate_limit);
                let error = AccountError {
                    class: rest.class.clone(),
                    status: rest.status,
                    ..Default::default()
                };
                for store in &engines {
                    store
                        .mark_account(&id(*account), Some((&rest, STICKY_TTL)), &error)
                        .await
                        .map_err(fail)?;
                }
                model.rests.insert((*account, *family), rest);
            }
            Op::Clear(account) => {
                for store in &engines {
                    store.clear_cooldowns(&id(*account)).await.map_err(fail)?;
                }
                model.rests.retain(|(a, _), _| a != account);
            }
            Op::Forget(session) => {
                for store in &engines {
                    store
                        .delete_sticky(&sticky_key(*session))
                        .await
                        .map_err(fail)?;
                }
                model.sticky.remove(session);
            }
        }
    }
    Ok(())
}

#[test]
fn pick_engines_agree_with_the_decision() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let flush = || {
        let client = ::redis::Client::open(redis.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        let _: () = ::redis::cmd("FLUSHDB").query(&mut conn).expect("flush");
    };
    let config = ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    };
    proptest!(config, |(c in case())| {
        flush();
        rt.block_on(run(&c, &redis))?;
    });
}
