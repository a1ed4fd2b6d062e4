//! The account pick, as a pure function of a snapshot of the candidates. Both engines take
//! their snapshot and apply the decision atomically: the embedded engine calls [`decide`] under
//! its lock; the Redis engine runs `pick.lua` (beside this file), which mirrors it rule for
//! rule. `pick_engines_agree` in `store/pick_equivalence.rs` feeds the same operations to both.
//!
//! The rule:
//! 1. A candidate is free unless it rests (the whole account, or the request's model family)
//!    or holds as many requests as its slots allow (0 = unlimited).
//! 2. The session's sticky account is kept while it is a candidate and free; the mapping is
//!    renewed when less than `renew_below` of it is left. Otherwise the mapping is dropped.
//! 3. Else the first free candidate by priority (lower first), then least recent pick, then
//!    the caller's order; a session is mapped to it.
//! 4. Nothing free: the refusal names the first candidate refused (the sticky one is tried
//!    first), or says there was no candidate at all.
//!
//! Recent use is the account's last *pick*, not its last usage record: the pick is the moment
//! an account takes a request and is written by the same atomic step that reads it, while a
//! usage record arrives when a request ends, minutes later and out of order. Every pick is
//! stamped `max(now, newest stamp + 1)`, so two picks in one millisecond still rotate.

// What the decision reads and answers is kept by the store, which applies it atomically.
pub use crate::store::scheduling::{
    CandidateState, Choice, Decision, Mapped, Refused, Snapshot, StickyState, StickyWrite,
};

/// Why a candidate is not free, if it is not.
fn refusal(c: &CandidateState) -> Option<Refused> {
    if let Some(rest) = &c.resting {
        return Some(Refused::Resting {
            account_id: c.id.clone(),
            cooldown: rest.clone(),
        });
    }
    if c.max_concurrency > 0 && c.held >= c.max_concurrency {
        return Some(Refused::Busy {
            account_id: c.id.clone(),
        });
    }
    None
}

