//! The passthrough path: send the prepared upstream request, hand a stream to `stream` (which
//! forwards it as it arrives and taps usage on the way) or read a whole answer, and account
//! once when the answer ends — completed, cut by the upstream, or abandoned by the client.

use std::time::{Duration, Instant};

use app::domain::{RequestRecord, TokenUsage};
use axum::{
    body::Body,
    http::{header, HeaderValue},
    response::Response,
};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures_util::StreamExt;

use super::{
    error::RelayError,
    protocol::Protocol,
    stream::{StreamSetup, TappedStream},
};
use crate::{
    accounting,
    limits::{self, Reservation, Settlement},
    scheduler::leases::Lease,
    state::AppState,
    store::UsageEvent,
    timestamps::format_time,
};

/// Upper bound for a buffered (non-stream) answer or error body.
const MAX_BUFFERED: usize = 64 * 1024 * 1024;

/// Who asked and who serves: what accounting needs when the answer ends.
#[derive(Clone)]
pub struct Exchange {
    pub request_id: String,
    pub key_id: String,
    pub account_id: String,
    pub model: String,
    pub endpoint: &'static str,
    pub stream: bool,
    pub started: Instant,
    /// The account's concurrency slot, released when the answer ends.
    pub lease: Option<Lease>,
    /// The service billed (`claude`, …) and the key's rate for it (rated cost = cost × rate).
    pub service: &'static str,
    pub rate: f64,
    /// The key's admission reservation, settled with the actual cost when the answer ends.
    pub reservation: Option<Reservation>,
    /// The protocol spoken: how usage is read and errors are shaped.
    pub protocol: Protocol,
    /// The request's trace span: accounting, which ends after the response, is its child.
    pub span: tracing::Span,
    /// A redacted preview of the request for its record (off by default).
    pub preview: Option<String>,
    /// The output limit the request runs with, and its prompt's token estimate: the bounds of
    /// a cut stream's estimate.
    pub output_limit: Option<u64>,
    pub input_estimate: u64,
    /// The relay asked an OpenAI Chat stream for usage the client did not ask for.
    pub strip_usage: bool,
}

/// How one upstream attempt went.
pub enum Attempt {
    /// A success is on its way to the client.
    Delivered(Response),
    /// Failed before any byte reached the client; `response` is what the client would see.
    Failed(Failed),
}

pub enum FailureKind {
    Status,
    Timeout,
    Unreachable,
    Redirect,
}

pub struct Failed {
    pub response: Response,
    pub kind: FailureKind,
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

impl Failed {
    pub fn failure(&self) -> crate::scheduler::cooldown::Failure<'_> {
        use crate::scheduler::cooldown::Failure;
        match self.kind {
            FailureKind::Status => Failure::Status {
                status: self.status,
                headers: &self.headers,
                body: &self.body,
            },
            FailureKind::Timeout => Failure::Timeout,
            FailureKind::Unreachable => Failure::Unreachable,
            FailureKind::Redirect => Failure::Redirect,
        }
    }
}

/// The relay's own time in a response, in ms (as LiteLLM's and TensorZero's overhead headers).
pub const OVERHEAD_HEADER: &str = "x-crs-overhead-ms";

/// When the upstream call started and answered, for latency metrics and the overhead header.
#[derive(Clone, Copy)]
struct Timing {
    sent: Instant,
    first_byte: Option<Instant>,
}

