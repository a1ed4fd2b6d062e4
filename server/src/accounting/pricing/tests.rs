//! Unit tests of the table: parsing, overrides, aliases, the lookup rules, long context.

use std::path::Path;

use super::*;
use crate::accounting::unpriced::UnpricedAction;

fn table(names: &[&str]) -> Pricing {
    let entries: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                serde_json::json!({"input_cost_per_token": (i + 1) as f64 * 1e-6, "output_cost_per_token": 1e-5}),
            )
        })
        .collect();
    Pricing::from_json(serde_json::to_string(&entries).unwrap().as_bytes()).unwrap()
}

fn priced_as<'a>(p: &'a Pricing, model: &str, names: &[&'a str]) -> Option<&'a str> {
    let found = p.price(model)?;
    names.iter().copied().find(|n| p.exact(n) == Some(found))
}

#[test]
fn derives_missing_claude_cache_prices() {
    let p = Pricing::from_json(
        br#"{"claude-test":{"input_cost_per_token":1e-6,"output_cost_per_token":5e-6,"litellm_provider":"anthropic","mode":"chat"},
             "gpt-x":{"input_cost_per_token":2e-6,"output_cost_per_token":8e-6,"cache_read_input_token_cost":5e-7},
             "sample_spec":{"input_cost_per_token":"nope"}}"#,
    )
    .unwrap();
    let c = p.price("claude-test").unwrap();
    assert_eq!((c.input, c.output), (1000.0, 5000.0));
    assert_eq!(
        (c.cache_write_5m, c.cache_write_1h, c.cache_read),
        (1250.0, 2000.0, 100.0)
    );
    let g = p.price("gpt-x").unwrap();
    assert_eq!((g.cache_write_5m, g.cache_read), (2000.0, 500.0));
    assert!(p.price("sample_spec").is_none());
    assert!(p.price("claude-tes").is_none(), "no substring matches");
    assert_eq!(p.claude_models(), &["claude-test".to_string()]);
    assert_eq!(p.sha256().len(), 64);
}

#[test]
fn bundled_table_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../resources/model-pricing/model_prices_and_context_window.json"
    );
    let p = Pricing::load(Path::new(path)).unwrap();
    assert!(p.len() > 1000);
    let s = p.price("claude-sonnet-4-5-20250929").unwrap();
    assert_eq!(s.input, 3000.0);
    assert_eq!(s.cache_write_1h, 6000.0);
    assert!(p
        .claude_models()
        .iter()
        .any(|m| m == "claude-sonnet-4-5-20250929"));
    assert!(p.origin().starts_with("file:"));
    // Bedrock ids of the bundled table resolve without any loose matching.
    assert!(p
        .price("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
        .is_some());
}

