//! `crs export` / `crs restore`: a JSON backup of keys, accounts, groups, settings (and the
//! salts of keys imported from an original deployment).
//!
//! Secrets (account credentials, webhook secrets) are never written in clear unless asked:
//! - `sealed` (default): as stored, AES-GCM under this deployment's ENCRYPTION_KEY. Restores
//!   only where the same ENCRYPTION_KEY is configured (checked before anything is written).
//! - `passphrase` (`--passphrase-env VAR`): re-encrypted with AES-256-GCM under
//!   `scrypt(passphrase, random salt)`. Restores anywhere; the ENCRYPTION_KEY that key hashes
//!   are salted with travels (encrypted) too, so where the new deployment's key differs the
//!   keys are stored under that scheme and still authenticate.
//! - `plaintext` (`--plaintext-secrets`): in clear, for migrations by hand. Treat the file
//!   as the secrets themselves.
//!
//! A restore merges: records with the same id are replaced, nothing else is deleted.

use aes_gcm::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    Aes256Gcm, Key, Nonce,
};
use app::domain::AccountGroup;
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::legacy_keys::{self, HASH_MARKER},
    crypto::{sha256_hex, Crypto},
    import_crs::legacy_crypto::scrypt,
    store::{DynStore, StoreError, StoredAccount, StoredKey},
};

pub const FORMAT: &str = "crs-backup";
pub const VERSION: u32 = 1;
const CHECK: &str = "crs-backup-check";
const PASS_PREFIX: &str = "pp1:";

/// How the secrets in a backup are protected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsInfo {
    /// `sealed`, `passphrase` or `plaintext`.
    pub mode: String,
    /// `CHECK` protected like every secret: a restore verifies its key or passphrase first.
    pub check: String,
    /// scrypt parameters of the passphrase mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    /// The ENCRYPTION_KEY key hashes are salted with, protected like every secret (absent in
    /// the sealed mode, which needs the same key anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash_salt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kdf {
    pub salt: String,
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    pub secrets: SecretsInfo,
    pub keys: Vec<StoredKey>,
    /// `secret` protected as `secrets.mode` says.
    pub accounts: Vec<StoredAccount>,
    pub groups: Vec<AccountGroup>,
    /// The settings document; webhook `secret`s protected as `secrets.mode` says.
    pub settings: Option<Value>,
    /// Salts of keys imported from an original deployment, protected likewise.
    #[serde(default)]
    pub legacy_key_salts: Vec<String>,
}

/// How to protect secrets on export.
#[derive(Clone, Debug)]
pub enum Protection {
    Sealed,
    Passphrase(String),
    Plaintext,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored secret cannot be opened with this ENCRYPTION_KEY")]
    Unreadable,
}

/// The secret codec of one backup.
enum Codec {
    Sealed(Crypto),
    Passphrase(Aes256Gcm),
    Plaintext,
}

impl Codec {
    fn passphrase(pass: &str, kdf: &Kdf) -> Result<Self, BackupError> {
        let salt = hex::decode(&kdf.salt)
            .map_err(|_| BackupError::BadInput("the backup's kdf salt is not hex".into()))?;
        if !(10..=20).contains(&kdf.log_n) || kdf.r == 0 || kdf.r > 16 || kdf.p == 0 || kdf.p > 4 {
            return Err(BackupError::BadInput(
                "the backup's kdf parameters are out of range".into(),
            ));
        }
        let mut key = [0u8; 32];
        scrypt(
            pass.as_bytes(),
            &salt,
            1usize << kdf.log_n,
            kdf.r as usize,
            kdf.p as usize,
            &mut key,
        );
        Ok(Codec::Passphrase(Aes256Gcm::new(
            Key::<Aes256Gcm>::from_slice(&key),
        )))
    }

    fn seal(&self, plain: &str) -> String {
        match self {
            Codec::Sealed(c) => c.encrypt(plain),
            Codec::Plaintext => plain.to_string(),
            Codec::Passphrase(cipher) => {
                let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
                let ct = cipher.encrypt(&nonce, plain.as_bytes()).unwrap_or_default();
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!("{PASS_PREFIX}{}", STANDARD.encode(out))
            }
        }
    }

