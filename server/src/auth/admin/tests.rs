use super::*;
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;

const MINUTE: Duration = Duration::from_secs(60);

async fn setup() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
    ensure_admin(&store, "root", Some("correct horse"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn login_sessions_and_throttle() {
    let (_dir, store) = setup().await;
    let stored = store.get_admin().await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2"));
    assert!(!stored.password_hash.contains("correct horse"));

    let auth = AdminAuth::new(store.clone(), MINUTE, 60 * MINUTE);
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let grant = auth.login("root", "correct horse", Some(ip)).await.unwrap();
    assert_eq!(grant.max_age_secs, 3600);
    assert_eq!(
        auth.session_user(&grant.token).await.as_deref(),
        Some("root")
    );
    auth.logout(&grant.token).await;
    assert!(auth.session_user(&grant.token).await.is_none());

    for _ in 0..throttle::PAIR.free {
        assert_eq!(
            auth.login("root", "wrong", Some(ip)).await.err(),
            Some(LoginRefusal::InvalidCredentials)
        );
    }
    // This address waits now, even with the right password …
    assert!(matches!(
        auth.login("root", "correct horse", Some(ip)).await,
        Err(LoginRefusal::TooManyAttempts(1))
    ));
    // … but the name is not locked for everyone: another address signs in.
    let other: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(auth
        .login("root", "correct horse", Some(other))
        .await
        .is_ok());
}

#[tokio::test]
async fn oversized_fields_are_refused_before_any_work() {
    let (_dir, store) = setup().await;
    let auth = AdminAuth::new(store.clone(), MINUTE, MINUTE);
    let r = auth.login(&"u".repeat(65), "pw", None).await;
    assert!(
        matches!(r, Err(LoginRefusal::Invalid("username", _))),
        "{:?}",
        r.as_ref().err()
    );
    let r = auth.login("root", &"p".repeat(1025), None).await;
    assert!(
        matches!(r, Err(LoginRefusal::Invalid("password", _))),
        "{:?}",
        r.as_ref().err()
    );
    assert_eq!(auth.verifications(), 0, "no argon2 on refused input");
    assert_eq!(store.login_failure_entries().await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_names_cost_one_verification_too() {
    let (_dir, store) = setup().await;
    let auth = AdminAuth::new(store, MINUTE, MINUTE);
    let ip = Some("10.0.0.9".parse().unwrap());
    assert_eq!(
        auth.login("nobody", "some password", ip).await.err(),
        Some(LoginRefusal::InvalidCredentials)
    );
    assert_eq!(auth.verifications(), 1);
    assert_eq!(
        auth.login("root", "some password", ip).await.err(),
        Some(LoginRefusal::InvalidCredentials)
    );
    assert_eq!(auth.verifications(), 2);
    // The dummy is a real argon2 hash, so its verification costs what a real one does.
    assert!(dummy_hash().starts_with("$argon2"));
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime() {
    let (_dir, store) = setup().await;
    let auth = AdminAuth::new(store.clone(), MINUTE, MINUTE);
    let grant = auth.login("root", "correct horse", None).await.unwrap();
    assert!(auth.session(&grant.token).await.is_some());
    // Issued two minutes ago (renewed on every use meanwhile): refused, and removed.
    let hash = sha256_hex(&grant.token);
    let mut s = store.get_session(&hash).await.unwrap().unwrap();
    s.issued_ms -= 2 * 60_000;
    store.put_session(&hash, &s, MINUTE).await.unwrap();
    assert!(auth.session(&grant.token).await.is_none());
    assert!(store.get_session(&hash).await.unwrap().is_none());
}

#[tokio::test]
async fn change_password_ends_every_session() {
    let (_dir, store) = setup().await;
    let auth = AdminAuth::new(store.clone(), MINUTE, 60 * MINUTE);
    let a = auth.login("root", "correct horse", None).await.unwrap();
    let b = auth.login("root", "correct horse", None).await.unwrap();
    let change = |current: &str, new: &str| PasswordChange {
        current_password: current.into(),
        new_password: new.into(),
        new_username: None,
    };
    assert_eq!(
        auth.change_password(&a.token, &change("wrong one", "new password 1"), None)
            .await,
        Err(ChangeRefusal::WrongPassword)
    );
    assert!(matches!(
        auth.change_password(&a.token, &change("correct horse", "short"), None)
            .await,
        Err(ChangeRefusal::Invalid("newPassword", _))
    ));
    assert!(matches!(
        auth.change_password(&a.token, &change("correct horse", &"n".repeat(1025)), None)
            .await,
        Err(ChangeRefusal::Invalid("newPassword", _))
    ));
    assert_eq!(
        auth.change_password(
            "x".repeat(40).as_str(),
            &change("correct horse", "new password 1"),
            None
        )
        .await,
        Err(ChangeRefusal::Unauthorized)
    );
    assert_eq!(
        auth.change_password(&a.token, &change("correct horse", "new password 1"), None)
            .await
            .as_deref(),
        Ok("root")
    );
    assert!(auth.session(&a.token).await.is_none(), "this session ended");
    assert!(auth.session(&b.token).await.is_none(), "and every other");
    assert!(auth.login("root", "correct horse", None).await.is_err());
    assert!(auth.login("root", "new password 1", None).await.is_ok());
}

#[tokio::test]
async fn a_local_user_changes_their_own_password() {
    let (_dir, store) = setup().await;
    crate::users::create(&store, "root", "alice", "alice password", UserRole::User)
        .await
        .unwrap();
    let auth = AdminAuth::new(store.clone(), MINUTE, 60 * MINUTE);
    let a = auth.login("alice", "alice password", None).await.unwrap();
    let b = auth.login("alice", "alice password", None).await.unwrap();
    let root = auth.login("root", "correct horse", None).await.unwrap();
    let mut change = PasswordChange {
        current_password: "alice password".into(),
        new_password: "alice password 2".into(),
        new_username: Some("mallory".into()),
    };
    assert!(matches!(
        auth.change_password(&a.token, &change, None).await,
        Err(ChangeRefusal::Invalid("newUsername", _))
    ));
    change.new_username = None;
    assert_eq!(
        auth.change_password(&a.token, &change, None)
            .await
            .as_deref(),
        Ok("alice")
    );
    assert!(auth.session(&a.token).await.is_none());
    assert!(auth.session(&b.token).await.is_none());
    // Another user's session is untouched.
    assert!(auth.session(&root.token).await.is_some());
    assert!(auth.login("alice", "alice password 2", None).await.is_ok());
}

#[tokio::test]
async fn generated_password_is_returned_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path(), 10).unwrap());
    let pw = ensure_admin(&store, "admin", None).await.unwrap().unwrap();
    assert_eq!(pw.len(), 24);
    assert!(ensure_admin(&store, "admin", None).await.unwrap().is_none());
    let auth = AdminAuth::new(store, MINUTE, MINUTE);
    assert!(auth.login("admin", &pw, None).await.is_ok());
}
