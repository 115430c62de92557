//! Refresh tokens the login API handed out, with the canonical username of their tokens:
//! SECRET_HASH for a refresh must be computed with the canonical username (`cognito:username`),
//! not an alias such as an email address the user logged in with, and an app usually only holds
//! what it typed. Keys are HMACs of the refresh tokens under a per-process key; bounded and
//! expiring, so it is a convenience (a restarted gateway falls back to the username the client
//! sends), never a store of tokens.

use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::Sha256;

use super::api::TokenSet;
use crate::jwt::verify::decode;

/// Cognito's default refresh token validity.
const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct IssuedTokens {
    key: [u8; 32],
    usernames: Cache<[u8; 32], String>,
}

impl IssuedTokens {
    pub fn new(capacity: u64) -> Self {
        IssuedTokens {
            key: rand::random(),
            usernames: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(REMEMBER_FOR)
                .build(),
        }
    }

    fn digest(&self, refresh_token: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        mac.update(refresh_token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Remembers the canonical username of a token set that came with a refresh token. The ID
    /// token came straight from the private API; it is read here, not trusted for access.
    pub(crate) fn remember(&self, set: &TokenSet) {
        let Some(rt) = &set.refresh_token else {
            return;
        };
        let username = decode(&set.id_token).ok().and_then(|d| {
            d.claims
                .get("cognito:username")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        if let Some(u) = username {
            self.usernames.insert(self.digest(rt), u);
        }
    }

    /// The canonical username for a refresh token this gateway issued.
    pub fn username(&self, refresh_token: &str) -> Option<String> {
        self.usernames.get(&self.digest(refresh_token))
    }
}