    fn open(&self, stored: &str) -> Result<String, BackupError> {
        let bad = || BackupError::BadInput("a secret in the backup cannot be opened".into());
        match self {
            Codec::Sealed(c) => c.decrypt(stored).map_err(|_| bad()),
            Codec::Plaintext => Ok(stored.to_string()),
            Codec::Passphrase(cipher) => {
                let raw = stored
                    .strip_prefix(PASS_PREFIX)
                    .and_then(|b| STANDARD.decode(b).ok())
                    .filter(|r| r.len() >= 12 + 16)
                    .ok_or_else(bad)?;
                let (nonce, ct) = raw.split_at(12);
                let pt = cipher
                    .decrypt(Nonce::from_slice(nonce), ct)
                    .map_err(|_| bad())?;
                String::from_utf8(pt).map_err(|_| bad())
            }
        }
    }
}

/// Moves a secret from one protection to another (empty stays empty).
fn convert(from: &Codec, to: &Codec, v: &str) -> Result<String, BackupError> {
    if v.is_empty() {
        return Ok(String::new());
    }
    Ok(to.seal(&from.open(v)?))
}

fn webhook_secrets(
    settings: &mut Value,
    f: impl Fn(&str) -> Result<String, BackupError>,
) -> Result<(), BackupError> {
    if let Some(hooks) = settings.get_mut("webhooks").and_then(Value::as_array_mut) {
        for h in hooks {
            if let Some(Value::String(s)) = h.get_mut("secret") {
                if !s.is_empty() {
                    *s = f(s)?;
                }
            }
        }
    }
    Ok(())
}

/// Everything the backup holds, read from the store.
pub async fn export(
    store: &DynStore,
    crypto: &Crypto,
    encryption_key: &str,
    protection: &Protection,
) -> Result<Backup, BackupError> {
    let ours = Codec::Sealed(crypto.clone());
    let (codec, mode, kdf) = match protection {
        Protection::Sealed => (Codec::Sealed(crypto.clone()), "sealed", None),
        Protection::Plaintext => (Codec::Plaintext, "plaintext", None),
        Protection::Passphrase(p) => {
            if p.chars().count() < 8 {
                return Err(BackupError::BadInput(
                    "the passphrase must be at least 8 characters".into(),
                ));
            }
            let mut salt = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut salt);
            let kdf = Kdf {
                salt: hex::encode(salt),
                log_n: 15,
                r: 8,
                p: 1,
            };
            (Codec::passphrase(p, &kdf)?, "passphrase", Some(kdf))
        }
    };
    let mut accounts = store.list_accounts().await?;
    for a in &mut accounts {
        a.secret = convert(&ours, &codec, &a.secret).map_err(|_| BackupError::Unreadable)?;
    }
    let groups = store
        .account_snapshot(None)
        .await?
        .groups
        .unwrap_or_default();
    let mut settings = match store.get_doc("settings", "global").await? {
        Some(json) => Some(crate::store::from_json::<Value>(json.as_bytes())?),
        None => None,
    };
    if let Some(s) = settings.as_mut() {
        webhook_secrets(s, |v| {
            convert(&ours, &codec, v).map_err(|_| BackupError::Unreadable)
        })?;
    }
    let legacy_key_salts = legacy_keys::salts(store, crypto)
        .await?
        .iter()
        .map(|s| codec.seal(s))
        .collect();
    Ok(Backup {
        format: FORMAT.into(),
        version: VERSION,
        created_at: crate::timestamps::format_time(chrono::Utc::now()),
        secrets: SecretsInfo {
            mode: mode.into(),
            check: codec.seal(CHECK),
            key_hash_salt: (!matches!(protection, Protection::Sealed))
                .then(|| codec.seal(encryption_key)),
            kdf,
        },
        keys: store.list_keys().await?,
        accounts,
        groups,
        settings,
        legacy_key_salts,
    })
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub keys: usize,
    pub accounts: usize,
    pub groups: usize,
    pub settings: bool,
    /// Keys kept under the backup's hash scheme (its ENCRYPTION_KEY differs from ours).
    pub keys_under_previous_scheme: bool,
    pub skipped: Vec<String>,
}

