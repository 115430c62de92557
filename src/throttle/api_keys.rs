//! API keys (`[throttle.api_keys]`): which named key a request presents. Keys are held only as
//! SHA-256 digests and looked up by the digest of what arrives, so no comparison runs over the
//! secret itself and nothing but the key's name is ever logged, counted or shared.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use crate::config::ApiKeysConfig;

pub(crate) struct ApiKeys {
    pub header: HeaderName,
    by_digest: HashMap<[u8; 32], Arc<str>>,
}

impl ApiKeys {
    pub fn new(cfg: &ApiKeysConfig) -> Self {
        ApiKeys {
            header: cfg.header.clone(),
            by_digest: cfg
                .keys
                .iter()
                .map(|(name, key)| (digest(key.expose().as_bytes()), Arc::from(name.as_str())))
                .collect(),
        }
    }

    /// The name of the known key in `headers`: none when it is missing, unknown, or sent more
    /// than once.
    pub fn find(&self, headers: &HeaderMap) -> Option<Arc<str>> {
        let mut values = headers.get_all(&self.header).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        self.by_digest.get(&digest(value.as_bytes())).cloned()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn finds_the_name_of_a_known_key_only() {
        let keys = ApiKeys::new(&ApiKeysConfig {
            header: HeaderName::from_static("x-api-key"),
            file: None,
            keys: vec![
                ("partner-a".into(), Secret::new("a".repeat(20))),
                ("partner-b".into(), Secret::new("b".repeat(20))),
            ],
        });
        let mut h = HeaderMap::new();
        assert_eq!(keys.find(&h), None);
        h.insert("x-api-key", "b".repeat(20).parse().unwrap());
        assert_eq!(keys.find(&h).as_deref(), Some("partner-b"));
        h.insert("x-api-key", "c".repeat(20).parse().unwrap());
        assert_eq!(keys.find(&h), None);
        h.insert("x-api-key", "a".repeat(20).parse().unwrap());
        h.append("x-api-key", "b".repeat(20).parse().unwrap());
        assert_eq!(keys.find(&h), None, "two keys: neither");
    }
}
