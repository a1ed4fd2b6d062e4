//! Password hashes (argon2, PHC strings) for the admin and local users, and the bounded pool
//! that sign-in verifications run in.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Sign-in verifications that run at once. Each needs argon2's memory (19 MiB with the
/// default parameters); it comes from a pool of reused buffers, so a flood of sign-ins holds
/// at most `VERIFY_SLOTS` of them (and waits its turn) instead of one per blocking thread.
const VERIFY_SLOTS: usize = 2;
/// A stored hash asking for more memory than this (in 1 KiB blocks) is not run.
const MAX_ARGON2_BLOCKS: usize = 64 * 1024;
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VERIFY_SLOTS);
static BUFFERS: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

/// [`verify_password`] in caller-provided memory (grown to the hash's parameters and kept).
fn verify_in(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::{password_hash::Output, Algorithm, Params, Version};
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_ARGON2_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|o| o == expected)
}

/// [`verify_password`] for a sign-in: off the async threads, at most `VERIFY_SLOTS` at once,
/// in reused memory.
pub async fn verify_pooled(password: &str, phc: &str) -> bool {
    // The semaphore is never closed; a slot is held until the buffer is back.
    let _slot = SLOTS.acquire().await;
    let take = || BUFFERS.lock().ok().and_then(|mut b| b.pop());
    let mut memory = take().unwrap_or_default();
    let (pw, phc) = (password.to_string(), phc.to_string());
    let (ok, memory) = tokio::task::spawn_blocking(move || {
        let ok = verify_in(&pw, &phc, &mut memory);
        (ok, memory)
    })
    .await
    .unwrap_or((false, Vec::new()));
    if let Ok(mut pool) = BUFFERS.lock() {
        pool.push(memory);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_verification_agrees_with_argon2() {
        let phc = hash_password("correct horse").unwrap();
        let mut memory = Vec::new();
        assert!(verify_in("correct horse", &phc, &mut memory));
        assert!(verify_password("correct horse", &phc));
        // The same memory serves the next verification.
        let kept = memory.len();
        assert!(kept > 0);
        assert!(!verify_in("correct horsf", &phc, &mut memory));
        assert_eq!(memory.len(), kept);
        assert!(!verify_in("x", "not a hash", &mut memory));
        assert!(!verify_in("x", "", &mut memory));
        // A hash asking for absurd memory is refused, not run.
        let greedy = phc.replace("m=19456", "m=4194304");
        assert!(!verify_in("correct horse", &greedy, &mut memory));
        assert_eq!(memory.len(), kept);
    }
}
