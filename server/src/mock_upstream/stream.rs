//! The streamed body every protocol sends: frames with optional pauses and a connection reset,
//! counted in the [`MockLog`] as started, completed or cancelled.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::HeaderValue,
    response::Response,
};
use futures_util::Stream;

use super::MockLog;

pub(super) enum Frame {
    Bytes(Bytes),
    /// Lets what came before reach the peer before the next frame.
    Pause(Duration),
    Reset,
}

pub(super) fn sse(log: Arc<MockLog>, frames: VecDeque<Frame>, delay: Option<Duration>) -> Response {
    log.streams_started.fetch_add(1, Ordering::SeqCst);
    let now = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    log.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let stream = MockStream {
        frames,
        delay,
        sleep: None,
        log,
        done: false,
    };
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

struct MockStream {
    frames: VecDeque<Frame>,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    log: Arc<MockLog>,
    done: bool,
}

impl Stream for MockStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(d) = self.delay {
            if self.frames.is_empty() {
                // fall through to completion
            } else {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
        }
        if let Some(Frame::Pause(d)) = self.frames.front() {
            let d = *d;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
            self.frames.pop_front();
        }
        match self.frames.pop_front() {
            Some(Frame::Bytes(b)) => Poll::Ready(Some(Ok(b))),
            Some(Frame::Pause(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Frame::Reset) => {
                self.done = true;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "mock reset",
                ))))
            }
            None => {
                if !self.done {
                    self.done = true;
                    self.log.streams_completed.fetch_add(1, Ordering::SeqCst);
                }
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for MockStream {
    fn drop(&mut self) {
        self.log.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.log.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}
