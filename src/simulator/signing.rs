//! Secrets of one simulator run: access tokens, job ids and signed artifact URLs.
//!
//! Everything is derived with HMAC-SHA256 from one 64-byte key drawn at startup from the
//! operating system's randomness (through std's `RandomState`, which the standard library seeds
//! from the OS), so tokens and signatures cannot be guessed and do not depend on `--seed`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The key of one simulator run.
pub(crate) struct Keys {
    key: [u8; 64],
}

impl Keys {
    /// A fresh random key.
    pub(crate) fn random() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut key = [0u8; 64];
        for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
            // Every `RandomState::new()` carries different random SipHash keys.
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        Self { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new((&self.key).into());
        for part in parts {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac
    }

    fn derive(&self, purpose: &str, counter: u64) -> [u8; 32] {
        self.mac(&[purpose.as_bytes(), &counter.to_le_bytes()])
            .finalize()
            .into_bytes()
            .into()
    }

    /// An opaque bearer token (64 hex characters).
    pub(crate) fn access_token(&self, counter: u64) -> String {
        hex::encode(self.derive("access-token", counter))
    }

    /// A job id: `job-` and 24 lowercase hex characters.
    pub(crate) fn job_id(&self, counter: u64) -> String {
        format!("job-{}", hex::encode(&self.derive("job-id", counter)[..12]))
    }

    /// Signature of a pre-signed URL for `method path` valid until `expires` (Unix seconds).
    pub(crate) fn sign_url(&self, method: &str, path: &str, expires: u64) -> String {
        hex::encode(
            self.mac(&[method.as_bytes(), path.as_bytes(), &expires.to_le_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `signature` (hex) signs `method path expires`; compared in constant time.
    pub(crate) fn verify_url(
        &self,
        method: &str,
        path: &str,
        expires: u64,
        signature: &str,
    ) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.mac(&[method.as_bytes(), path.as_bytes(), &expires.to_le_bytes()])
            .verify_slice(&bytes)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_well_formed_and_distinct() {
        let keys = Keys::random();
        let id = keys.job_id(1);
        assert_eq!(id.len(), 4 + 24);
        assert!(id[4..].chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(keys.job_id(1), keys.job_id(2));
        assert_eq!(keys.access_token(7).len(), 64);
        assert_ne!(keys.access_token(7), Keys::random().access_token(7));
    }

    #[test]
    fn url_signatures_bind_method_path_and_expiry() {
        let keys = Keys::random();
        let sig = keys.sign_url("GET", "/a", 10);
        assert!(keys.verify_url("GET", "/a", 10, &sig));
        assert!(!keys.verify_url("GET", "/b", 10, &sig));
        assert!(!keys.verify_url("GET", "/a", 11, &sig));
        assert!(!keys.verify_url("PUT", "/a", 10, &sig));
        assert!(!keys.verify_url("GET", "/a", 10, "zz"));
        assert!(!keys.verify_url("GET", "/a", 10, &sig[..10]));
    }
}
