//! The embedded engine's login-failure counters: in memory (a restart forgets them, as a
//! Redis TTL would), with a hard bound. Entries are forgotten `FORGET_AFTER` after their last
//! failure; past `MAX_ENTRIES` the expired ones go, then the oldest tenth. Keys are short
//! (a hash and an address, see `auth::throttle::keys`), so the map stays a few MB at most.
//! How a failure counts is the throttle's rule, handed over in the engine's [`Rules`].

use std::collections::HashMap;

use parking_lot::Mutex;

use std::time::Duration;

use super::{sessions::Counter, Rules};

/// At most this many counters (about 120 bytes each with the map's overhead: ≤ ~6 MB).
pub const MAX_ENTRIES: usize = 50_000;

pub struct FailureMap {
    map: Mutex<HashMap<String, Counter>>,
    cap: usize,
    after_failure: fn(Option<Counter>, u64) -> Counter,
    forget_after: Duration,
}

impl FailureMap {
    pub fn new(rules: &Rules) -> Self {
        Self::with_cap(MAX_ENTRIES, rules)
    }

    pub fn with_cap(cap: usize, rules: &Rules) -> Self {
        FailureMap {
            map: Mutex::new(HashMap::new()),
            cap: cap.max(10),
            after_failure: rules.after_login_failure,
            forget_after: rules.forget_login_failures_after,
        }
    }

    fn live(&self, c: &Counter, now_ms: u64) -> bool {
        now_ms.saturating_sub(c.last_ms) < self.forget_after.as_millis() as u64
    }

    pub fn get(&self, keys: &[String], now_ms: u64) -> Vec<Option<Counter>> {
        let map = self.map.lock();
        keys.iter()
            .map(|k| map.get(k).copied().filter(|c| self.live(c, now_ms)))
            .collect()
    }

    pub fn record(&self, keys: &[String], now_ms: u64) {
        let mut map = self.map.lock();
        for k in keys {
            if !map.contains_key(k) && map.len() >= self.cap {
                self.make_room(&mut map, now_ms);
            }
            let next = (self.after_failure)(map.get(k).copied(), now_ms);
            map.insert(k.clone(), next);
        }
    }

    fn make_room(&self, map: &mut HashMap<String, Counter>, now_ms: u64) {
        let cap = self.cap;
        map.retain(|_, c| self.live(c, now_ms));
        if map.len() < cap {
            return;
        }
        // Still full of live counters: the oldest tenth goes (one sort per tenth of the cap).
        let mut ages: Vec<u64> = map.values().map(|c| c.last_ms).collect();
        let cut = (cap / 10).max(1);
        ages.select_nth_unstable(cut - 1);
        let threshold = ages[cut - 1];
        let mut removed = 0;
        map.retain(|_, c| {
            if removed < cut && c.last_ms <= threshold {
                removed += 1;
                false
            } else {
                true
            }
        });
    }

    pub fn clear(&self, key: &str) {
        self.map.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_forgets_and_stays_under_its_cap() {
        let m = FailureMap::with_cap(100, &crate::rules::rules());
        let now = 1_000_000_000;
        let k = vec!["u:x:1.2.3.4".to_string(), "a:1.2.3.4".to_string()];
        m.record(&k, now);
        m.record(&k, now + 1);
        let got = m.get(&k, now + 2);
        assert_eq!(got[0].map(|c| c.failures), Some(2));
        assert_eq!(got[1].map(|c| c.failures), Some(2));
        // Forgotten an hour after the last failure.
        assert_eq!(m.get(&k, now + 3_600_001), vec![None, None]);
        m.clear(&k[0]);
        assert_eq!(m.get(&k, now + 2)[0], None);

        // 10,000 distinct keys never hold more than the cap, and the newest survive.
        for i in 0..10_000u64 {
            m.record(&[format!("u:{i}:addr")], now + 10 + i);
            assert!(m.len() <= 100, "{} entries", m.len());
        }
        assert!(m.get(&["u:9999:addr".to_string()], now + 20_000)[0].is_some());
        assert!(m.get(&["u:0:addr".to_string()], now + 20_000)[0].is_none());
    }
}
