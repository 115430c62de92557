//! Key material and token minting: RS256 ID and access tokens shaped like Cognito's, signed with
//! two key ids (Cognito signs the two kinds with different keys), and the JWKS that publishes them.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::IdpError;

/// What tokens say about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub username: String,
    pub sub: String,
    pub groups: Vec<String>,
    pub attributes: Vec<(String, String)>,
}

/// Key id of ID tokens when the key comes from `dev_idp.signing_keys`.
pub const ID_KID: &str = "dev-idp-1";
/// Key id of access tokens when the key comes from `dev_idp.signing_keys`.
pub const ACCESS_KID: &str = "dev-idp-2";
/// The only scope `AdminInitiateAuth`/`InitiateAuth` tokens carry.
pub const SIGNIN_SCOPE: &str = "aws.cognito.signin.user.admin";
/// Size of the keys generated when no PEM file is configured.
const GENERATED_KEY_BITS: usize = 2048;
/// ring refuses to sign with smaller RSA keys.
const MIN_KEY_BITS: usize = 2048;

/// Claims the ID token sets itself; user attributes of these names are ignored.
const RESERVED_CLAIMS: &[&str] = &[
    "sub",
    "aud",
    "iss",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "token_use",
    "jti",
    "origin_jti",
    "event_id",
    "cognito:username",
    "cognito:groups",
    "client_id",
    "username",
    "scope",
];

/// One signing key under its key id, with its public JWK.
struct KeyPair {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl KeyPair {
    fn new(kid: &str, key: &RsaPrivateKey) -> Result<KeyPair, String> {
        if key.size() * 8 < MIN_KEY_BITS {
            return Err(format!(
                "the RSA key has {} bits; at least {MIN_KEY_BITS} are needed",
                key.size() * 8
            ));
        }
        let der = key
            .to_pkcs1_der()
            .map_err(|e| format!("cannot encode the RSA key: {e}"))?;
        let pair = KeyPair {
            kid: kid.to_string(),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
        };
        // Fail at start, not on the first login, if ring cannot use the key.
        pair.sign(&json!({ "probe": true }))
            .map_err(|_| "the RSA key cannot sign RS256 tokens".to_string())?;
        Ok(pair)
    }

    fn sign(&self, claims: &Value) -> Result<String, IdpError> {
        // Cognito's header is exactly {"kid","alg"}: no "typ".
        let mut header = Header::new(Algorithm::RS256);
        header.typ = None;
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, kid = %self.kid, "dev IdP cannot sign a token");
            IdpError::Internal
        })
    }
}

/// The two signing keys: one for ID tokens, one for access tokens.
pub struct SigningKeys {
    id: KeyPair,
    access: KeyPair,
}

impl SigningKeys {
    #[cfg(test)]
    pub(crate) fn id_kid(&self) -> &str {
        &self.id.kid
    }

    #[cfg(test)]
    pub(crate) fn access_kid(&self) -> &str {
        &self.access.kid
    }

    /// One RSA private key (PKCS#8 or PKCS#1 PEM) used for both kinds, under the fixed kids
    /// `dev-idp-1` (ID) and `dev-idp-2` (access) that `certs/dev-jwks.json` publishes.
    pub fn from_pem(pem: &str) -> Result<SigningKeys, String> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| "not an RSA private key in PEM (PKCS#8 or PKCS#1)".to_string())?;
        Ok(SigningKeys {
            id: KeyPair::new(ID_KID, &key)?,
            access: KeyPair::new(ACCESS_KID, &key)?,
        })
    }

    /// Two fresh 2048-bit keys. Their kids are random so that they never collide with a kid a
    /// JWKS seed file publishes for another key. Slow (CPU-bound): call off the async runtime.
    pub fn generate() -> Result<SigningKeys, String> {
        let tag = hex(&random_bytes::<4>());
        let fresh = |kind: &str| -> Result<KeyPair, String> {
            let key = RsaPrivateKey::new(&mut OsRng, GENERATED_KEY_BITS)
                .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
            KeyPair::new(&format!("dev-idp-{kind}-{tag}"), &key)
        };
        Ok(SigningKeys {
            id: fresh("id")?,
            access: fresh("access")?,
        })
    }

    /// `{"keys":[...]}` with both public keys.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.id.jwk.clone(), self.access.jwk.clone()] })
    }
}