pub async fn send(state: &AppState, request: reqwest::RequestBuilder, ex: Exchange) -> Attempt {
    let in_flight = crate::telemetry::InFlight::start(&ex.account_id);
    let sent_at = Instant::now();
    let sent = tokio::time::timeout(state.config.upstream_first_byte_timeout, request.send()).await;
    let headers_at = Instant::now();
    let timing = Timing {
        sent: sent_at,
        first_byte: Some(headers_at),
    };
    let upstream = match sent {
        Err(_) => {
            return upstream_failure(
                state,
                &ex,
                timing,
                RelayError::UpstreamTimeout,
                "no response before the timeout",
            )
        }
        Ok(Err(e)) if e.is_timeout() => {
            return upstream_failure(
                state,
                &ex,
                timing,
                RelayError::UpstreamTimeout,
                &e.to_string(),
            )
        }
        Ok(Err(e)) => {
            return upstream_failure(
                state,
                &ex,
                timing,
                RelayError::UpstreamUnreachable,
                &e.without_url().to_string(),
            )
        }
        Ok(Ok(r)) => r,
    };
    let status = upstream.status();
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Bedrock streams come in AWS event-stream frames, decoded to SSE before anything else.
    let is_eventstream = content_type.starts_with("application/vnd.amazon.eventstream");
    let is_sse = content_type.starts_with("text/event-stream") || is_eventstream;

    if status == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        // The account's proxy refused us: our misconfiguration, not the client's to solve.
        return upstream_failure(
            state,
            &ex,
            timing,
            RelayError::UpstreamUnreachable,
            "the account's proxy refused its credentials",
        );
    }
    if status.is_success() && five_hour_warning(upstream.headers()) {
        state.notifier.notify(crate::notify::Event::new(
            crate::notify::EventKind::FiveHourWarning,
            ex.account_id.clone(),
            ex.account_id.clone(),
            ex.service,
            "the subscription's 5-hour window is nearly used up",
        ));
    }
    if status.is_redirection() {
        return redirected(state, &ex, timing, status.as_u16());
    }
    if !status.is_success() {
        let failed = upstream_error(state, upstream, &ex).await;
        failed_metrics(state, &ex, timing, failed.status);
        return Attempt::Failed(failed);
    }
    if is_sse {
        let bytes = upstream
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        let inner = if is_eventstream {
            crate::upstream::bedrock::EventStreamSse::new(bytes).boxed()
        } else {
            bytes
        };
        let setup = StreamSetup {
            protocol: ex.protocol,
            idle: state.config.upstream_idle_timeout,
            write_timeout: state.config.client_write_timeout,
            strip_usage: ex.strip_usage,
            output_limit: ex.output_limit,
            input_estimate: ex.input_estimate,
        };
        let finisher = Finisher {
            state: state.clone(),
            ex: ex.clone(),
            status: status.as_u16(),
            // The first byte of a stream is its first chunk, set when it arrives.
            timing: Timing {
                sent: sent_at,
                first_byte: None,
            },
            _in_flight: in_flight,
        };
        let stream = TappedStream::new(inner, setup, finisher);
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(OVERHEAD_HEADER, overhead_ms(&ex, sent_at, headers_at));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Attempt::Delivered(resp);
    }

    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let body = match read_body(upstream, state.config.upstream_idle_timeout).await {
        Ok(b) => b,
        Err(e) => return upstream_failure(state, &ex, timing, e, "reading the answer failed"),
    };
    let body_at = Instant::now();
    // Accounted even without usage, so the concurrency slot is always released.
    let (usage, model) = match ex.protocol {
        Protocol::Anthropic => super::usage::from_json_body(&body),
        Protocol::OpenAi | Protocol::Gemini => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| match v {
                // Gemini streams without `alt=sse` are one JSON array: the last usage counts.
                serde_json::Value::Array(items) => items
                    .iter()
                    .rev()
                    .find_map(super::usage::from_openai_or_gemini),
                v => super::usage::from_openai_or_gemini(&v),
            }),
    }
    .unwrap_or_default();
    let finisher = Finisher {
        state: state.clone(),
        ex: ex.clone(),
        status: status.as_u16(),
        timing,
        _in_flight: in_flight,
    };
    finisher.account(usage, model, "completed", false);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(OVERHEAD_HEADER, overhead_ms(&ex, sent_at, body_at));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    Attempt::Delivered(resp)
}

/// The relay's own share of the time until the response leaves: before the upstream call,
/// and after its answer (`upstream_done`) arrived.
fn overhead_ms(ex: &Exchange, sent_at: Instant, upstream_done: Instant) -> HeaderValue {
    let before = sent_at.saturating_duration_since(ex.started);
    let after = upstream_done.elapsed();
    let ms = (before + after).as_secs_f64() * 1000.0;
    HeaderValue::from_str(&format!("{ms:.3}")).unwrap_or(HeaderValue::from_static("0"))
}

