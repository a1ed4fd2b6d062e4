//! Model names: what clients wrap around an id, and the provider-neutral form a table entry and
//! a requested model are both reduced to, so `us.anthropic.claude-x-20250101-v1:0`,
//! `claude-x@20250101` and `claude-x-20250101` meet. Every rule here drops a *known* wrapper
//! (a prefix, a version or date suffix); none matches by substring or prefix, which could price
//! one model as another.

use std::borrow::Cow;

/// Bedrock cross-region inference prefixes (`us.anthropic.claude-…`).
pub const BEDROCK_REGIONS: [&str; 8] = [
    "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.",
];

/// The id inside what a client sent: surrounding space, Gemini's `models/` path, a Bedrock ARN
/// (`arn:aws:bedrock:<region>:<account>:inference-profile/us.anthropic.claude-…` or
/// `…:foundation-model/anthropic.claude-…`) and Claude Code's `[1m]` context marker dropped.
pub fn surface(model: &str) -> &str {
    let s = model.trim();
    let s = s.strip_prefix("models/").unwrap_or(s);
    let s = if s.starts_with("arn:") {
        bedrock_arn_resource(s).unwrap_or(s)
    } else {
        s
    };
    s.strip_suffix("[1m]").unwrap_or(s)
}

/// The model id of a Bedrock inference-profile or foundation-model ARN. Other ARNs (application
/// inference profiles, provisioned models) carry opaque ids and stay as they are.
fn bedrock_arn_resource(arn: &str) -> Option<&str> {
    // arn:<partition>:bedrock:<region>:<account>:<type>/<id>; the id may hold `:` (`-v1:0`).
    let mut parts = arn.splitn(6, ':');
    let _arn = parts.next()?;
    let partition = parts.next()?;
    let service = parts.next()?;
    let (_region, _account) = (parts.next()?, parts.next()?);
    let (kind, id) = parts.next()?.split_once('/')?;
    let known = matches!(kind, "inference-profile" | "foundation-model");
    (partition.starts_with("aws") && service == "bedrock" && known && !id.is_empty()).then_some(id)
}

/// The Bedrock cross-region prefix a name starts with, if any.
pub fn bedrock_region(name: &str) -> Option<&'static str> {
    BEDROCK_REGIONS
        .iter()
        .copied()
        .find(|r| name.len() > r.len() && name.starts_with(r))
}

/// Where a table entry's price comes from, for choosing among entries that share a
/// [`canonical`] name: the lower, the closer to Anthropic's own list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The name is its own canonical form (`claude-…` as Anthropic spells it, `gpt-4o`).
    Direct,
    /// `anthropic.…` or `global.anthropic.…`: Bedrock without a regional premium.
    Bedrock,
    /// `vertex_ai/claude-…`.
    Vertex,
    /// `gemini/gemini-…`.
    Gemini,
}

/// How an entry named `name` may stand in for its canonical name: `None` for entries whose
/// price belongs to that name alone (regional Bedrock entries carry a premium, ~10%).
pub fn source(name: &str) -> Option<Source> {
    match bedrock_region(name) {
        Some("global.") => return Some(Source::Bedrock),
        Some(_) => return None,
        None => {}
    }
    if name.starts_with("anthropic.") {
        Some(Source::Bedrock)
    } else if name.starts_with("vertex_ai/") {
        Some(Source::Vertex)
    } else if name.starts_with("gemini/") {
        Some(Source::Gemini)
    } else {
        Some(Source::Direct)
    }
}

/// The provider-neutral form of a name (Anthropic's spelling for Claude):
///
/// - `vertex_ai/` is dropped, and `gemini/` before a `gemini-…` name;
/// - a Bedrock region prefix (`us.`, `eu.`, `apac.`, `global.`, …), then `anthropic.` and the
///   `-vN:M` version (`us.anthropic.claude-x-v1:0` → `claude-x`);
/// - Vertex's `@YYYYMMDD` becomes `-YYYYMMDD`, and `@default` (the newest version) is dropped.
pub fn canonical(name: &str) -> Cow<'_, str> {
    let s = name.strip_prefix("vertex_ai/").unwrap_or(name);
    let s = match s.strip_prefix("gemini/") {
        Some(rest) if rest.starts_with("gemini-") => rest,
        _ => s,
    };
    let s = bedrock_region(s).map_or(s, |r| &s[r.len()..]);
    let s = s
        .strip_prefix("anthropic.")
        .map_or(s, strip_bedrock_version);
    if let Some((head, tail)) = s.rsplit_once('@') {
        if !head.is_empty() {
            if tail == "default" {
                return Cow::Borrowed(head);
            }
            if is_date8(tail) {
                return Cow::Owned(format!("{head}-{tail}"));
            }
        }
    }
    Cow::Borrowed(s)
}

/// Whether a canonical name belongs to the Claude family (Anthropic's cache and long-context
/// ratios apply).
pub fn is_claude(canonical: &str) -> bool {
    canonical.starts_with("claude")
}