#[test]
fn bedrock_ids_normalise_to_their_entries() {
    let names = [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "claude-sonnet-4-20250514",
        "claude-opus-4",
    ];
    let p = table(&names);
    // LiteLLM's own Bedrock entry, under any region prefix.
    for m in [
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "apac.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ] {
        assert_eq!(priced_as(&p, m, &names), Some(names[0]), "{m}");
    }
    // No Bedrock entry: the Anthropic name without prefix and version suffix.
    assert_eq!(
        priced_as(&p, "global.anthropic.claude-sonnet-4-20250514-v1:0", &names),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(
        priced_as(&p, "anthropic.claude-sonnet-4-20250514-v2:0", &names),
        Some("claude-sonnet-4-20250514")
    );
    // A `-v2` without revision is part of the name, not a Bedrock version.
    assert!(p.price("anthropic.claude-sonnet-4-20250514-v2").is_none());
    // …and its date dropped only because no dated entry exists.
    assert_eq!(
        priced_as(&p, "us.anthropic.claude-opus-4-20250514-v1:0", &names),
        Some("claude-opus-4")
    );
}

#[test]
fn gemini_prefix_and_models_path() {
    let names = ["gemini/gemini-2.5-pro", "gemini-1.5-flash"];
    let p = table(&names);
    assert_eq!(
        priced_as(&p, "gemini-2.5-pro", &names),
        Some("gemini/gemini-2.5-pro")
    );
    assert_eq!(
        priced_as(&p, "models/gemini-2.5-pro", &names),
        Some("gemini/gemini-2.5-pro")
    );
    assert_eq!(
        priced_as(&p, "gemini/gemini-1.5-flash", &names),
        Some("gemini-1.5-flash")
    );
    assert!(p.price("gemini-2.5-pro-preview").is_none());
}

#[test]
fn date_suffix_falls_back_only_when_the_dated_name_is_absent() {
    let names = [
        "claude-sonnet-4",
        "claude-sonnet-4-20250514",
        "gpt-4o",
        "claude-3-5-sonnet-v2",
    ];
    let p = table(&names);
    // The exact dated name wins over its alias.
    assert_eq!(
        priced_as(&p, "claude-sonnet-4-20250514", &names),
        Some("claude-sonnet-4-20250514")
    );
    // Another date of the same model: the undated alias.
    assert_eq!(
        priced_as(&p, "claude-sonnet-4-20260101", &names),
        Some("claude-sonnet-4")
    );
    assert_eq!(priced_as(&p, "gpt-4o-2024-08-06", &names), Some("gpt-4o"));
    assert_eq!(
        priced_as(&p, "claude-3-5-sonnet-v2@20241022", &names),
        Some("claude-3-5-sonnet-v2")
    );
    // Not a date: a version number stays.
    assert!(p.price("gpt-4o-1234").is_none());
    assert!(p.price("claude-sonnet-4-12345678").is_none());
}

#[test]
fn never_a_loose_match() {
    let names = [
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1-20250805",
        "gpt-4o",
        "gpt-4",
    ];
    let p = table(&names);
    for m in [
        // Prefixes, suffixes and substrings of priced names, and names containing them:
        "claude-sonnet",
        "sonnet",
        "claude-opus-4-20250514",
        "claude-opus-4",
        "claude-opus-latest",
        "my-claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929-fast",
        "gpt-4o-mini",
        "gpt-4-turbo",
        "gpt",
        "",
    ] {
        assert!(p.price(m).is_none(), "{m:?} must not be priced");
    }
    // Any name, however odd, is looked up without panicking.
    for m in [
        "模型-20250101",
        "é-2025-01-01",
        "ü@20250101",
        "us.",
        "anthropic.-v1:0",
        "-v:",
    ] {
        assert!(p.price(m).is_none(), "{m:?}");
    }
    // An undated alias is its own dated snapshot, not a loose match: `claude-opus-4-1` is
    // Anthropic's alias of `claude-opus-4-1-20250805`.
    assert_eq!(
        priced_as(&p, "claude-sonnet-4-5", &names),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(
        priced_as(&p, "claude-opus-4-1", &names),
        Some("claude-opus-4-1-20250805")
    );
    // gpt-4o and gpt-4 stay apart.
    assert_eq!(priced_as(&p, "gpt-4o", &names), Some("gpt-4o"));
    assert_eq!(priced_as(&p, "gpt-4", &names), Some("gpt-4"));
}

#[test]
fn reload_refuses_an_empty_or_bad_table() {
    assert!(matches!(
        Pricing::parse_table(b"{}", "t"),
        Err(PricingError::Empty(_))
    ));
    assert!(matches!(
        Pricing::parse_table(b"{\"a\":", "t"),
        Err(PricingError::Parse(..))
    ));
    assert!(Pricing::parse_table(
        br#"{"m":{"input_cost_per_token":1e-6,"output_cost_per_token":1e-6}}"#,
        "t"
    )
    .is_ok());
}

fn setup(overrides: &str, action: UnpricedAction, fallback: Option<&str>) -> Arc<PricingSetup> {
    Arc::new(PricingSetup {
        overrides: Overrides::parse(overrides.as_bytes()).unwrap(),
        unpriced: action,
        fallback_model: fallback.map(str::to_string),
    })
}

#[test]
fn provider_entries_price_the_anthropic_names_they_carry() {
    let names = [
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "vertex_ai/claude-3-5-haiku@20241022",
        "us.anthropic.claude-sonnet-9-20300101-v1:0",
        "vertex_ai/claude-haiku-9@20300101",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
    ];
    let p = table(&names);
    for (model, entry) in [
        // LiteLLM dropped the Anthropic names: the global Bedrock entry carries their price.
        ("claude-opus-4-1-20250805", names[0]),
        ("claude-opus-4-1", names[0]),
        ("claude-opus-4-1@20250805", names[0]),
        ("vertex_ai/claude-opus-4-1@20250805", names[0]),
        // …the regional entry prices only its own id (it carries a premium).
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", names[1]),
        ("eu.anthropic.claude-opus-4-1-20250805-v1:0", names[0]),
        (
            "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
            names[1],
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
            names[0],
        ),
        // Bedrock before Vertex when both carry a name.
        ("claude-3-5-haiku-20241022", names[2]),
        ("claude-3-5-haiku-latest", names[2]),
        ("claude-haiku-9-20300101", names[5]),
        ("claude-haiku-9", names[5]),
        // The undated alias is the newest snapshot.
        ("claude-3-5-sonnet", names[7]),
        ("claude-3-5-sonnet-latest", names[7]),
        ("claude-3-5-sonnet-20240620", names[6]),
    ] {
        assert_eq!(priced_as(&p, model, &names), Some(entry), "{model}");
    }
    // A regional entry alone never prices the Anthropic name.
    assert!(p.price("claude-sonnet-9-20300101").is_none());
    assert!(p.price("claude-sonnet-9").is_none());
}

#[test]
fn family_aliases_follow_alias_of() {
    let p = Pricing::from_json(
        br#"{"claude-opus-9":{"input_cost_per_token":5e-6,"output_cost_per_token":2.5e-5},
             "claude-opus-latest":{"alias_of":"claude-opus-9"},
             "vertex_ai/claude-opus-latest":{"alias_of":"claude-opus-latest"},
             "claude-nothing-latest":{"alias_of":"claude-nothing"}}"#,
    )
    .unwrap();
    assert_eq!(p.price("claude-opus-latest").unwrap().input, 5_000.0);
    assert_eq!(
        p.price("vertex_ai/claude-opus-latest").unwrap().input,
        5_000.0
    );
    assert!(p.price("claude-nothing-latest").is_none());
    assert!(p.price("claude-opus").is_none(), "an alias is not a prefix");
}

#[test]
fn long_context_rates_and_limits_are_read() {
    let p = Pricing::from_json(
        br#"{"claude-long":{"input_cost_per_token":3e-6,"output_cost_per_token":1.5e-5,
               "input_cost_per_token_above_200k_tokens":6e-6,
               "cache_creation_input_token_cost_above_1hr_above_200k_tokens":1.3e-5,
               "max_input_tokens":1000000,"max_tokens":64000},
             "gem-long":{"input_cost_per_token":1e-6,"output_cost_per_token":8e-6,
               "cache_read_input_token_cost":1e-7,
               "input_cost_per_token_above_200k_tokens":2e-6,"output_cost_per_token_above_200k_tokens":1.2e-5,
               "max_input_tokens":"lots","max_output_tokens":65535.0},
             "short":{"input_cost_per_token":1e-6,"output_cost_per_token":1e-6}}"#,
    )
    .unwrap();
    let c = p.price("claude-long").unwrap();
    assert_eq!(
        c.above_200k,
        Some(Rates {
            input: 6_000.0,
            output: 22_500.0,
            cache_write_5m: 7_500.0,
            cache_write_1h: 13_000.0,
            cache_read: 600.0,
        })
    );
    assert_eq!(
        (c.max_input_tokens, c.max_output_tokens),
        (Some(1_000_000), Some(64_000))
    );
    assert_eq!(c.rates_for(200_000), c.base());
    assert_eq!(c.rates_for(200_001).input, 6_000.0);
    let g = p.price("gem-long").unwrap();
    let long = g.above_200k.unwrap();
    assert_eq!((long.output, long.cache_read), (12_000.0, 200.0));
    assert_eq!(
        (g.max_input_tokens, g.max_output_tokens),
        (None, Some(65_535))
    );
    let s = p.price("short").unwrap();
    assert_eq!(
        s.rates_for(10_000_000),
        s.base(),
        "no long rates: base rates"
    );
}

