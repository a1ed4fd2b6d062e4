//! The embedded engine's limits: spent cost per counter in the database, reservations and
//! rate windows in memory; admission decides by `rules.admit` under the one lock.

use super::*;
use crate::store::limits::{CounterState, Snapshot, Verdict, WindowState};

/// A key's rate window, in memory (this engine serves one process).
#[derive(Clone, Copy, Default)]
pub(super) struct Win {
    start_ms: i64,
    req: u64,
    tok: u64,
    cost: u64,
    reserved: u64,
}

/// A cost counter's row: `<scope>|<counter id>` (the scope is the key, or `u:<user>`).
pub(super) fn limit_key(scope: &str, counter: &str) -> String {
    format!("{scope}|{counter}")
}

fn decode_spent(raw: &[u8], now_secs: u64) -> u64 {
    let get = |i: usize| {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let expires = get(1);
    if expires != 0 && expires <= now_secs {
        0
    } else {
        get(0)
    }
}

/// Adds a settled cost to each limiter row (inside the caller's transaction).
pub(super) fn add_spent(
    w: &redb::WriteTransaction,
    rows: &[(String, Option<Duration>)],
    actual: u64,
    now_secs: u64,
) -> Result<(), StoreError> {
    let mut limits = w.open_table(LIMITS).map_err(e)?;
    for (row, ttl) in rows {
        let old = limits
            .get(row.as_str())
            .map_err(e)?
            .map(|v| decode_spent(v.value(), now_secs))
            .unwrap_or(0);
        let expires = ttl.map(|t| now_secs + t.as_secs()).unwrap_or(0);
        limits
            .insert(row.as_str(), encode_spent(old + actual, expires).as_slice())
            .map_err(e)?;
    }
    Ok(())
}

fn encode_spent(spent: u64, expires: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&spent.to_le_bytes());
    out[8..].copy_from_slice(&expires.to_le_bytes());
    out
}

impl EmbeddedStore {
    /// The in-memory part of a settlement: leases, reservations, window.
    pub(super) fn settle_live(&self, s: &Settlement) {
        let mut live = self.live.lock();
        for (scope, lease) in &s.leases {
            if let Some(l) = live.leases.get_mut(scope) {
                l.remove(lease);
            }
        }
        let Some(r) = &s.reservation else { return };
        if let Some((scope, lease)) = &r.lease {
            if let Some(l) = live.leases.get_mut(scope) {
                l.remove(lease);
            }
        }
        if r.reserved_nanos > 0 {
            for (scope, c, _) in &r.counters {
                if let Some(v) = live.reserved.get_mut(&limit_key(scope, c)) {
                    *v = v.saturating_sub(r.reserved_nanos);
                }
            }
        }
        if r.window {
            if let Some(w) = live
                .windows
                .get_mut(&r.key_id)
                .filter(|w| w.start_ms == r.window_start_ms)
            {
                w.reserved = w.reserved.saturating_sub(r.reserved_nanos);
                w.tok += s.tokens;
                w.cost += s.actual_nanos;
            }
        }
    }
}

#[async_trait::async_trait]
impl LimitStore for EmbeddedStore {
    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError> {
        let _turn = self.admission.lock().await;
        self.check_key_copy(plan.keys_version)?;
        let rows: Vec<String> = plan
            .counters
            .iter()
            .map(|c| limit_key(&c.scope, &c.id))
            .collect();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let read_rows = rows.clone();
        let spent: Vec<u64> = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let t = r.open_table(LIMITS).map_err(e)?;
                read_rows
                    .iter()
                    .map(|row| {
                        Ok(t.get(row.as_str())
                            .map_err(e)?
                            .map(|v| decode_spent(v.value(), now_secs))
                            .unwrap_or(0))
                    })
                    .collect()
            })
            .await?;
        let now = Instant::now();
        let now_ms = now_ms();
        let mut live = self.live.lock();
        let scope = plan.lease_scope();
        let win = live.windows.get(&plan.key_id).copied().unwrap_or_default();
        let snapshot = Snapshot {
            held: if plan.concurrency > 0 {
                live.lease_count(&scope, now) as u64
            } else {
                0
            },
            window: WindowState {
                start_ms: win.start_ms,
                requests: win.req,
                tokens: win.tok,
                cost: win.cost,
                reserved: win.reserved,
            },
            counters: rows
                .iter()
                .zip(&spent)
                .map(|(row, spent)| CounterState {
                    spent: *spent,
                    reserved: live.reserved.get(row).copied().unwrap_or(0),
                })
                .collect(),
        };
        let grant = match (self.rules.admit)(plan, &snapshot, now_ms) {
            Verdict::Refuse(refusal) => return Ok(Err(refusal)),
            Verdict::Admit(grant) => grant,
        };
        // The decision's effects, under the same lock.
        if plan.concurrency > 0 {
            live.leases
                .entry(scope)
                .or_default()
                .insert(lease_id.to_string(), now + lease_ttl);
        }
        if plan.window.is_some() {
            let w = live.windows.entry(plan.key_id.clone()).or_default();
            if grant.window_reset {
                *w = Win {
                    start_ms: grant.window_start_ms,
                    ..Default::default()
                };
            }
            w.req += 1;
            w.reserved += grant.reserve_nanos;
        }
        if grant.reserve_nanos > 0 {
            for row in rows {
                *live.reserved.entry(row).or_default() += grant.reserve_nanos;
            }
        }
        Ok(Ok(Reservation::of(plan, &grant, lease_id)))
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let _turn = self.admission.lock().await;
        let rows: Vec<(String, Option<Duration>)> = match &settlement.reservation {
            Some(r) if settlement.actual_nanos > 0 => r
                .counters
                .iter()
                .map(|(scope, c, ttl)| (limit_key(scope, c), *ttl))
                .collect(),
            _ => {
                self.settle_live(settlement);
                return Ok(());
            }
        };
        let actual = settlement.actual_nanos;
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                add_spent(&w, &rows, actual, now_secs)?;
            }
            w.commit().map_err(e)
        })
        .await?;
        self.settle_live(settlement);
        Ok(())
    }

    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError> {
        let rows: Vec<String> = counters
            .iter()
            .map(|(scope, id)| limit_key(scope, id))
            .collect();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let spent = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let t = r.open_table(LIMITS).map_err(e)?;
                rows.iter()
                    .map(|row| {
                        Ok(t.get(row.as_str())
                            .map_err(e)?
                            .map(|v| decode_spent(v.value(), now_secs))
                            .unwrap_or(0))
                    })
                    .collect::<Result<Vec<u64>, StoreError>>()
            })
            .await?;
        let window = self
            .live
            .lock()
            .windows
            .get(key_id)
            .map(|w| (w.start_ms, w.req, w.tok, w.cost));
        Ok((spent, window))
    }
}
