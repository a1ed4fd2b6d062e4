//! `crs import-crs`: moving an original Claude Relay Service deployment over.
//!
//! Reads the original's Redis (never writing to it), opens account secrets with the original's
//! scheme (`legacy_crypto`), seals them with ours, and writes keys, accounts, groups and usage
//! history into our store. Keys keep authenticating with the `cr_` key the original issued
//! (`auth::legacy_keys`). Ids are kept, so a re-run updates the same records; usage is remembered
//! per source so a re-run adds only what grew (`usage`). A dry run reads and maps everything
//! and writes nothing. Whatever could not be mapped is listed in the report.

pub mod legacy_crypto;
pub mod mapping;
pub mod source;
pub mod usage;

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use app::domain::UsageCounters;
use serde::Serialize;

use crate::{
    auth::legacy_keys,
    config::Config,
    crypto::{sha256_hex, Crypto},
    store::{DynStore, StoreError, StoredAccount, StoredKey, UsageImport},
};
pub use mapping::Unmapped;

/// Where the import writes: our store, our encryption, our time zone.
pub struct Target<'a> {
    pub store: &'a DynStore,
    pub crypto: &'a Crypto,
    pub tz_hours: i32,
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub dry_run: bool,
    pub keys_created: usize,
    pub keys_updated: usize,
    pub accounts_created: usize,
    pub accounts_updated: usize,
    /// Imported accounts per platform (our names).
    pub accounts_by_platform: BTreeMap<String, usize>,
    pub groups: usize,
    /// Usage buckets that received new counts in this run.
    pub usage_buckets: usize,
    /// Limit counters (a key's spending against its limits) that received new spending.
    pub limit_counters: usize,
    /// The imported keys' all-time totals, as the original holds them.
    pub key_usage_totals: UsageCounters,
    /// Keys are stored under the original's own hash scheme (its ENCRYPTION_KEY is not ours).
    pub legacy_key_hashes: bool,
    pub unmapped: Vec<Unmapped>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("the encryption key does not decrypt the original's account credentials ({0} tried, none opened): pass the original's ENCRYPTION_KEY")]
    WrongKey(usize),
    #[error("writing to our store failed: {0}")]
    Store(#[from] StoreError),
}

impl ImportError {
    /// 2 for a bad argument, 1 for any other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ImportError::WrongKey(_) => 2,
            _ => 1,
        }
    }
}

/// Connects to the original's Redis and imports it.
pub async fn import_from_url(
    redis_url: &str,
    encryption_key: &str,
    target: &Target<'_>,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let mut conn = source::connect(redis_url).await?;
    let snap = source::read(&mut conn).await?;
    import(&snap, encryption_key, target, dry_run).await
}

/// The document id of what runs from one source remembered (sources are told apart by the
/// original's ENCRYPTION_KEY, which its data is bound to).
fn source_id(encryption_key: &str) -> String {
    let h = sha256_hex(&format!("crs-import-source\0{encryption_key}"));
    format!("usage:{}", &h[..16])
}

