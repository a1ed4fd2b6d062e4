//! Per-channel payloads and signatures. Pure functions: no I/O, so they are unit-tested here
//! and the sending side (`super`) only moves bytes.

use app::domain::WebhookChannel;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::{json, Value};
use sha2::Sha256;

use super::Event;

type HmacSha256 = Hmac<Sha256>;

/// One HTTP delivery, ready to send: the URL (possibly with a signature appended), the exact
/// body bytes (a signature may cover them) and extra headers.
#[derive(Debug, Clone)]
pub struct HttpDelivery {
    pub url: String,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Characters of a name (key, account, user, model) in a message; longer ones are cut.
pub const NAME_MAX_CHARS: usize = 200;
/// Characters of an event's message (upstream error texts can be long).
pub const MESSAGE_MAX_CHARS: usize = 1000;
/// Discord refuses a `content` over 2,000 characters, Telegram a text over 4,096.
const DISCORD_MAX_CHARS: usize = 2000;
const TELEGRAM_MAX_CHARS: usize = 4096;

/// Cuts user text to `max` characters, marking the cut.
pub fn capped(s: &str, max: usize) -> String {
    let cut = truncate(s, max);
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// Slack reads `<…>` as links and mentions (`<!channel>`, `<@U123>`, `<http://x|text>`) and
/// `&` as an entity: these three become entities, so text shows as typed and pings no one.
pub fn slack_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Discord: a zero-width space after the `@` of `@everyone` / `@here` (any case) keeps them
/// from pinging even where `allowed_mentions` is ignored; cut to Discord's limit.
pub fn discord_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let lower = rest
            .get(..8)
            .or_else(|| rest.get(..4))
            .unwrap_or("")
            .to_ascii_lowercase();
        if lower.starts_with("everyone") || lower.starts_with("here") {
            out.push('\u{200b}');
        }
    }
    out.push_str(rest);
    capped(&out, DISCORD_MAX_CHARS - 1)
}

/// Telegram: sent without `parse_mode`, so it is plain text (no Markdown or HTML to
/// escape); cut to Telegram's limit.
pub fn telegram_text(s: &str) -> String {
    capped(s, TELEGRAM_MAX_CHARS - 1)
}

/// The human line every channel shows (user text in it capped; each channel escapes it).
pub fn message_text(site_name: &str, event: &Event) -> String {
    let mut text = format!(
        "[{}] {}: {}",
        capped(site_name, NAME_MAX_CHARS),
        event.kind.title(),
        capped(&event.name, NAME_MAX_CHARS)
    );
    if !event.platform.is_empty() {
        text.push_str(&format!(" ({})", capped(&event.platform, NAME_MAX_CHARS)));
    }
    if !event.message.is_empty() {
        text.push_str(&format!(" — {}", capped(&event.message, MESSAGE_MAX_CHARS)));
    }
    text
}

/// Mail subject: `[site] Title`.
pub fn mail_subject(site_name: &str, event: &Event) -> String {
    format!("[{site_name}] {}", event.kind.title())
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// DingTalk: `base64(HMAC-SHA256(key = secret, msg = "{timestamp_ms}\n{secret}"))`.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    B64.encode(hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()))
}

/// Feishu: `base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}", msg = empty))`.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    B64.encode(hmac_sha256(key.as_bytes(), b""))
}

