//! AWS Bedrock accounts: Claude models through `InvokeModel` and
//! `InvokeModelWithResponseStream`, signed with SigV4 (or a Bedrock API key as a bearer
//! token). The AWS event-stream framing of the answer is decoded into Anthropic SSE, so the
//! client and the usage tap see the Messages protocol.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::SystemTime,
};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::{engine::general_purpose::STANDARD, Engine};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{stream::BoxStream, Stream};
use serde_json::{json, Value};

use super::AccountSecrets;
use super::UpstreamError;
use crate::store::StoredAccount;

/// The Bedrock model id for a Claude model name (ids already in Bedrock form pass unchanged):
/// `claude-sonnet-4-5-20250929` → `us.anthropic.claude-sonnet-4-5-20250929-v1:0`.
pub fn model_id(model: &str, region: &str) -> String {
    if model.contains("anthropic.") || model.starts_with("arn:") {
        return model.to_string();
    }
    let geo = if region.starts_with("eu-") {
        "eu"
    } else if region.starts_with("ap-") {
        "apac"
    } else {
        "us"
    };
    format!("{geo}.anthropic.{model}-v1:0")
}

/// An AWS region as it goes into the endpoint's host name (`us-east-1`, `us-gov-west-1`).
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

pub fn endpoint(account: &StoredAccount, region: &str) -> String {
    let base = account.account.api_url.trim_end_matches('/');
    if base.is_empty() {
        format!("https://bedrock-runtime.{region}.amazonaws.com")
    } else {
        base.to_string()
    }
}

/// The Bedrock body: the Messages body without `model` and `stream`, with the Bedrock
/// `anthropic_version`.
pub fn body(messages_body: &[u8]) -> Result<Bytes, UpstreamError> {
    let mut v: Value = serde_json::from_slice(messages_body)
        .map_err(|e| UpstreamError::BadRequest(format!("Request body is not valid JSON: {e}")))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| UpstreamError::BadRequest("Request body must be an object".into()))?;
    obj.remove("model");
    obj.remove("stream");
    obj.entry("anthropic_version")
        .or_insert(json!("bedrock-2023-05-31"));
    Ok(Bytes::from(v.to_string()))
}

/// `%`-encoding for a model id in a URL path (`:` and `/` included).
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn build(
    http: &reqwest::Client,
    account: &StoredAccount,
    secrets: &AccountSecrets,
    model: &str,
    stream: bool,
    messages_body: &[u8],
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    let region = account
        .account
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".into());
    if !valid_region(&region) {
        return Err(UpstreamError::NoAccount(
            "The Bedrock account's region is invalid".into(),
        ));
    }
    let payload = body(messages_body)?;
    // Only a validated id goes into the path (the routes check the model name too), and it is
    // %-encoded as one segment.
    let id = model_id(model, &region);
    if !app::domain::is_valid_model_name(&id) {
        return Err(UpstreamError::BadRequest(
            "model: not a valid Bedrock model id".into(),
        ));
    }
    let action = if stream {
        "invoke-with-response-stream"
    } else {
        "invoke"
    };
    let url = format!(
        "{}/model/{}/{action}",
        endpoint(account, &region),
        encode_segment(&id)
    );
    let accept = if stream {
        "application/vnd.amazon.eventstream"
    } else {
        "application/json"
    };
    let mut req = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", accept);
    if let Some(token) = secrets.api_key.as_deref().filter(|t| !t.is_empty()) {
        // Bedrock API keys are bearer tokens.
        return Ok(req.bearer_auth(token).body(payload));
    }
    let (Some(akid), Some(secret)) = (
        secrets.aws_access_key_id.as_deref(),
        secrets.aws_secret_access_key.as_deref(),
    ) else {
        return Err(UpstreamError::NoAccount(
            "The Bedrock account has no credentials".into(),
        ));
    };
    let credentials = aws_credential_types::Credentials::new(
        akid,
        secret,
        secrets.aws_session_token.clone(),
        None,
        "crs-account",
    );
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(aws_sigv4::http_request::SigningSettings::default())
        .build()
        .map_err(|_| {
            UpstreamError::NoAccount("The Bedrock account's signing parameters are invalid".into())
        })?
        .into();
    let headers = [("content-type", "application/json"), ("accept", accept)];
    let signable = aws_sigv4::http_request::SignableRequest::new(
        "POST",
        url.as_str(),
        headers.into_iter(),
        aws_sigv4::http_request::SignableBody::Bytes(&payload),
    )
    .map_err(|_| UpstreamError::Unreachable)?;
    let (instructions, _) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|_| UpstreamError::NoAccount("The Bedrock request could not be signed".into()))?
        .into_parts();
    for (name, value) in instructions.headers() {
        req = req.header(name, value);
    }
    Ok(req.body(payload))
}

/// AWS event-stream frames in, Anthropic SSE out: each `chunk` event carries one Anthropic
/// event as base64 JSON; an exception becomes an SSE `error` event.
pub struct EventStreamSse {
    inner: BoxStream<'static, Result<Bytes, std::io::Error>>,
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
}

impl EventStreamSse {
    pub fn new(inner: BoxStream<'static, Result<Bytes, std::io::Error>>) -> Self {
        EventStreamSse {
            inner,
            buffer: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
        }
    }

