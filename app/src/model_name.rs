//! One name per model, for everything that restricts or groups models: a key's model
//! blacklist, per-model cost limits, the weekly Claude limit and the model families. Clients
//! name the same model many ways — dated (`claude-opus-4-1-20250805`), Vertex
//! (`claude-opus-4-1@20250805`), Bedrock (`us.anthropic.claude-opus-4-1-20250805-v1:0`), an
//! inference-profile ARN, another case — and a restriction written for one form must hold for
//! all of them. Records and logs keep the name the client sent.
//!
//! The rule, applied in this order:
//! - trimmed and lowercased;
//! - an ARN (`arn:…:inference-profile/<id>`, `arn:…:foundation-model/<id>`) becomes its last
//!   segment;
//! - the prefixes `models/`, `anthropic/`, `vertex_ai/` go;
//! - a Bedrock region prefix (`us.`, `eu.`, `apac.`, `global.`, `jp.`, `au.`, `us-gov.`, `ca.`)
//!   goes, then `anthropic.`;
//! - then, repeatedly from the end: a bracket suffix (`[1m]`), a Bedrock version (`-v1:0`),
//!   `-latest`, a release date (`-20250805`, `@20250805`, `-2024-08-06`).
//!
//! So `claude-3-5-sonnet-20240620` and `claude-3-5-sonnet-20241022` are one name for
//! restrictions: a restriction on either holds for both.

use std::borrow::Cow;

/// Model names longer than this are refused by the relay routes (ARNs included).
pub const MAX_MODEL_NAME_LEN: usize = 256;

/// The normalised name of `model` (see the module docs). Borrows when nothing needs
/// lowercasing, so a name that is already normal costs no allocation.
pub fn normalize_model(model: &str) -> Cow<'_, str> {
    let trimmed = model.trim();
    if trimmed.chars().any(char::is_uppercase) {
        let lower = trimmed.to_lowercase();
        let core = strip(&lower);
        return Cow::Owned(core.to_string());
    }
    Cow::Borrowed(strip(trimmed))
}

/// Whether `model` matches a restriction `pattern`: both normalised, and a pattern ending in
/// `*` is a prefix of the normalised name.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    let name = normalize_model(model);
    match pattern.trim().strip_suffix('*') {
        Some(prefix) => name.starts_with(&*normalize_prefix(prefix)),
        None => normalize_model(pattern) == name,
    }
}

/// A pattern's prefix: lowercased and stripped of the leading forms only (its end is where
/// the prefix stops, not a suffix to remove).
fn normalize_prefix(prefix: &str) -> Cow<'_, str> {
    let trimmed = prefix.trim();
    if trimmed.chars().any(char::is_uppercase) {
        let lower = trimmed.to_lowercase();
        return Cow::Owned(strip_front(&lower).to_string());
    }
    Cow::Borrowed(strip_front(trimmed))
}

/// A model name a relay route accepts: letters, digits and `. _ - : / @ [ ]` (what Bedrock ids
/// and ARNs need), no `..`, at most `MAX_MODEL_NAME_LEN` bytes. Anything else never reaches an
/// upstream URL.
pub fn is_valid_model_name(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= MAX_MODEL_NAME_LEN
        && !model.contains("..")
        && model.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@' | b'[' | b']')
        })
}

const PREFIXES: [&str; 3] = ["models/", "anthropic/", "vertex_ai/"];
const REGIONS: [&str; 8] = [
    "us.", "eu.", "apac.", "global.", "jp.", "au.", "us-gov.", "ca.",
];

fn strip(lower: &str) -> &str {
    strip_back(strip_front(lower))
}

fn strip_front(lower: &str) -> &str {
    let mut s = lower;
    if s.starts_with("arn:") {
        s = s.rsplit('/').next().unwrap_or(s);
    }
    while let Some(rest) = PREFIXES.iter().find_map(|p| s.strip_prefix(p)) {
        s = rest;
    }
    if let Some(rest) = REGIONS.iter().find_map(|r| s.strip_prefix(r)) {
        s = rest;
    }
    s.strip_prefix("anthropic.").unwrap_or(s)
}

fn strip_back(name: &str) -> &str {
    let mut s = name;
    loop {
        let next = strip_bracket(s)
            .or_else(|| strip_bedrock_version(s))
            .or_else(|| s.strip_suffix("-latest"))
            .or_else(|| strip_date(s));
        match next {
            Some(n) if !n.is_empty() => s = n,
            _ => return s,
        }
    }
}

/// `claude-sonnet-4-5[1m]` → `claude-sonnet-4-5`.
fn strip_bracket(s: &str) -> Option<&str> {
    let inner = s.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    Some(&s[..open])
}