#[test]
fn overrides_merge_field_by_field() {
    let raw = br#"{"claude-a":{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6,"max_input_tokens":1000,"litellm_provider":"anthropic"},
                   "claude-b":{"input_cost_per_token":"broken"}}"#;
    let s = setup(
        r#"{"claude-a":{"output_cost_per_token":3e-6,"input_cost_per_token_above_200k_tokens":2e-6},
            "claude-b":{"input_cost_per_token":4e-6,"output_cost_per_token":5e-6},
            "claude-new-20300101":{"input_cost_per_token":7e-6,"output_cost_per_token":8e-6,"litellm_provider":"anthropic","mode":"chat"}}"#,
        UnpricedAction::Fallback,
        None,
    );
    let p = Pricing::build(raw, s).unwrap();
    let a = p.price("claude-a").unwrap();
    assert_eq!(
        (a.input, a.output),
        (1_000.0, 3_000.0),
        "input kept, output replaced"
    );
    assert_eq!(a.max_input_tokens, Some(1000));
    assert_eq!(a.above_200k.unwrap().input, 2_000.0);
    assert_eq!(p.price("claude-b").unwrap().input, 4_000.0);
    assert_eq!(p.price("claude-new").unwrap().input, 7_000.0);
    assert_eq!(p.source_models(), 1, "the table itself prices one model");
    assert_eq!(
        p.claude_models(),
        &["claude-a".to_string(), "claude-new-20300101".to_string()]
    );
    // A reload keeps the overrides.
    let p2 = Pricing::reload(
        br#"{"claude-a":{"input_cost_per_token":9e-6,"output_cost_per_token":9e-6}}"#,
        "t",
        &p,
    )
    .unwrap();
    let a2 = p2.price("claude-a").unwrap();
    assert_eq!((a2.input, a2.output), (9_000.0, 3_000.0));
    assert!(p2.price("claude-new-20300101").is_some());
}

