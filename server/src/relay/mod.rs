//! Moving a request to its upstream and the answer back.
//!
//! - `passthrough`: same protocol in and out. The body goes upstream unchanged, the answer's
//!   bytes come back as they arrive, and usage is tapped on the side.
//! - `sse`: the one SSE line splitter; `usage`: what an answer says was used.
//! - `error`: failures rendered in the caller's protocol.
//!
//! Conversion between protocols (typed structs both ways) will live in `convert/`, apart from
//! the passthrough path.

pub mod attempts;
pub mod convert;
pub mod error;
pub mod passthrough;
pub mod preview;
pub mod protocol;
pub mod sse;
#[cfg(test)]
pub(crate) mod test_strategies;
pub mod usage;