    fn header(message: &aws_smithy_types::event_stream::Message, name: &str) -> String {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_string()))
            .unwrap_or_default()
    }

    /// Every complete frame in the buffer, as SSE text.
    fn drain(&mut self) -> Result<String, std::io::Error> {
        let mut out = String::new();
        loop {
            let frame = self
                .decoder
                .decode_frame(&mut self.buffer)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            let DecodedFrame::Complete(message) = frame else {
                return Ok(out);
            };
            let payload: Value = serde_json::from_slice(message.payload()).unwrap_or(Value::Null);
            if Self::header(&message, ":message-type") == "event" {
                let event = payload["bytes"]
                    .as_str()
                    .and_then(|b| STANDARD.decode(b).ok())
                    .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok());
                if let Some(event) = event {
                    let kind = event["type"].as_str().unwrap_or("message").to_string();
                    out.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
                }
            } else {
                let kind = Self::header(&message, ":exception-type");
                let message = payload["message"]
                    .as_str()
                    .unwrap_or("Bedrock stream error");
                let e = json!({"type": "error", "error": {"type": "api_error", "message": format!("{kind}: {message}")}});
                out.push_str(&format!("event: error\ndata: {e}\n\n"));
            }
        }
    }
}

impl Stream for EventStreamSse {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.buffer.extend_from_slice(&chunk);
                    match self.drain() {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Bytes::from(out)))),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    if self.buffer.has_remaining() {
                        // Told once: the next poll ends the stream.
                        self.buffer.clear();
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "event stream ended inside a frame",
                        ))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Encodes Anthropic events as a Bedrock event stream (the mock upstream uses it).
pub fn encode_events(events: &[Value]) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut out = Vec::new();
    for event in events {
        let payload = json!({"bytes": STANDARD.encode(event.to_string())}).to_string();
        let message = Message::new(payload.into_bytes())
            .add_header(Header::new(
                ":event-type",
                HeaderValue::String("chunk".into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ))
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String("event".into()),
            ));
        let _ = aws_smithy_eventstream::frame::write_message_to(&message, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn only_validated_ids_reach_the_path() {
        let account = StoredAccount {
            account: app::domain::Account {
                platform: app::domain::Platform::Bedrock,
                region: Some("us-east-1".into()),
                ..Default::default()
            },
            secret: String::new(),
        };
        let secrets = AccountSecrets {
            api_key: Some("bedrock-key".into()),
            ..Default::default()
        };
        let http = reqwest::Client::new();
        let body = br#"{"max_tokens":5,"messages":[]}"#;
        for bad in [
            "../../model/other",
            "anthropic.claude/../../x",
            "claude..%2F..%2Fx",
            "anthropic.claude%2e%2e",
            "claude x",
            "claude?x",
            "claude#x",
            "claude\\x",
        ] {
            assert!(
                matches!(
                    build(&http, &account, &secrets, bad, false, body),
                    Err(UpstreamError::BadRequest(_))
                ),
                "{bad}"
            );
        }
        let ok = build(
            &http,
            &account,
            &secrets,
            "claude-sonnet-4-5-20250929",
            false,
            body,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            ok.url().path(),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        );
        let mut bad_region = account.clone();
        bad_region.account.region = Some("evil.test/x#".into());
        assert!(matches!(
            build(&http, &bad_region, &secrets, "claude-x", false, body),
            Err(UpstreamError::NoAccount(_))
        ));
        assert!(valid_region("us-gov-west-1") && !valid_region("US-EAST-1"));
    }

    #[test]
    fn ids_and_bodies() {
        assert_eq!(
            model_id("claude-sonnet-4-5-20250929", "us-west-2"),
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            model_id("claude-x", "eu-central-1"),
            "eu.anthropic.claude-x-v1:0"
        );
        assert_eq!(
            model_id("anthropic.claude-v2", "us-east-1"),
            "anthropic.claude-v2"
        );
        assert_eq!(
            encode_segment("us.anthropic.c-v1:0"),
            "us.anthropic.c-v1%3A0"
        );
        let b: Value = serde_json::from_slice(
            &body(br#"{"model":"m","stream":true,"max_tokens":5,"messages":[]}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(
            b,
            json!({"max_tokens": 5, "messages": [], "anthropic_version": "bedrock-2023-05-31"})
        );
    }

    #[tokio::test]
    async fn event_stream_frames_become_sse_however_they_are_cut() {
        let events = vec![
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 3}}}),
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "h\u{e9}"}}),
            json!({"type": "message_stop"}),
        ];
        let raw = encode_events(&events);
        for split in [1, 7, raw.len()] {
            let chunks: Vec<Result<Bytes, std::io::Error>> = raw
                .chunks(split)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let sse = EventStreamSse::new(futures_util::stream::iter(chunks).boxed());
            let text: String = sse
                .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
                .collect::<Vec<_>>()
                .await
                .concat();
            assert_eq!(text.matches("event: ").count(), 3, "split {split}: {text}");
            assert!(text.starts_with("event: message_start\ndata: {"));
            assert!(text.contains("h\u{e9}"));
        }
        // A stream cut inside a frame is an error, not silence.
        let cut: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::copy_from_slice(&raw[..raw.len() - 3]))];
        let results: Vec<_> = EventStreamSse::new(futures_util::stream::iter(cut).boxed())
            .collect()
            .await;
        assert!(results.last().unwrap().is_err());
    }
}
