//! One behaviour, two engines: every test here runs against the embedded store and against a
//! throwaway `redis-server`.

use std::time::Duration;

use app::domain::{Account, ApiKey, RequestRecord, TokenUsage, UsageCounters};
use chrono::{TimeZone, Utc};

use super::*;
use crate::testing::RedisServer;

struct Fixture {
    store: DynStore,
    _redis: Option<RedisServer>,
    _dir: tempfile::TempDir,
}

async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded::EmbeddedStore::open(dir.path(), 3).unwrap();
    Fixture {
        store: Arc::new(store),
        _redis: None,
        _dir: dir,
    }
}

async fn redis() -> Fixture {
    let server = RedisServer::start();
    let store = redis::RedisStore::connect(&server.url(), 3).await.unwrap();
    Fixture {
        store: Arc::new(store),
        _redis: Some(server),
        _dir: tempfile::tempdir().unwrap(),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_embedded { $( #[tokio::test] async fn $name() { super::$name(super::embedded().await).await } )* }
        mod on_redis { $( #[tokio::test] async fn $name() { super::$name(super::redis().await).await } )* }
    };
}

conformance!(
    keys_round_trip_and_hash_lookup,
    key_compare_and_set,
    duplicate_key_hash_is_refused,
    accounts_and_snapshot_versions,
    usage_counts_every_bucket_and_bounds_records,
    sessions_expire_and_delete,
    sticky_mappings_expire,
    leases_respect_limit_and_expire,
    admin_credentials_round_trip,
    login_failures_count_and_clear,
    admission_checks_every_limit_and_settles,
    admission_windows_reset,
    owner_budgets_are_shared_across_keys,
    models_are_indexed_per_day_and_key,
    documents_round_trip,
    a_batch_equals_the_same_events_one_by_one,
    key_writes_change_the_keys_version,
    imported_usage_adds_to_buckets_and_limit_counters,
);

fn key(id: &str, hash: &str) -> StoredKey {
    StoredKey::new(
        ApiKey {
            id: id.into(),
            name: format!("key {id}"),
            is_active: true,
            ..Default::default()
        },
        hash.into(),
    )
}

/// A key write that depends on a read lands only if nothing was written in between, and bumps
/// the keys version in the same step; `modify_key` retries on the newest record.
async fn key_compare_and_set(f: Fixture) {
    let s = &f.store;
    s.insert_key(&key("k1", "h1")).await.unwrap();
    let (mut stale, read) = s.get_key_for_update("k1").await.unwrap().unwrap();
    // Someone disables the key meanwhile.
    let mut disabled = s.get_key("k1").await.unwrap().unwrap();
    disabled.key.is_active = false;
    s.update_key(&disabled).await.unwrap();
    let v = s.keys_version().await.unwrap();
    stale.key.name = "edited".into();
    assert!(
        !s.update_key_if(&stale, &read).await.unwrap(),
        "stale write landed"
    );
    assert_eq!(
        s.keys_version().await.unwrap(),
        v,
        "a refused write bumped the version"
    );
    assert!(!s.get_key("k1").await.unwrap().unwrap().key.is_active);
    // On the newest record it lands, the disable kept.
    let (mut fresh, read) = s.get_key_for_update("k1").await.unwrap().unwrap();
    fresh.key.name = "edited".into();
    assert!(s.update_key_if(&fresh, &read).await.unwrap());
    assert!(s.keys_version().await.unwrap() > v);
    let now = s.get_key("k1").await.unwrap().unwrap();
    assert_eq!(
        (now.key.name.as_str(), now.key.is_active),
        ("edited", false)
    );
    let written = crate::store::modify_key(&**s, "k1", |k| {
        k.key.description = "via modify".into();
        true
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(written.key.description, "via modify");
    assert!(!written.key.is_active);
    assert!(crate::store::modify_key(&**s, "ghost", |_| true)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        s.update_key_if(&key("ghost", "hg"), b"x").await,
        Err(StoreError::Conflict(_))
    ));
}

async fn keys_round_trip_and_hash_lookup(f: Fixture) {
    let s = &f.store;
    s.insert_key(&key("k1", "h1")).await.unwrap();
    s.insert_key(&key("k2", "h2")).await.unwrap();
    let found = s.key_by_hash("h2").await.unwrap().unwrap();
    assert_eq!(found.key.id, "k2");
    assert!(s.key_by_hash("nope").await.unwrap().is_none());

    let mut k1 = s.get_key("k1").await.unwrap().unwrap();
    k1.key.name = "renamed".into();
    s.update_key(&k1).await.unwrap();
    assert_eq!(
        s.key_by_hash("h1").await.unwrap().unwrap().key.name,
        "renamed"
    );
    assert!(matches!(
        s.update_key(&key("ghost", "hg")).await,
        Err(StoreError::Conflict(_))
    ));

    let mut ids: Vec<String> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["k1", "k2"]);

    assert!(s.delete_key("k1").await.unwrap());
    assert!(!s.delete_key("k1").await.unwrap());
    assert!(s.key_by_hash("h1").await.unwrap().is_none());
    assert_eq!(s.list_keys().await.unwrap().len(), 1);
}

async fn duplicate_key_hash_is_refused(f: Fixture) {
    f.store.insert_key(&key("a", "same")).await.unwrap();
    let again = f.store.insert_key(&key("b", "same")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let same_id = f.store.insert_key(&key("a", "other")).await;
    assert!(matches!(same_id, Err(StoreError::Conflict(_))));
    assert!(f.store.key_by_hash("other").await.unwrap().is_none());
}

fn account(id: &str, priority: u32) -> StoredAccount {
    StoredAccount {
        account: Account {
            id: id.into(),
            name: id.into(),
            priority,
            ..Default::default()
        },
        secret: format!("secret-{id}"),
    }
}

async fn accounts_and_snapshot_versions(f: Fixture) {
    let s = &f.store;
    let empty = s.account_snapshot(None).await.unwrap();
    assert_eq!(empty.accounts.as_deref().map(|a| a.len()), Some(0));

    s.put_account(&account("a1", 10)).await.unwrap();
    s.put_account(&account("a2", 20)).await.unwrap();
    let snap = s.account_snapshot(None).await.unwrap();
    assert_eq!(snap.accounts.as_ref().unwrap().len(), 2);

    // Unchanged: no records move.
    let same = s.account_snapshot(Some(snap.version)).await.unwrap();
    assert_eq!(same.version, snap.version);
    assert!(same.accounts.is_none());

    // Any change bumps the version.
    let mut a1 = s.get_account("a1").await.unwrap().unwrap();
    a1.account.schedulable = false;
    s.put_account(&a1).await.unwrap();
    let changed = s.account_snapshot(Some(snap.version)).await.unwrap();
    assert_ne!(changed.version, snap.version);
    let accounts = changed.accounts.unwrap();
    assert!(
        !accounts
            .iter()
            .find(|a| a.account.id == "a1")
            .unwrap()
            .account
            .schedulable
    );
    assert_eq!(
        accounts
            .iter()
            .find(|a| a.account.id == "a1")
            .unwrap()
            .secret,
        "secret-a1"
    );

    assert!(s.delete_account("a2").await.unwrap());
    assert!(!s.delete_account("a2").await.unwrap());
    assert_eq!(s.list_accounts().await.unwrap().len(), 1);
    assert!(s.get_account("a2").await.unwrap().is_none());
}

fn event(key: &str, account: &str, model: &str, input: u64, output: u64, n: u64) -> UsageEvent {
    let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
    UsageEvent {
        key_id: key.into(),
        account_id: account.into(),
        service: "claude".into(),
        model: model.into(),
        usage: TokenUsage {
            input_tokens: input,
            output_tokens: output,
            cache_create_5m_tokens: 2,
            cache_create_1h_tokens: 3,
            cache_read_tokens: 4,
        },
        cost_nanos: n,
        at,
        record: RequestRecord {
            request_id: format!("req-{n}"),
            key_id: key.into(),
            model: model.into(),
            ..Default::default()
        },
    }
}

async fn usage_counts_every_bucket_and_bounds_records(f: Fixture) {
    let s = &f.store;
    for n in 1..=5u64 {
        s.record_usage(
            &event("k", "acc", "claude-x", 10, 20, n),
            8,
            &Settlement::default(),
        )
        .await
        .unwrap();
    }
    s.record_usage(
        &event("k", "acc2", "claude-y", 1, 1, 100),
        8,
        &Settlement::default(),
    )
    .await
    .unwrap();
    let p = Periods::at(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(), 8);
    use buckets::*;
    let names = vec![
        key_total("k"),
        key_day("k", &p.day),
        key_model_total("k", "claude-x"),
        model_month("claude-y", &p.month),
        account_total("acc"),
        account_day("acc2", &p.day),
        global_hour(&p.hour),
        key_total("unknown"),
    ];
    let c = s.usage(&names).await.unwrap();
    assert_eq!(c[0].requests, 6);
    assert_eq!(c[0].input_tokens, 51);
    assert_eq!(c[0].output_tokens, 101);
    assert_eq!(c[0].cache_create_5m_tokens, 12);
    assert_eq!(c[0].cache_create_1h_tokens, 18);
    assert_eq!(c[0].cache_read_tokens, 24);
    assert_eq!(c[0].cost_nanos, 115);
    assert_eq!(c[1], c[0]);
    assert_eq!(c[2].requests, 5);
    assert_eq!(c[2].cost_nanos, 15);
    assert_eq!(c[3].requests, 1);
    assert_eq!(c[4].requests, 5);
    assert_eq!(c[5].cost_nanos, 100);
    assert_eq!(c[6].requests, 6);
    assert_eq!(c[7], UsageCounters::default());

    // The store keeps 3 records per key (fixture setting), newest first.
    let recs = s.recent_records("k", 10).await.unwrap();
    let ids: Vec<&str> = recs.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req-100", "req-5", "req-4"]);
    assert_eq!(s.recent_records("k", 1).await.unwrap().len(), 1);

    let lu = s.keys_last_used().await.unwrap();
    assert!(lu.contains_key("k"));
    let snap = s.account_snapshot(None).await.unwrap();
    assert!(snap.last_used_ms.contains_key("acc2"));
}

async fn sessions_expire_and_delete(f: Fixture) {
    let s = &f.store;
    let sess = AdminSession {
        username: "admin".into(),
        login_time: "now".into(),
        user_id: None,
        issued_ms: 1_700_000_000_000,
        generation: 3,
    };
    s.put_session("t1", &sess, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.get_session("t1").await.unwrap(), Some(sess.clone()));
    s.delete_session("t1").await.unwrap();
    assert!(s.get_session("t1").await.unwrap().is_none());
    s.put_session("t2", &sess, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(s.get_session("t2").await.unwrap().is_none());
}

async fn sticky_mappings_expire(f: Fixture) {
    let s = &f.store;
    s.set_sticky("sess", "acc1", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.get_sticky("sess").await.unwrap().as_deref(), Some("acc1"));
    s.delete_sticky("sess").await.unwrap();
    assert!(s.get_sticky("sess").await.unwrap().is_none());
    s.set_sticky("short", "acc1", Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(s.get_sticky("short").await.unwrap().is_none());
}

async fn leases_respect_limit_and_expire(f: Fixture) {
    let s = &f.store;
    let ttl = Duration::from_secs(60);
    assert!(s.acquire_lease("key:k", "r1", 2, ttl).await.unwrap());
    assert!(s.acquire_lease("key:k", "r2", 2, ttl).await.unwrap());
    assert!(!s.acquire_lease("key:k", "r3", 2, ttl).await.unwrap());
    // Renewing a held lease is allowed.
    assert!(s.acquire_lease("key:k", "r1", 2, ttl).await.unwrap());
    assert_eq!(s.count_leases("key:k").await.unwrap(), 2);
    s.release_lease("key:k", "r1").await.unwrap();
    assert!(s.acquire_lease("key:k", "r3", 2, ttl).await.unwrap());
    // Other scopes are independent.
    assert!(s.acquire_lease("key:other", "r1", 1, ttl).await.unwrap());
    // Expired leases free their slot.
    assert!(s
        .acquire_lease("key:e", "old", 1, Duration::from_millis(200))
        .await
        .unwrap());
    assert!(!s.acquire_lease("key:e", "new", 1, ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.acquire_lease("key:e", "new", 1, ttl).await.unwrap());
    assert_eq!(s.count_leases("key:e").await.unwrap(), 1);
}

async fn admin_credentials_round_trip(f: Fixture) {
    let s = &f.store;
    assert!(s.get_admin().await.unwrap().is_none());
    let admin = AdminCredentials {
        username: "root".into(),
        password_hash: "$argon2id$x".into(),
        updated_at: "t".into(),
        session_generation: 7,
    };
    s.put_admin(&admin).await.unwrap();
    assert_eq!(s.get_admin().await.unwrap(), Some(admin));
}

async fn login_failures_count_and_clear(f: Fixture) {
    use super::sessions::Counter;
    let s = &f.store;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let keys = vec!["u:abc:1.2.3.4".to_string(), "a:1.2.3.4".to_string()];
    assert_eq!(
        s.login_failures(&keys, now).await.unwrap(),
        vec![None, None]
    );
    s.record_login_failure(&keys, now).await.unwrap();
    s.record_login_failure(&keys, now + 5).await.unwrap();
    s.record_login_failure(&keys[1..], now + 9).await.unwrap();
    assert_eq!(
        s.login_failures(&keys, now + 10).await.unwrap(),
        vec![
            Some(Counter {
                failures: 2,
                last_ms: now + 5
            }),
            Some(Counter {
                failures: 3,
                last_ms: now + 9
            })
        ]
    );
    assert_eq!(s.login_failure_entries().await.unwrap(), 2);
    s.clear_login_failures(&keys[0]).await.unwrap();
    let got = s.login_failures(&keys, now + 10).await.unwrap();
    assert_eq!(got[0], None);
    assert_eq!(got[1].map(|c| c.failures), Some(3));
    assert_eq!(s.login_failure_entries().await.unwrap(), 1);
}

fn limit_plan(key: &str) -> super::limits::Plan {
    use super::limits::{CostAsk, Counter, LimitKind, Plan};
    Plan {
        key_id: key.into(),
        concurrency: 2,
        window: None,
        counters: vec![
            Counter {
                scope: key.into(),
                id: "d:day".into(),
                limit_nanos: 1000,
                ttl: Some(Duration::from_secs(60)),
                kind: LimitKind::Daily,
                reset_at: None,
            },
            Counter {
                scope: key.into(),
                id: "t".into(),
                limit_nanos: 5000,
                ttl: None,
                kind: LimitKind::Total,
                reset_at: None,
            },
        ],
        // Worst case: 100 + 40 tokens × 10 per 1,000 tokens... at 10,000 per 1,000 = 500.
        cost: Some(CostAsk {
            input_nanos: 100,
            output_per_ktok: 10_000,
            max_output: 40,
            min_output: 10,
        }),
        keys_version: None,
    }
}

fn pairs(key: &str, ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|i| (key.to_string(), i.to_string()))
        .collect()
}

async fn admission_checks_every_limit_and_settles(f: Fixture) {
    use super::limits::{LimitKind, Refusal, Settlement};
    let s = &f.store;
    let plan = limit_plan("k");
    let ttl = Duration::from_secs(60);
    let a = s.admit(&plan, "r1", ttl).await.unwrap().unwrap();
    assert_eq!(
        (a.reserved_nanos, a.output_limit),
        (500, None),
        "the worst case"
    );
    // 500 of the daily 1,000 reserved: the second gets the 500 left, the worst case again.
    let b = s.admit(&plan, "r2", ttl).await.unwrap().unwrap();
    assert_eq!(b.reserved_nanos, 500);
    // Two in flight: the concurrency limit refuses a third, all or nothing.
    assert_eq!(
        s.admit(&plan, "r3", ttl).await.unwrap(),
        Err(Refusal::Concurrency {
            current: 2,
            limit: 2
        })
    );
    let (spent, _) = s
        .limit_usage("k", &pairs("k", &["d:day", "t"]))
        .await
        .unwrap();
    assert_eq!(spent, vec![0, 0], "reservations are not spending");
    // The first ends costing 300: its reservation is replaced by the actual cost.
    let settle = |r: Reservation, actual| Settlement {
        leases: vec![],
        reservation: Some(r),
        actual_nanos: actual,
        tokens: 10,
    };
    s.settle(&settle(a, 300)).await.unwrap();
    // 300 spent + 500 reserved: 200 left, less than the worst case (500) but more than a
    // minimum answer (100 + 10 tokens = 200): admitted with its output lowered to 10 tokens.
    let c = s.admit(&plan, "r4", ttl).await.unwrap().unwrap();
    assert_eq!((c.reserved_nanos, c.output_limit), (200, Some(10)));
    s.settle(&settle(b, 0)).await.unwrap();
    s.settle(&settle(c, 150)).await.unwrap();
    let (spent, _) = s
        .limit_usage("k", &pairs("k", &["d:day", "t"]))
        .await
        .unwrap();
    assert_eq!(spent, vec![450, 450]);
    assert_eq!(
        s.count_leases(&plan.lease_scope()).await.unwrap(),
        0,
        "settled requests free their slots"
    );
    // 450 spent: the worst case (500) fits.
    let d = s.admit(&plan, "r5", ttl).await.unwrap().unwrap();
    assert_eq!(d.reserved_nanos, 500);
    // While it runs, its reservation counts: 450 + 500 leaves 50, not enough for a minimum
    // answer (200): refused by the daily limit, which says how much remains and is needed.
    match s.admit(&plan, "r6", ttl).await.unwrap() {
        Err(Refusal::Cost {
            kind: LimitKind::Daily,
            current_nanos: 950,
            limit_nanos: 1000,
            needed_nanos: 200,
            ..
        }) => {}
        other => panic!("expected the daily limit: {other:?}"),
    }
    // Recorded as the relay does it, with the actual cost (600).
    s.record_usage(
        &event("k", "acc", "claude-x", 1, 1, 600),
        8,
        &settle(d, 600),
    )
    .await
    .unwrap();
    let (spent, _) = s
        .limit_usage("k", &pairs("k", &["d:day", "t"]))
        .await
        .unwrap();
    assert_eq!(spent, vec![1050, 1050]);
    match s.admit(&plan, "r7", ttl).await.unwrap() {
        Err(Refusal::Cost {
            kind: LimitKind::Daily,
            current_nanos: 1050,
            limit_nanos: 1000,
            ..
        }) => {}
        other => panic!("expected the daily limit: {other:?}"),
    }
    // Requests that cost nothing pass (concurrency and windows only) and reserve nothing.
    let free = super::limits::Plan {
        cost: None,
        ..limit_plan("k")
    };
    let e = s.admit(&free, "r8", ttl).await.unwrap().unwrap();
    assert_eq!(e.reserved_nanos, 0);
    s.settle(&settle(e, 0)).await.unwrap();
    // Another key is unaffected.
    assert!(s
        .admit(&limit_plan("other"), "x", ttl)
        .await
        .unwrap()
        .is_ok());
}

/// A user's budget counter is shared by all their keys.
async fn owner_budgets_are_shared_across_keys(f: Fixture) {
    use super::limits::{CostAsk, Counter, LimitKind, Plan, Refusal, Settlement};
    let s = &f.store;
    let ttl = Duration::from_secs(60);
    let plan = |key: &str| Plan {
        key_id: key.into(),
        concurrency: 0,
        window: None,
        counters: vec![Counter {
            scope: "u:alice".into(),
            id: "ud:day".into(),
            limit_nanos: 1000,
            ttl: Some(Duration::from_secs(60)),
            kind: LimitKind::UserDaily,
            reset_at: None,
        }],
        cost: Some(CostAsk {
            input_nanos: 0,
            output_per_ktok: 1_000_000,
            max_output: 1,
            min_output: 1,
        }),
        keys_version: None,
    };
    let a = s.admit(&plan("k1"), "a", ttl).await.unwrap().unwrap();
    assert_eq!(a.reserved_nanos, 1000);
    assert!(
        matches!(
            s.admit(&plan("k2"), "b", ttl).await.unwrap(),
            Err(Refusal::Cost {
                kind: LimitKind::UserDaily,
                ..
            })
        ),
        "the other key of the same owner sees the reservation"
    );
    s.settle(&Settlement {
        reservation: Some(a),
        actual_nanos: 400,
        ..Default::default()
    })
    .await
    .unwrap();
    let (spent, _) = s
        .limit_usage("k2", &[("u:alice".to_string(), "ud:day".to_string())])
        .await
        .unwrap();
    assert_eq!(spent, vec![400]);
}

async fn admission_windows_reset(f: Fixture) {
    use super::limits::{Plan, Refusal, Settlement, Window};
    let s = &f.store;
    let plan = Plan {
        key_id: "w".into(),
        concurrency: 0,
        window: Some(Window {
            length: Duration::from_millis(1500),
            max_requests: 2,
            max_tokens: 0,
            max_cost_nanos: 0,
        }),
        counters: vec![],
        cost: None,
        keys_version: None,
    };
    let ttl = Duration::from_secs(60);
    let a = s.admit(&plan, "1", ttl).await.unwrap().unwrap();
    s.admit(&plan, "2", ttl).await.unwrap().unwrap();
    match s.admit(&plan, "3", ttl).await.unwrap() {
        Err(Refusal::WindowRequests {
            current: 2,
            limit: 2,
            reset_at_ms,
        }) => assert!(reset_at_ms > chrono::Utc::now().timestamp_millis()),
        other => panic!("{other:?}"),
    }
    s.settle(&Settlement {
        reservation: Some(a),
        tokens: 40,
        ..Default::default()
    })
    .await
    .unwrap();
    let (_, window) = s.limit_usage("w", &[]).await.unwrap();
    let (_, req, tok, _) = window.unwrap();
    assert_eq!((req, tok), (2, 40));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        s.admit(&plan, "4", ttl).await.unwrap().is_ok(),
        "a new window"
    );
    // Tokens: a window that allows 50 tokens refuses once 50 were used.
    let tokens = Plan {
        key_id: "tok".into(),
        window: Some(Window {
            length: Duration::from_secs(60),
            max_requests: 0,
            max_tokens: 50,
            max_cost_nanos: 0,
        }),
        ..plan
    };
    let r = s.admit(&tokens, "1", ttl).await.unwrap().unwrap();
    s.settle(&Settlement {
        reservation: Some(r),
        tokens: 60,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(matches!(
        s.admit(&tokens, "2", ttl).await.unwrap(),
        Err(Refusal::WindowTokens { .. })
    ));
}

async fn models_are_indexed_per_day_and_key(f: Fixture) {
    let s = &f.store;
    for (key, model) in [
        ("k1", "claude-x"),
        ("k1", "claude-y"),
        ("k2", "claude-x"),
        ("k2", "m:with:colons"),
    ] {
        s.record_usage(
            &event(key, "acc", model, 1, 1, 1),
            8,
            &Settlement::default(),
        )
        .await
        .unwrap();
    }
    let day = Periods::at(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(), 8).day;
    let mut models = s.models_used(&day).await.unwrap();
    models.sort();
    assert_eq!(models, vec!["claude-x", "claude-y", "m:with:colons"]);
    assert!(s.models_used("1999-01-01").await.unwrap().is_empty());
    let mut k1 = s.key_models("k1").await.unwrap();
    k1.sort();
    assert_eq!(k1, vec!["claude-x", "claude-y"]);
    let mut k2 = s.key_models("k2").await.unwrap();
    k2.sort();
    assert_eq!(k2, vec!["claude-x", "m:with:colons"]);
    assert!(s.key_models("k3").await.unwrap().is_empty());
}

async fn documents_round_trip(f: Fixture) {
    let s = &f.store;
    assert_eq!(s.get_doc("user", "a").await.unwrap(), None);
    s.put_doc("user", "a", r#"{"n":1}"#).await.unwrap();
    s.put_doc("user", "b", r#"{"n":2}"#).await.unwrap();
    s.put_doc("settings", "global", r#"{"s":true}"#)
        .await
        .unwrap();
    s.put_doc("user", "a", r#"{"n":3}"#).await.unwrap();
    assert_eq!(
        s.get_doc("user", "a").await.unwrap().as_deref(),
        Some(r#"{"n":3}"#)
    );
    let mut users = s.list_docs("user").await.unwrap();
    users.sort();
    assert_eq!(users, vec![r#"{"n":2}"#, r#"{"n":3}"#]);
    assert_eq!(s.list_docs("settings").await.unwrap().len(), 1);
    assert!(s.delete_doc("user", "a").await.unwrap());
    assert!(!s.delete_doc("user", "a").await.unwrap());
    assert_eq!(s.list_docs("user").await.unwrap(), vec![r#"{"n":2}"#]);
}

async fn a_batch_equals_the_same_events_one_by_one(f: Fixture) {
    let s = &f.store;
    let events: Vec<UsageEvent> = (1..=7u64)
        .map(|n| {
            let (key, model) = if n % 2 == 0 {
                ("b1", "claude-x")
            } else {
                ("b2", "claude-y")
            };
            event(key, "acc", model, n, 2 * n, n)
        })
        .collect();
    // One by one under one set of keys, as a batch under another: same counters.
    let renamed: Vec<UsageEvent> = events
        .iter()
        .cloned()
        .map(|mut e| {
            e.key_id = format!("batch-{}", e.key_id);
            e.account_id = "acc-batch".into();
            e.record.request_id = format!("batch-{}", e.record.request_id);
            e
        })
        .collect();
    for ev in &events {
        s.record_usage(ev, 8, &Settlement::default()).await.unwrap();
    }
    s.record_usage_batch(&renamed, 8).await.unwrap();
    let p = Periods::at(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap(), 8);
    use buckets::*;
    for key in ["b1", "b2"] {
        let one = s
            .usage(&[
                key_total(key),
                key_day(key, &p.day),
                key_model_total(key, if key == "b1" { "claude-x" } else { "claude-y" }),
            ])
            .await
            .unwrap();
        let bk = format!("batch-{key}");
        let batched = s
            .usage(&[
                key_total(&bk),
                key_day(&bk, &p.day),
                key_model_total(&bk, if key == "b1" { "claude-x" } else { "claude-y" }),
            ])
            .await
            .unwrap();
        assert_eq!(one, batched, "{key}");
        assert!(one[0].requests > 0);
    }
    let acc = s
        .usage(&[account_total("acc"), account_total("acc-batch")])
        .await
        .unwrap();
    assert_eq!(acc[0], acc[1]);
    // Records: bounded to the newest 3, newest first, as one by one.
    let ids: Vec<String> = s
        .recent_records("batch-b2", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, vec!["batch-req-7", "batch-req-5", "batch-req-3"]);
    assert!(s.keys_last_used().await.unwrap().contains_key("batch-b1"));
    // Every key's records together, newest first.
    let all: Vec<String> = s
        .all_records(3)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(all, vec!["batch-req-7", "batch-req-6", "batch-req-5"]);
    assert_eq!(s.key_models("batch-b1").await.unwrap(), vec!["claude-x"]);
}

async fn key_writes_change_the_keys_version(f: Fixture) {
    let s = &f.store;
    let v0 = s.keys_version().await.unwrap();
    s.insert_key(&key("v1", "hv1")).await.unwrap();
    let v1 = s.keys_version().await.unwrap();
    assert_ne!(v0, v1);
    assert_eq!(
        s.keys_version().await.unwrap(),
        v1,
        "reads do not change it"
    );
    let mut k = s.get_key("v1").await.unwrap().unwrap();
    k.key.name = "renamed".into();
    s.update_key(&k).await.unwrap();
    let v2 = s.keys_version().await.unwrap();
    assert_ne!(v1, v2);
    assert!(s.delete_key("v1").await.unwrap());
    assert_ne!(s.keys_version().await.unwrap(), v2);
}

async fn imported_usage_adds_to_buckets_and_limit_counters(f: Fixture) {
    let s = &f.store;
    let c = UsageCounters {
        requests: 3,
        input_tokens: 10,
        output_tokens: 20,
        cache_create_5m_tokens: 1,
        cache_create_1h_tokens: 2,
        cache_read_tokens: 4,
        cost_nanos: 5_000,
    };
    let mut import = UsageImport::default();
    import.buckets.insert(buckets::key_total("imp"), (c, None));
    import
        .buckets
        .insert(buckets::key_model_total("imp", "claude-x"), (c, None));
    import.buckets.insert(
        buckets::model_day("claude-x", "2026-01-02"),
        (c, Some(Duration::from_secs(3600))),
    );
    import.spent.push(("imp".into(), "t".into(), None, 7_000));
    import
        .models_by_day
        .entry("2026-01-02".into())
        .or_default()
        .insert("claude-x".into());
    import
        .key_models
        .entry("imp".into())
        .or_default()
        .insert("claude-x".into());
    s.import_usage(&import).await.unwrap();
    s.import_usage(&import).await.unwrap();
    let mut twice = c;
    twice.add(&c);
    let got = s
        .usage(&[
            buckets::key_total("imp"),
            buckets::model_day("claude-x", "2026-01-02"),
        ])
        .await
        .unwrap();
    assert_eq!(got, vec![twice, twice]);
    let (spent, window) = s.limit_usage("imp", &pairs("imp", &["t"])).await.unwrap();
    assert_eq!(spent, vec![14_000]);
    assert!(window.is_none());
    assert_eq!(s.models_used("2026-01-02").await.unwrap(), vec!["claude-x"]);
    assert_eq!(s.key_models("imp").await.unwrap(), vec!["claude-x"]);
    // No request records: imported history is counters only.
    assert!(s.recent_records("imp", 10).await.unwrap().is_empty());
    s.import_usage(&UsageImport::default()).await.unwrap();
}
