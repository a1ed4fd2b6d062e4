//! The embedded engine's usage: counters per bucket (with their expiry), bounded record lists
//! and last-use times, each request in one write transaction.

use super::*;

use super::limits::{add_spent, limit_key};

/// Counters plus an expiry (seconds since the epoch, 0 = never), little-endian.
fn encode_counters(c: &UsageCounters, expires_at: u64) -> [u8; 64] {
    let vals = [
        c.requests,
        c.input_tokens,
        c.output_tokens,
        c.cache_create_5m_tokens,
        c.cache_create_1h_tokens,
        c.cache_read_tokens,
        c.cost_nanos,
        expires_at,
    ];
    let mut out = [0u8; 64];
    for (i, v) in vals.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_counters(raw: &[u8]) -> (UsageCounters, u64) {
    let get = |i: usize| {
        raw.get(i * 8..i * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    (
        UsageCounters {
            requests: get(0),
            input_tokens: get(1),
            output_tokens: get(2),
            cache_create_5m_tokens: get(3),
            cache_create_1h_tokens: get(4),
            cache_read_tokens: get(5),
            cost_nanos: get(6),
        },
        get(7),
    )
}

/// Adds each delta to its bucket (an expired bucket starts again from zero) and renews its TTL.
fn add_to_buckets(
    usage: &mut redb::Table<&str, &[u8]>,
    buckets: &HashMap<String, (UsageCounters, Option<Duration>)>,
    now_secs: u64,
) -> Result<(), StoreError> {
    for (name, (delta, ttl)) in buckets {
        let (mut counters, mut expires) = usage
            .get(name.as_str())
            .map_err(e)?
            .map(|v| decode_counters(v.value()))
            .unwrap_or_default();
        if expires != 0 && expires <= now_secs {
            counters = UsageCounters::default();
        }
        counters.add(delta);
        if let Some(ttl) = ttl {
            expires = now_secs + ttl.as_secs();
        }
        usage
            .insert(
                name.as_str(),
                encode_counters(&counters, expires).as_slice(),
            )
            .map_err(e)?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl UsageStore for EmbeddedStore {
    async fn record_usage(
        &self,
        ev: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        let _turn = match settlement.reservation {
            Some(_) => Some(self.admission.lock().await),
            None => None,
        };
        let spent_rows: Vec<(String, Option<Duration>)> = settlement
            .reservation
            .as_ref()
            .filter(|_| settlement.actual_nanos > 0)
            .map(|r| {
                r.counters
                    .iter()
                    .map(|(scope, c, ttl)| (limit_key(scope, c), *ttl))
                    .collect()
            })
            .unwrap_or_default();
        let actual = settlement.actual_nanos;
        let buckets = ev.buckets(offset_hours);
        let delta = ev.counters();
        let record = to_json(&ev.record)?;
        let (key_id, account_id) = (ev.key_id.clone(), ev.account_id.clone());
        let at_ms = ev.at.timestamp_millis();
        // Like Redis EXPIRE: a bucket lives `ttl` from its last write.
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let keep = self.records_per_key as u64;
        let keep_all = self.records_kept as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                for b in &buckets {
                    let (mut counters, mut expires) = usage
                        .get(b.name.as_str())
                        .map_err(e)?
                        .map(|v| decode_counters(v.value()))
                        .unwrap_or_default();
                    if expires != 0 && expires <= now_secs {
                        counters = UsageCounters::default();
                    }
                    counters.add(&delta);
                    if let Some(ttl) = b.ttl {
                        expires = now_secs + ttl.as_secs();
                    }
                    usage
                        .insert(
                            b.name.as_str(),
                            encode_counters(&counters, expires).as_slice(),
                        )
                        .map_err(e)?;
                }
                append_bounded(&w, RECORDS, "records_seq", &key_id, record.as_bytes(), keep)?;
                append_bounded(
                    &w,
                    RECORDS,
                    "records_seq",
                    ALL_RECORDS,
                    record.as_bytes(),
                    keep_all,
                )?;
                add_spent(&w, &spent_rows, actual, now_secs)?;
                let mut lu = w.open_table(LASTUSED).map_err(e)?;
                lu.insert(format!("k:{key_id}").as_str(), at_ms)
                    .map_err(e)?;
                if !account_id.is_empty() {
                    lu.insert(format!("a:{account_id}").as_str(), at_ms)
                        .map_err(e)?;
                }
            }
            w.commit().map_err(e)
        })
        .await?;
        // Written first, released second: see `admission`.
        self.settle_live(settlement);
        Ok(())
    }

    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError> {
        let batch = UsageBatch::of(events, offset_hours)?;
        let now_secs = Utc::now().timestamp().max(0) as u64;
        let keep = self.records_per_key as u64;
        let keep_all = self.records_kept as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                add_to_buckets(&mut usage, &batch.buckets, now_secs)?;
            }
            for (key_id, records) in &batch.records {
                // Only the newest `keep` can survive the bound.
                let skip = records.len().saturating_sub(keep as usize);
                for r in &records[skip..] {
                    append_bounded(&w, RECORDS, "records_seq", key_id, r.as_bytes(), keep)?;
                }
            }
            let skip = batch.all_records.len().saturating_sub(keep_all as usize);
            for r in &batch.all_records[skip..] {
                append_bounded(
                    &w,
                    RECORDS,
                    "records_seq",
                    ALL_RECORDS,
                    r.as_bytes(),
                    keep_all,
                )?;
            }
            {
                let mut lu = w.open_table(LASTUSED).map_err(e)?;
                for (prefix, map) in [("k", &batch.key_last_used), ("a", &batch.account_last_used)]
                {
                    for (id, ms) in map {
                        let name = format!("{prefix}:{id}");
                        let old = lu.get(name.as_str()).map_err(e)?.map(|v| v.value());
                        let newest = old.map_or(*ms, |o| o.max(*ms));
                        lu.insert(name.as_str(), newest).map_err(e)?;
                    }
                }
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError> {
        let import = import.clone();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let w = db.begin_write().map_err(e)?;
            {
                let mut usage = w.open_table(USAGE).map_err(e)?;
                add_to_buckets(&mut usage, &import.buckets, now_secs)?;
            }
            // Models per day and per key are read from the buckets themselves here.
            for (key_id, counter, ttl, nanos) in &import.spent {
                add_spent(&w, &[(limit_key(key_id, counter), *ttl)], *nanos, now_secs)?;
            }
            w.commit().map_err(e)
        })
        .await
    }

    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError> {
        let buckets = buckets.to_vec();
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            buckets
                .iter()
                .map(|b| {
                    Ok(match t.get(b.as_str()).map_err(e)? {
                        Some(v) => {
                            let (c, expires) = decode_counters(v.value());
                            if expires != 0 && expires <= now_secs {
                                UsageCounters::default()
                            } else {
                                c
                            }
                        }
                        None => UsageCounters::default(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let owner = key_id.to_string();
        self.run(move |db| newest(db, RECORDS, &owner, limit)).await
    }

    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.run(move |db| newest(db, RECORDS, ALL_RECORDS, limit))
            .await
    }

    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.run(|db| {
            let r = db.begin_read().map_err(e)?;
            let lu = r.open_table(LASTUSED).map_err(e)?;
            let mut out = HashMap::new();
            for row in lu.range("k:".."k;").map_err(e)? {
                let (k, v) = row.map_err(e)?;
                out.insert(k.value()[2..].to_string(), v.value());
            }
            Ok(out)
        })
        .await
    }

    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError> {
        let suffix = format!(":d:{day}");
        let now_secs = Utc::now().timestamp().max(0) as u64;
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            let mut out = Vec::new();
            // Model buckets sort together (`model:` … `model;`); their day ones name the model.
            for row in t.range("model:".."model;").map_err(e)? {
                let (k, v) = row.map_err(e)?;
                let (_, expires) = decode_counters(v.value());
                if expires != 0 && expires <= now_secs {
                    continue;
                }
                if let Some(model) = k
                    .value()
                    .strip_prefix("model:")
                    .and_then(|m| m.strip_suffix(suffix.as_str()))
                {
                    out.push(model.to_string());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        let (lo, hi) = (format!("keymodel:{key_id}:"), format!("keymodel:{key_id};"));
        self.run(move |db| {
            let r = db.begin_read().map_err(e)?;
            let t = r.open_table(USAGE).map_err(e)?;
            let mut out = Vec::new();
            for row in t.range(lo.as_str()..hi.as_str()).map_err(e)? {
                let (k, _) = row.map_err(e)?;
                if let Some(model) = k
                    .value()
                    .strip_prefix(lo.as_str())
                    .and_then(|m| m.strip_suffix(":total"))
                {
                    out.push(model.to_string());
                }
            }
            Ok(out)
        })
        .await
    }
}