/// Maps a snapshot of the original and, unless `dry_run`, writes it.
pub async fn import(
    snap: &source::Snapshot,
    encryption_key: &str,
    target: &Target<'_>,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let legacy = legacy_crypto::LegacyCrypto::new(encryption_key);
    let store = target.store;
    let mut report = ImportReport {
        dry_run,
        ..Default::default()
    };

    // Accounts first: everything is mapped before anything is written, so a wrong key
    // writes nothing.
    let mut accounts: Vec<StoredAccount> = Vec::new();
    let (mut undecryptable, mut opened) = (0usize, 0usize);
    for (kind, f) in &snap.accounts {
        let item = mapping::account_label(*kind, f);
        match mapping::account(*kind, f, &legacy) {
            Ok((account, secrets, notes)) => {
                opened += 1;
                for reason in notes {
                    report.unmapped.push(Unmapped {
                        item: item.clone(),
                        reason,
                    });
                }
                accounts.push(StoredAccount {
                    account,
                    secret: secrets.seal(target.crypto),
                });
            }
            Err(skip) => {
                let reason = match skip {
                    mapping::Skip::Undecryptable(r) => {
                        undecryptable += 1;
                        format!("not imported: {r}")
                    }
                    mapping::Skip::Unsupported(r) | mapping::Skip::Invalid(r) => {
                        format!("not imported: {r}")
                    }
                };
                report.unmapped.push(Unmapped { item, reason });
            }
        }
    }
    if undecryptable > 0 && opened == 0 {
        return Err(ImportError::WrongKey(undecryptable));
    }
    let account_ids: HashSet<String> = accounts.iter().map(|a| a.account.id.clone()).collect();

    let mut groups = Vec::new();
    for (f, members) in &snap.groups {
        if let Some(g) = mapping::group(f, members, &account_ids, &mut report.unmapped) {
            groups.push(g);
        }
    }
    let group_ids: HashSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();

    // Keys, and whether they can keep their hash as it is.
    let probe = "crs-import-probe";
    let same_key =
        target.crypto.hash_api_key(probe) == sha256_hex(&format!("{probe}{encryption_key}"));
    report.legacy_key_hashes = !same_key;
    let hash_of: std::collections::HashMap<String, String> = snap
        .hash_map
        .iter()
        .map(|(h, id)| (id.clone(), h.clone()))
        .collect();
    let mut keys: Vec<StoredKey> = Vec::new();
    for f in &snap.keys {
        let Some((key, hash)) = mapping::key(f, &hash_of, &mut report.unmapped) else {
            continue;
        };
        for binding in [
            &key.claude_account_id,
            &key.claude_console_account_id,
            &key.openai_account_id,
            &key.gemini_account_id,
        ]
        .into_iter()
        .flatten()
        {
            let bare = binding
                .strip_prefix("responses:")
                .or_else(|| binding.strip_prefix("api:"))
                .unwrap_or(binding);
            let known = match bare.strip_prefix("group:") {
                Some(g) => group_ids.contains(g),
                None => account_ids.contains(bare),
            };
            if !known {
                report.unmapped.push(Unmapped {
                    item: mapping::key_label(f),
                    reason: format!(
                        "bound to {binding}, which was not imported: its requests find no account until the binding is changed"
                    ),
                });
            }
        }
        keys.push(StoredKey::new(
            key,
            legacy_keys::stored_hash(&hash, same_key),
        ));
    }

    // Usage, against what earlier runs from this source imported.
    let doc_id = source_id(encryption_key);
    let previous: usage::Remembered = match store.get_doc(legacy_keys::KIND, &doc_id).await? {
        Some(json) => crate::store::from_json(json.as_bytes())?,
        None => usage::Remembered::default(),
    };
    let plain_keys: Vec<app::domain::ApiKey> = keys.iter().map(|k| k.key.clone()).collect();
    let plan = usage::plan(
        snap,
        &plain_keys,
        &account_ids,
        chrono::Utc::now(),
        target.tz_hours,
        &previous,
    );
    report.usage_buckets = plan.import.buckets.len();
    report.limit_counters = plan.import.spent.len();
    report.key_usage_totals = plan.key_totals;
    report.groups = groups.len();

    // Writes (or, dry, the same decisions without them).
    for a in &accounts {
        *report
            .accounts_by_platform
            .entry(a.account.platform.as_str().to_string())
            .or_default() += 1;
        if store.get_account(&a.account.id).await?.is_some() {
            report.accounts_updated += 1;
        } else {
            report.accounts_created += 1;
        }
        if !dry_run {
            store.put_account(a).await?;
        }
    }
    if !dry_run {
        for g in &groups {
            store.put_group(g).await?;
        }
        if !same_key && !keys.is_empty() {
            legacy_keys::remember_salt(store, target.crypto, encryption_key).await?;
        }
    }
    for mut k in keys {
        match store.get_key(&k.key.id).await? {
            Some(existing) => {
                report.keys_updated += 1;
                // What only we have is kept; the hash cannot change.
                let e = existing.key;
                k.key.allow_dedicated_fallback = e.allow_dedicated_fallback;
                k.key.weekly_cost_limit = e.weekly_cost_limit;
                k.key.platform_limits = e.platform_limits;
                k.key.model_limits = e.model_limits;
                k.key.user_id = e.user_id;
                k.key.owner_disabled = e.owner_disabled;
                if existing.key_hash != k.key_hash {
                    report.unmapped.push(Unmapped {
                        item: format!("key {} ({})", k.key.id, k.key.name),
                        reason: "exists here under another hash: kept that hash".into(),
                    });
                    k.key_hash = existing.key_hash;
                }
                if !dry_run {
                    store.update_key(&k).await?;
                }
            }
            None => {
                if dry_run {
                    report.keys_created += 1;
                    continue;
                }
                match store.insert_key(&k).await {
                    Ok(()) => report.keys_created += 1,
                    Err(StoreError::Conflict(_)) => report.unmapped.push(Unmapped {
                        item: format!("key {} ({})", k.key.id, k.key.name),
                        reason: "another key here has the same hash: not imported".into(),
                    }),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if !dry_run {
        write_usage(store, plan.import).await?;
        store
            .put_doc(
                legacy_keys::KIND,
                &doc_id,
                &crate::store::to_json(&plan.remembered)?,
            )
            .await?;
    }
    legacy_keys::invalidate();
    Ok(report)
}

/// Writes an import in bounded chunks (one round trip each on Redis).
async fn write_usage(store: &DynStore, import: UsageImport) -> Result<(), StoreError> {
    const CHUNK: usize = 2_000;
    let mut chunk = UsageImport::default();
    for (name, v) in import.buckets {
        chunk.buckets.insert(name, v);
        if chunk.buckets.len() >= CHUNK {
            store.import_usage(&std::mem::take(&mut chunk)).await?;
        }
    }
    chunk.spent = import.spent;
    chunk.models_by_day = import.models_by_day;
    chunk.key_models = import.key_models;
    store.import_usage(&chunk).await
}

/// Our store and encryption as `crs serve` would open them (the embedded store's generated
/// key is created the same way on a first run).
pub async fn open_target(config: &Config) -> anyhow::Result<OpenedTarget> {
    let key = match &config.encryption_key {
        Some(k) => k.clone(),
        None => {
            let path = config.data_dir.join("encryption.key");
            match std::fs::read_to_string(&path) {
                Ok(existing) => {
                    let k = existing.trim().to_string();
                    anyhow::ensure!(
                        k.len() >= 32,
                        "{} holds a key shorter than 32 characters",
                        path.display()
                    );
                    k
                }
                Err(_) => {
                    std::fs::create_dir_all(&config.data_dir).with_context(|| {
                        format!("cannot create DATA_DIR {}", config.data_dir.display())
                    })?;
                    let k = crate::crypto::random_hex(32);
                    std::fs::write(&path, &k)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
                    }
                    k
                }
            }
        }
    };
    let store = crate::store::open(config)
        .await
        .context("cannot open the store")?;
    store.ping().await.context("the store does not answer")?;
    Ok(OpenedTarget {
        store,
        crypto: Crypto::new(&key),
        encryption_key: key,
    })
}

/// Our store, opened for a command.
pub struct OpenedTarget {
    pub store: DynStore,
    pub crypto: Crypto,
    /// Our ENCRYPTION_KEY (key hashes are salted with it).
    pub encryption_key: String,
}

/// `crs import-crs` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The original deployment's Redis, e.g. redis://:password@host:6379/0 (only read).
    #[arg(long, value_name = "URL")]
    pub redis: String,
    /// The original's ENCRYPTION_KEY (or set CRS_IMPORT_ENCRYPTION_KEY to keep it out of the
    /// process list).
    #[arg(
        long,
        value_name = "KEY",
        env = "CRS_IMPORT_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub encryption_key: String,
    /// Read and map everything, write nothing, report what would be imported.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the subcommand; the process exit code (0 ok, 1 failure, 2 bad arguments).
pub async fn cli(args: Args, config: &Config) -> i32 {
    if args.encryption_key.trim().is_empty() {
        eprintln!("crs: --encryption-key is empty");
        return 2;
    }
    let opened = match open_target(config).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("crs: {e:#}");
            return 1;
        }
    };
    let target = Target {
        store: &opened.store,
        crypto: &opened.crypto,
        tz_hours: config.timezone_offset_hours,
    };
    match import_from_url(&args.redis, &args.encryption_key, &target, args.dry_run).await {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", describe(&report));
            }
            0
        }
        Err(e) => {
            eprintln!("crs: import-crs: {e}");
            e.exit_code()
        }
    }
}

