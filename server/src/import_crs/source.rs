//! Reading an original deployment's Redis (reference §13, §5.2, §4.1): one SCAN over the
//! keyspace, the names sorted into what the import understands, then the values fetched in
//! pipelined chunks. Nothing is ever written to the source.

use std::collections::{BTreeMap, HashMap};

use ::redis::{aio::MultiplexedConnection, Value};

/// A Redis hash (or a JSON object stored as a string), every value as text.
pub type Fields = BTreeMap<String, String>;

/// The original's account types, with their Redis key prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    ClaudeOfficial,
    ClaudeConsole,
    Bedrock,
    Ccr,
    Gemini,
    GeminiApi,
    OpenAi,
    OpenAiResponses,
    AzureOpenAi,
    Droid,
}

impl SourceKind {
    pub const ALL: [SourceKind; 10] = [
        SourceKind::ClaudeOfficial,
        SourceKind::ClaudeConsole,
        SourceKind::Bedrock,
        SourceKind::Ccr,
        SourceKind::Gemini,
        SourceKind::GeminiApi,
        SourceKind::OpenAi,
        SourceKind::OpenAiResponses,
        SourceKind::AzureOpenAi,
        SourceKind::Droid,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            SourceKind::ClaudeOfficial => "claude:account:",
            SourceKind::ClaudeConsole => "claude_console_account:",
            SourceKind::Bedrock => "bedrock_account:",
            SourceKind::Ccr => "ccr_account:",
            SourceKind::Gemini => "gemini_account:",
            SourceKind::GeminiApi => "gemini_api_account:",
            SourceKind::OpenAi => "openai:account:",
            SourceKind::OpenAiResponses => "openai_responses_account:",
            SourceKind::AzureOpenAi => "azure_openai:account:",
            SourceKind::Droid => "droid:account:",
        }
    }

    /// The original's name of the type (its `accountType`/platform strings).
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::ClaudeOfficial => "claude-official",
            SourceKind::ClaudeConsole => "claude-console",
            SourceKind::Bedrock => "bedrock",
            SourceKind::Ccr => "ccr",
            SourceKind::Gemini => "gemini",
            SourceKind::GeminiApi => "gemini-api",
            SourceKind::OpenAi => "openai",
            SourceKind::OpenAiResponses => "openai-responses",
            SourceKind::AzureOpenAi => "azure-openai",
            SourceKind::Droid => "droid",
        }
    }
}

/// A usage key of the original (§5.2) that the import reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UsageKey {
    /// `usage:<key>` (hash).
    KeyTotal(String),
    /// `usage:daily:<key>:<day>` (hash).
    KeyDay(String, String),
    /// `usage:monthly:<key>:<month>` (hash).
    KeyMonth(String, String),
    /// `usage:<key>:model:alltime:<model>` (hash).
    KeyModelTotal(String, String),
    /// `usage:<key>:model:daily:<model>:<day>` (hash).
    KeyModelDay(String, String, String),
    /// `usage:<key>:model:monthly:<model>:<month>` (hash).
    KeyModelMonth(String, String, String),
    /// `usage:cost:total:<key>` / `usage:cost:real:total:<key>` (string, USD).
    CostTotal { key: String, real: bool },
    /// `usage:cost:daily:<key>:<day>` / `usage:cost:real:daily:<key>:<day>`.
    CostDay {
        key: String,
        day: String,
        real: bool,
    },
    /// `usage:cost:monthly:<key>:<month>` (rated).
    CostMonth(String, String),
    /// `usage:opus:weekly:<key>:<period>` (rated, Claude-family models).
    OpusWeek(String, String),
    /// `account_usage:<account>` (hash).
    AccountTotal(String),
    /// `account_usage:daily:<account>:<day>` (hash).
    AccountDay(String, String),
}

