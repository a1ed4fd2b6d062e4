//! The admission decision, as a pure function of a plan and a snapshot of the key's counters.
//! Both engines take their snapshot and apply the decision atomically: the embedded engine
//! calls [`decide`] under its lock; the Redis engine runs `admit.lua` (beside this file), which
//! mirrors it line for line. `engines_agree` in the tests feeds the same operations to both.
//!
//! The rule (README, "Limits"):
//! 1. Concurrency: refused while the key holds as many requests as it may.
//! 2. Rate window: a window older than its length starts anew; refused when its requests or
//!    tokens reached their limits.
//! 3. Cost (skipped for requests that cost nothing, like `count_tokens`): the request may cost
//!    at most its input estimate plus its output limit at the output price — the worst case.
//!    The room is the smallest `limit − (spent + reserved)` over every cost limit that applies
//!    (daily, total, weekly, weekly Claude, per platform, per model, the owner's budget, and
//!    the window's cost). If the worst case fits, it is reserved. If not, the output limit is
//!    lowered to what fits, provided a minimum answer fits; else the request is refused by the
//!    limit with the least room. The sum of what is spent and reserved therefore never passes
//!    a limit, however requests interleave, as long as no request costs more than it reserved.

use super::Refusal;

// What the decision reads and answers is kept by the store, which applies it atomically.
pub use crate::store::limits::{CounterState, Grant, Plan, Snapshot, Verdict, WindowState};

