//! The scheduler's selection over an embedded store: dedicated accounts and groups, the pool,
//! stickiness, rests and slots.

use super::*;
use crate::store::embedded::EmbeddedStore;
use app::domain::Account;

fn acc(id: &str, priority: u32) -> StoredAccount {
    StoredAccount {
        account: Account {
            id: id.into(),
            priority,
            ..Default::default()
        },
        secret: String::new(),
    }
}

fn settings() -> Settings {
    Settings {
        sticky_ttl: Duration::from_secs(3600),
        sticky_renew_below: Duration::from_secs(900),
        lease_ttl: Duration::from_secs(60),
        dedicated_fallback: false,
    }
}

async fn pick(
    s: &Scheduler,
    store: &DynStore,
    key: &ApiKey,
    model: &str,
    session: Option<&str>,
) -> Result<Selected, NotServed> {
    let session = session.map(session::Session::named);
    let ask = Ask {
        key,
        platforms: &[Platform::ClaudeConsole, Platform::ClaudeOfficial],
        model,
        session: session.as_ref(),
        exclude: &[],
        lease_id: "lease",
        key_copy: None,
    };
    s.select(store, &settings(), &ask).await
}

#[tokio::test]
async fn priority_then_least_recently_used_and_stale_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
    store.put_account(&acc("low", 10)).await.unwrap();
    store.put_account(&acc("a", 50)).await.unwrap();
    store.put_account(&acc("b", 50)).await.unwrap();
    let s = Scheduler::default();
    let key = ApiKey::default();
    assert_eq!(
        pick(&s, &store, &key, "m", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "low"
    );
    assert_eq!(
        pick(&s, &store, &key, "m", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "low"
    );

    // Changed behind the cache's back: the store says stale, the scheduler reloads.
    let mut low = store.get_account("low").await.unwrap().unwrap();
    low.account.schedulable = false;
    store.put_account(&low).await.unwrap();
    let first = pick(&s, &store, &key, "m", None)
        .await
        .unwrap()
        .account
        .account
        .id;
    let second = pick(&s, &store, &key, "m", None)
        .await
        .unwrap()
        .account
        .account
        .id;
    let third = pick(&s, &store, &key, "m", None)
        .await
        .unwrap()
        .account
        .account
        .id;
    assert_ne!(first, second, "equal priority rotates");
    assert_eq!(first, third);

    let mut only_x = acc("x-only", 1);
    only_x.account.supported_models = vec!["model-x".into()];
    store.put_account(&only_x).await.unwrap();
    assert_eq!(
        pick(&s, &store, &key, "model-x", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "x-only"
    );
    assert_ne!(
        pick(&s, &store, &key, "m", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "x-only"
    );
}

#[test]
fn refusals_become_the_dedicated_errors() {
    let rest = |class: &str| app::domain::Cooldown {
        class: class.into(),
        until_ms: 1_767_225_600_000,
        ..Default::default()
    };
    let refused = |r| Unserved::Refused(r).into_error("dedicated account");
    let until = chrono::DateTime::from_timestamp_millis(1_767_225_600_000)
        .map(crate::auth::api_key::format_time)
        .unwrap();
    assert!(matches!(
        refused(Refused::Resting { account_id: "a".into(), cooldown: rest("rate_limit") }),
        NotServed::DedicatedRateLimited(u) if u == until
    ));
    let message = |e: NotServed| match e {
        NotServed::DedicatedUnavailable(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        message(refused(Refused::Resting {
            account_id: "a".into(),
            cooldown: rest("overload")
        })),
        "The dedicated account bound to this API key is unavailable (temporarily_unavailable: overload)"
    );
    assert!(message(refused(Refused::Busy {
        account_id: "a".into()
    }))
    .ends_with("(concurrency_full)"));
    assert!(message(refused(Refused::NoCandidate)).ends_with("(unavailable)"));
    assert!(
        message(Unserved::Ineligible("blocked").into_error("account group"))
            .starts_with("The account group bound")
    );
}

#[tokio::test]
async fn a_dedicated_account_resting_on_a_rate_limit_says_until_when() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
    let mut ded = acc("ded", 1);
    ded.account.account_type = AccountType::Dedicated;
    store.put_account(&ded).await.unwrap();
    let until_ms = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let rest = app::domain::Cooldown {
        class: "rate_limit".into(),
        status: 429,
        until_ms,
        ..Default::default()
    };
    store
        .mark_account(
            "ded",
            Some((&rest, Duration::from_secs(3600))),
            &Default::default(),
        )
        .await
        .unwrap();
    let key = ApiKey {
        claude_account_id: Some("ded".into()),
        ..Default::default()
    };
    let err = pick(&Scheduler::default(), &store, &key, "m", None)
        .await
        .err()
        .unwrap();
    let until = chrono::DateTime::from_timestamp_millis(until_ms)
        .map(crate::auth::api_key::format_time)
        .unwrap();
    assert!(
        matches!(err, NotServed::DedicatedRateLimited(ref u) if *u == until),
        "{err:?}"
    );
}

#[tokio::test]
async fn dedicated_binding_never_falls_back_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
    store.put_account(&acc("pool", 1)).await.unwrap();
    let mut ded = acc("ded", 90);
    ded.account.is_active = false;
    ded.account.account_type = AccountType::Dedicated;
    store.put_account(&ded).await.unwrap();
    let s = Scheduler::default();
    let mut key = ApiKey {
        claude_account_id: Some("ded".into()),
        ..Default::default()
    };
    let err = pick(&s, &store, &key, "m", None).await.err().unwrap();
    assert!(
        matches!(err, NotServed::DedicatedUnavailable(ref m) if m.contains("inactive_or_error")),
        "{err:?}"
    );
    key.allow_dedicated_fallback = true;
    assert_eq!(
        pick(&s, &store, &key, "m", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "pool"
    );
    key.allow_dedicated_fallback = false;
    ded.account.is_active = true;
    store.put_account(&ded).await.unwrap();
    assert_eq!(
        pick(&s, &store, &key, "m", None)
            .await
            .unwrap()
            .account
            .account
            .id,
        "ded"
    );
    // A dedicated account never serves the pool.
    store.delete_account("pool").await.unwrap();
    let err = pick(&s, &store, &ApiKey::default(), "m", None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, NotServed::NoAccount(_)));
}