/// Custom channel header value: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn custom_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// Percent-encodes everything outside RFC 3986's unreserved set (base64's `+`, `/`, `=`
/// included), as a query value needs.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `k=v&k=v` (already encoded) to a URL, with `?` or `&` as its query needs.
fn append_query(url: &str, pairs: &str) -> String {
    let sep = if !url.contains('?') {
        "?"
    } else if url.ends_with('?') || url.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{url}{sep}{pairs}")
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // Serializing a `Value` built from strings cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Builds the HTTP request for every kind but `smtp`. `now_ms` is the signing clock (ms since
/// the epoch), passed in so tests can pin it. Errors are configuration problems (retrying
/// cannot fix them) and never contain the URL.
pub fn http_delivery(
    channel: &WebhookChannel,
    site_name: &str,
    event: &Event,
    now_ms: i64,
) -> Result<HttpDelivery, String> {
    let text = message_text(site_name, event);
    let secret = channel.secret.as_str();
    let mut headers = Vec::new();
    let (url, body) = match channel.kind.as_str() {
        "slack" => (channel.url.clone(), json!({ "text": slack_text(&text) })),
        "discord" => (
            channel.url.clone(),
            json!({ "content": discord_text(&text), "allowed_mentions": { "parse": [] } }),
        ),
        "wecom" => (
            channel.url.clone(),
            json!({ "msgtype": "text", "text": { "content": text } }),
        ),
        "dingtalk" => {
            let url = if secret.is_empty() {
                channel.url.clone()
            } else {
                let sign = url_encode(&dingtalk_sign(secret, now_ms));
                append_query(&channel.url, &format!("timestamp={now_ms}&sign={sign}"))
            };
            (
                url,
                json!({ "msgtype": "text", "text": { "content": text } }),
            )
        }
        "feishu" => {
            let mut body = json!({ "msg_type": "text", "content": { "text": text } });
            if !secret.is_empty() {
                let ts = now_ms.div_euclid(1000);
                body["timestamp"] = json!(ts.to_string());
                body["sign"] = json!(feishu_sign(secret, ts));
            }
            (channel.url.clone(), body)
        }
        "telegram" => {
            let mut url = Url::parse(&channel.url)
                .map_err(|_| "telegram: the URL is not valid".to_string())?;
            let chat_id = url
                .query_pairs()
                .find(|(k, _)| k == "chat_id")
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| "telegram: the URL has no chat_id query parameter".to_string())?;
            url.set_query(None);
            (
                url.to_string(),
                json!({ "chat_id": chat_id, "text": telegram_text(&text) }),
            )
        }
        "bark" => (
            channel.url.clone(),
            json!({ "title": site_name, "body": text, "group": "crs" }),
        ),
        "custom" => {
            let body = json!({
                "service": "crs",
                "type": event.kind,
                "subject": capped(&event.subject, NAME_MAX_CHARS),
                "name": capped(&event.name, NAME_MAX_CHARS),
                "platform": capped(&event.platform, NAME_MAX_CHARS),
                "message": capped(&event.message, MESSAGE_MAX_CHARS),
                "timestamp": event.at.to_rfc3339(),
                "text": text,
            });
            let bytes = to_bytes(&body);
            if !secret.is_empty() {
                headers.push(("x-crs-signature", custom_signature(secret, &bytes)));
            }
            return Ok(HttpDelivery {
                url: channel.url.clone(),
                body: bytes,
                headers,
            });
        }
        other => return Err(format!("unknown channel kind {other:?}")),
    };
    Ok(HttpDelivery {
        url,
        body: to_bytes(&body),
        headers,
    })
}

/// DingTalk, Feishu and WeCom answer 200 with an error code in the body (bad signature,
/// keyword filter, ...). Returns that error, if the body says so.
pub fn body_error(kind: &str, body: &[u8]) -> Option<String> {
    if !matches!(kind, "dingtalk" | "feishu" | "wecom") {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v
        .get("errcode")
        .or_else(|| v.get("code"))
        .or_else(|| v.get("StatusCode"))
        .and_then(Value::as_i64)?;
    if code == 0 {
        return None;
    }
    let msg = v
        .get("errmsg")
        .or_else(|| v.get("msg"))
        .or_else(|| v.get("StatusMessage"))
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(format!("{kind} error {code}: {}", truncate(msg, 200)))
}

/// Cuts text at a char boundary (error bodies are shown, not stored whole).
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What an `smtp://` / `smtps://` channel URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub from: String,
    pub to: Vec<String>,
}

/// Parses `smtp[s]://user@host:port?from=a@x&to=b@y` (`to` may repeat or be comma-separated).
pub fn parse_smtp_url(url: &str) -> Result<SmtpTarget, String> {
    let u = Url::parse(url).map_err(|_| "smtp: the URL is not valid".to_string())?;
    let tls = match u.scheme() {
        "smtp" => false,
        "smtps" => true,
        _ => return Err("smtp: the URL must start with smtp:// or smtps://".into()),
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "smtp: the URL has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port().unwrap_or(if tls { 465 } else { 25 });
    let user = percent_decode(u.username());
    let mut from = String::new();
    let mut to = Vec::new();
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "from" => from = v.trim().to_string(),
            "to" => to.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            _ => {}
        }
    }
    if from.is_empty() {
        return Err("smtp: the URL has no from= address".into());
    }
    if to.is_empty() {
        return Err("smtp: the URL has no to= address".into());
    }
    Ok(SmtpTarget {
        tls,
        host,
        port,
        user,
        from,
        to,
    })
}

