//! Parsing a JWKS document into the RS256 keys the verifier can use.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One RSA public key, usable for RS256 signatures.
pub struct Key {
    pub kid: String,
    pub decoding: DecodingKey,
    /// SHA-256 of the key material (`n`, `e`): tells a key re-published under the same `kid`
    /// from the one that was there before.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).finish()
    }
}

/// The keys of one JWKS document, by `kid`.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    pub keys: HashMap<String, Arc<Key>>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.keys.get(kid)
    }

    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksParseError {
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    #[error("the JWKS has no usable RS256 key ({skipped} skipped)")]
    NoUsableKeys { skipped: usize },
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS document. Keys that cannot verify RS256 signatures are skipped with a warning;
/// a document without a single usable key is an error (so a bad fetch never empties the cache).
pub fn parse_jwks(body: &[u8], source: &str) -> Result<KeySet, JwksParseError> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| JwksParseError::NotJwks(e.to_string()))?;
    let mut keys = HashMap::new();
    let mut skipped = 0;
    for (i, value) in doc.keys.into_iter().enumerate() {
        match usable_key(value) {
            Ok(key) => {
                keys.insert(key.kid.clone(), Arc::new(key));
            }
            Err(why) => {
                skipped += 1;
                tracing::warn!(
                    jwks.source = source,
                    key.index = i,
                    reason = why,
                    "JWKS key skipped"
                );
            }
        }
    }
    if keys.is_empty() {
        return Err(JwksParseError::NoUsableKeys { skipped });
    }
    Ok(KeySet { keys })
}

fn usable_key(value: serde_json::Value) -> Result<Key, &'static str> {
    let jwk: RawJwk = serde_json::from_value(value).map_err(|_| "not a JWK object")?;
    if jwk.kty.as_deref() != Some("RSA") {
        return Err("kty is not RSA");
    }
    if jwk.alg.as_deref().is_some_and(|a| a != "RS256") {
        return Err("alg is not RS256");
    }
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("use is not sig");
    }
    let kid = jwk.kid.filter(|k| !k.is_empty()).ok_or("no kid")?;
    let (n, e) = match (jwk.n, jwk.e) {
        (Some(n), Some(e)) if !n.is_empty() && !e.is_empty() => (n, e),
        _ => return Err("missing n or e"),
    };
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|_| "bad n or e")?;
    let mut h = Sha256::new();
    h.update(n.as_bytes());
    h.update(b".");
    h.update(e.as_bytes());
    Ok(Key {
        kid,
        decoding,
        fingerprint: h.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let body = br#"{"keys":[
            {"kty":"EC","kid":"ec","crv":"P-256","x":"a","y":"b"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"ps","alg":"PS256","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"good","alg":"RS256","use":"sig","n":"AQAB","e":"AQAB"},
            "garbage"
        ]}"#;
        let set = parse_jwks(body, "test").unwrap();
        assert_eq!(set.kids(), vec!["good"]);
    }

    #[test]
    fn rejects_documents_without_keys() {
        assert!(matches!(
            parse_jwks(b"<html>", "t"),
            Err(JwksParseError::NotJwks(_))
        ));
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#, "t").unwrap_err(),
            JwksParseError::NoUsableKeys { skipped: 0 }
        );
    }
}