pub fn decide(s: &Snapshot, now_ms: i64) -> Decision {
    let stamp_ms = now_ms.max(s.newest_pick_ms.saturating_add(1));
    let mut first_refusal: Option<Refused> = None;
    let mut free = |c: &CandidateState| match refusal(c) {
        None => true,
        Some(r) => {
            first_refusal.get_or_insert(r);
            false
        }
    };
    let mut drop_sticky = false;
    if let Some(sticky) = &s.sticky {
        if let Some(mapped) = &sticky.mapped {
            let at = s.candidates.iter().position(|c| c.id == mapped.account_id);
            if let Some(index) = at.filter(|&i| free(&s.candidates[i])) {
                let renew = mapped
                    .ttl_left_ms
                    .is_some_and(|left| left < sticky.renew_below_ms);
                return Decision::Chosen(Choice {
                    index,
                    sticky_hit: true,
                    sticky: if renew {
                        StickyWrite::Renew
                    } else {
                        StickyWrite::Keep
                    },
                    stamp_ms,
                });
            }
            drop_sticky = true;
        }
    }
    let mut order: Vec<usize> = (0..s.candidates.len()).collect();
    // Stable: equal priority and stamp keep the caller's order.
    order.sort_by_key(|&i| (s.candidates[i].priority, s.candidates[i].last_pick_ms));
    for index in order {
        if free(&s.candidates[index]) {
            return Decision::Chosen(Choice {
                index,
                sticky_hit: false,
                sticky: if s.sticky.is_some() {
                    StickyWrite::Set
                } else {
                    StickyWrite::Keep
                },
                stamp_ms,
            });
        }
    }
    Decision::Refused {
        why: first_refusal.unwrap_or(Refused::NoCandidate),
        drop_sticky,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::domain::Cooldown;

    fn cand(id: &str, priority: u32, last_pick_ms: i64) -> CandidateState {
        CandidateState {
            id: id.into(),
            priority,
            last_pick_ms,
            ..Default::default()
        }
    }

    fn rest(until_ms: i64) -> Cooldown {
        Cooldown {
            class: "rate_limit".into(),
            status: 429,
            until_ms,
            family: None,
            message: String::new(),
        }
    }

    fn snap(candidates: Vec<CandidateState>) -> Snapshot {
        Snapshot {
            candidates,
            sticky: None,
            newest_pick_ms: 0,
        }
    }

    fn session(mapped: Option<(&str, Option<i64>)>, renew_below_ms: i64) -> Option<StickyState> {
        Some(StickyState {
            mapped: mapped.map(|(id, ttl_left_ms)| Mapped {
                account_id: id.into(),
                ttl_left_ms,
            }),
            renew_below_ms,
        })
    }

    fn chosen(d: &Decision) -> Option<usize> {
        match d {
            Decision::Chosen(c) => Some(c.index),
            Decision::Refused { .. } => None,
        }
    }

    #[test]
    fn lower_priority_first() {
        let s = snap(vec![cand("b", 50, 0), cand("a", 10, 99)]);
        assert_eq!(chosen(&decide(&s, 1_000)), Some(1));
    }

    #[test]
    fn equal_priority_least_recently_picked_then_caller_order() {
        let s = snap(vec![
            cand("a", 50, 300),
            cand("b", 50, 200),
            cand("c", 50, 200),
        ]);
        assert_eq!(chosen(&decide(&s, 1_000)), Some(1));
        let never = snap(vec![cand("a", 50, 0), cand("b", 50, 0)]);
        assert_eq!(chosen(&decide(&never, 1_000)), Some(0));
    }

    #[test]
    fn stamps_strictly_increase_within_a_millisecond() {
        let mut s = snap(vec![cand("a", 1, 0)]);
        s.newest_pick_ms = 5_000;
        let Decision::Chosen(c) = decide(&s, 5_000) else {
            panic!("refused")
        };
        assert_eq!(c.stamp_ms, 5_001);
        s.newest_pick_ms = 10;
        let Decision::Chosen(c) = decide(&s, 5_000) else {
            panic!("refused")
        };
        assert_eq!(c.stamp_ms, 5_000);
    }

    #[test]
    fn resting_and_busy_candidates_are_skipped() {
        let mut a = cand("a", 1, 0);
        a.resting = Some(rest(9_000));
        let mut b = cand("b", 2, 0);
        b.max_concurrency = 2;
        b.held = 2;
        let mut c = cand("c", 3, 0);
        c.max_concurrency = 2;
        c.held = 1;
        let s = snap(vec![a, b, c]);
        assert_eq!(chosen(&decide(&s, 1_000)), Some(2));
    }

    #[test]
    fn refusal_names_the_first_candidate_refused() {
        let mut a = cand("a", 5, 0);
        a.max_concurrency = 1;
        a.held = 1;
        let mut b = cand("b", 1, 0);
        b.resting = Some(rest(9_000));
        let d = decide(&snap(vec![a.clone(), b.clone()]), 1_000);
        assert_eq!(
            d,
            Decision::Refused {
                why: Refused::Resting {
                    account_id: "b".into(),
                    cooldown: rest(9_000)
                },
                drop_sticky: false
            }
        );
        b.resting = None;
        b.max_concurrency = 3;
        b.held = 3;
        let Decision::Refused { why, .. } = decide(&snap(vec![a, b]), 1_000) else {
            panic!("chosen")
        };
        assert_eq!(
            why,
            Refused::Busy {
                account_id: "b".into()
            }
        );
        assert_eq!(
            decide(&snap(vec![]), 1_000),
            Decision::Refused {
                why: Refused::NoCandidate,
                drop_sticky: false
            }
        );
    }

    #[test]
    fn sticky_account_kept_over_priority_and_renewed_when_short() {
        let mut s = snap(vec![cand("best", 1, 0), cand("mine", 9, 500)]);
        s.sticky = session(Some(("mine", Some(10_000))), 5_000);
        let Decision::Chosen(c) = decide(&s, 1_000) else {
            panic!("refused")
        };
        assert_eq!(
            (c.index, c.sticky_hit, c.sticky),
            (1, true, StickyWrite::Keep)
        );
        s.sticky = session(Some(("mine", Some(1_000))), 5_000);
        let Decision::Chosen(c) = decide(&s, 1_000) else {
            panic!("refused")
        };
        assert_eq!(c.sticky, StickyWrite::Renew);
        // A mapping without expiry is never renewed.
        s.sticky = session(Some(("mine", None)), 5_000);
        let Decision::Chosen(c) = decide(&s, 1_000) else {
            panic!("refused")
        };
        assert_eq!(c.sticky, StickyWrite::Keep);
    }

    #[test]
    fn sticky_dropped_when_its_account_rests_is_full_or_is_gone() {
        let mut resting = cand("mine", 1, 0);
        resting.resting = Some(rest(9_000));
        let mut full = cand("mine", 1, 0);
        full.max_concurrency = 1;
        full.held = 1;
        for mine in [Some(resting), Some(full), None] {
            let mut candidates = vec![cand("other", 5, 0)];
            candidates.extend(mine);
            let mut s = snap(candidates);
            s.sticky = session(Some(("mine", Some(10_000))), 0);
            let Decision::Chosen(c) = decide(&s, 1_000) else {
                panic!("refused")
            };
            assert_eq!(
                (c.index, c.sticky_hit, c.sticky),
                (0, false, StickyWrite::Set)
            );
        }
        // Nothing else free: refused, the mapping dropped, the sticky account named.
        let mut full = cand("mine", 1, 0);
        full.max_concurrency = 1;
        full.held = 1;
        let mut s = snap(vec![full]);
        s.sticky = session(Some(("mine", Some(10_000))), 0);
        assert_eq!(
            decide(&s, 1_000),
            Decision::Refused {
                why: Refused::Busy {
                    account_id: "mine".into()
                },
                drop_sticky: true
            }
        );
    }

    #[test]
    fn a_new_session_is_mapped_and_no_session_writes_nothing() {
        let mut s = snap(vec![cand("a", 1, 0)]);
        s.sticky = session(None, 0);
        let Decision::Chosen(c) = decide(&s, 1_000) else {
            panic!("refused")
        };
        assert_eq!((c.sticky_hit, c.sticky), (false, StickyWrite::Set));
        s.sticky = None;
        let Decision::Chosen(c) = decide(&s, 1_000) else {
            panic!("refused")
        };
        assert_eq!(c.sticky, StickyWrite::Keep);
    }
}
