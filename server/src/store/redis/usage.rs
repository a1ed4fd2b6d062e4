//! The Redis engine's usage: counter hashes per bucket, capped record lists, last-use hashes
//! and model sets, each request in one MULTI pipeline with its settlement.

use super::*;

use super::limits::settle_cmd;

const FIELDS: [&str; 7] = ["r", "i", "o", "c5", "c1", "cr", "n"];

fn counter_values(c: &UsageCounters) -> [u64; 7] {
    [
        c.requests,
        c.input_tokens,
        c.output_tokens,
        c.cache_create_5m_tokens,
        c.cache_create_1h_tokens,
        c.cache_read_tokens,
        c.cost_nanos,
    ]
}

fn counters_from(map: &HashMap<String, u64>) -> UsageCounters {
    let g = |f: &str| map.get(f).copied().unwrap_or(0);
    UsageCounters {
        requests: g("r"),
        input_tokens: g("i"),
        output_tokens: g("o"),
        cache_create_5m_tokens: g("c5"),
        cache_create_1h_tokens: g("c1"),
        cache_read_tokens: g("cr"),
        cost_nanos: g("n"),
    }
}

#[async_trait::async_trait]
impl UsageStore for RedisStore {
    async fn record_usage(
        &self,
        ev: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError> {
        let values = counter_values(&ev.counters());
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for bucket in ev.buckets(offset_hours) {
            let key = format!("{P}usage:{}", bucket.name);
            for (field, value) in FIELDS.iter().zip(values) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                }
            }
            if let Some(ttl) = bucket.ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        // The day's model index, for the dashboard's model distribution.
        let models = format!("{P}models:d:{}", Periods::at(ev.at, offset_hours).day);
        pipe.sadd(&models, &ev.model).ignore();
        pipe.expire(&models, 32 * 86_400).ignore();
        pipe.sadd(format!("{P}keymodels:{}", ev.key_id), &ev.model)
            .ignore();
        let records = format!("{P}records:{}", ev.key_id);
        pipe.lpush(&records, to_json(&ev.record)?).ignore();
        pipe.ltrim(&records, 0, self.records_per_key as isize - 1)
            .ignore();
        let all = format!("{P}records:{ALL_RECORDS}");
        pipe.lpush(&all, to_json(&ev.record)?).ignore();
        pipe.ltrim(&all, 0, self.records_kept as isize - 1).ignore();
        let ms = ev.at.timestamp_millis();
        pipe.hset(format!("{P}lastused:keys"), &ev.key_id, ms)
            .ignore();
        if !ev.account_id.is_empty() {
            pipe.hset(format!("{P}lastused:accounts"), &ev.account_id, ms)
                .ignore();
        }
        for (scope, lease) in &settlement.leases {
            pipe.zrem(format!("{P}lease:{scope}"), lease).ignore();
        }
        if let Some(cmd) = settle_cmd(&self.scripts.settle, settlement) {
            pipe.add_command(cmd).ignore();
        }
        match pipe.query_async::<()>(&mut self.conn()).await {
            Ok(()) => Ok(()),
            // The settle script was not cached (Redis restarted). The transaction's other
            // commands did run (MULTI does not roll back), so only the settlement is sent again.
            Err(e) if is_noscript(&e) => {
                let _: String = ::redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(self.rules.settle_lua)
                    .query_async(&mut self.conn())
                    .await
                    .map_err(err)?;
                match settle_cmd(&self.scripts.settle, settlement) {
                    Some(cmd) => cmd.query_async::<()>(&mut self.conn()).await.map_err(err),
                    None => Ok(()),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError> {
        let batch = UsageBatch::of(events, offset_hours)?;
        let mut conn = self.conn();
        let mut pipe = ::redis::pipe();
        let mut queued = 0usize;
        // Sent in chunks: one round trip per few thousand commands, bounded memory.
        async fn flush(
            conn: &mut ConnectionManager,
            pipe: &mut ::redis::Pipeline,
            queued: &mut usize,
        ) -> Result<(), StoreError> {
            if *queued > 0 {
                pipe.query_async::<()>(conn).await.map_err(err)?;
                *pipe = ::redis::pipe();
                *queued = 0;
            }
            Ok(())
        }
        for (name, (delta, ttl)) in &batch.buckets {
            let key = format!("{P}usage:{name}");
            for (field, value) in FIELDS.iter().zip(counter_values(delta)) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                    queued += 1;
                }
            }
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
                queued += 1;
            }
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        for (key_id, records) in &batch.records {
            let list = format!("{P}records:{key_id}");
            let skip = records.len().saturating_sub(self.records_per_key);
            pipe.lpush(&list, &records[skip..]).ignore();
            pipe.ltrim(&list, 0, self.records_per_key as isize - 1)
                .ignore();
            queued += 2;
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        let all = format!("{P}records:{ALL_RECORDS}");
        let skip = batch.all_records.len().saturating_sub(self.records_kept);
        for chunk in batch.all_records[skip..].chunks(1_000) {
            pipe.lpush(&all, chunk).ignore();
            queued += 1;
        }
        pipe.ltrim(&all, 0, self.records_kept as isize - 1).ignore();
        queued += 1;
        for (hash, map) in [
            ("keys", &batch.key_last_used),
            ("accounts", &batch.account_last_used),
        ] {
            for (id, ms) in map {
                pipe.hset(format!("{P}lastused:{hash}"), id, ms).ignore();
                queued += 1;
            }
        }
        for (day, models) in &batch.models_by_day {
            let set = format!("{P}models:d:{day}");
            pipe.sadd(&set, models).ignore();
            pipe.expire(&set, 32 * 86_400).ignore();
            queued += 2;
        }
        for (key_id, models) in &batch.key_models {
            pipe.sadd(format!("{P}keymodels:{key_id}"), models).ignore();
            queued += 1;
            if queued >= 5_000 {
                flush(&mut conn, &mut pipe, &mut queued).await?;
            }
        }
        flush(&mut conn, &mut pipe, &mut queued).await
    }

    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError> {
        if import.buckets.is_empty() && import.spent.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for (name, (delta, ttl)) in &import.buckets {
            let key = format!("{P}usage:{name}");
            for (field, value) in FIELDS.iter().zip(counter_values(delta)) {
                if value > 0 {
                    pipe.hincr(&key, *field, value).ignore();
                }
            }
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        for (key_id, counter, ttl, nanos) in &import.spent {
            let key = format!("{P}lim:{{{key_id}}}:c:{counter}");
            pipe.hincr(&key, "s", *nanos).ignore();
            if let Some(ttl) = ttl {
                pipe.expire(&key, ttl.as_secs() as i64).ignore();
            }
        }
        for (day, models) in &import.models_by_day {
            let set = format!("{P}models:d:{day}");
            pipe.sadd(&set, models).ignore();
            pipe.expire(&set, 32 * 86_400).ignore();
        }
        for (key_id, models) in &import.key_models {
            pipe.sadd(format!("{P}keymodels:{key_id}"), models).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(err)
    }

    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError> {
        if buckets.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for b in buckets {
            pipe.hgetall(format!("{P}usage:{b}"));
        }
        let maps: Vec<HashMap<String, u64>> =
            pipe.query_async(&mut self.conn()).await.map_err(err)?;
        Ok(maps.iter().map(counters_from).collect())
    }

    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        self.newest(format!("{P}records:{key_id}"), limit).await
    }

    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        self.newest(format!("{P}records:{ALL_RECORDS}"), limit)
            .await
    }

    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError> {
        self.conn()
            .hgetall(format!("{P}lastused:keys"))
            .await
            .map_err(err)
    }

    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError> {
        self.conn()
            .smembers(format!("{P}models:d:{day}"))
            .await
            .map_err(err)
    }

    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        self.conn()
            .smembers(format!("{P}keymodels:{key_id}"))
            .await
            .map_err(err)
    }
}