/// The report for a person.
pub fn describe(r: &ImportReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verb = if r.dry_run {
        "would import"
    } else {
        "imported"
    };
    let _ = writeln!(
        s,
        "{}{verb}: {} keys ({} new, {} updated), {} accounts ({} new, {} updated), {} groups",
        if r.dry_run {
            "dry run: nothing written; "
        } else {
            ""
        },
        r.keys_created + r.keys_updated,
        r.keys_created,
        r.keys_updated,
        r.accounts_created + r.accounts_updated,
        r.accounts_created,
        r.accounts_updated,
        r.groups
    );
    for (platform, n) in &r.accounts_by_platform {
        let _ = writeln!(s, "  {platform}: {n}");
    }
    let t = &r.key_usage_totals;
    let _ = writeln!(
        s,
        "usage: {} buckets and {} limit counters with new counts; keys' totals {} requests, {} tokens, ${:.6}",
        r.usage_buckets,
        r.limit_counters,
        t.requests,
        t.all_tokens(),
        t.cost_usd()
    );
    if r.legacy_key_hashes {
        let _ = writeln!(
            s,
            "keys keep the original's hash scheme (its ENCRYPTION_KEY differs from ours): they authenticate as before"
        );
    }
    if r.unmapped.is_empty() {
        let _ = writeln!(s, "everything was mapped");
    } else {
        let _ = writeln!(s, "not mapped ({}):", r.unmapped.len());
        for u in &r.unmapped {
            let _ = writeln!(s, "  {}: {}", u.item, u.reason);
        }
    }
    s
}
