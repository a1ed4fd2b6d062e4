use super::*;
use std::collections::HashMap;

use app::domain::{AccountType, Platform};

use crate::import_crs::{legacy_crypto::LegacyCrypto, source::SourceKind};

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn key_limits_and_bindings_map() {
    let hash = "ab".repeat(32);
    let f = fields(&[
        ("id", "k1"),
        ("name", "team"),
        ("apiKey", &hash),
        ("isActive", "true"),
        ("tokenLimit", "1000"),
        ("concurrencyLimit", "2"),
        ("rateLimitWindow", "60"),
        ("rateLimitRequests", "30"),
        ("rateLimitCost", "1.5"),
        ("dailyCostLimit", "10"),
        ("totalCostLimit", "100"),
        ("weeklyOpusCostLimit", "20"),
        ("weeklyResetDay", "3"),
        ("weeklyResetHour", "6"),
        ("permissions", r#"["claude","droid"]"#),
        ("enableModelRestriction", "true"),
        ("restrictedModels", r#"["claude-opus-4"]"#),
        ("allowedClients", r#"["claude_code","droid_cli"]"#),
        ("serviceRates", r#"{"claude":1.2,"codex":0.5,"droid":2}"#),
        ("tags", r#"["a","b"]"#),
        ("claudeAccountId", "group:g1"),
        ("openaiAccountId", "oauth-id"),
        ("azureOpenaiAccountId", "az1"),
        ("expirationMode", "activation"),
        ("activationDays", "36"),
        ("activationUnit", "hours"),
        ("createdAt", "2025-01-02T03:04:05.000Z"),
    ]);
    let mut notes = Vec::new();
    let (k, h) = key(&f, &HashMap::new(), &mut notes).unwrap();
    assert_eq!(h, hash);
    assert!(k.is_active && !k.is_deleted);
    assert_eq!(
        (
            k.token_limit,
            k.concurrency_limit,
            k.rate_limit_window,
            k.rate_limit_requests
        ),
        (1000, 2, 60, 30)
    );
    assert_eq!(
        (
            k.rate_limit_cost,
            k.daily_cost_limit,
            k.total_cost_limit,
            k.weekly_opus_cost_limit
        ),
        (1.5, 10.0, 100.0, 20.0)
    );
    assert_eq!((k.weekly_reset_day, k.weekly_reset_hour), (3, 6));
    assert_eq!(k.permissions, vec!["claude"]);
    assert_eq!(k.allowed_clients, vec!["claude_code"]);
    assert_eq!(k.service_rates.get("openai"), Some(&0.5));
    assert_eq!(k.claude_account_id.as_deref(), Some("group:g1"));
    // The OAuth binding has no counterpart; the Azure one takes the OpenAI slot.
    assert_eq!(k.openai_account_id.as_deref(), Some("az1"));
    assert_eq!(k.activation_days, 2);
    assert_eq!(k.created_at, "2025-01-02T03:04:05.000Z");
    let reasons: Vec<&str> = notes.iter().map(|n| n.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("droid")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("droid_cli")));
    assert!(reasons.iter().any(|r| r.contains("OpenAI OAuth")));
    assert!(reasons.iter().any(|r| r.contains("hours")));
    // Legacy "all" permission means every service.
    let f = fields(&[("id", "k2"), ("apiKey", &hash), ("permissions", "all")]);
    assert!(key(&f, &HashMap::new(), &mut notes)
        .unwrap()
        .0
        .permissions
        .is_empty());
    // Without a hash a key cannot authenticate: skipped, said so.
    let f = fields(&[("id", "k3")]);
    assert!(key(&f, &HashMap::new(), &mut notes).is_none());
    let by_map = HashMap::from([("k3".to_string(), hash.clone())]);
    assert_eq!(key(&f, &by_map, &mut notes).unwrap().1, hash);
}

#[test]
fn console_account_opens_its_key_and_oauth_types_are_refused() {
    let legacy = LegacyCrypto::new("test-encryption-key-0123456789abcdef");
    let f = fields(&[
        ("id", "c1"),
        ("name", "console"),
        ("apiUrl", "https://api.example.com"),
        ("apiKey", "000102030405060708090a0b0c0d0e0f:39ad2bd6de15f2a00e2463c7bdce10a687ddc7c50de60116abfcc73ca0c77721"),
        ("priority", "30"),
        ("isActive", "true"),
        ("schedulable", "true"),
        ("accountType", "group"),
        ("maxConcurrentTasks", "3"),
        ("supportedModels", r#"{"claude-a":"claude-a","claude-b":"upstream-b"}"#),
        ("proxy", r#"{"type":"socks5","host":"p.example","port":"1080","username":"u","password":"pw"}"#),
        ("dailyQuota", "5"),
    ]);
    let (a, s, notes) = account(SourceKind::ClaudeConsole, &f, &legacy).unwrap();
    assert_eq!(a.platform, Platform::ClaudeConsole);
    assert_eq!(s.api_key.as_deref(), Some("sk-ant-api03-secret-ünï"));
    assert_eq!((a.priority, a.max_concurrency), (30, 3));
    assert_eq!(a.account_type, AccountType::Dedicated);
    assert_eq!(a.supported_models, vec!["claude-a", "claude-b"]);
    assert_eq!(a.proxy.as_ref().map(|p| p.port), Some(1080));
    assert_eq!(s.proxy_password.as_deref(), Some("pw"));
    assert_eq!(notes.len(), 2, "{notes:?}");
    let wrong = LegacyCrypto::new("another-encryption-key-0123456789ab");
    assert!(matches!(
        account(SourceKind::ClaudeConsole, &f, &wrong),
        Err(Skip::Undecryptable(_))
    ));
    assert!(matches!(
        account(SourceKind::Gemini, &f, &legacy),
        Err(Skip::Unsupported(_))
    ));
}

#[test]
fn bedrock_credentials_in_current_and_plain_forms() {
    let legacy = LegacyCrypto::new("test-encryption-key-0123456789abcdef");
    let stored = r#"{"encrypted":"80557febf040c93fa2310d7c9db745fc66556c9391aee68aea8ff02aeac43b26f89a963b22f8e8762e2b7a466d16ce69025fcef0eb0f6e88389d2c1f7b12d305","iv":"000102030405060708090a0b0c0d0e0f"}"#;
    let f = fields(&[
        ("id", "b1"),
        ("region", "us-east-1"),
        ("awsCredentials", stored),
        ("credentialType", "access_key"),
    ]);
    let (a, s, _) = account(SourceKind::Bedrock, &f, &legacy).unwrap();
    assert_eq!(a.region.as_deref(), Some("us-east-1"));
    assert_eq!(s.aws_access_key_id.as_deref(), Some("AKIA1"));
    assert_eq!(s.aws_secret_access_key.as_deref(), Some("s3cr3t"));
    let f = fields(&[
        ("id", "b2"),
        (
            "awsCredentials",
            r#"{"accessKeyId":"AK","secretAccessKey":"SK"}"#,
        ),
    ]);
    let (_, s, _) = account(SourceKind::Bedrock, &f, &legacy).unwrap();
    assert_eq!(s.aws_access_key_id.as_deref(), Some("AK"));
}
