//! The rejection side of the authorizer: the RS256 signature check with keys parsed at load,
//! and the small table of recent rejections that answers a repeated forgery or expired token.

use std::sync::Arc;

use super::error::AuthError;
use super::jwks::JwksCache;
use super::keys::{Key, MAX_MODULUS_BYTES};

/// RS256: the signature (base64url, decoded onto the stack) checked with the key parsed when the
/// JWKS was loaded. A signature that cannot be the key's length is refused without arithmetic.
pub(super) fn signature_ok(key: &Key, signed: &[u8], signature_b64: &str) -> bool {
    use base64::Engine;
    let mut buf = [0u8; MAX_MODULUS_BYTES];
    // Base64 without padding: 4 characters per 3 bytes.
    if signature_b64.len() > MAX_MODULUS_BYTES / 3 * 4 + 4 {
        return false;
    }
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut buf) {
        Ok(n) => key.verify_rs256(signed, &buf[..n]),
        Err(_) => false,
    }
}

/// Slots of the recent-rejections cache: a repeated forgery or expired token is answered without
/// decoding or RSA. Small on purpose: distinct forgeries rotate through it without hits, and it
/// is apart from the verified-token cache, so no amount of garbage evicts a valid entry.
pub(crate) const REJECTED_SLOTS: usize = 1024;

/// A token refused after its signature was checked, remembered with the key that decided: a
/// different key under that `kid` (or the keys going stale) ends the entry.
struct Rejected {
    digest: [u8; 32],
    key: Arc<Key>,
    error: AuthError,
}

/// A direct-mapped table of recent rejections, indexed by the token digest: a lookup or an
/// insert is one uncontended lock and a 32-byte compare; a collision replaces the older entry.
pub(super) struct RejectedCache {
    slots: Box<[std::sync::Mutex<Option<Rejected>>]>,
    pub(super) hits: std::sync::atomic::AtomicU64,
}

impl RejectedCache {
    pub(super) fn new() -> Self {
        RejectedCache {
            slots: (0..REJECTED_SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            hits: Default::default(),
        }
    }

    fn slot(&self, digest: &[u8; 32]) -> &std::sync::Mutex<Option<Rejected>> {
        let i = u16::from_le_bytes([digest[0], digest[1]]) as usize % REJECTED_SLOTS;
        &self.slots[i]
    }

    /// The error a token got before, while the key that decided is still the one published.
    pub(super) fn get(&self, digest: &[u8; 32], jwks: &JwksCache, now: i64) -> Option<AuthError> {
        let mut slot = self.slot(digest).lock().unwrap_or_else(|e| e.into_inner());
        let hit = slot.as_ref().filter(|r| r.digest == *digest)?;
        if !jwks.has_usable_key(&hit.key.kid, &hit.key.fingerprint) {
            *slot = None;
            return None;
        }
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(match &hit.error {
            AuthError::Expired { exp, .. } => AuthError::Expired { exp: *exp, now },
            e => e.clone(),
        })
    }

    pub(super) fn insert(&self, digest: [u8; 32], key: Arc<Key>, error: AuthError) {
        *self.slot(&digest).lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Rejected { digest, key, error });
    }
}
