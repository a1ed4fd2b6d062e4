//! A body over the limit is refused (413, in the caller's protocol) — and then read and
//! dropped: closing a connection with unread bytes in it makes the kernel send a reset, which
//! can destroy the 413 before the client reads it. A body declared too large is refused here
//! at once; one that turns out too large while read (no length declared) is refused by the
//! handler's extractor, and what it left unread is drained here. Past a bound the connection
//! is just closed, as any proxy would; a 413 always closes its connection.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::Response,
};
use futures_util::StreamExt;
use parking_lot::Mutex;

use crate::relay::{error::RelayError, protocol::Protocol};

/// Read and dropped at most (and for at most `DRAIN_TIME`) to deliver a 413 cleanly.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

pub async fn refuse_oversize(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut resp = match declared {
        Some(len) if len > limit as u64 => {
            let resp = RelayError::TooLarge.respond(Protocol::of_path(req.uri().path()));
            if len <= DRAIN_BYTES {
                drain(req.into_body()).await;
            }
            resp
        }
        Some(_) => return next.run(req).await,
        None => {
            // The handler reads through a shared handle, so that the rest can be drained.
            let (parts, body) = req.into_parts();
            let shared = Shared(Arc::new(Mutex::new(Some(body))));
            let resp = next
                .run(Request::from_parts(parts, Body::new(shared.clone())))
                .await;
            if resp.status() != StatusCode::PAYLOAD_TOO_LARGE {
                return resp;
            }
            let rest = shared.0.lock().take();
            if let Some(rest) = rest {
                drain(rest).await;
            }
            resp
        }
    };
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// A request body read by the handler while the middleware keeps a handle on it.
#[derive(Clone)]
struct Shared(Arc<Mutex<Option<Body>>>);

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.lock().as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0
            .lock()
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default()
    }
}
