//! Usage's storage: the counters, request records and last-use times accounting writes for
//! each finished request (with its settlement, in the same round trip), the bucket names both
//! engines and the readers agree on, and the reads of the dashboard and api-stats.

use std::{collections::HashMap, time::Duration};

use app::domain::{RequestRecord, TokenUsage, UsageCounters};
use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, Utc};

use super::{limits::Settlement, to_json, StoreError};

/// Everything accounting writes for one finished request.
#[derive(Clone, Debug)]
pub struct UsageEvent {
    pub key_id: String,
    pub account_id: String,
    /// The service (`claude`, `openai`, `gemini`): the key's per-platform usage.
    pub service: String,
    pub model: String,
    pub usage: TokenUsage,
    pub cost_nanos: u64,
    pub at: DateTime<Utc>,
    pub record: RequestRecord,
}

/// The counter buckets one request adds to. Day, month and hour are in the configured offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    pub name: String,
    /// `None`: kept forever.
    pub ttl: Option<Duration>,
}

const DAY: u64 = 86_400;

/// Period names for a moment in the configured UTC offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Periods {
    pub day: String,
    pub month: String,
    pub hour: String,
    /// `YYYY-MM-DD:HH:MM`, for the realtime RPM/TPM buckets.
    pub minute: String,
}

impl Periods {
    pub fn at(at: DateTime<Utc>, offset_hours: i32) -> Self {
        let offset = FixedOffset::east_opt(offset_hours * 3600)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        let local = at.with_timezone(&offset).naive_local();
        // Plain integer formatting: chrono's strftime parser was visible in the hot path.
        use chrono::{Datelike, Timelike};
        let month = format!("{:04}-{:02}", local.year(), local.month());
        let day = format!("{month}-{:02}", local.day());
        let hour = format!("{day}:{:02}", local.hour());
        let minute = format!("{hour}:{:02}", local.minute());
        Periods {
            day,
            month,
            hour,
            minute,
        }
    }

    pub fn yesterday(at: DateTime<Utc>, offset_hours: i32) -> Self {
        Self::at(at - ChronoDuration::days(1), offset_hours)
    }
}

/// Bucket names, in one place so both engines and the readers agree.
pub mod buckets {
    pub fn key_total(key: &str) -> String {
        format!("key:{key}:total")
    }
    pub fn key_day(key: &str, day: &str) -> String {
        format!("key:{key}:d:{day}")
    }
    pub fn key_month(key: &str, month: &str) -> String {
        format!("key:{key}:m:{month}")
    }
    pub fn key_hour(key: &str, hour: &str) -> String {
        format!("key:{key}:h:{hour}")
    }
    pub fn key_model_total(key: &str, model: &str) -> String {
        format!("keymodel:{key}:{model}:total")
    }
    pub fn key_model_day(key: &str, model: &str, day: &str) -> String {
        format!("keymodel:{key}:{model}:d:{day}")
    }
    pub fn model_day(model: &str, day: &str) -> String {
        format!("model:{model}:d:{day}")
    }
    pub fn model_month(model: &str, month: &str) -> String {
        format!("model:{model}:m:{month}")
    }
    pub fn key_platform_total(key: &str, platform: &str) -> String {
        format!("keyplat:{key}:{platform}:total")
    }
    pub fn key_platform_day(key: &str, platform: &str, day: &str) -> String {
        format!("keyplat:{key}:{platform}:d:{day}")
    }
    pub fn account_total(account: &str) -> String {
        format!("account:{account}:total")
    }
    pub fn account_day(account: &str, day: &str) -> String {
        format!("account:{account}:d:{day}")
    }
    pub fn global_total() -> String {
        "global:total".into()
    }
    pub fn global_day(day: &str) -> String {
        format!("global:d:{day}")
    }
    pub fn global_hour(hour: &str) -> String {
        format!("global:h:{hour}")
    }
    pub fn global_minute(minute: &str) -> String {
        format!("global:min:{minute}")
    }
}

