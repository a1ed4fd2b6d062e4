//! `crs export` / `crs restore`: a backup taken from one deployment restores into another (other
//! engine, other ENCRYPTION_KEY) with a passphrase, and its keys and accounts keep working;
//! secrets are never in the file in clear unless asked; a sealed backup only restores where
//! its key is configured.

mod common;

use common::{body, Engine, Harness, UPSTREAM_KEY};
use crs::backup::{export, restore, Backup, Protection};
use serde_json::json;

const PASSPHRASE: &str = "correct horse battery staple";

async fn take(h: &Harness, protection: &Protection) -> (Backup, String) {
    let s = &h.relay().state;
    let key = s.config.encryption_key.clone().unwrap();
    let b = export(&s.store, &s.crypto, &key, protection).await.unwrap();
    let text = serde_json::to_string_pretty(&b).unwrap();
    // Through the file format and back.
    (serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_backup_moves_keys_and_accounts_to_another_deployment() {
    let from = Harness::new(Engine::Embedded).await;
    let account = from.account("console", None, 50).await;
    let (key_id, key) = from
        .key(json!({"name": "moved", "totalCostLimit": 10}))
        .await;
    let (status, body_) = from
        .admin(
            reqwest::Method::POST,
            "/admin/account-groups",
            Some(json!({"name": "pool", "platform": "claude", "members": [account]})),
        )
        .await;
    assert_eq!(status, 200, "{body_}");

    let (backup, text) = take(&from, &Protection::Passphrase(PASSPHRASE.into())).await;
    assert!(!text.contains(UPSTREAM_KEY), "no secret in clear");
    assert!(!text.contains("test-encryption-key-0123456789abcdef"));
    assert_eq!(backup.keys.len(), 1);
    assert_eq!(backup.accounts.len(), 1);
    assert_eq!(backup.groups.len(), 1);

    // Another engine and another ENCRYPTION_KEY.
    let to = Harness::with_config(Engine::Redis, |c| {
        c.encryption_key = Some("a-different-encryption-key-0123456789".into())
    })
    .await;
    let s = &to.relay().state;
    let wrong = restore(&s.store, &s.crypto, &backup, Some("not the passphrase")).await;
    assert!(wrong.unwrap_err().to_string().contains("wrong passphrase"));
    assert!(
        s.store.list_keys().await.unwrap().is_empty(),
        "nothing written"
    );
    let missing = restore(&s.store, &s.crypto, &backup, None).await;
    assert!(missing.is_err());

    let report = restore(&s.store, &s.crypto, &backup, Some(PASSPHRASE))
        .await
        .unwrap();
    assert_eq!((report.keys, report.accounts), (1, 1));
    assert!(report.keys_under_previous_scheme);
    let k = s.store.get_key(&key_id).await.unwrap().unwrap();
    assert_eq!(k.key.total_cost_limit, 10.0);

    // The key issued by the first deployment works on the second, through the restored
    // account (whose credential was re-sealed with the new key).
    let before = from.mock.log.count();
    let resp = to.messages(&key, body(false)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(from.mock.log.count(), before + 1);
    let seen = from.mock.log.last().unwrap();
    assert_eq!(
        seen.headers.get("x-api-key").and_then(|v| v.to_str().ok()),
        Some(UPSTREAM_KEY)
    );

    // Restoring again replaces by id: nothing doubled.
    let again = restore(&s.store, &s.crypto, &backup, Some(PASSPHRASE))
        .await
        .unwrap();
    assert_eq!(again.keys, 1);
    assert_eq!(s.store.list_keys().await.unwrap().len(), 1);
    assert_eq!(s.store.list_accounts().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_backups_need_their_key_and_plaintext_is_explicit() {
    let h = Harness::new(Engine::Embedded).await;
    h.account("console", None, 50).await;
    let (backup, text) = take(&h, &Protection::Sealed).await;
    assert!(!text.contains(UPSTREAM_KEY));
    assert!(backup.secrets.key_hash_salt.is_none());

    let other = Harness::with_config(Engine::Embedded, |c| {
        c.encryption_key = Some("a-different-encryption-key-0123456789".into())
    })
    .await;
    let s = &other.relay().state;
    let err = restore(&s.store, &s.crypto, &backup, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("another ENCRYPTION_KEY"), "{err}");
    assert!(s.store.list_accounts().await.unwrap().is_empty());

    // Where the key is the same, it restores (here: onto itself, replacing by id).
    let s = &h.relay().state;
    let r = restore(&s.store, &s.crypto, &backup, None).await.unwrap();
    assert_eq!(r.accounts, 1);

    let (_, plain) = take(&h, &Protection::Plaintext).await;
    assert!(plain.contains(UPSTREAM_KEY), "asked for: in clear");
}

#[test]
fn the_binary_exports_privately_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("backup.json");
    let crs = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crs"))
            .args(args)
            .env("DATA_DIR", dir.path().join("data"))
            .env("ENCRYPTION_KEY", "our-own-encryption-key-0123456789abcdef")
            .env_remove("REDIS_URL")
            .env("CRS_TEST_PASSPHRASE", PASSPHRASE)
            .output()
            .unwrap()
    };
    let r = crs(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--passphrase-env",
        "CRS_TEST_PASSPHRASE",
    ]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let r = crs(&["restore", "--in", out.to_str().unwrap()]);
    assert_eq!(
        r.status.code(),
        Some(2),
        "a passphrase backup needs its passphrase"
    );
    let r = crs(&[
        "restore",
        "--in",
        out.to_str().unwrap(),
        "--passphrase-env",
        "CRS_TEST_PASSPHRASE",
    ]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = crs(&[
        "restore",
        "--in",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&r.stderr).trim().lines().count(), 1);
    let r = crs(&[
        "export",
        "--out",
        "x.json",
        "--passphrase-env",
        "UNSET_VARIABLE_X",
    ]);
    assert_eq!(r.status.code(), Some(2));
}
