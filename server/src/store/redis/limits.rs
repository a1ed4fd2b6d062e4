//! The Redis engine's limits: admission and settlement run `rules.admit_lua` and
//! `rules.settle_lua` (the mirrors of the admission decision) on the key's limiter keys.

use super::*;
use crate::store::limits::{Grant, LimitKind};

/// The Redis keys of a key's limiter: its leases, its window, then each cost counter (under
/// its scope: the key, or its owner's budget).
fn limiter_keys<'a>(
    key_id: &str,
    counters: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut keys = vec![
        format!("{P}lease:{}", key_lease_scope(key_id)),
        format!("{P}lim:{{{key_id}}}:win"),
    ];
    keys.extend(counters.map(|(scope, id)| counter_key(scope, id)));
    keys
}

pub(super) fn counter_key(scope: &str, id: &str) -> String {
    format!("{P}lim:{{{scope}}}:c:{id}")
}

/// EVALSHA for the settlement, to ride in a pipeline.
pub(super) fn settle_cmd(script: &Script, s: &Settlement) -> Option<::redis::Cmd> {
    let r = s.reservation.as_ref()?;
    let keys = limiter_keys(
        &r.key_id,
        r.counters
            .iter()
            .map(|(scope, id, _)| (scope.as_str(), id.as_str())),
    );
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for k in &keys {
        cmd.arg(k);
    }
    let lease = r.lease.as_ref().map(|l| l.1.as_str()).unwrap_or("");
    cmd.arg(lease)
        .arg(r.reserved_nanos)
        .arg(s.actual_nanos)
        .arg(s.tokens)
        .arg(if r.window { r.window_start_ms } else { 0 });
    for (_, _, ttl) in &r.counters {
        cmd.arg(ttl.map(|t| t.as_secs()).unwrap_or(0));
    }
    Some(cmd)
}

/// `admit.lua`'s refusal, told in the plan's terms. `what` is `concurrency`, `window_*`, or the
/// index of the refusing cost counter.
fn refusal_from(
    plan: &Plan,
    what: &str,
    current: i64,
    limit: i64,
    reset_ms: i64,
    needed: i64,
) -> Refusal {
    let (current, limit) = (current.max(0) as u64, limit.max(0) as u64);
    match what {
        "concurrency" => Refusal::Concurrency { current, limit },
        "window_requests" => Refusal::WindowRequests {
            current,
            limit,
            reset_at_ms: reset_ms,
        },
        "window_tokens" => Refusal::WindowTokens {
            current,
            limit,
            reset_at_ms: reset_ms,
        },
        "window_cost" => Refusal::WindowCost {
            current_nanos: current,
            limit_nanos: limit,
            reset_at_ms: reset_ms,
        },
        index => {
            let counter = index
                .parse::<usize>()
                .ok()
                .and_then(|i| plan.counters.get(i));
            Refusal::Cost {
                kind: counter.map(|c| c.kind.clone()).unwrap_or(LimitKind::Total),
                current_nanos: current,
                limit_nanos: limit,
                reset_at: counter.and_then(|c| c.reset_at),
                needed_nanos: needed.max(0) as u64,
            }
        }
    }
}