/// Where a chain of tokens started: a password login. Refreshed tokens keep both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub origin_jti: String,
    pub auth_time: i64,
}

impl Origin {
    pub fn new(now: i64) -> Origin {
        Origin {
            origin_jti: uuid_v4(),
            auth_time: now,
        }
    }
}

/// An ID token and an access token minted together.
pub(crate) struct Minted {
    pub id_token: String,
    pub access_token: String,
    pub expires_in: u64,
}

/// Signs Cognito-shaped tokens for one issuer and app client.
pub(crate) struct Minter {
    pub issuer: String,
    pub client_id: String,
    pub lifetime: Duration,
    pub keys: SigningKeys,
}

impl Minter {
    pub(crate) fn mint(
        &self,
        who: &Profile,
        origin: &Origin,
        now: i64,
    ) -> Result<Minted, IdpError> {
        Ok(Minted {
            id_token: self.keys.id.sign(&self.id_claims(who, origin, now))?,
            access_token: self
                .keys
                .access
                .sign(&self.access_claims(who, origin, now))?,
            expires_in: self.lifetime.as_secs(),
        })
    }

    fn exp(&self, now: i64) -> i64 {
        now.saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX))
    }

    /// Claims of an ID token (COGNITO.md §6); user attributes become string claims.
    pub fn id_claims(&self, who: &Profile, origin: &Origin, now: i64) -> Value {
        let mut c = Map::new();
        c.insert("sub".into(), json!(who.sub));
        if !who.groups.is_empty() {
            c.insert("cognito:groups".into(), json!(who.groups));
        }
        c.insert("email_verified".into(), json!(true));
        for (name, value) in &who.attributes {
            if RESERVED_CLAIMS.contains(&name.as_str()) {
                continue;
            }
            let v = match (name.as_str(), value.as_str()) {
                ("email_verified" | "phone_number_verified", "true") => json!(true),
                ("email_verified" | "phone_number_verified", "false") => json!(false),
                _ => json!(value),
            };
            c.insert(name.clone(), v);
        }
        c.insert("iss".into(), json!(self.issuer));
        c.insert("cognito:username".into(), json!(who.username));
        c.insert("origin_jti".into(), json!(origin.origin_jti));
        c.insert("aud".into(), json!(self.client_id));
        c.insert("token_use".into(), json!("id"));
        c.insert("auth_time".into(), json!(origin.auth_time));
        c.insert("exp".into(), json!(self.exp(now)));
        c.insert("iat".into(), json!(now));
        c.insert("jti".into(), json!(uuid_v4()));
        Value::Object(c)
    }

    /// Claims of an access token: no `aud`, `client_id` instead, the sign-in scope.
    pub fn access_claims(&self, who: &Profile, origin: &Origin, now: i64) -> Value {
        let mut c = Map::new();
        c.insert("sub".into(), json!(who.sub));
        if !who.groups.is_empty() {
            c.insert("cognito:groups".into(), json!(who.groups));
        }
        c.insert("iss".into(), json!(self.issuer));
        c.insert("client_id".into(), json!(self.client_id));
        c.insert("origin_jti".into(), json!(origin.origin_jti));
        c.insert("token_use".into(), json!("access"));
        c.insert("scope".into(), json!(SIGNIN_SCOPE));
        c.insert("auth_time".into(), json!(origin.auth_time));
        c.insert("exp".into(), json!(self.exp(now)));
        c.insert("iat".into(), json!(now));
        c.insert("jti".into(), json!(uuid_v4()));
        c.insert("username".into(), json!(who.username));
        Value::Object(c)
    }
}

/// A stable `sub` for a user name: the first 16 bytes of SHA-256("cognito-gate dev-idp:" +
/// username) formatted as a UUID (version 8, "custom"). scripts/dev-token.sh computes the same.
pub fn stable_sub(username: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"cognito-gate dev-idp:")
        .chain_update(username.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    uuid_string(b, 8)
}

/// A random UUID (version 4), as Cognito uses for `jti` and `origin_jti`.
pub(crate) fn uuid_v4() -> String {
    uuid_string(random_bytes::<16>(), 4)
}

/// An opaque random string (base64url) of `N` random bytes: refresh tokens and sessions.
pub(crate) fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

fn uuid_string(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