/// `claude-x-v1:0` → `claude-x` (Bedrock versions always carry the `:N` revision; a bare
/// `-v2` is part of a model's name, as in `claude-3-5-sonnet-v2`).
pub fn strip_bedrock_version(core: &str) -> &str {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match core.rsplit_once("-v") {
        Some((head, v)) if !head.is_empty() => match v.split_once(':') {
            Some((major, rev)) if number(major) && number(rev) => head,
            _ => core,
        },
        _ => core,
    }
}

fn is_date8(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) && s.starts_with("20")
}

/// A trailing release date (`-YYYYMMDD`, `-YYYY-MM-DD` or `@YYYYMMDD`): the name without it,
/// and the date as a number (for choosing the newest snapshot).
pub fn strip_date(name: &str) -> Option<(&str, u32)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let as_date = |s: &str| s.parse::<u32>().ok();
    if let Some((head, tail)) = name.rsplit_once('@') {
        if is_date8(tail) && !head.is_empty() {
            return Some((head, as_date(tail)?));
        }
    }
    let b = name.as_bytes();
    if b.len() > 9 && b[b.len() - 9] == b'-' {
        let tail = name.get(name.len() - 8..).unwrap_or_default();
        if is_date8(tail) {
            return Some((name.get(..name.len() - 9)?, as_date(tail)?));
        }
    }
    if b.len() > 11 && b[b.len() - 11] == b'-' {
        let tail = name.get(name.len() - 10..).unwrap_or_default();
        let mut parts = tail.split('-');
        if let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            if y.len() == 4
                && m.len() == 2
                && d.len() == 2
                && digits(y)
                && digits(m)
                && digits(d)
                && y.starts_with("20")
            {
                return Some((
                    name.get(..name.len() - 11)?,
                    as_date(&format!("{y}{m}{d}"))?,
                ));
            }
        }
    }
    None
}

/// `claude-3-5-haiku-latest` → `claude-3-5-haiku`.
pub fn strip_latest(name: &str) -> Option<&str> {
    name.strip_suffix("-latest").filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surface_unwraps_arns_paths_and_markers() {
        for (sent, id) in [
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
                "us.anthropic.claude-opus-4-1-20250805-v1:0",
            ),
            (
                "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
            ),
            (
                "arn:aws-us-gov:bedrock:us-gov-west-1:1:inference-profile/us-gov.anthropic.claude-x",
                "us-gov.anthropic.claude-x",
            ),
            // Opaque ids stay as sent (nothing to price them by).
            (
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123",
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc123",
            ),
            ("arn:aws:s3:::bucket/claude-x", "arn:aws:s3:::bucket/claude-x"),
            ("arn:", "arn:"),
            ("  models/gemini-2.5-pro ", "gemini-2.5-pro"),
            ("claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4-5-20250929"),
        ] {
            assert_eq!(surface(sent), id, "{sent}");
        }
    }

    #[test]
    fn canonical_names() {
        for (name, c) in [
            ("claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),
            (
                "anthropic.claude-opus-4-1-20250805-v1:0",
                "claude-opus-4-1-20250805",
            ),
            (
                "us.anthropic.claude-opus-4-1-20250805-v1:0",
                "claude-opus-4-1-20250805",
            ),
            ("global.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
            (
                "anthropic.claude-haiku-4-5@20251001",
                "claude-haiku-4-5-20251001",
            ),
            ("claude-opus-4-1@20250805", "claude-opus-4-1-20250805"),
            (
                "vertex_ai/claude-3-5-haiku@20241022",
                "claude-3-5-haiku-20241022",
            ),
            ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6"),
            (
                "claude-3-5-sonnet-v2@20241022",
                "claude-3-5-sonnet-v2-20241022",
            ),
            ("gemini/gemini-2.5-pro", "gemini-2.5-pro"),
            ("gemini/gemma-3-27b-it", "gemini/gemma-3-27b-it"),
            (
                "anthropic.claude-sonnet-4-20250514-v2",
                "claude-sonnet-4-20250514-v2",
            ),
            ("us.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
            ("claude@", "claude@"),
            ("@20250101", "@20250101"),
            ("us.", "us."),
        ] {
            assert_eq!(canonical(name), c, "{name}");
        }
        assert_eq!(source("us.anthropic.claude-x"), None, "regional premium");
        assert_eq!(source("global.anthropic.claude-x"), Some(Source::Bedrock));
        assert_eq!(source("vertex_ai/claude-x"), Some(Source::Vertex));
        assert_eq!(source("claude-x"), Some(Source::Direct));
    }

    #[test]
    fn dates_and_latest() {
        assert_eq!(
            strip_date("claude-sonnet-4-20250514"),
            Some(("claude-sonnet-4", 20250514))
        );
        assert_eq!(strip_date("gpt-4o-2024-08-06"), Some(("gpt-4o", 20240806)));
        assert_eq!(
            strip_date("claude-x@20250101"),
            Some(("claude-x", 20250101))
        );
        assert_eq!(strip_date("claude-sonnet-4-12345678"), None);
        assert_eq!(strip_date("gpt-4o-1234"), None);
        assert_eq!(strip_date("é-2025-01-01"), Some(("é", 20250101)));
        assert_eq!(strip_date("-20250101"), None);
        assert_eq!(
            strip_latest("claude-3-5-haiku-latest"),
            Some("claude-3-5-haiku")
        );
        assert_eq!(strip_latest("-latest"), None);
    }
}
