//! Parsing a JWKS document into the RS256 keys the verifier can use.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The longest RSA modulus accepted (8192 bits), and so the longest RS256 signature.
pub(crate) const MAX_MODULUS_BYTES: usize = 1024;

/// One RSA public key, usable for RS256 signatures. Parsed once, when the JWKS is loaded: the
/// modulus and its Montgomery constants are computed here, not on every verification.
pub struct Key {
    pub kid: String,
    public: ParsedPublicKey,
    /// The modulus length in bytes: every RS256 signature by this key is exactly this long.
    pub modulus_len: usize,
    /// SHA-256 of the key material (`n`, `e`): tells a key re-published under the same `kid`
    /// from the one that was there before.
    pub fingerprint: [u8; 32],
}

impl Key {
    /// Whether `signature` (raw bytes) is this key's RS256 (PKCS#1 v1.5, SHA-256) signature of
    /// `message`. A signature of the wrong length is refused before any arithmetic.
    pub(crate) fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.modulus_len && self.public.verify_sig(message, signature).is_ok()
    }
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
    let (Ok(n_bytes), Ok(e_bytes)) = (URL_SAFE_NO_PAD.decode(&n), URL_SAFE_NO_PAD.decode(&e))
    else {
        return Err("n or e is not base64url");
    };
    // Big-endian, unsigned: leading zero bytes are not part of the modulus' length.
    let n_trimmed = &n_bytes[n_bytes.iter().take_while(|b| **b == 0).count()..];
    let e_trimmed = &e_bytes[e_bytes.iter().take_while(|b| **b == 0).count()..];
    if n_trimmed.len() < 256 || n_trimmed.len() > MAX_MODULUS_BYTES {
        return Err("RSA modulus not between 2048 and 8192 bits");
    }
    let public = RsaPublicKeyComponents {
        n: n_trimmed,
        e: e_trimmed,
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
    .map_err(|_| "not a valid RSA public key")?;
    let mut h = Sha256::new();
    h.update(n.as_bytes());
    h.update(b".");
    h.update(e.as_bytes());
    Ok(Key {
        kid,
        public,
        modulus_len: n_trimmed.len(),
        fingerprint: h.finalize().into(),
    })
}

/// The test fixture k1's modulus (`tests/fixtures/rsa-k1.jwk.json`): a real 2048-bit one, so
/// that keys built on it parse.
#[cfg(test)]
pub(crate) fn fixture_n() -> String {
    let jwk: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rsa-k1.jwk.json"
        ))
        .unwrap(),
    )
    .unwrap();
    jwk["n"].as_str().unwrap().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let n = fixture_n();
        let body = format!(
            r#"{{"keys":[
            {{"kty":"EC","kid":"ec","crv":"P-256","x":"a","y":"b"}},
            {{"kty":"RSA","kid":"enc","use":"enc","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","kid":"ps","alg":"PS256","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","kid":"short","n":"AQAB","e":"AQAB"}},
            {{"kty":"RSA","kid":"not-b64","n":"{n}*","e":"AQAB"}},
            {{"kty":"RSA","kid":"good","alg":"RS256","use":"sig","n":"{n}","e":"AQAB"}},
            {{"kty":"RSA","kid":"padded","n":"AAAA{n}","e":"AQAB"}},
            "garbage"
        ]}}"#
        );
        let set = parse_jwks(body.as_bytes(), "test").unwrap();
        assert_eq!(set.kids(), vec!["good", "padded"]);
        assert_eq!(set.get("padded").unwrap().modulus_len, 256);
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