impl UsageEvent {
    /// Every bucket this request adds to.
    pub fn buckets(&self, offset_hours: i32) -> Vec<Bucket> {
        use buckets::*;
        let p = Periods::at(self.at, offset_hours);
        let (k, m, a) = (&self.key_id, &self.model, &self.account_id);
        let days = |n| Some(Duration::from_secs(n * DAY));
        let mut out = vec![
            Bucket {
                name: key_total(k),
                ttl: None,
            },
            Bucket {
                name: key_day(k, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: key_month(k, &p.month),
                ttl: days(400),
            },
            Bucket {
                name: key_hour(k, &p.hour),
                ttl: days(8),
            },
            Bucket {
                name: key_model_total(k, m),
                ttl: None,
            },
            Bucket {
                name: key_model_day(k, m, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: model_day(m, &p.day),
                ttl: days(32),
            },
            Bucket {
                name: model_month(m, &p.month),
                ttl: days(400),
            },
            Bucket {
                name: global_total(),
                ttl: None,
            },
            Bucket {
                name: global_day(&p.day),
                ttl: days(32),
            },
            Bucket {
                name: global_hour(&p.hour),
                ttl: days(8),
            },
            Bucket {
                name: global_minute(&p.minute),
                ttl: Some(Duration::from_secs(3600)),
            },
        ];
        if !self.service.is_empty() {
            out.push(Bucket {
                name: key_platform_total(k, &self.service),
                ttl: None,
            });
            out.push(Bucket {
                name: key_platform_day(k, &self.service, &p.day),
                ttl: days(32),
            });
        }
        if !a.is_empty() {
            out.push(Bucket {
                name: account_total(a),
                ttl: None,
            });
            out.push(Bucket {
                name: account_day(a, &p.day),
                ttl: days(32),
            });
        }
        out
    }

    pub fn counters(&self) -> UsageCounters {
        UsageCounters::of_request(&self.usage, self.cost_nanos)
    }
}

/// The owner of the list of every key's newest records (key ids are UUIDs: no clash).
pub const ALL_RECORDS: &str = "~all";

/// A batch of usage events folded together: each bucket once, records per key in order.
#[derive(Default)]
pub struct UsageBatch {
    /// Bucket name → (summed counters, TTL).
    pub buckets: HashMap<String, (UsageCounters, Option<Duration>)>,
    /// Key id → record JSON, oldest first.
    pub records: HashMap<String, Vec<String>>,
    /// Every record in event order, for the list of all keys' requests.
    pub all_records: Vec<String>,
    pub key_last_used: HashMap<String, i64>,
    pub account_last_used: HashMap<String, i64>,
    /// Day → models used that day.
    pub models_by_day: HashMap<String, std::collections::BTreeSet<String>>,
    /// Key id → models it used.
    pub key_models: HashMap<String, std::collections::BTreeSet<String>>,
}

impl UsageBatch {
    pub fn of(events: &[UsageEvent], offset_hours: i32) -> Result<Self, StoreError> {
        let mut b = UsageBatch::default();
        for ev in events {
            let delta = ev.counters();
            for bucket in ev.buckets(offset_hours) {
                b.buckets
                    .entry(bucket.name)
                    .or_insert((UsageCounters::default(), bucket.ttl))
                    .0
                    .add(&delta);
            }
            let record = to_json(&ev.record)?;
            b.all_records.push(record.clone());
            b.records.entry(ev.key_id.clone()).or_default().push(record);
            let ms = ev.at.timestamp_millis();
            let newer = |m: &mut HashMap<String, i64>, id: &str| {
                let e = m.entry(id.to_string()).or_insert(ms);
                *e = (*e).max(ms);
            };
            newer(&mut b.key_last_used, &ev.key_id);
            if !ev.account_id.is_empty() {
                newer(&mut b.account_last_used, &ev.account_id);
            }
            b.models_by_day
                .entry(Periods::at(ev.at, offset_hours).day)
                .or_default()
                .insert(ev.model.clone());
            b.key_models
                .entry(ev.key_id.clone())
                .or_default()
                .insert(ev.model.clone());
        }
        Ok(b)
    }
}

/// Counters brought in from another deployment (`crs import-crs`): added to usage buckets and
/// to keys' limit counters, with no request records, leases or per-request estimates.
#[derive(Clone, Debug, Default)]
pub struct UsageImport {
    /// Bucket name → (counters to add, TTL).
    pub buckets: HashMap<String, (UsageCounters, Option<Duration>)>,
    /// (key id, limit counter id as `limits::plan` names it, TTL, nano-dollars to add).
    pub spent: Vec<(String, String, Option<Duration>, u64)>,
    /// Day → models used that day.
    pub models_by_day: HashMap<String, std::collections::BTreeSet<String>>,
    /// Key id → models it used.
    pub key_models: HashMap<String, std::collections::BTreeSet<String>>,
}

/// Usage counters, request records and last-use times.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// All counters, the request record and last-used times of one request, and its
    /// settlement (leases released, reservation replaced by the actual cost): one round trip.
    async fn record_usage(
        &self,
        event: &UsageEvent,
        offset_hours: i32,
        settlement: &Settlement,
    ) -> Result<(), StoreError>;
    /// Many finished requests at once (history imports, benchmarks): the same counters,
    /// records and indexes as `record_usage` one by one, without settlements, aggregated
    /// first so each bucket is written once.
    async fn record_usage_batch(
        &self,
        events: &[UsageEvent],
        offset_hours: i32,
    ) -> Result<(), StoreError>;
    /// Imported history: adds counters to buckets and spending to limit counters.
    async fn import_usage(&self, import: &UsageImport) -> Result<(), StoreError>;
    /// Counters of several buckets (missing ones are zero), in one round trip.
    async fn usage(&self, buckets: &[String]) -> Result<Vec<UsageCounters>, StoreError>;
    /// Newest first.
    async fn recent_records(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRecord>, StoreError>;
    /// The newest request records of every key together (bounded by `REQUEST_RECORDS_KEPT`).
    async fn all_records(&self, limit: usize) -> Result<Vec<RequestRecord>, StoreError>;
    /// Last use of keys, in ms since the epoch.
    async fn keys_last_used(&self) -> Result<HashMap<String, i64>, StoreError>;
    /// The models that recorded usage on a day (for the dashboard's model distribution).
    async fn models_used(&self, day: &str) -> Result<Vec<String>, StoreError>;
    /// The models a key has ever used (for its per-model table).
    async fn key_models(&self, key_id: &str) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_follow_the_offset() {
        let at = Utc.with_ymd_and_hms(2026, 1, 31, 20, 30, 0).unwrap();
        let p = Periods::at(at, 8);
        assert_eq!(p.day, "2026-02-01");
        assert_eq!(p.month, "2026-02");
        assert_eq!(p.hour, "2026-02-01:04");
        let p = Periods::at(at, 0);
        assert_eq!(p.day, "2026-01-31");
    }
}
