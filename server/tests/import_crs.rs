//! Importing an original Claude Relay Service deployment: a fixture in the original's exact
//! Redis format (reference §13, §5.2, §4.1, §2.3), written here from the documented schema with
//! secrets encrypted by the original's scheme, imported into both of our engines. Then an
//! original `cr_` key authenticates and relays through the imported Console account to the
//! mock, the imported usage equals the fixture's, a dry run writes nothing and a re-run
//! doubles nothing.

mod common;

use app::domain::UsageCounters;
use common::{body, Engine, Harness, MODEL, UPSTREAM_KEY};
use crs::{
    crypto::sha256_hex,
    import_crs::{legacy_crypto::LegacyCrypto, ImportReport, Target},
    store::{buckets, Periods},
    testing::RedisServer,
};

/// The original deployment's ENCRYPTION_KEY (ours, from `Config::for_tests`, differs).
const ORIGINAL_KEY: &str = "original-deployment-key-0123456789abcdef";
const KEY_ID: &str = "5b0c9b7e-58b2-4a8e-9d6e-2f1f2a3b4c5d";
const GROUP_KEY_ID: &str = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
const ACCOUNT_ID: &str = "0f4a1c2b-3d4e-4f50-8a6b-7c8d9e0f1a2b";
const OAUTH_ID: &str = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b";
const GROUP_ID: &str = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";

fn raw_key(n: u8) -> String {
    format!("cr_{}", format!("{n:02x}").repeat(32))
}

/// `sha256(apiKey + ENCRYPTION_KEY)`, as the original stores it.
fn original_hash(key: &str) -> String {
    sha256_hex(&format!("{key}{ORIGINAL_KEY}"))
}

async fn hset(c: &mut ::redis::aio::MultiplexedConnection, key: &str, fields: &[(&str, String)]) {
    let mut cmd = ::redis::cmd("HSET");
    cmd.arg(key);
    for (f, v) in fields {
        cmd.arg(*f).arg(v);
    }
    cmd.query_async::<()>(c).await.unwrap();
}

async fn set(c: &mut ::redis::aio::MultiplexedConnection, key: &str, v: &str) {
    ::redis::cmd("SET")
        .arg(key)
        .arg(v)
        .query_async::<()>(c)
        .await
        .unwrap();
}

async fn sadd(c: &mut ::redis::aio::MultiplexedConnection, key: &str, member: &str) {
    ::redis::cmd("SADD")
        .arg(key)
        .arg(member)
        .query_async::<()>(c)
        .await
        .unwrap();
}

