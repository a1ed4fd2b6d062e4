//! The end of a request, for the limits: its account slot released and its admission
//! reservation replaced by what it actually cost — off the response path, one store round
//! trip. If the store is down, leases and reservations expire on their own.

use std::time::Instant;

use super::{Reservation, Settlement};
use crate::{state::AppState, store::scheduling::Lease};

/// Ends what a request holds when no accounting write carries it: its account slot, and (with
/// `reservation`) the key's admission reservation, settled at zero cost.
pub fn release(state: &AppState, lease: Option<Lease>, reservation: Option<Reservation>) {
    let Some(settlement) = releasing(lease, reservation) else {
        return;
    };
    for l in held_leases(&settlement) {
        state.leases.forget(l);
    }
    settle(state, settlement, tracing::Span::current());
}

/// What releasing `lease` and `reservation` settles; `None` when the request held nothing.
fn releasing(lease: Option<Lease>, reservation: Option<Reservation>) -> Option<Settlement> {
    if lease.is_none() && reservation.is_none() {
        return None;
    }
    Some(Settlement {
        leases: lease.into_iter().collect(),
        reservation,
        ..Default::default()
    })
}

/// Every slot a settlement frees: its account leases and the key's concurrency lease.
fn held_leases(settlement: &Settlement) -> impl Iterator<Item = &Lease> {
    settlement.leases.iter().chain(
        settlement
            .reservation
            .as_ref()
            .and_then(|r| r.lease.as_ref()),
    )
}

/// Releases a request's slots and replaces its reservation by what it cost, in the background,
/// under `span`.
pub fn settle(state: &AppState, settlement: Settlement, span: tracing::Span) {
    if settlement.leases.is_empty() && settlement.reservation.is_none() {
        return;
    }
    let store = state.store.clone();
    state.background.spawn(tracing::Instrument::instrument(
        async move {
            let t = Instant::now();
            let settled = store.settle(&settlement).await;
            crate::telemetry::store_round_trip(store.engine(), "settle", t.elapsed());
            if let Err(e) = settled {
                tracing::warn!(error = %e, "settlement failed; leases and reservations expire on their own");
            }
        },
        span,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str) -> Lease {
        ("scope".to_string(), id.to_string())
    }

    #[test]
    fn nothing_held_settles_nothing() {
        assert!(releasing(None, None).is_none());
    }

    #[test]
    fn a_release_settles_at_zero_and_frees_every_slot() {
        let reservation = Reservation {
            key_id: "k".into(),
            reserved_nanos: 5,
            lease: Some(lease("key-slot")),
            ..Default::default()
        };
        let s = releasing(Some(lease("account-slot")), Some(reservation)).expect("held");
        assert_eq!(s.actual_nanos, 0);
        assert_eq!(s.tokens, 0);
        let freed: Vec<_> = held_leases(&s).map(|l| l.1.as_str()).collect();
        assert_eq!(freed, ["account-slot", "key-slot"]);
        let only_account = releasing(Some(lease("a")), None).expect("held");
        assert_eq!(held_leases(&only_account).count(), 1);
    }
}
