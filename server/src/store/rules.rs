//! The decisions the engines apply atomically, handed to them when they are opened: the
//! embedded engine calls the pure functions under its lock, the Redis engine runs their Lua
//! mirrors. The rules live above the store (`limits::admission`, `scheduler::pick`,
//! `auth::throttle`, each with its Lua beside it); `crate::rules` gathers them into this
//! struct, so the store never imports the layers that use it.

use std::time::Duration;

use super::{limits, scheduling, sessions};

#[derive(Clone, Copy)]
pub struct Rules {
    /// May this key make this request, and what is reserved (`limits::admission::decide`).
    pub admit: fn(&limits::Plan, &limits::Snapshot, i64) -> limits::Verdict,
    /// Its Lua mirror (`limits/admit.lua`) and the settlement (`limits/settle.lua`).
    pub admit_lua: &'static str,
    pub settle_lua: &'static str,
    /// Which account serves the request (`scheduler::pick::decide`).
    pub pick: fn(&scheduling::Snapshot, i64) -> scheduling::Decision,
    /// Its Lua mirror (`scheduler/pick.lua`).
    pub pick_lua: &'static str,
    /// A login-throttle counter after one more failure (`auth::throttle::after_failure`).
    pub after_login_failure: fn(Option<sessions::Counter>, u64) -> sessions::Counter,
    /// Its Lua mirror (`auth/login_failure.lua`).
    pub login_failure_lua: &'static str,
    /// How long a login-throttle counter lives after its last failure.
    pub forget_login_failures_after: Duration,
}