/// `…-v1:0`, `…-v2:0` → `…`.
fn strip_bedrock_version(s: &str) -> Option<&str> {
    let (head, minor) = s.rsplit_once(':')?;
    let (head, major) = head.rsplit_once("-v")?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then_some(head)
}

/// `…-20250805`, `…@20250805`, `…-2024-08-06` → `…`.
fn strip_date(s: &str) -> Option<&str> {
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    let b = s.as_bytes();
    // `-YYYY-MM-DD`
    if b.len() > 11 {
        let t = &b[b.len() - 11..];
        if t[0] == b'-'
            && digits(&t[1..5])
            && t[5] == b'-'
            && digits(&t[6..8])
            && t[8] == b'-'
            && digits(&t[9..11])
            && t[1..3] == *b"20"
        {
            return Some(&s[..s.len() - 11]);
        }
    }
    // `-YYYYMMDD` or `@YYYYMMDD`
    if b.len() > 9 {
        let t = &b[b.len() - 9..];
        if matches!(t[0], b'-' | b'@') && digits(&t[1..]) && t[1..3] == *b"20" {
            return Some(&s[..s.len() - 9]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_model_is_one_name() {
        for form in [
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
            "CLAUDE-OPUS-4-1",
            " Claude-Opus-4-1-20250805 ",
            "claude-opus-4-1@20250805",
            "claude-opus-4-1-latest",
            "claude-opus-4-1[1m]",
            "claude-opus-4-1-20250805[1m]",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "eu.anthropic.claude-opus-4-1-20250805-v1:0",
            "apac.anthropic.claude-opus-4-1-20250805-v1:0",
            "global.anthropic.claude-opus-4-1-20250805-v1:0",
            "us-gov.anthropic.claude-opus-4-1-20250805-v1:0",
            "jp.anthropic.claude-opus-4-1-20250805-v2:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
            "models/claude-opus-4-1",
            "anthropic/claude-opus-4-1",
            "vertex_ai/claude-opus-4-1@20250805",
        ] {
            assert_eq!(normalize_model(form), "claude-opus-4-1", "{form}");
        }
        assert_eq!(normalize_model("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(normalize_model("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(
            normalize_model("models/gemini-2.5-pro-preview-05-06"),
            "gemini-2.5-pro-preview-05-06"
        );
        assert_eq!(normalize_model("claude-opus-4"), "claude-opus-4");
        assert_eq!(normalize_model("claude-opus-4-5"), "claude-opus-4-5");
        // Not dates: kept.
        assert_eq!(normalize_model("model-12345678"), "model-12345678");
        assert_eq!(normalize_model("gemini-1.5-pro-002"), "gemini-1.5-pro-002");
        // Nothing left to strip to: the name stays.
        assert_eq!(normalize_model("-latest"), "-latest");
    }

    #[test]
    fn a_normal_name_is_borrowed() {
        assert!(matches!(
            normalize_model("claude-opus-4-1"),
            Cow::Borrowed("claude-opus-4-1")
        ));
        assert!(matches!(
            normalize_model("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            Cow::Borrowed("claude-opus-4-1")
        ));
        assert!(matches!(normalize_model("Claude-Opus-4-1"), Cow::Owned(_)));
    }

    #[test]
    fn restrictions_match_every_form_and_nothing_else() {
        for refused in [
            "claude-opus-4-1-20250805",
            "CLAUDE-OPUS-4-1",
            "claude-opus-4-1@20250805",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
        ] {
            assert!(model_matches("claude-opus-4-1", refused), "{refused}");
            assert!(model_matches("Claude-Opus-4-1-20250805", refused), "{refused}");
        }
        for allowed in ["claude-opus-4", "claude-opus-4-5", "claude-opus-4-10"] {
            assert!(!model_matches("claude-opus-4-1", allowed), "{allowed}");
        }
        // A `*` pattern is a prefix of the normalised name.
        assert!(model_matches(
            "claude-opus-*",
            "us.anthropic.claude-opus-4-5-20251101-v1:0"
        ));
        assert!(model_matches(
            "US.Anthropic.claude-opus*",
            "claude-opus-4-5"
        ));
        assert!(!model_matches("claude-opus-*", "claude-sonnet-4-5"));
    }

    #[test]
    fn valid_names() {
        for ok in [
            "claude-opus-4-1-20250805",
            "claude-sonnet-4-5[1m]",
            "claude-opus-4-1@20250805",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
            "gemini-2.5-pro",
            "gpt-4o_mini",
        ] {
            assert!(is_valid_model_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../../v1beta/cachedContents",
            "a/../b",
            "gemini#frag",
            "gemini?x=1",
            "a b",
            "a\\b",
            "gemini%2e",
            "modèle",
            "a\nb",
            &"a".repeat(MAX_MODEL_NAME_LEN + 1),
        ] {
            assert!(!is_valid_model_name(bad), "{bad:?}");
        }
    }
}
