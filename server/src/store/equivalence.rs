//! Model-based test: random sequences of admissions and settlements go to the pure decision
//! (`limits::admission::decide` over a simulated key), the embedded engine and the Redis engine
//! (`admit.lua`, `settle.lua`); all three must decide the same every time, and spent plus
//! reserved never passes a limit.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::limits::{
    admission::{self, CounterState, Snapshot, Verdict, WindowState},
    CostAsk, Counter, LimitKind, Plan, Refusal, Settlement, Window,
};
use crate::testing::RedisServer;

#[derive(Clone, Debug)]
enum Op {
    Admit(Option<CostAsk>),
    /// Settle the n-th request in flight at this share (%) of its reservation, with tokens.
    Settle {
        which: usize,
        share: u64,
        tokens: u64,
    },
}

#[derive(Clone, Debug)]
struct Case {
    limits: Vec<u64>,
    concurrency: u32,
    window: Option<(u64, u64, u64)>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    let cost = prop::option::weighted(
        0.9,
        (0u64..400, 0u64..2_000, 0u64..300, 1u64..100).prop_map(
            |(input, per_ktok, max_output, min_output)| CostAsk {
                input_nanos: input,
                output_per_ktok: per_ktok,
                max_output,
                min_output,
            },
        ),
    );
    let op = prop_oneof![
        3 => cost.prop_map(Op::Admit),
        2 => (0usize..6, 0u64..=100, 0u64..50)
            .prop_map(|(which, share, tokens)| Op::Settle { which, share, tokens }),
    ];
    (
        // Few distinct limits, so that ties (which limit refuses) happen.
        prop::collection::vec(prop::sample::select(vec![300u64, 800, 800, 2_000]), 0..3),
        0u32..4,
        prop::option::of((
            0u64..6,
            0u64..200,
            prop::sample::select(vec![0u64, 800, 2_000]),
        )),
        prop::collection::vec(op, 1..40),
    )
        .prop_map(|(limits, concurrency, window, ops)| Case {
            limits,
            concurrency,
            window,
            ops,
        })
}

fn plan(c: &Case, cost: Option<CostAsk>) -> Plan {
    Plan {
        key_id: "k".into(),
        concurrency: c.concurrency,
        // An hour: no window resets during a case, so time cannot split the engines.
        window: c.window.map(|(req, tok, cost)| Window {
            length: Duration::from_secs(3600),
            max_requests: req,
            max_tokens: tok,
            max_cost_nanos: cost,
        }),
        counters: c
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| Counter {
                // One counter under an owner's scope, as a user budget is.
                scope: if i == 1 { "u:owner".into() } else { "k".into() },
                id: format!("c{i}"),
                limit_nanos: *l,
                ttl: None,
                kind: [LimitKind::Daily, LimitKind::UserDaily, LimitKind::Total][i % 3].clone(),
                reset_at: None,
            })
            .collect(),
        cost,
        keys_version: None,
    }
}

/// What a decision says, without times (the engines read their own clocks).
fn outcome(r: &Result<Reservation, Refusal>) -> String {
    match r {
        Ok(g) => format!("admit {} {:?}", g.reserved_nanos, g.output_limit),
        Err(Refusal::WindowRequests { current, limit, .. }) => {
            format!("window requests {current}/{limit}")
        }
        Err(Refusal::WindowTokens { current, limit, .. }) => {
            format!("window tokens {current}/{limit}")
        }
        Err(Refusal::WindowCost {
            current_nanos,
            limit_nanos,
            ..
        }) => format!("window cost {current_nanos}/{limit_nanos}"),
        Err(other) => format!("{other:?}"),
    }
}

/// The pure model: the decision over a simulated key.
struct Model {
    snapshot: Snapshot,
    in_flight: Vec<Reservation>,
}

impl Model {
    fn admit(&mut self, plan: &Plan) -> Result<Reservation, Refusal> {
        match admission::decide(plan, &self.snapshot, 1) {
            Verdict::Refuse(r) => Err(r),
            Verdict::Admit(g) => {
                if plan.concurrency > 0 {
                    self.snapshot.held += 1;
                }
                self.snapshot.window.requests += 1;
                self.snapshot.window.reserved += g.reserve_nanos;
                for c in &mut self.snapshot.counters {
                    c.reserved += g.reserve_nanos;
                }
                let mut r = Reservation::of(plan, &g, "m");
                r.lease = r.lease.map(|(s, _)| (s, "m".into()));
                Ok(r)
            }
        }
    }

    fn settle(&mut self, r: &Reservation, actual: u64, tokens: u64) {
        if r.lease.is_some() {
            self.snapshot.held -= 1;
        }
        self.snapshot.window.reserved -= r.reserved_nanos;
        self.snapshot.window.tokens += tokens;
        self.snapshot.window.cost += actual;
        for c in &mut self.snapshot.counters {
            c.reserved -= r.reserved_nanos;
            c.spent += actual;
        }
    }
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
    let mut model = Model {
        snapshot: Snapshot {
            held: 0,
            window: WindowState::default(),
            counters: vec![CounterState::default(); c.limits.len()],
        },
        in_flight: Vec::new(),
    };
    // Per engine, the reservations in flight (same order as the model's).
    let mut held: Vec<Vec<Reservation>> = vec![Vec::new(); engines.len()];
    let ttl = Duration::from_secs(600);
    for (n, op) in c.ops.iter().enumerate() {
        match op {
            Op::Admit(cost) => {
                let p = plan(c, cost.clone());
                let expected = model.admit(&p);
                for (e, store) in engines.iter().enumerate() {
                    let got = store
                        .admit(&p, &format!("lease-{n}"), ttl)
                        .await
                        .map_err(|err| TestCaseError::fail(err.to_string()))?;
                    prop_assert_eq!(
                        outcome(&got),
                        outcome(&expected),
                        "engine {} at op {}",
                        store.engine(),
                        n
                    );
                    if let Ok(r) = got {
                        held[e].push(r);
                    }
                }
                if let Ok(r) = expected {
                    model.in_flight.push(r);
                }
            }
            Op::Settle {
                which,
                share,
                tokens,
            } => {
                if model.in_flight.is_empty() {
                    continue;
                }
                let i = which % model.in_flight.len();
                let r = model.in_flight.remove(i);
                let actual = r.reserved_nanos * share / 100;
                model.settle(&r, actual, *tokens);
                for (e, store) in engines.iter().enumerate() {
                    let r = held[e].remove(i);
                    store
                        .settle(&Settlement {
                            leases: vec![],
                            reservation: Some(r),
                            actual_nanos: actual,
                            tokens: *tokens,
                        })
                        .await
                        .map_err(|err| TestCaseError::fail(err.to_string()))?;
                }
            }
        }
        for (state, limit) in model.snapshot.counters.iter().zip(&c.limits) {
            prop_assert!(state.spent + state.reserved <= *limit);
        }
    }
    // The books agree: what each engine counts as spent is what the model spent.
    let ids: Vec<(String, String)> = plan(c, None)
        .counters
        .iter()
        .map(|k| (k.scope.clone(), k.id.clone()))
        .collect();
    let spent: Vec<u64> = model.snapshot.counters.iter().map(|s| s.spent).collect();
    for store in &engines {
        let (got, _) = store
            .limit_usage("k", &ids)
            .await
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(&got, &spent, "spent on {}", store.engine());
    }
    Ok(())
}

#[test]
fn engines_agree_with_the_decision() {
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
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(c in case())| {
        flush();
        rt.block_on(run(&c, &redis))?;
    });
}
