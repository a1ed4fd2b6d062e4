//! Moving a request to its upstream and the answer back.
//!
//! - `passthrough`: same protocol in and out. The body goes upstream unchanged (but for the
//!   edits of `shape`), the answer's bytes come back as they arrive, and usage is tapped on the
//!   side.
//! - `shape`: the few edits a passthrough body gets (the granted output limit, the usage
//!   report of OpenAI streams).
//! - `stream`: a streamed answer on its way (taps, idle and write timeouts, accounting once);
//!   `delivered`: what it delivered, the estimate of a cut stream.
//! - `sse`: the one SSE line splitter; `usage`: what an answer says was used.
//! - `error`: failures rendered in the caller's protocol.
//!
//! Conversion between protocols (typed structs both ways) will live in `convert/`, apart from
//! the passthrough path.

pub mod attempts;
pub mod convert;
pub mod delivered;
pub mod error;
pub mod passthrough;
pub mod preview;
pub mod protocol;
pub mod shape;
pub mod sse;
pub mod stream;
#[cfg(test)]
pub(crate) mod test_strategies;
pub mod usage;
