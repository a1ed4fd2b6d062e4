//! The conversion path: typed request and response structs both ways, and stream events
//! converted one by one. Kept apart from the passthrough path on purpose.

pub mod openai_chat;