impl UsageKey {
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(rest) = name.strip_prefix("account_usage:") {
            if let Some(r) = rest.strip_prefix("daily:") {
                let (a, day) = r.split_once(':')?;
                return Some(UsageKey::AccountDay(a.into(), day.into()));
            }
            return (!rest.contains(':')).then(|| UsageKey::AccountTotal(rest.into()));
        }
        let rest = name.strip_prefix("usage:")?;
        if let Some(r) = rest.strip_prefix("cost:") {
            let (real, r) = match r.strip_prefix("real:") {
                Some(r) => (true, r),
                None => (false, r),
            };
            if let Some(k) = r.strip_prefix("total:") {
                return (!k.contains(':')).then(|| UsageKey::CostTotal {
                    key: k.into(),
                    real,
                });
            }
            if let Some(r) = r.strip_prefix("daily:") {
                let (k, day) = r.split_once(':')?;
                return Some(UsageKey::CostDay {
                    key: k.into(),
                    day: day.into(),
                    real,
                });
            }
            if let Some(r) = r.strip_prefix("monthly:").filter(|_| !real) {
                let (k, month) = r.split_once(':')?;
                return Some(UsageKey::CostMonth(k.into(), month.into()));
            }
            return None;
        }
        if let Some(r) = rest.strip_prefix("opus:weekly:") {
            let (k, period) = r.split_once(':')?;
            return Some(UsageKey::OpusWeek(k.into(), period.into()));
        }
        if let Some(r) = rest.strip_prefix("daily:") {
            let (k, day) = r.split_once(':')?;
            return (!day.contains(':')).then(|| UsageKey::KeyDay(k.into(), day.into()));
        }
        if let Some(r) = rest.strip_prefix("monthly:") {
            let (k, month) = r.split_once(':')?;
            return (!month.contains(':')).then(|| UsageKey::KeyMonth(k.into(), month.into()));
        }
        if !rest.contains(':') {
            return Some(UsageKey::KeyTotal(rest.into()));
        }
        let (k, r) = rest.split_once(":model:")?;
        if k.contains(':') {
            return None;
        }
        if let Some(m) = r.strip_prefix("alltime:") {
            return Some(UsageKey::KeyModelTotal(k.into(), m.into()));
        }
        if let Some(r) = r.strip_prefix("daily:") {
            let (m, day) = r.rsplit_once(':')?;
            return Some(UsageKey::KeyModelDay(k.into(), m.into(), day.into()));
        }
        if let Some(r) = r.strip_prefix("monthly:") {
            let (m, month) = r.rsplit_once(':')?;
            return Some(UsageKey::KeyModelMonth(k.into(), m.into(), month.into()));
        }
        None
    }

    /// The id of the key (or account) the usage belongs to.
    pub fn owner(&self) -> &str {
        match self {
            UsageKey::KeyTotal(k)
            | UsageKey::KeyDay(k, _)
            | UsageKey::KeyMonth(k, _)
            | UsageKey::KeyModelTotal(k, _)
            | UsageKey::KeyModelDay(k, _, _)
            | UsageKey::KeyModelMonth(k, _, _)
            | UsageKey::CostTotal { key: k, .. }
            | UsageKey::CostDay { key: k, .. }
            | UsageKey::CostMonth(k, _)
            | UsageKey::OpusWeek(k, _)
            | UsageKey::AccountTotal(k)
            | UsageKey::AccountDay(k, _) => k,
        }
    }

    fn is_cost(&self) -> bool {
        matches!(
            self,
            UsageKey::CostTotal { .. }
                | UsageKey::CostDay { .. }
                | UsageKey::CostMonth(..)
                | UsageKey::OpusWeek(..)
        )
    }
}

/// Everything read from the original.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `apikey:<id>` hashes.
    pub keys: Vec<Fields>,
    /// `apikey:hash_map`: hash → key id.
    pub hash_map: HashMap<String, String>,
    pub accounts: Vec<(SourceKind, Fields)>,
    /// `account_group:<id>` and its `account_group_members:<id>`.
    pub groups: Vec<(Fields, Vec<String>)>,
    /// Usage hashes.
    pub usage: HashMap<UsageKey, Fields>,
    /// Cost strings (USD).
    pub costs: HashMap<UsageKey, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot connect to the original's Redis: {0}")]
    Connect(String),
    #[error("reading the original's Redis failed: {0}")]
    Read(String),
}

fn read_err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Read(e.to_string())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable URL>".into(),
    }
}

