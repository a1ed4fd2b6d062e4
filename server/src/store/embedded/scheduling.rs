//! The embedded engine's live coordination, in memory: the pick step (the decision is
//! `rules.pick`, called under the one lock), sticky sessions, concurrency leases and locks.

use super::*;

use super::accounts::cooldown_key;
use crate::store::scheduling::{
    CandidateState, Decision, Mapped, Snapshot, StickyState, StickyWrite,
};

#[async_trait::async_trait]
impl SchedulingStore for EmbeddedStore {
    async fn pick_account(&self, req: &PickRequest) -> Result<Pick, StoreError> {
        self.check_key_copy(req.keys_version)?;
        let ids: Vec<String> = req.candidates.iter().map(|c| c.id.clone()).collect();
        let family = req.family.clone();
        let now_ms = now_ms();
        // Read the version and the live rests first (the database), then decide under the lock.
        let (version, resting) = self
            .run(move |db| {
                let r = db.begin_read().map_err(e)?;
                let version = read_u64(&r.open_table(META).map_err(e)?, "accounts:version")?;
                let t = r.open_table(COOLDOWNS).map_err(e)?;
                let mut resting = HashMap::new();
                for id in &ids {
                    for key in [
                        cooldown_key(id, None),
                        family
                            .as_deref()
                            .map(|f| cooldown_key(id, Some(f)))
                            .unwrap_or_default(),
                    ] {
                        if key.is_empty() {
                            continue;
                        }
                        if let Some(v) = t.get(key.as_str()).map_err(e)? {
                            let c: Cooldown = from_json(v.value())?;
                            if c.until_ms > now_ms {
                                resting.entry(id.clone()).or_insert(c);
                            }
                        }
                    }
                }
                Ok((version, resting))
            })
            .await?;
        if version != req.known_version {
            return Ok(Pick::Stale);
        }
        // The snapshot, the decision and its effects under one lock: picks are atomic.
        let now = Instant::now();
        let mut live = self.live.lock();
        let snapshot = Snapshot {
            candidates: req
                .candidates
                .iter()
                .map(|c| CandidateState {
                    id: c.id.clone(),
                    priority: c.priority,
                    last_pick_ms: live.picked.get(&c.id).copied().unwrap_or(0),
                    resting: resting.get(&c.id).cloned(),
                    max_concurrency: c.max_concurrency,
                    held: if c.max_concurrency > 0 {
                        live.lease_count(&account_lease_scope(&c.id), now) as u32
                    } else {
                        0
                    },
                })
                .collect(),
            sticky: req.sticky.as_ref().map(|s| StickyState {
                mapped: live
                    .sticky
                    .get(&s.key)
                    .filter(|(_, until)| *until > now)
                    .map(|(id, until)| Mapped {
                        account_id: id.clone(),
                        ttl_left_ms: Some(until.saturating_duration_since(now).as_millis() as i64),
                    }),
                renew_below_ms: s.renew_below.as_millis() as i64,
            }),
            newest_pick_ms: live.newest_pick_ms,
        };
        let choice = match (self.rules.pick)(&snapshot, now_ms) {
            Decision::Refused { why, drop_sticky } => {
                if let Some(s) = req.sticky.as_ref().filter(|_| drop_sticky) {
                    live.sticky.remove(&s.key);
                }
                return Ok(Pick::Unavailable(why));
            }
            Decision::Chosen(choice) => choice,
        };
        let Some(c) = req.candidates.get(choice.index) else {
            return Ok(Pick::Unavailable(Refused::NoCandidate));
        };
        if c.max_concurrency > 0 {
            live.leases
                .entry(account_lease_scope(&c.id))
                .or_default()
                .insert(req.lease_id.clone(), now + req.lease_ttl);
        }
        live.picked.insert(c.id.clone(), choice.stamp_ms);
        live.newest_pick_ms = choice.stamp_ms;
        if let Some(s) = &req.sticky {
            if choice.sticky != StickyWrite::Keep {
                live.put_sticky(&s.key, &c.id, now + s.ttl, now);
            }
        }
        Ok(Pick::Chosen {
            account_id: c.id.clone(),
            sticky: choice.sticky_hit,
        })
    }

    async fn get_sticky(&self, session: &str) -> Result<Option<String>, StoreError> {
        let mut live = self.live.lock();
        match live.sticky.get(session) {
            Some((account, until)) if *until > Instant::now() => Ok(Some(account.clone())),
            Some(_) => {
                live.sticky.remove(session);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set_sticky(
        &self,
        session: &str,
        account_id: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        let now = Instant::now();
        live.put_sticky(session, account_id, now + ttl, now);
        Ok(())
    }

    async fn delete_sticky(&self, session: &str) -> Result<(), StoreError> {
        self.live.lock().sticky.remove(session);
        Ok(())
    }

    fn sticky_in_memory(&self) -> Option<usize> {
        Some(self.live.lock().sticky.len())
    }

    async fn acquire_lease(
        &self,
        scope: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut live = self.live.lock();
        let held = live.lease_count(scope, now);
        let leases = live.leases.entry(scope.to_string()).or_default();
        if leases.contains_key(lease_id) || (held as u32) < limit {
            leases.insert(lease_id.to_string(), now + ttl);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn release_lease(&self, scope: &str, lease_id: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        if let Some(leases) = live.leases.get_mut(scope) {
            leases.remove(lease_id);
            if leases.is_empty() {
                live.leases.remove(scope);
            }
        }
        Ok(())
    }

    async fn count_leases(&self, scope: &str) -> Result<u32, StoreError> {
        Ok(self.live.lock().lease_count(scope, Instant::now()) as u32)
    }

    async fn refresh_leases(
        &self,
        leases: &[(String, String)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + ttl;
        let mut live = self.live.lock();
        for (scope, lease) in leases {
            if let Some(l) = live.leases.get_mut(scope).and_then(|l| l.get_mut(lease)) {
                *l = until;
            }
        }
        Ok(())
    }

    async fn try_lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut live = self.live.lock();
        match live.locks.get(name) {
            Some((holder, until)) if *until > now && holder != owner => Ok(false),
            _ => {
                live.locks
                    .insert(name.to_string(), (owner.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        if live
            .locks
            .get(name)
            .is_some_and(|(holder, _)| holder == owner)
        {
            live.locks.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod sticky_tests {
    use super::*;

    /// Expired mappings are swept as the map grows: it holds about twice the live ones, not
    /// every mapping ever made.
    #[test]
    fn the_sticky_map_is_swept() {
        let mut live = Live::default();
        let t0 = Instant::now();
        for round in 0..20u64 {
            // Each round's mappings live 1 s; the next round starts 2 s later.
            let now = t0 + Duration::from_secs(2 * round);
            for i in 0..200 {
                live.put_sticky(
                    &format!("{round}:{i}"),
                    "a",
                    now + Duration::from_secs(1),
                    now,
                );
            }
            assert!(
                live.sticky.len() <= (2 * 200).max(STICKY_SWEEP_FLOOR) + 200,
                "round {round}: {}",
                live.sticky.len()
            );
        }
        // Live mappings are kept.
        let now = t0 + Duration::from_secs(38);
        assert_eq!(live.sticky.get("19:0").map(|(a, _)| a.as_str()), Some("a"));
        assert!(live.sticky.get("19:0").is_some_and(|(_, u)| *u > now));
    }
}
