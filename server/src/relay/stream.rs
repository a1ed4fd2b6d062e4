//! A streamed answer on its way to the client: the bytes are forwarded as they arrive, usage
//! and delivered content are tapped on the side, and the answer is accounted once when it
//! ends — completed, cut by the upstream, idle too long, abandoned by the client, or dropped
//! because the client stopped reading (`CLIENT_WRITE_TIMEOUT_SECS`).
//!
//! A stream that ends before the upstream reported its final usage is billed by the documented
//! estimate (`delivered::cut_stream_usage`).

use std::{
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use app::domain::TokenUsage;
use bytes::Bytes;
use futures_util::{stream::BoxStream, Stream};
use parking_lot::Mutex;
use std::future::Future;
use tokio::time::Sleep;

use super::{
    delivered::{cut_stream_usage, DeliveredContent},
    passthrough::Finisher,
    protocol::Protocol,
    shape::UsageChunkFilter,
    usage::{LastUsage, StreamUsage},
};

/// Reads usage from a stream in its protocol.
enum Tap {
    Anthropic(StreamUsage),
    Last(LastUsage),
}

impl Tap {
    fn new(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Anthropic => Tap::Anthropic(StreamUsage::default()),
            Protocol::OpenAi | Protocol::Gemini => Tap::Last(LastUsage::default()),
        }
    }
    fn feed(&mut self, chunk: &[u8]) {
        match self {
            Tap::Anthropic(t) => t.feed(chunk),
            Tap::Last(t) => t.feed(chunk),
        }
    }
    fn usage(&self) -> TokenUsage {
        match self {
            Tap::Anthropic(t) => t.total(),
            Tap::Last(t) => t.usage.unwrap_or_default(),
        }
    }
    fn take_model(&mut self) -> Option<String> {
        match self {
            Tap::Anthropic(t) => t.model.take(),
            Tap::Last(t) => t.model.take(),
        }
    }
    /// The upstream reported the answer's final usage.
    fn final_usage(&self) -> bool {
        match self {
            Tap::Anthropic(t) => t.saw_message_stop || t.saw_final_delta,
            // OpenAI and Gemini report usage once, at the end.
            Tap::Last(t) => t.usage.is_some(),
        }
    }
}

/// What the body and the write-timeout watchdog share.
struct Live {
    /// The upstream body; dropping it cancels the upstream request.
    inner: Option<BoxStream<'static, Result<Bytes, std::io::Error>>>,
    tap: Tap,
    delivered: DeliveredContent,
    /// Takes out what the relay's own `include_usage` added (OpenAI Chat streams).
    filter: Option<UsageChunkFilter>,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    ended: bool,
    finisher: Option<Finisher>,
    /// Set when a chunk went out and the body was not polled since: the client has not taken
    /// it yet.
    unread_since: Option<Instant>,
    /// Output limit the request ran with and the prompt's token estimate, for the estimate.
    output_limit: Option<u64>,
    input_estimate: u64,
}

impl Live {
    fn finish(&mut self, outcome: &'static str) {
        self.ended = true;
        // Dropping the upstream body cancels the upstream request at once.
        self.inner = None;
        if let Some(f) = self.finisher.take() {
            let model = self.tap.take_model();
            let reported = self.tap.usage();
            let (usage, estimated) = if self.tap.final_usage() {
                (reported, false)
            } else {
                let u = cut_stream_usage(
                    reported,
                    self.delivered.bytes,
                    self.output_limit,
                    self.input_estimate,
                );
                (u, true)
            };
            f.account(usage, model, outcome, estimated);
        }
    }
}

/// The upstream SSE body on its way to the client.
pub struct TappedStream {
    live: Arc<Mutex<Live>>,
    protocol: Protocol,
    /// Wakes the watchdog early when the stream ends.
    done: Arc<tokio::sync::Notify>,
}

pub struct StreamSetup {
    pub protocol: Protocol,
    pub idle: Duration,
    pub write_timeout: Duration,
    pub strip_usage: bool,
    pub output_limit: Option<u64>,
    pub input_estimate: u64,
}

