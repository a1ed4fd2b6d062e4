//! Who is calling: client API keys (`api_key`) and admin sessions (`admin`).

pub mod admin;
pub mod api_key;
pub mod key_cache;
pub mod throttle;
