//! Who is calling: client API keys (`api_key`, with keys kept from an imported deployment in
//! `legacy_keys`) and admin sessions (`admin`).

pub mod admin;
pub mod api_key;
pub mod key_cache;
pub mod legacy_keys;
pub mod throttle;