/// Writes a backup into the store (merging by id).
pub async fn restore(
    store: &DynStore,
    crypto: &Crypto,
    backup: &Backup,
    passphrase: Option<&str>,
) -> Result<RestoreReport, BackupError> {
    if backup.format != FORMAT || backup.version != VERSION {
        return Err(BackupError::BadInput(format!(
            "not a {FORMAT} version {VERSION} file"
        )));
    }
    let codec = match backup.secrets.mode.as_str() {
        "sealed" => Codec::Sealed(crypto.clone()),
        "plaintext" => Codec::Plaintext,
        "passphrase" => {
            let pass = passphrase.ok_or_else(|| {
                BackupError::BadInput(
                    "this backup is protected by a passphrase: pass --passphrase-env".into(),
                )
            })?;
            let kdf =
                backup.secrets.kdf.as_ref().ok_or_else(|| {
                    BackupError::BadInput("the backup has no kdf parameters".into())
                })?;
            Codec::passphrase(pass, kdf)?
        }
        other => {
            return Err(BackupError::BadInput(format!(
                "unknown secrets mode {other:?}"
            )))
        }
    };
    if codec.open(&backup.secrets.check).ok().as_deref() != Some(CHECK) {
        return Err(BackupError::BadInput(match backup.secrets.mode.as_str() {
            "sealed" => "this backup was sealed with another ENCRYPTION_KEY: configure that key, or export again with --passphrase-env".into(),
            _ => "wrong passphrase for this backup".into(),
        }));
    }
    let ours = Codec::Sealed(crypto.clone());
    // Everything is opened before anything is written.
    let mut accounts = backup.accounts.clone();
    for a in &mut accounts {
        a.secret = convert(&codec, &ours, &a.secret)?;
    }
    let mut settings = backup.settings.clone();
    if let Some(s) = settings.as_mut() {
        webhook_secrets(s, |v| convert(&codec, &ours, v))?;
    }
    let mut salts: Vec<String> = backup
        .legacy_key_salts
        .iter()
        .map(|s| codec.open(s))
        .collect::<Result<_, _>>()?;
    // Keys hashed with the backup's ENCRYPTION_KEY keep working where ours differs.
    let previous_key = match &backup.secrets.key_hash_salt {
        Some(s) => Some(codec.open(s)?),
        None => None,
    };
    let probe = "crs-backup-probe";
    let rehome = previous_key
        .as_deref()
        .filter(|k| crypto.hash_api_key(probe) != sha256_hex(&format!("{probe}{k}")));
    if let Some(k) = rehome {
        salts.push(k.to_string());
    }
    for s in legacy_keys::salts(store, crypto).await? {
        if !salts.contains(&s) {
            salts.push(s);
        }
    }
    salts.sort();
    salts.dedup();

    let mut report = RestoreReport {
        keys_under_previous_scheme: rehome.is_some(),
        ..Default::default()
    };
    for a in &accounts {
        store.put_account(a).await?;
        report.accounts += 1;
    }
    for g in &backup.groups {
        store.put_group(g).await?;
        report.groups += 1;
    }
    if let Some(s) = &settings {
        store
            .put_doc("settings", "global", &crate::store::to_json(s)?)
            .await?;
        report.settings = true;
    }
    legacy_keys::replace_salts(store, crypto, &salts).await?;
    for k in &backup.keys {
        let mut k = k.clone();
        if rehome.is_some() && !k.key_hash.starts_with(HASH_MARKER) {
            k.key_hash = legacy_keys::stored_hash(&k.key_hash, false);
        }
        let result = match store.get_key(&k.key.id).await? {
            Some(existing) => {
                k.key_hash = existing.key_hash;
                store.update_key(&k).await
            }
            None => store.insert_key(&k).await,
        };
        match result {
            Ok(()) => report.keys += 1,
            Err(StoreError::Conflict(_)) => report.skipped.push(format!(
                "key {} ({}): another key here has the same hash",
                k.key.id, k.key.name
            )),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// `crs export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The backup file to write (created with mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: std::path::PathBuf,
    /// Re-encrypt secrets under the passphrase in this environment variable (portable to a
    /// deployment with another ENCRYPTION_KEY). Default: secrets stay sealed with this
    /// deployment's ENCRYPTION_KEY.
    #[arg(long, value_name = "VAR", conflicts_with = "plaintext_secrets")]
    pub passphrase_env: Option<String>,
    /// Write secrets in clear (the file then is the secrets: keep it safe).
    #[arg(long)]
    pub plaintext_secrets: bool,
}

/// `crs restore` arguments.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to read.
    #[arg(long = "in", value_name = "FILE")]
    pub input: std::path::PathBuf,
    /// The environment variable holding the backup's passphrase (passphrase backups only).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

fn passphrase_from(var: &Option<String>) -> Result<Option<String>, String> {
    match var {
        None => Ok(None),
        Some(v) => std::env::var(v)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Some)
            .ok_or_else(|| format!("environment variable {v} is not set")),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// `crs export`; the exit code.
pub async fn export_cli(args: ExportArgs, config: &crate::config::Config) -> i32 {
    let protection = match passphrase_from(&args.passphrase_env) {
        Err(e) => {
            eprintln!("crs: export: {e}");
            return 2;
        }
        Ok(Some(p)) => Protection::Passphrase(p),
        Ok(None) if args.plaintext_secrets => Protection::Plaintext,
        Ok(None) => Protection::Sealed,
    };
    let t = match crate::import_crs::open_target(config).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("crs: {e:#}");
            return 1;
        }
    };
    let backup = match export(&t.store, &t.crypto, &t.encryption_key, &protection).await {
        Ok(b) => b,
        Err(e @ BackupError::BadInput(_)) => {
            eprintln!("crs: export: {e}");
            return 2;
        }
        Err(e) => {
            eprintln!("crs: export: {e}");
            return 1;
        }
    };
    let text = match serde_json::to_string_pretty(&backup) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("crs: export: {e}");
            return 1;
        }
    };
    if let Err(e) = write_private(&args.out, &text) {
        eprintln!("crs: export: cannot write {}: {e}", args.out.display());
        return 1;
    }
    if matches!(protection, Protection::Plaintext) {
        eprintln!(
            "crs: warning: {} holds account secrets in clear",
            args.out.display()
        );
    }
    println!(
        "exported {} keys, {} accounts, {} groups{} to {} (secrets: {})",
        backup.keys.len(),
        backup.accounts.len(),
        backup.groups.len(),
        if backup.settings.is_some() {
            ", settings"
        } else {
            ""
        },
        args.out.display(),
        backup.secrets.mode
    );
    0
}

/// `crs restore`; the exit code.
pub async fn restore_cli(args: RestoreArgs, config: &crate::config::Config) -> i32 {
    let passphrase = match passphrase_from(&args.passphrase_env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("crs: restore: {e}");
            return 2;
        }
    };
    let backup: Backup = match std::fs::read_to_string(&args.input)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("crs: restore: cannot read {}: {e}", args.input.display());
            return 2;
        }
    };
    let t = match crate::import_crs::open_target(config).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("crs: {e:#}");
            return 1;
        }
    };
    match restore(&t.store, &t.crypto, &backup, passphrase.as_deref()).await {
        Ok(r) => {
            println!(
                "restored {} keys, {} accounts, {} groups{}",
                r.keys,
                r.accounts,
                r.groups,
                if r.settings { ", settings" } else { "" }
            );
            for s in &r.skipped {
                println!("  skipped {s}");
            }
            0
        }
        Err(e @ BackupError::BadInput(_)) => {
            eprintln!("crs: restore: {e}");
            2
        }
        Err(e) => {
            eprintln!("crs: restore: {e}");
            1
        }
    }
}