impl TappedStream {
    pub(super) fn new(
        inner: BoxStream<'static, Result<Bytes, std::io::Error>>,
        setup: StreamSetup,
        finisher: Finisher,
    ) -> Self {
        let live = Arc::new(Mutex::new(Live {
            inner: Some(inner),
            tap: Tap::new(setup.protocol),
            delivered: DeliveredContent::new(setup.protocol),
            filter: setup.strip_usage.then(UsageChunkFilter::default),
            idle: setup.idle,
            sleep: Box::pin(tokio::time::sleep(setup.idle)),
            ended: false,
            finisher: Some(finisher),
            unread_since: None,
            output_limit: setup.output_limit,
            input_estimate: setup.input_estimate,
        }));
        let done = Arc::new(tokio::sync::Notify::new());
        if !setup.write_timeout.is_zero() {
            tokio::spawn(watchdog(
                Arc::downgrade(&live),
                done.clone(),
                setup.write_timeout,
            ));
        }
        TappedStream {
            live,
            protocol: setup.protocol,
            done,
        }
    }

    /// After headers went out, a failure can only be told inside the stream.
    fn error_event(protocol: Protocol, kind: &str, message: &str) -> Bytes {
        let status = axum::http::StatusCode::BAD_GATEWAY;
        let data = protocol.error_body(status, kind, message, None);
        match protocol {
            Protocol::Anthropic => Bytes::from(format!("event: error\ndata: {data}\n\n")),
            Protocol::OpenAi | Protocol::Gemini => Bytes::from(format!("data: {data}\n\n")),
        }
    }
}

/// Drops a stream whose client has not taken a chunk for `timeout`: the upstream is cancelled,
/// the slots released, and what was delivered billed. A client that does not read leaves the
/// body unpolled, so only a task outside it can tell.
async fn watchdog(live: Weak<Mutex<Live>>, done: Arc<tokio::sync::Notify>, timeout: Duration) {
    let mut next = tokio::time::Instant::now() + timeout;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = done.notified() => return,
        }
        let Some(live) = live.upgrade() else { return };
        let mut l = live.lock();
        if l.ended {
            return;
        }
        match l.unread_since {
            Some(since) if since.elapsed() >= timeout => {
                tracing::warn!(
                    unread_secs = since.elapsed().as_secs(),
                    "client stopped reading; stream dropped"
                );
                l.finish("client_write_timeout");
                return;
            }
            Some(since) => next = tokio::time::Instant::from_std(since + timeout),
            None => next = tokio::time::Instant::now() + timeout,
        }
    }
}

impl Stream for TappedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let protocol = self.protocol;
        let mut l = self.live.lock();
        l.unread_since = None;
        loop {
            if l.ended {
                return Poll::Ready(None);
            }
            let Some(inner) = l.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(f) = l.finisher.as_mut() {
                        f.first_byte();
                    }
                    l.tap.feed(&chunk);
                    l.delivered.feed(&chunk);
                    let deadline = tokio::time::Instant::now() + l.idle;
                    l.sleep.as_mut().reset(deadline);
                    let out = match l.filter.as_mut() {
                        Some(f) => f.filter(&chunk),
                        None => chunk,
                    };
                    if out.is_empty() {
                        continue;
                    }
                    l.unread_since = Some(Instant::now());
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(Some(Err(_))) => {
                    l.finish("upstream_cut");
                    return Poll::Ready(Some(Ok(Self::error_event(
                        protocol,
                        "api_error",
                        "Upstream connection error",
                    ))));
                }
                Poll::Ready(None) => {
                    let rest = l.filter.as_mut().map(UsageChunkFilter::finish);
                    let outcome = if l.tap.final_usage() {
                        "completed"
                    } else {
                        "upstream_ended_early"
                    };
                    l.finish(outcome);
                    return match rest.filter(|r| !r.is_empty()) {
                        Some(r) => Poll::Ready(Some(Ok(r))),
                        None => Poll::Ready(None),
                    };
                }
                Poll::Pending => {
                    if l.sleep.as_mut().poll(cx).is_ready() {
                        l.finish("upstream_idle_timeout");
                        return Poll::Ready(Some(Ok(Self::error_event(
                            protocol,
                            "timeout_error",
                            "Upstream timeout",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for TappedStream {
    /// The client went away before the end: the upstream request is dropped (which cancels
    /// it), and what was delivered is billed.
    fn drop(&mut self) {
        let mut l = self.live.lock();
        if !l.ended {
            l.finish("client_disconnected");
        }
        drop(l);
        self.done.notify_one();
    }
}