pub async fn connect(url: &str) -> Result<MultiplexedConnection, SourceError> {
    let client = ::redis::Client::open(url)
        .map_err(|e| SourceError::Connect(format!("{}: {e}", redact(url))))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| SourceError::Connect(format!("{}: {e}", redact(url))))?;
    ::redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| SourceError::Connect(format!("{}: {e}", redact(url))))?;
    Ok(conn)
}

const CHUNK: usize = 500;

/// Reads every key, account, group and usage counter the import maps.
pub async fn read(conn: &mut MultiplexedConnection) -> Result<Snapshot, SourceError> {
    let mut key_ids = Vec::new();
    let mut account_names: Vec<(SourceKind, String)> = Vec::new();
    let mut group_ids = Vec::new();
    let mut usage_names: Vec<(UsageKey, String)> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, names): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(read_err)?;
        for name in names {
            if let Some(id) = name.strip_prefix("apikey:") {
                if !id.contains(':') && id != "hash_map" {
                    key_ids.push(id.to_string());
                }
                continue;
            }
            if let Some(id) = name.strip_prefix("account_group:") {
                group_ids.push(id.to_string());
                continue;
            }
            if let Some(kind) = SourceKind::ALL
                .into_iter()
                .find(|k| name.starts_with(k.prefix()))
            {
                let id = &name[kind.prefix().len()..];
                if !id.is_empty() && !id.contains(':') && id != "index" {
                    account_names.push((kind, name.clone()));
                }
                continue;
            }
            if let Some(u) = UsageKey::parse(&name) {
                usage_names.push((u, name));
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    key_ids.sort();
    key_ids.dedup();
    // Only the usage of keys and accounts that exist (this also leaves out the index sets,
    // such as `usage:daily:index:<day>`, whose names look like a key's).
    let owners: std::collections::HashSet<&str> = key_ids
        .iter()
        .map(String::as_str)
        .chain(account_names.iter().map(|(k, n)| &n[k.prefix().len()..]))
        .collect();
    usage_names.retain(|(u, _)| owners.contains(u.owner()));

    let mut snap = Snapshot::default();
    for chunk in key_ids.chunks(CHUNK) {
        let mut pipe = ::redis::pipe();
        for id in chunk {
            pipe.cmd("HGETALL").arg(format!("apikey:{id}"));
        }
        let rows: Vec<Fields> = pipe.query_async(conn).await.map_err(read_err)?;
        snap.keys.extend(
            rows.into_iter()
                .filter(|r| r.contains_key("apiKey") || r.contains_key("id")),
        );
    }
    snap.hash_map = ::redis::cmd("HGETALL")
        .arg("apikey:hash_map")
        .query_async(conn)
        .await
        .map_err(read_err)?;

    // Accounts: hashes in most versions, JSON strings for Bedrock.
    for chunk in account_names.chunks(CHUNK) {
        let mut pipe = ::redis::pipe();
        for (_, name) in chunk {
            pipe.cmd("TYPE").arg(name);
        }
        let types: Vec<String> = pipe.query_async(conn).await.map_err(read_err)?;
        let mut pipe = ::redis::pipe();
        for ((_, name), t) in chunk.iter().zip(&types) {
            match t.as_str() {
                "hash" => pipe.cmd("HGETALL").arg(name),
                _ => pipe.cmd("GET").arg(name),
            };
        }
        let values: Vec<Value> = pipe.query_async(conn).await.map_err(read_err)?;
        for ((kind, _), (t, v)) in chunk.iter().zip(types.iter().zip(values)) {
            let fields = if t == "hash" {
                ::redis::from_redis_value::<Fields>(v).map_err(read_err)?
            } else {
                let text: Option<String> = ::redis::from_redis_value(v).map_err(read_err)?;
                json_fields(text.as_deref().unwrap_or(""))
            };
            if !fields.is_empty() {
                snap.accounts.push((*kind, fields));
            }
        }
    }

    for id in group_ids {
        let (fields, members): (Fields, Vec<String>) = ::redis::pipe()
            .cmd("HGETALL")
            .arg(format!("account_group:{id}"))
            .cmd("SMEMBERS")
            .arg(format!("account_group_members:{id}"))
            .query_async(conn)
            .await
            .map_err(read_err)?;
        if !fields.is_empty() {
            snap.groups.push((fields, members));
        }
    }

    for chunk in usage_names.chunks(CHUNK) {
        let mut pipe = ::redis::pipe();
        for (u, name) in chunk {
            if u.is_cost() {
                pipe.cmd("GET").arg(name);
            } else {
                pipe.cmd("HGETALL").arg(name);
            }
        }
        let values: Vec<Value> = pipe.query_async(conn).await.map_err(read_err)?;
        for ((u, _), v) in chunk.iter().zip(values) {
            if u.is_cost() {
                let text: Option<String> = ::redis::from_redis_value(v).unwrap_or(None);
                if let Some(usd) = text.and_then(|t| t.trim().parse::<f64>().ok()) {
                    snap.costs.insert(u.clone(), usd);
                }
            } else if let Ok(fields) = ::redis::from_redis_value::<Fields>(v) {
                snap.usage.insert(u.clone(), fields);
            }
        }
    }
    Ok(snap)
}

/// A JSON object as text fields: strings as they are, everything else as its JSON.
pub fn json_fields(text: &str) -> Fields {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Fields::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_key_names_parse() {
        let k = "8b0f0c2e-1111-4222-8333-944445555666";
        let p = |s: &str| UsageKey::parse(s);
        assert_eq!(p(&format!("usage:{k}")), Some(UsageKey::KeyTotal(k.into())));
        assert_eq!(
            p(&format!("usage:daily:{k}:2026-01-02")),
            Some(UsageKey::KeyDay(k.into(), "2026-01-02".into()))
        );
        assert_eq!(
            p(&format!("usage:monthly:{k}:2026-01")),
            Some(UsageKey::KeyMonth(k.into(), "2026-01".into()))
        );
        assert_eq!(p(&format!("usage:hourly:{k}:2026-01-02:05")), None);
        assert_eq!(
            p(&format!(
                "usage:{k}:model:daily:us.claude-x-v1:0:2026-01-02"
            )),
            Some(UsageKey::KeyModelDay(
                k.into(),
                "us.claude-x-v1:0".into(),
                "2026-01-02".into()
            ))
        );
        assert_eq!(
            p(&format!("usage:{k}:model:alltime:claude-x")),
            Some(UsageKey::KeyModelTotal(k.into(), "claude-x".into()))
        );
        assert_eq!(
            p(&format!("usage:cost:real:total:{k}")),
            Some(UsageKey::CostTotal {
                key: k.into(),
                real: true
            })
        );
        assert_eq!(
            p(&format!("usage:cost:daily:{k}:2026-01-02")),
            Some(UsageKey::CostDay {
                key: k.into(),
                day: "2026-01-02".into(),
                real: false
            })
        );
        assert_eq!(
            p(&format!("usage:opus:weekly:{k}:2026-01-05T00")),
            Some(UsageKey::OpusWeek(k.into(), "2026-01-05T00".into()))
        );
        assert_eq!(
            p("account_usage:daily:acc:2026-01-02"),
            Some(UsageKey::AccountDay("acc".into(), "2026-01-02".into()))
        );
        // Indexes and records are not usage counters.
        assert_eq!(p(&format!("usage:records:{k}")), None);
        assert_eq!(p("usage:model:daily:claude-x:2026-01-02"), None);
    }

    #[test]
    fn json_objects_become_text_fields() {
        let f = json_fields(
            r#"{"name":"b","priority":40,"isActive":true,"awsCredentials":{"iv":"00"},"x":null}"#,
        );
        assert_eq!(f["name"], "b");
        assert_eq!(f["priority"], "40");
        assert_eq!(f["isActive"], "true");
        assert_eq!(f["awsCredentials"], r#"{"iv":"00"}"#);
        assert_eq!(f["x"], "");
        assert!(json_fields("not json").is_empty());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@host:6380/1"),
            "redis://:***@host:6380/1"
        );
        assert!(!redact("redis://u:pw@h/").contains("pw"));
    }
}