#[test]
fn bad_overrides_are_refused_with_a_reason() {
    for (raw, why) in [
        ("[1]", "not a JSON object"),
        (r#"{"m": 1}"#, "is not an object"),
        (
            r#"{"m": {"input_cost_per_token": "1e-6"}}"#,
            "must be a number",
        ),
        (r#"{"m": {"input_cost_per_token": -1}}"#, "must be a number"),
        (
            r#"{"m": {"input_cost_per_tokens": 1e-6}}"#,
            "not a price this relay reads",
        ),
        (r#"{"m": {"mode": "chat"}}"#, "sets no price"),
        (r#"{"m": {"alias_of": 3}}"#, "must be a string"),
    ] {
        let e = Overrides::parse(raw.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{raw}: {e}");
        assert!(!e.contains('\n'));
    }
    assert!(Overrides::parse(br#"{"m": {"alias_of": "n"}, "k": {"max_tokens": 5}}"#).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    assert!(Overrides::load(&missing, false).unwrap().is_empty());
    assert!(Overrides::load(&missing, true)
        .unwrap_err()
        .contains("cannot read"));
}

#[test]
fn the_fallback_model_is_resolved_against_each_table() {
    let raw = br#"{"claude-x":{"input_cost_per_token":1e-6,"output_cost_per_token":2e-6}}"#;
    // Named and priced.
    let p = Pricing::build(raw, setup("{}", UnpricedAction::Refuse, Some("claude-x"))).unwrap();
    let policy = p.resolve_unpriced(None).unwrap();
    assert_eq!(policy.action, UnpricedAction::Refuse);
    assert_eq!(
        (policy.fallback_model.as_str(), policy.fallback_price.input),
        ("claude-x", 1_000.0)
    );
    // Named but absent: the start stops; a reload keeps the last known price.
    let s = setup("{}", UnpricedAction::Fallback, Some("claude-y"));
    let p = Pricing::build(raw, s.clone()).unwrap();
    assert!(
        matches!(p.resolve_unpriced(None), Err(PricingError::FallbackModel(m)) if m == "claude-y")
    );
    let known = UnpricedPolicy {
        fallback_model: "claude-y".into(),
        ..UnpricedPolicy::built_in(UnpricedAction::Fallback)
    };
    assert_eq!(p.resolve_unpriced(Some(&known)).unwrap(), known);
    // Not named: the default Sonnet, else its built-in price.
    let p = Pricing::build(raw, setup("{}", UnpricedAction::Fallback, None)).unwrap();
    assert_eq!(
        p.resolve_unpriced(None).unwrap().fallback_price,
        FALLBACK_PRICE
    );
}

#[test]
fn metric_labels_come_from_the_table_only() {
    let p = table(&["claude-sonnet-4-5-20250929", "gpt-4o"]);
    assert_eq!(p.metric_label("gpt-4o"), "gpt-4o");
    assert_eq!(
        p.metric_label("claude-sonnet-4-5-20250929"),
        "claude-sonnet-4-5-20250929"
    );
    // Priced through a wrapper: labelled by a table name, never by what the client sent.
    let wrapped = p.metric_label("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_ne!(wrapped, "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert!(wrapped.starts_with("claude-sonnet-4-5"), "{wrapped}");
    // Any other date of a model is one label, not one per date.
    let a = p.metric_label("claude-sonnet-4-5-20990101");
    let b = p.metric_label("claude-sonnet-4-5-20990102");
    assert_eq!(a, b);
    assert_ne!(a, "claude-sonnet-4-5-20990101");
    for junk in ["", "random-model-7f3a", "gpt-4o-evil", "claude-nonexistent"] {
        assert_eq!(p.metric_label(junk), "other", "{junk}");
    }
}