/// Anthropic's unified rate-limit headers say the 5-hour window is close to its end.
fn five_hour_warning(headers: &reqwest::header::HeaderMap) -> bool {
    [
        "anthropic-ratelimit-unified-5h-status",
        "anthropic-ratelimit-unified-status",
    ]
    .iter()
    .any(|h| {
        headers
            .get(*h)
            .is_some_and(|v| v.as_bytes() == b"allowed_warning")
    })
}

fn failed_metrics(state: &AppState, ex: &Exchange, timing: Timing, status: u16) {
    crate::telemetry::relayed(crate::telemetry::Finished {
        route: ex.endpoint,
        platform: ex.service,
        model: state.pricing.load().metric_label(&ex.model),
        status,
        stream: ex.stream,
        usage: &TokenUsage::default(),
        cost_nanos: 0,
        upstream: timing.sent.elapsed(),
        first_byte: None,
        total: ex.started.elapsed(),
    });
}

fn upstream_failure(
    state: &AppState,
    ex: &Exchange,
    timing: Timing,
    err: RelayError,
    detail: &str,
) -> Attempt {
    failed_metrics(state, ex, timing, err.status().as_u16());
    tracing::warn!(
        request_id = %ex.request_id, account = %ex.account_id, error = %detail,
        "upstream request failed"
    );
    let kind = match err {
        RelayError::UpstreamTimeout => FailureKind::Timeout,
        _ => FailureKind::Unreachable,
    };
    Attempt::Failed(Failed {
        status: err.status().as_u16(),
        response: err.respond(ex.protocol),
        kind,
        headers: Default::default(),
        body: Bytes::new(),
    })
}

/// A 3xx from the upstream: not followed (the clients have no redirect policy), a 502 in the
/// caller's shape.
fn redirected(state: &AppState, ex: &Exchange, timing: Timing, code: u16) -> Attempt {
    let err = RelayError::UpstreamRedirect(code);
    failed_metrics(state, ex, timing, err.status().as_u16());
    tracing::warn!(
        request_id = %ex.request_id, account = %ex.account_id, status = code,
        "upstream answered with a redirect; not followed"
    );
    Attempt::Failed(Failed {
        status: code,
        response: err.respond(ex.protocol),
        kind: FailureKind::Redirect,
        headers: Default::default(),
        body: Bytes::new(),
    })
}

/// An upstream error answer keeps its status; a body that is not an Anthropic error (an HTML
/// page from a proxy, say) is wrapped in one.
async fn upstream_error(state: &AppState, upstream: reqwest::Response, ex: &Exchange) -> Failed {
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let retry_after = upstream.headers().get(header::RETRY_AFTER).cloned();
    let body = read_body(upstream, state.config.upstream_idle_timeout)
        .await
        .unwrap_or_default();
    tracing::warn!(
        request_id = %ex.request_id, account = %ex.account_id, status = status.as_u16(),
        "upstream answered with an error"
    );
    // Anthropic, OpenAI and Gemini errors all carry an `error` object with a message.
    let is_anthropic_error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(|e| e.get("message").is_some()));
    let mut resp = if is_anthropic_error {
        let mut r = Response::new(Body::from(body.clone()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        let message = format!("Upstream returned HTTP {}", status.as_u16());
        ex.protocol.error(status, kind, &message)
    };
    if let Some(ra) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, ra);
    }
    Failed {
        response: resp,
        kind: FailureKind::Status,
        status: status.as_u16(),
        headers,
        body,
    }
}

