//! The login throttle's rule, as pure functions: may this sign-in be tried now, and how long
//! to wait otherwise. Two counters of failures are kept (by the store: it only counts):
//!
//! - per (username, address): after `PAIR.free` failures, each next try waits 1 s, 2 s, 4 s …
//!   up to 15 min. Only that address is slowed for that name, so a stranger cannot lock the
//!   admin out: an attack from 100 addresses leaves a sign-in from the 101st untouched;
//! - per address over all usernames (against spraying many names): the same allowance and
//!   backoff, counted over every name the address tries (a success does not clear it).
//!
//! A counter is forgotten `FORGET_AFTER` after its last failure (the store's TTL), and a
//! success clears its (username, address) counter. Usernames are kept only as a hash.

use std::{net::IpAddr, time::Duration};

use crate::crypto::sha256_hex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures before any wait.
    pub free: u32,
    /// The first wait; each further failure doubles it.
    pub base: Duration,
    pub cap: Duration,
}

/// Per (username, address).
pub const PAIR: Policy = Policy {
    free: 5,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(15 * 60),
};

/// Per address, over every username it tried.
pub const ADDRESS: Policy = Policy {
    free: 5,
    base: Duration::from_secs(1),
    cap: Duration::from_secs(15 * 60),
};

/// A counter this long without a new failure is gone (longer than the longest wait).
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

/// What the store keeps per key.
pub use crate::store::sessions::Counter;

/// The wait after `failures` failures.
pub fn backoff(policy: &Policy, failures: u32) -> Duration {
    if failures < policy.free {
        return Duration::ZERO;
    }
    let doublings = (failures - policy.free).min(30);
    policy.base.saturating_mul(1 << doublings).min(policy.cap)
}

/// How long to wait before trying again, if this counter says to wait at all.
pub fn wait(policy: &Policy, counter: Option<Counter>, now_ms: u64) -> Option<Duration> {
    let c = counter?;
    let since = Duration::from_millis(now_ms.saturating_sub(c.last_ms));
    if since >= FORGET_AFTER {
        return None;
    }
    let wait = backoff(policy, c.failures).checked_sub(since)?;
    (!wait.is_zero()).then_some(wait)
}

/// The counter after one more failure (what the engines store: Redis mirrors this in
/// `login_failure.lua`, beside this file).
pub fn after_failure(counter: Option<Counter>, now_ms: u64) -> Counter {
    let fresh =
        counter.filter(|c| Duration::from_millis(now_ms.saturating_sub(c.last_ms)) < FORGET_AFTER);
    Counter {
        failures: fresh.map_or(0, |c| c.failures).saturating_add(1),
        last_ms: now_ms,
    }
}

/// The longest of the waits the counters ask for (`keys()` order: pair, address).
pub fn decide(counters: &[Option<Counter>; 2], now_ms: u64) -> Option<Duration> {
    let pair = wait(&PAIR, counters[0], now_ms);
    let address = wait(&ADDRESS, counters[1], now_ms);
    pair.max(address)
}

/// The address as counted: IPv6 clients by their /64 (one host usually owns a whole /64).
fn address_label(client: Option<IpAddr>) -> String {
    match client {
        None => "unknown".into(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The store keys of one sign-in: (username, address) and address. The username is hashed
/// (and lowercased, as names are compared), so the store never holds what was typed.
pub fn keys(username: &str, client: Option<IpAddr>) -> [String; 2] {
    let addr = address_label(client);
    let name = sha256_hex(&username.to_lowercase());
    [format!("u:{}:{addr}", &name[..32]), format!("a:{addr}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    #[test]
    fn backoff_doubles_from_one_second_to_the_cap() {
        assert_eq!(backoff(&PAIR, 0), Duration::ZERO);
        assert_eq!(backoff(&PAIR, 4), Duration::ZERO);
        assert_eq!(backoff(&PAIR, 5), Duration::from_secs(1));
        assert_eq!(backoff(&PAIR, 6), Duration::from_secs(2));
        assert_eq!(backoff(&PAIR, 9), Duration::from_secs(16));
        assert_eq!(backoff(&PAIR, 15), Duration::from_secs(900));
        assert_eq!(backoff(&PAIR, u32::MAX), Duration::from_secs(900));
        assert_eq!(backoff(&ADDRESS, 4), Duration::ZERO);
        assert_eq!(backoff(&ADDRESS, 5), Duration::from_secs(1));
    }

    #[test]
    fn wait_counts_from_the_last_failure_and_forgets() {
        let now = 1_000_000 * S;
        assert_eq!(wait(&PAIR, None, now), None);
        let c = Counter {
            failures: 4,
            last_ms: now,
        };
        assert_eq!(wait(&PAIR, Some(c), now), None, "under the allowance");
        let c = Counter {
            failures: 7,
            last_ms: now,
        };
        assert_eq!(wait(&PAIR, Some(c), now), Some(Duration::from_secs(4)));
        assert_eq!(
            wait(&PAIR, Some(c), now + 3 * S),
            Some(Duration::from_secs(1))
        );
        assert_eq!(wait(&PAIR, Some(c), now + 4 * S), None);
        let c = Counter {
            failures: 1000,
            last_ms: now,
        };
        assert_eq!(
            wait(&PAIR, Some(c), now + 60 * S),
            Some(Duration::from_secs(840))
        );
        assert_eq!(wait(&PAIR, Some(c), now + 3600 * S), None, "forgotten");
    }

    #[test]
    fn failures_count_up_and_restart_after_forgetting() {
        let now = 5_000_000 * S;
        let c = after_failure(None, now);
        assert_eq!(
            c,
            Counter {
                failures: 1,
                last_ms: now
            }
        );
        let c = after_failure(Some(c), now + S);
        assert_eq!(c.failures, 2);
        let c = after_failure(Some(c), now + S + 3600 * S);
        assert_eq!(c.failures, 1, "an old counter starts again");
    }

    #[test]
    fn a_locked_pair_leaves_other_addresses_free() {
        let now = 9_000_000 * S;
        let attacked = Counter {
            failures: 50,
            last_ms: now,
        };
        // The attacker's (name, address) and address wait …
        assert!(decide(&[Some(attacked), Some(attacked)], now).is_some());
        // … the admin's own address has neither counter.
        assert_eq!(decide(&[None, None], now), None);
        // An address spraying names waits on its address counter alone.
        let spray = Counter {
            failures: 6,
            last_ms: now,
        };
        assert_eq!(
            decide(&[None, Some(spray)], now),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn keys_hash_the_name_and_group_ipv6_by_64() {
        let [pair, addr] = keys("Admin", Some("10.1.2.3".parse().unwrap()));
        assert!(!pair.contains("Admin") && !pair.contains("admin"));
        assert_eq!(pair, keys("admin", Some("10.1.2.3".parse().unwrap()))[0]);
        assert_eq!(addr, "a:10.1.2.3");
        let a = keys("x", Some("2001:db8:1:2::1".parse().unwrap()));
        let b = keys("x", Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a[1], "a:2001:db8:1:2::/64");
        assert!(keys(&"n".repeat(64), None)[0].len() < 48);
    }
}
