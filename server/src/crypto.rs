//! Secrets at rest: AES-256-GCM for upstream credentials, SHA-256 for API keys and session tokens,
//! argon2 for passwords (`password`).

pub mod password;

use aes_gcm::{
    aead::{Aead, AeadCore, KeyInit, OsRng},
    Aes256Gcm, Key, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "gcm1:";

#[derive(Clone)]
pub struct Crypto {
    cipher: Aes256Gcm,
    /// Appended to API keys before hashing, as the original does, so its stored hashes stay valid.
    key_salt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("stored secret is malformed")]
    Malformed,
    #[error("stored secret cannot be decrypted with this ENCRYPTION_KEY")]
    WrongKey,
}

impl Crypto {
    pub fn new(encryption_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"crs/aes-256-gcm/v1\0");
        h.update(encryption_key.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        Crypto {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)),
            key_salt: encryption_key.to_string(),
        }
    }

    /// `gcm1:` + base64(nonce ‖ ciphertext ‖ tag).
    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let raw = STANDARD.decode(b64).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::WrongKey)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Malformed)
    }

    /// The stored form of an API key: `sha256(key ‖ ENCRYPTION_KEY)` in hex.
    pub fn hash_api_key(&self, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update(self.key_salt.as_bytes());
        hex::encode(h.finalize())
    }
}

/// Hex SHA-256, for tokens that are stored only as hashes.
/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = Crypto::new("0123456789abcdef0123456789abcdef");
        let enc = c.encrypt("sk-ant-secret");
        assert!(enc.starts_with(PREFIX));
        assert!(!enc.contains("sk-ant"));
        assert_eq!(c.decrypt(&enc).unwrap(), "sk-ant-secret");
        // Same plaintext, different nonce.
        assert_ne!(c.encrypt("sk-ant-secret"), enc);
        // Another key cannot read it.
        let other = Crypto::new("ffffffffffffffffffffffffffffffff");
        assert!(matches!(other.decrypt(&enc), Err(CryptoError::WrongKey)));
        // A flipped byte is detected.
        let mut raw = STANDARD.decode(&enc[PREFIX.len()..]).unwrap();
        raw[20] ^= 1;
        let bad = format!("{PREFIX}{}", STANDARD.encode(raw));
        assert!(c.decrypt(&bad).is_err());
        assert!(matches!(c.decrypt("plain"), Err(CryptoError::Malformed)));
    }

    #[test]
    fn api_key_hash_matches_original_scheme() {
        let c = Crypto::new("k".repeat(32).as_str());
        let expected = sha256_hex(&format!("cr_abc{}", "k".repeat(32)));
        assert_eq!(c.hash_api_key("cr_abc"), expected);
    }
}
