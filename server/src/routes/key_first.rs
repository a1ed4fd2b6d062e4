//! The relay routes that take a body check the key first, from the headers or the query: a
//! request without a valid key is refused (401 in its caller's protocol) before a byte of its
//! body is read, so strangers cannot make the relay buffer and parse `REQUEST_MAX_SIZE_MB`.
//! A key that passes is kept in memory (`auth::key_cache`), so the handler's own check that
//! follows costs no store round trip.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};
use futures_util::StreamExt;

use crate::{auth::api_key::authenticate_relay, relay::protocol::Protocol, state::AppState};

/// What a refused request may still send is read and dropped, at most this much for at most
/// this long, after the refusal was answered: a client in the middle of an upload then reads
/// the 401 instead of a connection reset.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match authenticate_relay(&state, &parts.headers, parts.uri.query()).await {
        Ok(_) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => {
            let mut resp = e.respond(Protocol::of_path(parts.uri.path()));
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            tokio::spawn(drain(body));
            resp
        }
    }
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}