#[async_trait::async_trait]
impl LimitStore for RedisStore {
    async fn admit(
        &self,
        plan: &Plan,
        lease_id: &str,
        lease_ttl: Duration,
    ) -> Result<Result<Reservation, Refusal>, StoreError> {
        let keys = limiter_keys(
            &plan.key_id,
            plan.counters
                .iter()
                .map(|c| (c.scope.as_str(), c.id.as_str())),
        );
        let mut inv = self.scripts.admit.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        let w = plan.window.as_ref();
        let cost = plan.cost.as_ref();
        inv.arg(lease_id)
            .arg(plan.concurrency)
            .arg(lease_ttl.as_millis().max(1) as u64)
            .arg(w.map(|w| w.length.as_millis() as u64).unwrap_or(0))
            .arg(w.map(|w| w.max_requests).unwrap_or(0))
            .arg(w.map(|w| w.max_tokens).unwrap_or(0))
            .arg(w.map(|w| w.max_cost_nanos).unwrap_or(0))
            .arg(if cost.is_some() { 1 } else { 0 })
            .arg(cost.map(|c| c.input_nanos).unwrap_or(0))
            .arg(cost.map(|c| c.output_per_ktok).unwrap_or(0))
            .arg(cost.map(|c| c.max_output).unwrap_or(0))
            .arg(cost.map(|c| c.min_output).unwrap_or(0));
        for c in &plan.counters {
            inv.arg(c.limit_nanos);
        }
        inv.arg(format!("{P}keys:version"))
            .arg(plan.keys_version.map(|v| v.to_string()).unwrap_or_default());
        let v: Value = inv.invoke_async(&mut self.conn()).await.map_err(err)?;
        let Value::Array(parts) = v else {
            return Err(StoreError::Corrupt("unexpected admission reply".into()));
        };
        let num = |i: usize| {
            parts
                .get(i)
                .and_then(|v| ::redis::from_redis_value_ref::<i64>(v).ok())
                .unwrap_or(0)
        };
        match text(parts.first()).as_deref() {
            Some("keys") => Err(StoreError::KeyChanged),
            Some("ok") => {
                let grant = Grant {
                    reserve_nanos: num(1).max(0) as u64,
                    output_limit: u64::try_from(num(3)).ok(),
                    window_start_ms: num(2),
                    window_reset: false,
                };
                Ok(Ok(Reservation::of(plan, &grant, lease_id)))
            }
            _ => Ok(Err(refusal_from(
                plan,
                text(parts.get(1)).as_deref().unwrap_or(""),
                num(2),
                num(3),
                num(4),
                num(5),
            ))),
        }
    }

    async fn settle(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        for (scope, lease) in &settlement.leases {
            pipe.zrem(format!("{P}lease:{scope}"), lease).ignore();
        }
        if let Some(cmd) = settle_cmd(&self.scripts.settle, settlement) {
            pipe.add_command(cmd).ignore();
        }
        match pipe.query_async::<()>(&mut self.conn()).await {
            Ok(()) => Ok(()),
            // Not cached (Redis restarted): load the script and settle again. The lease
            // releases already ran; releasing twice is harmless.
            Err(e) if is_noscript(&e) => {
                let _: String = ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(self.rules.settle_lua)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(err)?;
                pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn limit_usage(
        &self,
        key_id: &str,
        counters: &[(String, String)],
    ) -> Result<(Vec<u64>, Option<(i64, u64, u64, u64)>), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("HMGET")
            .arg(format!("{P}lim:{{{key_id}}}:win"))
            .arg("start")
            .arg("req")
            .arg("tok")
            .arg("cost");
        for (scope, id) in counters {
            pipe.hget(counter_key(scope, id), "s");
        }
        let (win, spent): (Vec<Option<i64>>, Vec<Option<u64>>) = {
            let v: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(err)?;
            let mut it = v.into_iter();
            let win: Vec<Option<i64>> = it
                .next()
                .and_then(|w| ::redis::from_redis_value::<Vec<Option<i64>>>(w).ok())
                .unwrap_or_default();
            let spent = it
                .map(|v| ::redis::from_redis_value::<Option<u64>>(v).ok().flatten())
                .collect();
            (win, spent)
        };
        let window = match win.as_slice() {
            [Some(start), req, tok, cost] => Some((
                *start,
                req.unwrap_or(0) as u64,
                tok.unwrap_or(0) as u64,
                cost.unwrap_or(0) as u64,
            )),
            _ => None,
        };
        Ok((spent.into_iter().map(|s| s.unwrap_or(0)).collect(), window))
    }
}