fn key_fields(
    id: &str,
    name: &str,
    hash: &str,
    claude_binding: &str,
) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_string();
    vec![
        ("id", s(id)),
        ("name", s(name)),
        ("description", s("from the original")),
        ("apiKey", s(hash)),
        ("tokenLimit", s("0")),
        ("concurrencyLimit", s("4")),
        ("rateLimitWindow", s("0")),
        ("rateLimitRequests", s("0")),
        ("rateLimitCost", s("0")),
        ("isActive", s("true")),
        ("claudeAccountId", s(claude_binding)),
        ("claudeConsoleAccountId", s("")),
        ("geminiAccountId", s("")),
        ("openaiAccountId", s("")),
        ("azureOpenaiAccountId", s("")),
        ("bedrockAccountId", s("")),
        ("droidAccountId", s("")),
        ("permissions", s("[]")),
        ("enableModelRestriction", s("false")),
        ("restrictedModels", s("[]")),
        ("enableClientRestriction", s("false")),
        ("allowedClients", s("[]")),
        ("dailyCostLimit", s("0")),
        ("totalCostLimit", s("50")),
        ("weeklyOpusCostLimit", s("0")),
        ("weeklyResetDay", s("1")),
        ("weeklyResetHour", s("0")),
        ("tags", s(r#"["imported"]"#)),
        ("expirationMode", s("fixed")),
        ("activationDays", s("0")),
        ("activationUnit", s("days")),
        ("isActivated", s("true")),
        ("activatedAt", s("")),
        ("expiresAt", s("")),
        ("createdAt", s("2025-06-01T08:00:00.000Z")),
        ("lastUsedAt", s("")),
        ("createdBy", s("admin")),
        ("userId", s("")),
        ("userUsername", s("")),
        ("icon", s("")),
        ("serviceRates", s("{}")),
        ("isDeleted", s("false")),
    ]
}

/// Writes the original's data: two keys (one bound to a group), a Console account whose API key
/// is encrypted with the original's scheme, an OpenAI OAuth account (no counterpart here), a
/// group, and the first key's usage: totals, two days, a month, per model, costs.
async fn write_fixture(url: &str, mock_url: &str, today: &str, yesterday: &str, month: &str) {
    let client = ::redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let legacy = LegacyCrypto::new(ORIGINAL_KEY);
    let s = |v: &str| v.to_string();

    for (id, n, name, binding) in [
        (KEY_ID, 1u8, "team key", ""),
        (
            GROUP_KEY_ID,
            2u8,
            "group key",
            &format!("group:{GROUP_ID}") as &str,
        ),
    ] {
        let hash = original_hash(&raw_key(n));
        hset(
            &mut c,
            &format!("apikey:{id}"),
            &key_fields(id, name, &hash, binding),
        )
        .await;
        hset(&mut c, "apikey:hash_map", &[(&hash, s(id))]).await;
        sadd(&mut c, "apikey:idx:all", id).await;
        sadd(&mut c, "apikey:set:active", id).await;
    }
    set(&mut c, "apikey:index:version", "3").await;

    let encrypted = legacy.encrypt_field("claude-console-salt", UPSTREAM_KEY, [7u8; 16]);
    hset(
        &mut c,
        &format!("claude_console_account:{ACCOUNT_ID}"),
        &[
            ("id", s(ACCOUNT_ID)),
            ("platform", s("claude-console")),
            ("name", s("console on the mock")),
            ("description", s("")),
            ("apiUrl", s(mock_url)),
            ("apiKey", encrypted),
            ("priority", s("50")),
            ("supportedModels", s("{}")),
            ("userAgent", s("")),
            ("rateLimitDuration", s("60")),
            ("isActive", s("true")),
            ("proxy", s("")),
            ("accountType", s("shared")),
            ("schedulable", s("true")),
            ("status", s("active")),
            ("errorMessage", s("")),
            ("dailyQuota", s("0")),
            ("quotaResetTime", s("00:00")),
            ("maxConcurrentTasks", s("0")),
            ("createdAt", s("2025-06-01T08:00:00.000Z")),
            ("lastUsedAt", s("")),
        ],
    )
    .await;
    sadd(&mut c, "claude_console_account:index", ACCOUNT_ID).await;
    hset(
        &mut c,
        &format!("openai:account:{OAUTH_ID}"),
        &[
            ("id", s(OAUTH_ID)),
            ("name", s("codex oauth")),
            (
                "accessToken",
                legacy.encrypt_field("openai-account-salt", "tok", [1u8; 16]),
            ),
            ("isActive", s("true")),
        ],
    )
    .await;
    sadd(&mut c, "openai:account:index", OAUTH_ID).await;

    hset(
        &mut c,
        &format!("account_group:{GROUP_ID}"),
        &[
            ("id", s(GROUP_ID)),
            ("name", s("console pool")),
            ("platform", s("claude")),
            ("description", s("")),
            ("proxy", s("")),
            ("proxyPriority", s("")),
            ("createdAt", s("2025-06-01T08:00:00.000Z")),
            ("updatedAt", s("2025-06-01T08:00:00.000Z")),
        ],
    )
    .await;
    sadd(
        &mut c,
        &format!("account_group_members:{GROUP_ID}"),
        ACCOUNT_ID,
    )
    .await;
    sadd(&mut c, "account_groups", GROUP_ID).await;

    // Usage (§5.2): the all-time hash, per day, per month, per model, and the cost strings.
    let k = KEY_ID;
    hset(
        &mut c,
        &format!("usage:{k}"),
        &[
            ("totalTokens", s("1500")),
            ("totalInputTokens", s("1000")),
            ("totalOutputTokens", s("500")),
            ("totalCacheCreateTokens", s("200")),
            ("totalCacheReadTokens", s("300")),
            ("totalAllTokens", s("2000")),
            ("totalEphemeral5mTokens", s("150")),
            ("totalEphemeral1hTokens", s("50")),
            ("totalRequests", s("12")),
        ],
    )
    .await;
    set(&mut c, &format!("usage:cost:total:{k}"), "1.234567").await;
    set(&mut c, &format!("usage:cost:real:total:{k}"), "1.234567").await;
    for (day, input, output, cc, cr, req, cost) in [
        (today, "600", "300", "100", "200", "7", "0.7"),
        (yesterday, "400", "200", "100", "100", "5", "0.534567"),
    ] {
        hset(
            &mut c,
            &format!("usage:daily:{k}:{day}"),
            &[
                ("tokens", s("0")),
                ("inputTokens", s(input)),
                ("outputTokens", s(output)),
                ("cacheCreateTokens", s(cc)),
                ("cacheReadTokens", s(cr)),
                ("allTokens", s("0")),
                ("requests", s(req)),
                ("ephemeral5mTokens", s(cc)),
                ("ephemeral1hTokens", s("0")),
            ],
        )
        .await;
        set(&mut c, &format!("usage:cost:daily:{k}:{day}"), cost).await;
        set(&mut c, &format!("usage:cost:real:daily:{k}:{day}"), cost).await;
        sadd(&mut c, &format!("usage:daily:index:{day}"), k).await;
        hset(
            &mut c,
            &format!("usage:{k}:model:daily:{MODEL}:{day}"),
            &[
                ("inputTokens", s(input)),
                ("outputTokens", s(output)),
                ("cacheCreateTokens", s(cc)),
                ("cacheReadTokens", s(cr)),
                ("allTokens", s("0")),
                ("requests", s(req)),
                ("realCostMicro", s("100000")),
                ("ratedCostMicro", s("100000")),
            ],
        )
        .await;
        hset(
            &mut c,
            &format!("usage:model:daily:{MODEL}:{day}"),
            &[("requests", s(req))],
        )
        .await;
    }
    hset(
        &mut c,
        &format!("usage:monthly:{k}:{month}"),
        &[
            ("inputTokens", s("1000")),
            ("outputTokens", s("500")),
            ("cacheCreateTokens", s("200")),
            ("cacheReadTokens", s("300")),
            ("requests", s("12")),
        ],
    )
    .await;
    set(
        &mut c,
        &format!("usage:cost:monthly:{k}:{month}"),
        "1.234567",
    )
    .await;
    hset(
        &mut c,
        &format!("usage:{k}:model:alltime:{MODEL}"),
        &[
            ("inputTokens", s("1000")),
            ("outputTokens", s("500")),
            ("requests", s("12")),
            ("realCostMicro", s("1234567")),
        ],
    )
    .await;
    hset(&mut c, "usage:global:total", &[("requests", s("99"))]).await;
    hset(
        &mut c,
        &format!("account_usage:{ACCOUNT_ID}"),
        &[("totalInputTokens", s("1000")), ("totalRequests", s("12"))],
    )
    .await;
}

fn expected_total() -> UsageCounters {
    UsageCounters {
        requests: 12,
        input_tokens: 1000,
        output_tokens: 500,
        cache_create_5m_tokens: 150,
        cache_create_1h_tokens: 50,
        cache_read_tokens: 300,
        cost_nanos: 1_234_567_000,
    }
}

async fn run(h: &Harness, url: &str, dry_run: bool) -> ImportReport {
    let state = &h.relay().state;
    let target = Target {
        store: &state.store,
        crypto: &state.crypto,
        tz_hours: state.config.timezone_offset_hours,
    };
    crs::import_crs::import_from_url(url, ORIGINAL_KEY, &target, dry_run)
        .await
        .unwrap()
}

async fn imports_keys_accounts_groups_and_usage(engine: Engine) {
    let h = Harness::new(engine).await;
    let original = RedisServer::start();
    let tz = h.relay().state.config.timezone_offset_hours;
    let now = chrono::Utc::now();
    let today = Periods::at(now, tz);
    let yesterday = Periods::yesterday(now, tz).day;
    write_fixture(
        &original.url(),
        &h.mock.url(),
        &today.day,
        &yesterday,
        &today.month,
    )
    .await;
    let store = h.relay().state.store.clone();

    // A dry run reports and writes nothing.
    let dry = run(&h, &original.url(), true).await;
    assert!(dry.dry_run);
    assert_eq!(
        (dry.keys_created, dry.accounts_created, dry.groups),
        (2, 1, 1)
    );
    assert_eq!(dry.key_usage_totals, expected_total());
    assert!(store.list_keys().await.unwrap().is_empty());
    assert!(store.list_accounts().await.unwrap().is_empty());
    assert_eq!(
        store.usage(&[buckets::key_total(KEY_ID)]).await.unwrap()[0],
        UsageCounters::default()
    );
    let refused = h.messages(&raw_key(1), body(false)).send().await.unwrap();
    assert_eq!(refused.status(), 401, "nothing imported yet");

    let report = run(&h, &original.url(), false).await;
    assert_eq!(
        (report.keys_created, report.accounts_created, report.groups),
        (2, 1, 1)
    );
    assert!(report.legacy_key_hashes);
    assert!(
        report
            .unmapped
            .iter()
            .any(|u| u.item.contains(OAUTH_ID) && u.reason.contains("no counterpart")),
        "{:?}",
        report.unmapped
    );

    // The usage equals the fixture's: totals, days, month, per model, the limit counter.
    let day_bucket = |day: &str| buckets::key_day(KEY_ID, day);
    let got = store
        .usage(&[
            buckets::key_total(KEY_ID),
            day_bucket(&today.day),
            day_bucket(&yesterday),
            buckets::key_month(KEY_ID, &today.month),
            buckets::key_model_total(KEY_ID, MODEL),
            buckets::model_day(MODEL, &today.day),
            buckets::account_total(ACCOUNT_ID),
            buckets::global_total(),
        ])
        .await
        .unwrap();
    assert_eq!(got[0], expected_total());
    assert_eq!(
        (got[1].requests, got[1].input_tokens, got[1].cost_nanos),
        (7, 600, 700_000_000)
    );
    assert_eq!(
        (
            got[2].requests,
            got[2].cache_create_5m_tokens,
            got[2].cost_nanos
        ),
        (5, 100, 534_567_000)
    );
    assert_eq!((got[3].requests, got[3].cost_nanos), (12, 1_234_567_000));
    assert_eq!((got[4].requests, got[4].cost_nanos), (12, 1_234_567_000));
    assert_eq!((got[5].requests, got[5].cost_nanos), (7, 100_000_000));
    assert_eq!((got[6].requests, got[6].input_tokens), (12, 1000));
    assert_eq!(
        got[7],
        expected_total(),
        "global = the imported keys' totals"
    );
    let (spent, _) = store
        .limit_usage(
            KEY_ID,
            &[
                (KEY_ID.to_string(), "t".to_string()),
                (KEY_ID.to_string(), format!("d:{}", today.day)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(spent, vec![1_234_567_000, 700_000_000]);
    assert_eq!(store.key_models(KEY_ID).await.unwrap(), vec![MODEL]);
    let key = store.get_key(KEY_ID).await.unwrap().unwrap();
    assert_eq!(
        (key.key.total_cost_limit, key.key.concurrency_limit),
        (50.0, 4)
    );
    assert_eq!(key.key.tags, vec!["imported"]);

    // A re-run: same ids, nothing doubled.
    let again = run(&h, &original.url(), false).await;
    assert_eq!((again.keys_created, again.keys_updated), (0, 2));
    assert_eq!((again.accounts_created, again.accounts_updated), (0, 1));
    assert_eq!((again.usage_buckets, again.limit_counters), (0, 0));
    assert_eq!(store.list_keys().await.unwrap().len(), 2);
    assert_eq!(
        store.usage(&[buckets::key_total(KEY_ID)]).await.unwrap()[0],
        expected_total()
    );
    let (spent, _) = store
        .limit_usage(KEY_ID, &[(KEY_ID.to_string(), "t".to_string())])
        .await
        .unwrap();
    assert_eq!(spent, vec![1_234_567_000]);

    // The original's `cr_` key authenticates and relays through the imported Console account,
    // with the credential the original had encrypted.
    let before = h.mock.log.count();
    let resp = h.messages(&raw_key(1), body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(h.mock.log.count(), before + 1);
    let seen = h.mock.log.last().unwrap();
    assert_eq!(
        seen.headers.get("x-api-key").and_then(|v| v.to_str().ok()),
        Some(UPSTREAM_KEY)
    );
    // Its new request adds to the imported history.
    let after = h.wait_requests(&buckets::key_total(KEY_ID), 13).await;
    assert!(after.input_tokens > 1000);
    // Found under the original's hash scheme, it is kept in memory like any key (under this
    // deployment's hash of the presented key) and keeps working from there.
    let state = &h.relay().state;
    let copy = state
        .auth_keys
        .get(&state.crypto.hash_api_key(&raw_key(1)))
        .expect("the imported key is served from memory");
    assert_eq!(copy.key.id, KEY_ID);
    let resp = h.messages(&raw_key(1), body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await.unwrap();
    // The key bound to the imported group is served by its member.
    let resp = h.messages(&raw_key(2), body(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await.unwrap();
    assert_eq!(h.mock.log.count(), before + 3);
    // A key the original never issued is still refused.
    let resp = h.messages(&raw_key(3), body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

both_engines!(imports_keys_accounts_groups_and_usage);

/// The same key on both sides: hashes are stored as they are, and the CLI path (the built
/// binary) reports and exits as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_imports_and_refuses_a_wrong_key() {
    let mock = crs::mock_upstream::MockUpstream::start().await;
    let original = RedisServer::start();
    let now = chrono::Utc::now();
    let p = Periods::at(now, 8);
    write_fixture(
        &original.url(),
        &mock.url(),
        &p.day,
        &Periods::yesterday(now, 8).day,
        &p.month,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let crs = |args: &[&str], key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crs"))
            .args(args)
            .env("DATA_DIR", dir.path())
            .env("ENCRYPTION_KEY", "our-own-encryption-key-0123456789abcdef")
            .env_remove("REDIS_URL")
            .env("CRS_IMPORT_ENCRYPTION_KEY", key)
            .output()
            .unwrap()
    };
    let dry = crs(
        &[
            "import-crs",
            "--redis",
            &original.url(),
            "--dry-run",
            "--json",
        ],
        ORIGINAL_KEY,
    );
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["keysCreated"], 2);
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["keyUsageTotals"]["requests"], 12);

    let wrong = crs(
        &["import-crs", "--redis", &original.url()],
        "not-the-original-key-0123456789abcdef",
    );
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("does not decrypt"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let real = crs(&["import-crs", "--redis", &original.url()], ORIGINAL_KEY);
    assert_eq!(
        real.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let text = String::from_utf8_lossy(&real.stdout);
    assert!(
        text.contains("imported: 2 keys (2 new, 0 updated)"),
        "{text}"
    );
    assert!(text.contains("codex oauth"), "{text}");

    let unreachable = crs(
        &["import-crs", "--redis", "redis://127.0.0.1:1/"],
        ORIGINAL_KEY,
    );
    assert_eq!(unreachable.status.code(), Some(1));
}
