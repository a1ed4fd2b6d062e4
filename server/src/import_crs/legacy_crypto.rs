//! The original service's credential encryption, reproduced to read its data: AES-256-CBC with
//! PKCS#7 padding, the key `scrypt(ENCRYPTION_KEY, salt, 32)` (Node's defaults: N = 16384,
//! r = 8, p = 1) with one salt per account type, stored as `<iv hex>:<cipher hex>`.
//! Bedrock's service differs: key `sha256(ENCRYPTION_KEY)`, stored as `{encrypted, iv}`.
//!
//! scrypt is written out here (PBKDF2-HMAC-SHA256 and Salsa20/8 from RFC 7914) on the
//! `hmac`/`sha2` crates the server already uses; AES comes from the `aes` crate `aes-gcm`
//! re-exports. The tests check both against vectors computed with Node's `crypto`.

use std::collections::HashMap;

use aes_gcm::aes::{
    cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit},
    Aes256,
};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// The salts of the original's account services (`createEncryptor(salt)`).
pub mod salts {
    pub const CLAUDE: &str = "salt";
    pub const BEDROCK: &str = "salt";
    pub const CLAUDE_CONSOLE: &str = "claude-console-salt";
    pub const GEMINI: &str = "gemini-account-salt";
    pub const GEMINI_API: &str = "gemini-api-salt";
    pub const OPENAI: &str = "openai-account-salt";
    pub const OPENAI_RESPONSES: &str = "openai-responses-salt";
    pub const AZURE_OPENAI: &str = "azure-openai-account-default-salt";
    pub const CCR: &str = "ccr-account-salt";
    pub const DROID: &str = "droid-account-salt";
    pub const DEFAULT: &str = "claude-relay-salt";
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LegacyCryptoError {
    #[error("not in the original's iv:cipher hex format")]
    Malformed,
    #[error("cannot be decrypted with this encryption key")]
    WrongKey,
}

/// Decrypts (and, for fixtures and tests, encrypts) the original's secrets with its
/// `ENCRYPTION_KEY`. Derived keys are cached per salt: scrypt is deliberately slow.
pub struct LegacyCrypto {
    encryption_key: String,
    derived: Mutex<HashMap<String, [u8; 32]>>,
}

impl LegacyCrypto {
    pub fn new(encryption_key: &str) -> Self {
        LegacyCrypto {
            encryption_key: encryption_key.to_string(),
            derived: Mutex::new(HashMap::new()),
        }
    }

    /// `scrypt(ENCRYPTION_KEY, salt, 32)`.
    pub fn key_for(&self, salt: &str) -> [u8; 32] {
        if let Some(k) = self.derived.lock().get(salt) {
            return *k;
        }
        let mut out = [0u8; 32];
        scrypt(
            self.encryption_key.as_bytes(),
            salt.as_bytes(),
            16_384,
            8,
            1,
            &mut out,
        );
        self.derived.lock().insert(salt.to_string(), out);
        out
    }

    /// Bedrock's key: `sha256(ENCRYPTION_KEY)`.
    pub fn bedrock_key(&self) -> [u8; 32] {
        Sha256::digest(self.encryption_key.as_bytes()).into()
    }

    /// A stored field as the original reads it: empty stays empty, text without `:` is
    /// plaintext (never encrypted), otherwise `<iv hex>:<cipher hex>`.
    pub fn decrypt_field(&self, salt: &str, stored: &str) -> Result<String, LegacyCryptoError> {
        if stored.is_empty() {
            return Ok(String::new());
        }
        let Some((iv, ct)) = stored.split_once(':') else {
            return Ok(stored.to_string());
        };
        let iv = hex::decode(iv).map_err(|_| LegacyCryptoError::Malformed)?;
        let ct = hex::decode(ct).map_err(|_| LegacyCryptoError::Malformed)?;
        let plain = cbc_decrypt(&self.key_for(salt), &iv, &ct)?;
        String::from_utf8(plain).map_err(|_| LegacyCryptoError::WrongKey)
    }