async fn read_body(upstream: reqwest::Response, idle: Duration) -> Result<Bytes, RelayError> {
    let mut stream = upstream.bytes_stream();
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(RelayError::UpstreamTimeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(RelayError::UpstreamUnreachable),
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > MAX_BUFFERED {
                    return Err(RelayError::UpstreamUnreachable);
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

/// Accounts a finished exchange, off the response path.
pub(super) struct Finisher {
    state: AppState,
    ex: Exchange,
    status: u16,
    timing: Timing,
    /// Counts the account's in-flight request until the answer ends.
    _in_flight: crate::telemetry::InFlight,
}

impl Finisher {
    /// A stream's first chunk arrived.
    pub(super) fn first_byte(&mut self) {
        self.timing.first_byte.get_or_insert_with(Instant::now);
    }

    /// `estimated`: the usage is the documented estimate of a cut stream.
    pub(super) fn account(
        self,
        usage: TokenUsage,
        answered_model: Option<String>,
        outcome: &'static str,
        estimated: bool,
    ) {
        let Finisher {
            state,
            ex,
            status,
            timing,
            _in_flight,
        } = self;
        let duration_ms = ex.started.elapsed().as_millis() as u64;
        let upstream = timing.sent.elapsed();
        let first_byte = timing
            .first_byte
            .map(|t| t.saturating_duration_since(timing.sent));
        // Bill the model that answered when the upstream says which; else the one asked for.
        let model = answered_model.filter(|m| !m.is_empty()).unwrap_or(ex.model);
        let (cost_nanos, fallback) = accounting::cost_nanos(&state.pricing.load(), &model, &usage);
        accounting::unpriced::seen(&state, &model, fallback);
        let lease = ex.lease.clone();
        if let Some(l) = &lease {
            state.leases.forget(l);
        }
        if let Some(l) = ex.reservation.as_ref().and_then(|r| r.lease.as_ref()) {
            state.leases.forget(l);
        }
        tracing::info!(
            request_id = %ex.request_id, key = %ex.key_id, account = %ex.account_id,
            model = %model, status, stream = ex.stream, outcome, estimated,
            input = usage.input_tokens, output = usage.output_tokens,
            cache_create = usage.cache_create_tokens(), cache_read = usage.cache_read_tokens,
            cost_nanos, upstream_ms = upstream.as_millis() as u64,
            first_byte_ms = first_byte.map(|d| d.as_millis() as u64),
            duration_ms, "request finished"
        );
        crate::telemetry::relayed(crate::telemetry::Finished {
            route: ex.endpoint,
            platform: ex.service,
            model: state.pricing.load().metric_label(&model),
            status,
            stream: ex.stream,
            usage: &usage,
            cost_nanos,
            upstream,
            first_byte,
            total: ex.started.elapsed(),
        });
        if usage.is_empty() {
            limits::release(&state, lease, ex.reservation);
            return;
        }
        let rated_cost_nanos = (cost_nanos as f64 * ex.rate).round() as u64;
        let at = Utc::now();
        let event = UsageEvent {
            record: RequestRecord {
                request_id: ex.request_id.clone(),
                timestamp: format_time(at),
                key_id: ex.key_id.clone(),
                account_id: ex.account_id.clone(),
                model: model.clone(),
                endpoint: ex.endpoint.to_string(),
                status,
                stream: ex.stream,
                usage,
                cost_nanos,
                rated_cost_nanos,
                used_fallback_pricing: fallback,
                output_limit_lowered_to: ex.reservation.as_ref().and_then(|r| r.output_limit),
                usage_estimated: estimated,
                duration_ms,
                body_preview: ex.preview,
            },
            key_id: ex.key_id,
            account_id: ex.account_id,
            service: ex.service.to_string(),
            model,
            usage,
            cost_nanos,
            at,
        };
        // Usage joins the next coalesced write; the slot and the reservation are settled now,
        // so the key's next request sees them free and its limits exact.
        state.recorder.record(event);
        limits::settle(
            &state,
            Settlement {
                leases: lease.into_iter().collect(),
                reservation: ex.reservation,
                actual_nanos: rated_cost_nanos,
                tokens: usage.total_tokens(),
            },
            tracing::info_span!(parent: &ex.span, "account"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_hour_warning_from_unified_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert!(!five_hour_warning(&h));
        h.insert(
            "anthropic-ratelimit-unified-5h-status",
            "allowed".parse().unwrap(),
        );
        assert!(!five_hour_warning(&h));
        h.insert(
            "anthropic-ratelimit-unified-5h-status",
            "allowed_warning".parse().unwrap(),
        );
        assert!(five_hour_warning(&h));
    }
}
