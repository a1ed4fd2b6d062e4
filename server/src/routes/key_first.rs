//! The relay routes that take a body check the key first, from the headers or the query: a
//! request without a valid key is refused (401 in its caller's protocol) before a byte of its
//! body is read, so strangers cannot make the relay buffer and parse `REQUEST_MAX_SIZE_MB`.
//!
//! The key that passes is handed to the handler ([`RelayKey`]), so a request authenticates
//! once. The key may be a copy from memory (`auth::key_cache`): if the request finds it out of
//! date, this layer runs the handler once more on a fresh read, with the body it kept — the
//! one place a relay request is rerun.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::{
    auth::{
        api_key::{authenticate, authenticate_relay},
        key_cache,
    },
    relay::{error::RelayError, protocol::Protocol},
    state::AppState,
    store::StoredKey,
};

/// What a refused request may still send is read and dropped, at most this much for at most
/// this long, after the refusal was answered: a client in the middle of an upload then reads
/// the 401 instead of a connection reset.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The key [`require_key`] authenticated, on its way to the handler.
#[derive(Clone)]
struct Authenticated(StoredKey);

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let found = authenticate_relay(&state.key_lookup(), &parts.headers, parts.uri.query()).await;
    let key = match found {
        Ok(key) => key,
        Err(e) => {
            let mut resp = RelayError::from(e).respond(Protocol::of_path(parts.uri.path()));
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            tokio::spawn(drain(body));
            return resp;
        }
    };
    let bytes = match read_whole(body, state.config.request_max_bytes).await {
        Whole::Read(bytes) => bytes,
        // Too large, or cut: the handler refuses it as it would any such body, once.
        Whole::Not(body) => {
            parts.extensions.insert(Authenticated(key));
            return next.run(Request::from_parts(parts, body)).await;
        }
    };
    let mut first_parts = parts.clone();
    first_parts.extensions.insert(Authenticated(key));
    let first = next
        .clone()
        .run(Request::from_parts(first_parts, Body::from(bytes.clone())))
        .await;
    let went = key_cache::FirstRun::of(&first);
    if !key_cache::run_again(&state.key_lookup(), &parts.headers, parts.uri.query(), went).await {
        return first;
    }
    // No key handed on: the handler's `RelayKey` reads it from the store, and refuses in its
    // turn (after the checks that come before it) if the key may no longer be used.
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A request body read whole, or given back as it was if it does not fit `limit` or fails.
enum Whole {
    Read(Bytes),
    Not(Body),
}

async fn read_whole(body: Body, limit: usize) -> Whole {
    let mut stream = body.into_data_stream();
    let mut read: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    loop {
        match stream.next().await {
            None => break,
            Some(Ok(chunk)) => {
                len += chunk.len();
                read.push(chunk);
                if len > limit {
                    return Whole::Not(give_back(read, Ok(stream)));
                }
            }
            Some(Err(e)) => return Whole::Not(give_back(read, Err(e))),
        }
    }
    Whole::Read(match read.len() {
        1 => read.swap_remove(0),
        _ => {
            let mut all = BytesMut::with_capacity(len);
            for chunk in read {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    })
}

/// The body as the handler would have read it: what was read, then the rest (or the error).
fn give_back(read: Vec<Bytes>, rest: Result<axum::body::BodyDataStream, axum::Error>) -> Body {
    let read = futures_util::stream::iter(read.into_iter().map(Ok::<_, axum::Error>));
    match rest {
        Ok(rest) => Body::from_stream(read.chain(rest)),
        Err(e) => Body::from_stream(read.chain(futures_util::stream::once(async { Err(e) }))),
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

/// The API key a request authenticated with: the one [`require_key`] checked, else (routes
/// without a body, and the second run of a request whose key copy was out of date) read from
/// the store. A refusal is in the caller's protocol.
pub struct RelayKey(pub StoredKey);

impl FromRequestParts<AppState> for RelayKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(Authenticated(key)) = parts.extensions.remove::<Authenticated>() {
            return Ok(RelayKey(key));
        }
        authenticate(&state.key_lookup(), &parts.headers, parts.uri.query())
            .await
            .map(RelayKey)
            .map_err(|e| {
                RelayError::from(e)
                    .respond(Protocol::of_path(parts.uri.path()))
                    .into_response()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    async fn all(body: Body) -> Result<Bytes, axum::Error> {
        axum::body::to_bytes(body, usize::MAX).await
    }

    #[tokio::test]
    async fn a_body_that_fits_is_read_whole() {
        match read_whole(chunked(&["ab", "cd", "e"]), 5).await {
            Whole::Read(b) => assert_eq!(b, "abcde"),
            Whole::Not(_) => panic!("fits"),
        }
        match read_whole(Body::from("one"), 3).await {
            Whole::Read(b) => assert_eq!(b, "one"),
            Whole::Not(_) => panic!("fits"),
        }
    }

    #[tokio::test]
    async fn a_body_too_large_is_given_back_whole() {
        let Whole::Not(body) = read_whole(chunked(&["ab", "cd", "ef", "gh"]), 3).await else {
            panic!("too large");
        };
        assert_eq!(all(body).await.expect("readable"), "abcdefgh");
    }

    #[tokio::test]
    async fn a_failing_body_fails_for_the_handler_too() {
        let failing = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("cut")),
        ]));
        let Whole::Not(body) = read_whole(failing, 100).await else {
            panic!("cut");
        };
        assert!(all(body).await.is_err());
    }
}