/// `%XX` decoding for the URL's user part (`user%40example.com`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            // `get` rather than slicing: the two bytes may not be a char boundary.
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventKind;

    fn hostile(name: &str) -> Event {
        Event {
            kind: EventKind::RateLimited,
            subject: "acc-1".into(),
            name: name.into(),
            platform: "claude".into(),
            message: "<!channel> @everyone".into(),
            at: chrono::Utc::now(),
        }
    }

    fn channel(kind: &str, url: &str) -> WebhookChannel {
        WebhookChannel {
            kind: kind.into(),
            url: url.into(),
            ..Default::default()
        }
    }

    fn body_of(kind: &str, url: &str, event: &Event) -> Value {
        let d = http_delivery(&channel(kind, url), "crs", event, 0).expect("delivery");
        serde_json::from_slice(&d.body).expect("json")
    }

    #[test]
    fn slack_escapes_mentions_and_links() {
        assert_eq!(
            slack_text("<!channel> <@U123> <https://evil|click> a&b"),
            "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|click&gt; a&amp;b"
        );
        let v = body_of("slack", "https://hooks.slack.test/x", &hostile("<!here>"));
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!here&gt;"), "{text}");
    }

    #[test]
    fn discord_neutralises_everyone_and_here() {
        assert_eq!(discord_text("@everyone"), "@\u{200b}everyone");
        assert_eq!(discord_text("hi @Here!"), "hi @\u{200b}Here!");
        assert_eq!(discord_text("mail a@b.c"), "mail a@b.c");
        assert_eq!(discord_text("@"), "@");
        let v = body_of(
            "discord",
            "https://discord.test/api/webhooks/1/x",
            &hostile("@everyone"),
        );
        let content = v["content"].as_str().unwrap();
        assert!(!content.contains("@everyone"), "{content}");
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        // Discord's limit holds whatever the name's length.
        let v = body_of(
            "discord",
            "https://discord.test/x",
            &hostile(&"n".repeat(100_000)),
        );
        assert!(v["content"].as_str().unwrap().chars().count() <= 2000);
    }

    #[test]
    fn telegram_is_plain_text_and_capped() {
        let v = body_of(
            "telegram",
            "https://api.telegram.test/botX/sendMessage?chat_id=1",
            &hostile("*bold* <b>x</b>"),
        );
        assert!(v.get("parse_mode").is_none(), "{v}");
        assert!(v["text"].as_str().unwrap().contains("*bold* <b>x</b>"));
        assert!(telegram_text(&"t".repeat(10_000)).chars().count() <= 4096);
    }

    #[test]
    fn user_text_is_capped_everywhere() {
        let long = "x".repeat(1_000_000);
        let mut e = hostile(&long);
        e.message = long.clone();
        let text = message_text("crs", &e);
        assert!(text.chars().count() < NAME_MAX_CHARS + MESSAGE_MAX_CHARS + 100);
        let v = body_of("custom", "https://hooks.test/x", &e);
        assert_eq!(
            v["name"].as_str().unwrap().chars().count(),
            NAME_MAX_CHARS + 1
        );
        assert!(v["message"].as_str().unwrap().ends_with('…'));
        assert_eq!(capped("short", 10), "short");
    }

    fn verify(key: &[u8], msg: &[u8], sig_b64: &str) -> bool {
        let Ok(sig) = B64.decode(sig_b64) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
        mac.update(msg);
        mac.verify_slice(&sig).is_ok()
    }

    fn event() -> Event {
        Event {
            kind: EventKind::RateLimited,
            subject: "acc-1".into(),
            name: "Main".into(),
            platform: "claude".into(),
            message: "429 from upstream".into(),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn dingtalk_sign_verifies_with_its_secret_only() {
        let ts = 1_700_000_000_123;
        let sign = dingtalk_sign("SECabc", ts);
        assert_eq!(B64.decode(&sign).expect("base64").len(), 32);
        let msg = format!("{ts}\nSECabc");
        assert!(verify(b"SECabc", msg.as_bytes(), &sign));
        assert!(!verify(b"SECother", msg.as_bytes(), &sign));
        assert_ne!(sign, dingtalk_sign("SECabc", ts + 1), "timestamp is signed");
    }

    #[test]
    fn feishu_sign_verifies_with_its_secret_only() {
        let ts = 1_700_000_000;
        let sign = feishu_sign("s3cret", ts);
        assert_eq!(B64.decode(&sign).expect("base64").len(), 32);
        assert!(verify(format!("{ts}\ns3cret").as_bytes(), b"", &sign));
        assert!(!verify(format!("{ts}\nother").as_bytes(), b"", &sign));
        assert!(!verify(
            format!("{}\ns3cret", ts + 1).as_bytes(),
            b"",
            &sign
        ));
    }

    #[test]
    fn custom_signature_is_hex_hmac_of_the_body() {
        let body = br#"{"a":1}"#;
        let sig = custom_signature("k", body);
        let hex_part = sig.strip_prefix("sha256=").expect("prefix");
        assert_eq!(hex_part.len(), 64);
        let raw = hex::decode(hex_part).expect("hex");
        let mut mac = HmacSha256::new_from_slice(b"k").expect("key");
        mac.update(body);
        assert!(mac.verify_slice(&raw).is_ok());
        let mut mac = HmacSha256::new_from_slice(b"not-k").expect("key");
        mac.update(body);
        assert!(mac.verify_slice(&raw).is_err());
        assert_ne!(sig, custom_signature("k", br#"{"a":2}"#));
    }

    #[test]
    fn url_encode_escapes_base64_specials() {
        assert_eq!(url_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(append_query("http://h/x", "a=1"), "http://h/x?a=1");
        assert_eq!(append_query("http://h/x?t=1", "a=1"), "http://h/x?t=1&a=1");
        assert_eq!(append_query("http://h/x?", "a=1"), "http://h/x?a=1");
    }

    #[test]
    fn dingtalk_url_carries_timestamp_and_sign() {
        let ch = WebhookChannel {
            kind: "dingtalk".into(),
            url: "https://oapi.dingtalk.com/robot/send?access_token=T".into(),
            secret: "SEC1".into(),
            ..Default::default()
        };
        let d = http_delivery(&ch, "S", &event(), 1234).expect("delivery");
        let u = Url::parse(&d.url).expect("url");
        let q: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("access_token".into(), "T".into()));
        assert_eq!(q[1], ("timestamp".into(), "1234".into()));
        assert_eq!(q[2].0, "sign");
        assert!(verify(b"SEC1", b"1234\nSEC1", &q[2].1));
    }

    #[test]
    fn telegram_needs_a_chat_id() {
        let ch = WebhookChannel {
            kind: "telegram".into(),
            url: "https://api.telegram.org/botX/sendMessage".into(),
            ..Default::default()
        };
        let e = http_delivery(&ch, "S", &event(), 0).expect_err("no chat id");
        assert!(!e.contains("botX"), "errors never echo the URL: {e}");
    }

    #[test]
    fn message_text_shape() {
        assert_eq!(
            message_text("Site", &event()),
            "[Site] Rate limited: Main (claude) — 429 from upstream"
        );
    }

    #[test]
    fn body_errors_of_chat_apis() {
        assert!(body_error("dingtalk", br#"{"errcode":0,"errmsg":"ok"}"#).is_none());
        let e = body_error(
            "dingtalk",
            br#"{"errcode":310000,"errmsg":"sign not match"}"#,
        );
        assert!(e.expect("error").contains("310000"));
        assert!(body_error("feishu", br#"{"code":19021,"msg":"sign match fail"}"#).is_some());
        assert!(body_error("feishu", br#"{"StatusCode":0}"#).is_none());
        assert!(body_error("slack", br#"{"code":1}"#).is_none());
        assert!(body_error("wecom", b"not json").is_none());
    }

    #[test]
    fn smtp_urls() {
        let t = parse_smtp_url("smtps://me%40x.com@mail.x.com?from=a@x.com&to=b@y.com,c@y.com")
            .expect("parse");
        assert!(t.tls);
        assert_eq!(t.host, "mail.x.com");
        assert_eq!(t.port, 465);
        assert_eq!(t.user, "me@x.com");
        assert_eq!(t.to, vec!["b@y.com", "c@y.com"]);
        let t = parse_smtp_url("smtp://127.0.0.1:2525?from=a@x&to=b@y").expect("parse");
        assert!(!t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("127.0.0.1", 2525, "")
        );
        assert!(parse_smtp_url("smtp://h?to=b@y").is_err());
        assert!(parse_smtp_url("http://h?from=a@x&to=b@y").is_err());
    }
}