    /// The original's `encrypt(text)` (used to write fixtures in its format).
    pub fn encrypt_field(&self, salt: &str, plain: &str, iv: [u8; 16]) -> String {
        let ct = cbc_encrypt(&self.key_for(salt), &iv, plain.as_bytes());
        format!("{}:{}", hex::encode(iv), hex::encode(ct))
    }
}

/// AES-256-CBC decryption with PKCS#7 padding.
pub fn cbc_decrypt(key: &[u8; 32], iv: &[u8], ct: &[u8]) -> Result<Vec<u8>, LegacyCryptoError> {
    if iv.len() != 16 || ct.is_empty() || !ct.len().is_multiple_of(16) {
        return Err(LegacyCryptoError::Malformed);
    }
    let cipher = Aes256::new(GenericArray::from_slice(key));
    let mut prev = [0u8; 16];
    prev.copy_from_slice(iv);
    let mut out = Vec::with_capacity(ct.len());
    for chunk in ct.chunks(16) {
        let mut block = GenericArray::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        for (b, p) in block.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        out.extend_from_slice(&block);
        prev.copy_from_slice(chunk);
    }
    let pad = usize::from(*out.last().ok_or(LegacyCryptoError::Malformed)?);
    if pad == 0
        || pad > 16
        || out[out.len() - pad..]
            .iter()
            .any(|b| usize::from(*b) != pad)
    {
        return Err(LegacyCryptoError::WrongKey);
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

/// AES-256-CBC encryption with PKCS#7 padding.
pub fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256::new(GenericArray::from_slice(key));
    let pad = 16 - plain.len() % 16;
    let mut data = plain.to_vec();
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let mut prev = *iv;
    for chunk in data.chunks_mut(16) {
        for (b, p) in chunk.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        let block = GenericArray::from_mut_slice(chunk);
        cipher.encrypt_block(block);
        prev.copy_from_slice(chunk);
    }
    data
}

/// PBKDF2-HMAC-SHA256.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let block_index = (i as u32 + 1).to_be_bytes();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(password).expect("HMAC takes any key length");
        mac.update(salt);
        mac.update(&block_index);
        let mut u: [u8; 32] = mac.finalize().into_bytes().into();
        let mut t = u;
        for _ in 1..rounds {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(password).expect("HMAC takes any key length");
            mac.update(&u);
            u = mac.finalize().into_bytes().into();
            for (a, b) in t.iter_mut().zip(u.iter()) {
                *a ^= b;
            }
        }
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
}

/// scrypt (RFC 7914). `n` must be a power of two greater than 1.
pub fn scrypt(password: &[u8], salt: &[u8], n: usize, r: usize, p: usize, out: &mut [u8]) {
    let block_words = 32 * r;
    let mut b = vec![0u8; p * 128 * r];
    pbkdf2_sha256(password, salt, 1, &mut b);
    let mut x = vec![0u32; block_words];
    let mut v = vec![0u32; block_words * n];
    let mut scratch = vec![0u32; block_words];
    for chunk in b.chunks_mut(128 * r) {
        for (w, bytes) in x.iter_mut().zip(chunk.chunks(4)) {
            *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        for i in 0..n {
            v[i * block_words..(i + 1) * block_words].copy_from_slice(&x);
            block_mix(&mut x, &mut scratch, r);
        }
        for _ in 0..n {
            let j = (x[(2 * r - 1) * 16] as usize) & (n - 1);
            for (a, b) in x.iter_mut().zip(&v[j * block_words..(j + 1) * block_words]) {
                *a ^= b;
            }
            block_mix(&mut x, &mut scratch, r);
        }
        for (w, bytes) in x.iter().zip(chunk.chunks_mut(4)) {
            bytes.copy_from_slice(&w.to_le_bytes());
        }
    }
    pbkdf2_sha256(password, &b, 1, out);
}

fn block_mix(b: &mut [u32], y: &mut [u32], r: usize) {
    let mut x = [0u32; 16];
    x.copy_from_slice(&b[(2 * r - 1) * 16..2 * r * 16]);
    for i in 0..2 * r {
        for (a, c) in x.iter_mut().zip(&b[i * 16..(i + 1) * 16]) {
            *a ^= c;
        }
        salsa20_8(&mut x);
        // Even blocks first, then odd ones.
        let dest = if i % 2 == 0 { i / 2 } else { r + i / 2 };
        y[dest * 16..(dest + 1) * 16].copy_from_slice(&x);
    }
    b.copy_from_slice(y);
}

fn salsa20_8(b: &mut [u32; 16]) {
    let mut x = *b;
    for _ in 0..4 {
        let mut qr = |a: usize, b: usize, c: usize, d: usize| {
            x[b] ^= x[a].wrapping_add(x[d]).rotate_left(7);
            x[c] ^= x[b].wrapping_add(x[a]).rotate_left(9);
            x[d] ^= x[c].wrapping_add(x[b]).rotate_left(13);
            x[a] ^= x[d].wrapping_add(x[c]).rotate_left(18);
        };
        // Columns.
        qr(0, 4, 8, 12);
        qr(5, 9, 13, 1);
        qr(10, 14, 2, 6);
        qr(15, 3, 7, 11);
        // Rows.
        qr(0, 1, 2, 3);
        qr(5, 6, 7, 4);
        qr(10, 11, 8, 9);
        qr(15, 12, 13, 14);
    }
    for (a, c) in b.iter_mut().zip(x.iter()) {
        *a = a.wrapping_add(*c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected value below was computed with Node's `crypto` (the original's runtime):
    //   crypto.scryptSync(K, salt, 32), createCipheriv('aes-256-cbc', key, iv), …
    const K: &str = "test-encryption-key-0123456789abcdef";
    const IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    #[test]
    fn scrypt_matches_rfc_7914_and_node() {
        // RFC 7914 §12, second vector (N = 1024, r = 8, p = 16), as Node computes it.
        let mut out = [0u8; 64];
        scrypt(b"password", b"NaCl", 1024, 8, 16, &mut out);
        assert_eq!(
            hex::encode(out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
        let c = LegacyCrypto::new(K);
        assert_eq!(
            hex::encode(c.key_for(salts::CLAUDE_CONSOLE)),
            "30eee435da1a693af57f22299465d6ae9b5fe2eba2e3012e61b9746c4a375817"
        );
        assert_eq!(
            hex::encode(c.key_for(salts::CLAUDE)),
            "b5cd3da19d8474727813273503f0eceb0062932a246e5d12ddb3802634c4ac3f"
        );
    }

    #[test]
    fn decrypts_what_node_encrypted_and_round_trips() {
        let c = LegacyCrypto::new(K);
        let node = "000102030405060708090a0b0c0d0e0f:39ad2bd6de15f2a00e2463c7bdce10a687ddc7c50de60116abfcc73ca0c77721";
        let secret = "sk-ant-api03-secret-ünï";
        assert_eq!(
            c.decrypt_field(salts::CLAUDE_CONSOLE, node).unwrap(),
            secret
        );
        assert_eq!(c.encrypt_field(salts::CLAUDE_CONSOLE, secret, IV), node);
        // Plaintext (no colon) and empty values are returned as they are, as the original does.
        assert_eq!(
            c.decrypt_field(salts::CLAUDE_CONSOLE, "plain").unwrap(),
            "plain"
        );
        assert_eq!(c.decrypt_field(salts::CLAUDE_CONSOLE, "").unwrap(), "");
        // Another key or another salt does not decrypt it.
        let other = LegacyCrypto::new("another-encryption-key-0123456789ab");
        assert!(other.decrypt_field(salts::CLAUDE_CONSOLE, node).is_err());
        assert!(c.decrypt_field(salts::OPENAI_RESPONSES, node).is_err());
        assert_eq!(
            c.decrypt_field(salts::CLAUDE_CONSOLE, "zz:00"),
            Err(LegacyCryptoError::Malformed)
        );
    }

    #[test]
    fn bedrock_credentials_use_sha256_of_the_key() {
        let c = LegacyCrypto::new(K);
        let ct = hex::decode("80557febf040c93fa2310d7c9db745fc66556c9391aee68aea8ff02aeac43b26f89a963b22f8e8762e2b7a466d16ce69025fcef0eb0f6e88389d2c1f7b12d305").unwrap();
        let plain = cbc_decrypt(&c.bedrock_key(), &IV, &ct).unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            r#"{"accessKeyId":"AKIA1","secretAccessKey":"s3cr3t"}"#
        );
    }
}
