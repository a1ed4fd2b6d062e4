//! One relayed call, whatever its protocol: pick an account, send, and while nothing has
//! reached the client, fail over to the next account (never the same one twice). The client
//! sees the last upstream error only when every attempt failed.

use app::domain::Platform;
use axum::{http::HeaderMap, response::Response};
use bytes::Bytes;
use tracing::Instrument;

use super::{
    passthrough::{self, Attempt, Exchange},
    protocol::Protocol,
};
use crate::{
    limits::Reservation,
    relay::error::RelayError,
    scheduler::{cooldown, health, Ask},
    state::AppState,
    store::StoredKey,
    upstream,
};

/// What to send upstream, independent of the account that will serve it.
pub struct Call<'a> {
    pub protocol: Protocol,
    /// Account types that can serve the call.
    pub platforms: &'a [Platform],
    /// The client-facing endpoint, for records and logs (`/v1/messages`).
    pub endpoint: &'static str,
    /// The upstream path: `/v1/messages`, `/v1/responses`, `/v1/chat/completions`, for Gemini
    /// `<model>:<action>`, for a client-named Azure deployment
    /// `upstream::azure::with_client_deployment`.
    pub upstream_path: String,
    pub model: &'a str,
    pub stream: bool,
    pub session: Option<&'a crate::scheduler::session::Session>,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: Bytes,
    /// The output limit the request runs with (its own, or the one admission set), if known.
    pub output_limit: Option<u64>,
    /// The relay asked this OpenAI Chat stream for usage the client did not ask for.
    pub strip_usage: bool,
}

impl<'a> From<&'a Call<'_>> for upstream::Outgoing<'a> {
    fn from(c: &'a Call<'_>) -> Self {
        upstream::Outgoing {
            upstream_path: &c.upstream_path,
            model: c.model,
            stream: c.stream,
            headers: c.headers,
            query: c.query,
            body: c.body.clone(),
        }
    }
}

/// Sends the call and gives the admission reservation back if nothing was delivered.
pub async fn run(
    state: &AppState,
    key: &StoredKey,
    call: &Call<'_>,
    reservation: crate::limits::Reserved,
) -> Response {
    // From here `held` gives the reservation back if nothing is delivered.
    let reservation = reservation.take();
    let span = tracing::info_span!(
        "relay",
        route = call.endpoint,
        model = call.model,
        key = %key.key.id,
        request_id = call.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default(),
    );
    let mut held = Held {
        state,
        lease: None,
        reservation: reservation.clone(),
    };
    let result = attempts(state, key, call, reservation, &mut held)
        .instrument(span)
        .await;
    if result.is_ok() {
        // The answer's accounting settles the reservation.
        held.reservation = None;
    }
    // On an error, dropping `held` gives the reservation back.
    result.unwrap_or_else(|resp| resp)
}

/// What a request holds while no answer owns it: its admission reservation and the account
/// slot of the attempt in progress. If the request is dropped first (the client went away
/// before the answer started), both are released here; else the refresher would keep them
/// alive for ever.
struct Held<'a> {
    state: &'a AppState,
    lease: Option<crate::scheduler::leases::Lease>,
    reservation: Option<Reservation>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if (self.lease.is_some() || self.reservation.is_some())
            && tokio::runtime::Handle::try_current().is_ok()
        {
            crate::limits::release(self.state, self.lease.take(), self.reservation.take());
        }
    }
}

/// `Ok`: an answer is on its way (its accounting settles the reservation); `Err`: the error
/// the client sees.
async fn attempts(
    state: &AppState,
    key: &StoredKey,
    call: &Call<'_>,
    reservation: Option<Reservation>,
    held: &mut Held<'_>,
) -> Result<Response, Response> {
    let started = std::time::Instant::now();
    let request_id = call
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let settings = state.scheduling();
    let max_attempts = state.config.failover_max_attempts;
    let service = call
        .platforms
        .first()
        .map(|p| p.service())
        .unwrap_or("claude");
    let preview = super::preview::of(&call.body, state.config.record_body_preview_chars);
    let input_estimate = crate::limits::input_tokens_estimate(call.body.len(), None);
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<Response> = None;
    for attempt in 0..max_attempts {
        let lease_id = uuid::Uuid::new_v4().to_string();
        let ask = Ask {
            key: &key.key,
            platforms: call.platforms,
            model: call.model,
            session: call.session,
            exclude: &tried,
            lease_id: &lease_id,
            // Admission already checked a key copy from memory; else the first pick does.
            key_copy: key
                .cached_at
                .filter(|_| attempt == 0 && reservation.is_none()),
        };
        let selected = match state
            .scheduler
            .select(&state.store, &settings, &ask)
            .instrument(tracing::info_span!("schedule", attempt))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(last.unwrap_or_else(|| RelayError::from(e).respond(call.protocol)))
            }
        };
        if let Some(l) = &selected.lease {
            state.leases.hold(l.clone());
        }
        held.lease = selected.lease.clone();
        let account_id = selected.account.account.id.clone();
        let request = match upstream::request(state, &selected.account, call).await {
            Ok(r) => r,
            Err(e) => {
                held.lease = None;
                crate::limits::release(state, selected.lease, None);
                // The request itself cannot be sent (an invalid id in it): no other account
                // would fare better.
                let bad_request = matches!(e, upstream::UpstreamError::BadRequest(_));
                let e = RelayError::from(e);
                if bad_request {
                    return Err(e.respond(call.protocol));
                }
                tried.push(account_id);
                last = Some(e.respond(call.protocol));
                continue;
            }
        };
        let ex = Exchange {
            request_id: request_id.clone(),
            key_id: key.key.id.clone(),
            account_id: account_id.clone(),
            model: call.model.to_string(),
            endpoint: call.endpoint,
            stream: call.stream,
            started,
            lease: selected.lease.clone(),
            service,
            rate: key.key.service_rate(service) * state.settings.get().service_rate(service),
            reservation: reservation.clone(),
            protocol: call.protocol,
            span: tracing::Span::current(),
            preview: preview.clone(),
            output_limit: call.output_limit,
            input_estimate,
            strip_usage: call.strip_usage,
        };
        let sent = passthrough::send(state, request, ex)
            .instrument(tracing::info_span!("upstream", account = %account_id))
            .await;
        // From here the slot is released below, or by the answer's accounting.
        held.lease = None;
        match sent {
            Attempt::Delivered(resp) => return Ok(resp),
            Attempt::Failed(failed) => {
                crate::limits::release(state, selected.lease, None);
                let verdict =
                    cooldown::classify(&state.config.cooldowns, failed.failure(), call.model);
                let message =
                    String::from_utf8_lossy(&failed.body[..failed.body.len().min(500)]).to_string();
                health::report(state, &selected.account, &verdict, failed.status, &message);
                if verdict.failover && attempt + 1 < max_attempts {
                    tracing::info!(request_id = %request_id, account = %account_id, status = failed.status, "failing over to another account");
                    tried.push(account_id);
                    last = Some(failed.response);
                    continue;
                }
                return Err(failed.response);
            }
        }
    }
    Err(last.unwrap_or_else(|| RelayError::StoreUnavailable.respond(call.protocol)))
}