/// `ceil(tokens × per_ktok / 1000)` in exact integer arithmetic (the Lua mirror does the same
/// with numbers below 2^53).
pub fn output_cost(tokens: u64, per_ktok: u64) -> u64 {
    let product = u128::from(tokens) * u128::from(per_ktok);
    u64::try_from(product.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// The most output tokens whose cost fits in `budget`: `floor(budget × 1000 / per_ktok)`.
fn tokens_within(budget: u64, per_ktok: u64) -> u64 {
    if per_ktok == 0 {
        return u64::MAX;
    }
    u64::try_from(u128::from(budget) * 1000 / u128::from(per_ktok)).unwrap_or(u64::MAX)
}

/// Which limit binds: the window's cost (`None`) or a counter (its index).
type Binding = Option<usize>;

pub fn decide(plan: &Plan, s: &Snapshot, now_ms: i64) -> Verdict {
    if plan.concurrency > 0 && s.held >= u64::from(plan.concurrency) {
        return Verdict::Refuse(Refusal::Concurrency {
            current: s.held,
            limit: u64::from(plan.concurrency),
        });
    }
    let mut window = s.window;
    let mut window_reset = false;
    if let Some(w) = &plan.window {
        let len = i64::try_from(w.length.as_millis()).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(window.start_ms) >= len {
            window = WindowState {
                start_ms: now_ms,
                ..Default::default()
            };
            window_reset = true;
        }
        let reset_at_ms = window.start_ms.saturating_add(len);
        if w.max_requests > 0 && window.requests >= w.max_requests {
            return Verdict::Refuse(Refusal::WindowRequests {
                current: window.requests,
                limit: w.max_requests,
                reset_at_ms,
            });
        }
        if w.max_tokens > 0 && window.tokens >= w.max_tokens {
            return Verdict::Refuse(Refusal::WindowTokens {
                current: window.tokens,
                limit: w.max_tokens,
                reset_at_ms,
            });
        }
    }
    let granted = |reserve_nanos, output_limit| {
        Verdict::Admit(Grant {
            reserve_nanos,
            output_limit,
            window_start_ms: if plan.window.is_some() {
                window.start_ms
            } else {
                0
            },
            window_reset,
        })
    };
    let Some(cost) = &plan.cost else {
        return granted(0, None);
    };
    // The room left under the tightest cost limit, and which one it is.
    let mut tightest: Option<(u64, Binding, u64, u64)> = None;
    let mut consider = |binding: Binding, used: u64, limit: u64| {
        let room = limit.saturating_sub(used);
        if tightest.is_none_or(|(r, ..)| room < r) {
            tightest = Some((room, binding, used, limit));
        }
    };
    if let Some(w) = plan.window.as_ref().filter(|w| w.max_cost_nanos > 0) {
        consider(
            None,
            window.cost.saturating_add(window.reserved),
            w.max_cost_nanos,
        );
    }
    for (i, (c, state)) in plan.counters.iter().zip(&s.counters).enumerate() {
        consider(
            Some(i),
            state.spent.saturating_add(state.reserved),
            c.limit_nanos,
        );
    }
    let Some((room, binding, used, limit)) = tightest else {
        // No cost limit applies: nothing to reserve against.
        return granted(0, None);
    };
    let worst = cost
        .input_nanos
        .saturating_add(output_cost(cost.max_output, cost.output_per_ktok));
    if worst <= room {
        return granted(worst, None);
    }
    let minimum_answer = cost.min_output.min(cost.max_output);
    let needed = cost
        .input_nanos
        .saturating_add(output_cost(minimum_answer, cost.output_per_ktok));
    if needed <= room {
        // The largest answer that fits (at least the minimum, below what was asked).
        let fits = tokens_within(room - cost.input_nanos, cost.output_per_ktok)
            .clamp(minimum_answer, cost.max_output);
        let reserve = cost
            .input_nanos
            .saturating_add(output_cost(fits, cost.output_per_ktok));
        return granted(reserve, Some(fits));
    }
    let reset_at_ms = window
        .start_ms
        .saturating_add(plan.window.as_ref().map_or(0, |w| {
            i64::try_from(w.length.as_millis()).unwrap_or(i64::MAX)
        }));
    Verdict::Refuse(match binding {
        None => Refusal::WindowCost {
            current_nanos: used,
            limit_nanos: limit,
            reset_at_ms,
        },
        Some(i) => {
            let c = &plan.counters[i];
            Refusal::Cost {
                kind: c.kind.clone(),
                current_nanos: used,
                limit_nanos: limit,
                reset_at: c.reset_at,
                needed_nanos: needed,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{CostAsk, Counter, LimitKind, Window};
    use proptest::prelude::*;
    use std::time::Duration;

    fn counter(id: &str, limit: u64) -> Counter {
        Counter {
            scope: "k".into(),
            id: id.into(),
            limit_nanos: limit,
            ttl: None,
            kind: if id == "t" {
                LimitKind::Total
            } else {
                LimitKind::Daily
            },
            reset_at: None,
        }
    }

    fn plan(counters: Vec<Counter>, cost: Option<CostAsk>) -> Plan {
        Plan {
            key_id: "k".into(),
            concurrency: 0,
            window: None,
            counters,
            cost,
            keys_version: None,
        }
    }

    /// $1 input, $75 per million output tokens (Opus 4.1), up to 20,000 tokens, at least 1,024.
    fn opus() -> CostAsk {
        CostAsk {
            input_nanos: 1_000_000,
            output_per_ktok: 75_000_000,
            max_output: 20_000,
            min_output: 1_024,
        }
    }

    fn snapshot(counters: &[(u64, u64)]) -> Snapshot {
        Snapshot {
            held: 0,
            window: WindowState::default(),
            counters: counters
                .iter()
                .map(|&(spent, reserved)| CounterState { spent, reserved })
                .collect(),
        }
    }

    #[test]
    fn the_worst_case_is_reserved_when_it_fits() {
        let p = plan(vec![counter("d", 2_000_000_000)], Some(opus()));
        // 1,000,000 + 20,000 × 75 = 1,501,000,000 nano-dollars.
        match decide(&p, &snapshot(&[(0, 0)]), 0) {
            Verdict::Admit(g) => {
                assert_eq!(g.reserve_nanos, 1_501_000_000);
                assert_eq!(g.output_limit, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_output_limit_is_lowered_to_what_fits() {
        let p = plan(vec![counter("d", 2_000_000_000)], Some(opus()));
        // $1.501 reserved by a request in flight: $0.499 left, of which $0.001 is input.
        let Verdict::Admit(g) = decide(&p, &snapshot(&[(0, 1_501_000_000)]), 0) else {
            panic!("admitted with a lower limit");
        };
        // floor(498,000,000 × 1000 / 75,000,000) = 6,640 tokens.
        assert_eq!(g.output_limit, Some(6_640));
        assert_eq!(g.reserve_nanos, 1_000_000 + 6_640 * 75_000);
        assert!(g.reserve_nanos <= 499_000_000);
    }

    #[test]
    fn refused_with_the_tightest_limit_when_no_minimum_answer_fits() {
        let p = plan(
            vec![counter("t", 100_000_000_000), counter("d", 2_000_000_000)],
            Some(opus()),
        );
        // Daily: $0.05 left; a minimum answer costs $0.001 + 1,024 × $0.000075 = $0.0778.
        match decide(&p, &snapshot(&[(0, 0), (1_950_000_000, 0)]), 0) {
            Verdict::Refuse(Refusal::Cost {
                kind: LimitKind::Daily,
                current_nanos,
                limit_nanos,
                needed_nanos,
                ..
            }) => {
                assert_eq!((current_nanos, limit_nanos), (1_950_000_000, 2_000_000_000));
                assert_eq!(needed_nanos, 1_000_000 + 1_024 * 75_000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_small_request_needs_only_its_own_size() {
        // A request that asks for 100 tokens is its own minimum.
        let ask = CostAsk {
            max_output: 100,
            ..opus()
        };
        let p = plan(vec![counter("d", 10_000_000)], Some(ask));
        let Verdict::Admit(g) = decide(&p, &snapshot(&[(0, 0)]), 0) else {
            panic!("fits");
        };
        assert_eq!((g.reserve_nanos, g.output_limit), (8_500_000, None));
    }

    #[test]
    fn free_requests_reserve_nothing_and_skip_cost() {
        let p = plan(vec![counter("d", 10)], None);
        assert!(matches!(
            decide(&p, &snapshot(&[(10, 0)]), 0),
            Verdict::Admit(Grant {
                reserve_nanos: 0,
                ..
            })
        ));
    }

    #[test]
    fn concurrency_then_window_then_cost() {
        let mut p = plan(vec![counter("d", 10)], Some(opus()));
        p.concurrency = 1;
        p.window = Some(Window {
            length: Duration::from_secs(60),
            max_requests: 1,
            max_tokens: 0,
            max_cost_nanos: 0,
        });
        let mut s = snapshot(&[(10, 0)]);
        s.held = 1;
        s.window = WindowState {
            start_ms: 1_000,
            requests: 1,
            ..Default::default()
        };
        assert!(matches!(
            decide(&p, &s, 2_000),
            Verdict::Refuse(Refusal::Concurrency { .. })
        ));
        s.held = 0;
        assert!(matches!(
            decide(&p, &s, 2_000),
            Verdict::Refuse(Refusal::WindowRequests {
                reset_at_ms: 61_000,
                ..
            })
        ));
        // A minute later the window starts anew; the daily limit is what refuses.
        assert!(matches!(
            decide(&p, &s, 61_000),
            Verdict::Refuse(Refusal::Cost { .. })
        ));
    }

    #[test]
    fn the_window_cost_counts_reservations() {
        let mut p = plan(vec![], Some(opus()));
        p.window = Some(Window {
            length: Duration::from_secs(60),
            max_requests: 0,
            max_tokens: 0,
            max_cost_nanos: 100_000_000,
        });
        let mut s = snapshot(&[]);
        s.window = WindowState {
            start_ms: 0,
            cost: 10_000_000,
            reserved: 85_000_000,
            ..Default::default()
        };
        assert!(matches!(
            decide(&p, &s, 1),
            Verdict::Refuse(Refusal::WindowCost {
                current_nanos: 95_000_000,
                ..
            })
        ));
    }

    /// One simulated key: admissions and settlements in any order, each request costing at
    /// most what it reserved.
    #[derive(Clone, Debug)]
    enum Op {
        Admit {
            input: u64,
            max_output: u64,
            per_ktok: u64,
        },
        /// Settle the n-th request in flight, at this share (0..=100%) of its reservation.
        Settle { which: usize, share: u64 },
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let admit = (0u64..50_000_000, 0u64..64_000, 0u64..150_000_000).prop_map(
            |(input, max_output, per_ktok)| Op::Admit {
                input,
                max_output,
                per_ktok,
            },
        );
        let settle = (0usize..8, 0u64..=100).prop_map(|(which, share)| Op::Settle { which, share });
        prop::collection::vec(prop_oneof![admit, settle], 1..80)
    }

    /// A key with a daily, a platform, a model and an owner's limit, and a window cost, as
    /// `limits::plan` builds them for a request.
    fn key_plan(limits: &[u64; 5]) -> Plan {
        use app::domain::{ApiKey, Budget, CostLimits};
        let usd = |n: u64| n as f64 / 1e9;
        let mut key = ApiKey {
            id: "k".into(),
            user_id: Some("alice".into()),
            daily_cost_limit: usd(limits[0]),
            rate_limit_window: 60,
            rate_limit_cost: usd(limits[4]),
            owner_budget: Budget {
                daily_cost: usd(limits[3]),
                monthly_cost: 0.0,
            },
            ..Default::default()
        };
        key.platform_limits.insert(
            "claude".into(),
            CostLimits {
                daily_cost: usd(limits[1]),
                total_cost: 0.0,
            },
        );
        key.model_limits.insert(
            "claude-opus-*".into(),
            CostLimits {
                daily_cost: usd(limits[2]),
                total_cost: 0.0,
            },
        );
        crate::limits::plan(
            &key,
            &crate::limits::Facts {
                service: "claude",
                model: "claude-opus-4-1-20250805",
                cost: None,
                now: chrono::Utc::now(),
                tz_hours: 8,
            },
        )
    }

    proptest! {
        /// Daily, platform, model, owner-budget and window-cost limits of one key: after any
        /// interleaving of admissions and settlements (each costing at most what it reserved),
        /// spent + reserved ≤ limit for every one of them.
        #[test]
        fn no_kind_of_limit_is_ever_passed(
            limits in prop::array::uniform5(1u64..3_000_000_000),
            ops in ops(),
        ) {
            let mut p = key_plan(&limits);
            let kinds: Vec<LimitKind> = p.counters.iter().map(|c| c.kind.clone()).collect();
            prop_assert_eq!(kinds, vec![
                LimitKind::Daily,
                LimitKind::PlatformDaily("claude".into()),
                LimitKind::ModelDaily("claude-opus-*".into()),
                LimitKind::UserDaily,
            ]);
            let mut s = snapshot(&[(0, 0); 4]);
            let mut in_flight: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Admit { input, max_output, per_ktok } => {
                        p.cost = Some(CostAsk { input_nanos: input, output_per_ktok: per_ktok, max_output, min_output: 1_024 });
                        if let Verdict::Admit(g) = decide(&p, &s, 0) {
                            for c in &mut s.counters { c.reserved += g.reserve_nanos; }
                            s.window.reserved += g.reserve_nanos;
                            in_flight.push(g.reserve_nanos);
                        }
                    }
                    Op::Settle { which, share } => {
                        if in_flight.is_empty() { continue; }
                        let reserved = in_flight.remove(which % in_flight.len());
                        let actual = reserved * share / 100;
                        for c in &mut s.counters { c.reserved -= reserved; c.spent += actual; }
                        s.window.reserved -= reserved;
                        s.window.cost += actual;
                    }
                }
                for (c, counter) in s.counters.iter().zip(&p.counters) {
                    prop_assert!(c.spent + c.reserved <= counter.limit_nanos, "{:?}", counter.kind);
                }
                let window_max = p.window.as_ref().map_or(0, |w| w.max_cost_nanos);
                prop_assert!(s.window.cost + s.window.reserved <= window_max);
            }
        }

        /// spent + reserved ≤ limit for every cost limit (key, platform, model, owner budget and
        /// window cost alike: they are all the same kind of counter to the decision), after any
        /// interleaving of admissions and settlements.
        #[test]
        fn spent_never_passes_a_limit(
            limits in prop::collection::vec(1u64..5_000_000_000, 1..4),
            window_cost in prop::option::of(1u64..5_000_000_000),
            min_output in 0u64..4_096,
            ops in ops(),
        ) {
            let mut p = plan(
                limits.iter().enumerate().map(|(i, l)| counter(&format!("c{i}"), *l)).collect(),
                None,
            );
            p.window = window_cost.map(|c| Window {
                length: Duration::from_secs(3600),
                max_requests: 0,
                max_tokens: 0,
                max_cost_nanos: c,
            });
            let mut s = snapshot(&vec![(0, 0); limits.len()]);
            let mut in_flight: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Admit { input, max_output, per_ktok } => {
                        p.cost = Some(CostAsk { input_nanos: input, output_per_ktok: per_ktok, max_output, min_output });
                        if let Verdict::Admit(g) = decide(&p, &s, 0) {
                            if let Some(out) = g.output_limit {
                                prop_assert!(out < max_output && out >= min_output.min(max_output));
                            }
                            for c in &mut s.counters { c.reserved += g.reserve_nanos; }
                            s.window.reserved += g.reserve_nanos;
                            in_flight.push(g.reserve_nanos);
                        }
                    }
                    Op::Settle { which, share } => {
                        if in_flight.is_empty() { continue; }
                        let reserved = in_flight.remove(which % in_flight.len());
                        let actual = reserved * share / 100;
                        for c in &mut s.counters { c.reserved -= reserved; c.spent += actual; }
                        s.window.reserved -= reserved;
                        s.window.cost += actual;
                    }
                }
                for (c, limit) in s.counters.iter().zip(&limits) {
                    prop_assert!(c.spent + c.reserved <= *limit, "{} > {}", c.spent + c.reserved, limit);
                }
                if let Some(max) = window_cost {
                    prop_assert!(s.window.cost + s.window.reserved <= max);
                }
            }
        }

        /// Near the end of a budget a request is lowered rather than refused whenever a minimum
        /// answer fits: refusals leave less than a minimum answer's cost.
        #[test]
        fn refusals_only_when_a_minimum_answer_does_not_fit(
            limit in 1u64..5_000_000_000,
            spent in 0u64..5_000_000_000,
            input in 0u64..50_000_000,
            max_output in 1u64..64_000,
            per_ktok in 1u64..150_000_000,
        ) {
            let ask = CostAsk { input_nanos: input, output_per_ktok: per_ktok, max_output, min_output: 1_024 };
            let p = plan(vec![counter("d", limit)], Some(ask));
            match decide(&p, &snapshot(&[(spent, 0)]), 0) {
                Verdict::Refuse(Refusal::Cost { needed_nanos, .. }) => {
                    prop_assert!(needed_nanos > limit.saturating_sub(spent));
                }
                Verdict::Admit(g) => prop_assert!(g.reserve_nanos <= limit.saturating_sub(spent)),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
