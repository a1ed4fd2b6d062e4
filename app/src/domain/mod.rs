//! Domain types shared by the relay, the admin API, the server functions and the pages.
//!
//! Field names are camelCase on the wire, as in the original service's admin API, so existing
//! scripts and the original's exports keep working. Timestamps are RFC 3339 strings in UTC.
//!
//! Core types by concern (`accounts`, `keys`, `usage`, `users`, `settings`), and the pages'
//! forms and view models apart (`views`). Everything is re-exported here, so
//! `app::domain::ApiKey` names the type wherever it lives.

mod accounts;
mod keys;
mod settings;
mod usage;
mod users;
mod views;

pub use accounts::*;
pub use keys::*;
pub use settings::*;
pub use usage::*;
pub use users::*;
pub use views::*;

pub use crate::model_name::{is_valid_model_name, model_matches, normalize_model};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_statuses_keep_the_wire_names_and_only_those_schedule() {
        for (status, name) in [
            (AccountStatus::Active, "active"),
            (AccountStatus::Blocked, "blocked"),
            (AccountStatus::Error, "error"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), name);
            assert_eq!(status.as_str(), name);
            let back: AccountStatus = serde_json::from_value(name.into()).unwrap();
            assert_eq!(back, status);
            let account = Account {
                status,
                ..Account::default()
            };
            assert_eq!(account.is_schedulable(), status == AccountStatus::Active);
        }
        assert!(serde_json::from_value::<AccountStatus>("paused".into()).is_err());
    }

    #[test]
    fn permissions_empty_means_all() {
        let mut key = ApiKey::default();
        assert!(key.allows_service("claude"));
        key.permissions = vec!["gemini".into()];
        assert!(!key.allows_service("claude"));
        assert!(key.allows_service("gemini"));
    }

    #[test]
    fn a_restriction_holds_for_every_form_of_the_model() {
        let mut key = ApiKey {
            enable_model_restriction: true,
            restricted_models: vec!["claude-opus-4-1".into()],
            ..Default::default()
        };
        for refused in [
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
            "CLAUDE-OPUS-4-1",
            "claude-opus-4-1@20250805",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
        ] {
            assert!(key.model_blocked(refused), "{refused}");
        }
        for allowed in ["claude-opus-4", "claude-opus-4-5", "claude-sonnet-4-5"] {
            assert!(!key.model_blocked(allowed), "{allowed}");
        }
        key.restricted_models = vec!["Claude-Opus-*".into()];
        assert!(key.model_blocked("us.anthropic.claude-opus-4-5-20251101-v1:0"));
        assert!(!key.model_blocked("claude-sonnet-4-5"));
        key.enable_model_restriction = false;
        assert!(!key.model_blocked("claude-opus-4-1"));
        assert_eq!(
            model_family("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            Some("opus")
        );
        assert_eq!(model_family("gpt-4o"), None);
    }

    #[test]
    fn counters_add_and_totals() {
        let usage = TokenUsage {
            input_tokens: 10,
            output_tokens: 20,
            cache_create_5m_tokens: 3,
            cache_create_1h_tokens: 4,
            cache_read_tokens: 5,
        };
        let mut c = UsageCounters::of_request(&usage, 1_500);
        c.add(&UsageCounters::of_request(&usage, 500));
        assert_eq!(c.requests, 2);
        assert_eq!(c.all_tokens(), 84);
        assert_eq!(c.cost_nanos, 2_000);
        assert_eq!(format_usd(c.cost_nanos), "$0.000002");
    }

    #[test]
    fn account_wire_names_are_camel_case() {
        let json = serde_json::to_value(Account::default()).unwrap();
        assert_eq!(json["platform"], "claude-console");
        assert!(json.get("apiUrl").is_some());
        assert!(json.get("isActive").is_some());
    }
}
