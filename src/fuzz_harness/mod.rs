//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` only call these), kept in the
//! library so that the seed corpora and every crash regression also replay on stable
//! (`tests/fuzz_corpus.rs`). Each one feeds arbitrary bytes to the real parser the request path
//! or the loader uses and asserts that it never panics, plus the invariants that must hold for
//! any input: a fuzzed token is never accepted unless it is a genuine one, a normalised path is
//! a fixed point that no upstream resolves under a protected prefix the gateway did not route
//! to, and so on. Not part of the gateway's API.

mod path;
mod routes;
mod token;

pub use path::path;
pub use routes::routes;
pub use token::{genuine_tokens, token, token_acceptances, token_seeds};

use crate::config::{Config, Source};
use crate::exchange::response::{classify, error_code, AuthResult};
use crate::exchange::ExchangeError;

/// One of the fuzz targets, by the name of its directory under `fuzz/corpus/`.
pub type Target = fn(&[u8]);

/// Every target with its name, for the corpus replay.
pub const TARGETS: [(&str, Target); 7] = [
    ("token", token),
    ("basic", basic),
    ("path", path),
    ("routes", routes),
    ("config", config),
    ("response", response),
    ("jwks", jwks),
];

/// The Basic header parser and the scheme test that decides which method reads the header.
pub fn basic(data: &[u8]) {
    use crate::auth::basic::{is_basic, parse};
    let parsed = parse(data);
    if let Ok((user, pass)) = &parsed {
        assert!(!user.is_empty() && user.len() <= 256, "user out of bounds");
        assert!(
            !pass.is_empty() && pass.len() <= 1024,
            "password out of bounds"
        );
        assert!(!user.contains(':'), "the user ends at the first ':'");
        // What was parsed is what a client that sends these credentials sends.
        use base64::Engine;
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        assert_eq!(
            parse(again.as_bytes()).as_ref(),
            Ok(&(user.clone(), pass.clone()))
        );
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let basic = is_basic(&value);
        // The two agree: credentials that parse are routed to the basic method, not read as a
        // token (they once disagreed on a value led by Unicode whitespace).
        if parsed.is_ok() {
            assert!(basic, "parsed as Basic but not told apart as Basic");
        }
    }
}

/// The configuration loader: any text is a config or a list of errors, each naming its key on
/// one line; a config that loads compiles into a route table.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source {
        name: "fuzz.toml".into(),
        base_dir: ".".into(),
    };
    for env in [
        &(|_: &str| None) as &dyn Fn(&str) -> Option<String>,
        &|name| (name.len() % 2 == 0).then(|| "1".to_string()),
    ] {
        match Config::parse_with_env(text, &source, env) {
            Ok(config) => {
                let table = crate::pipeline::RouteTable::new(&config.routes);
                assert_eq!(table.iter().count(), config.routes.len());
            }
            Err(errors) => {
                assert!(!errors.0.is_empty(), "an error without a problem");
                for e in &errors.0 {
                    assert!(!e.to_string().contains('\n'), "a multi-line error: {e}");
                }
            }
        }
    }
}

/// The private API's answer: `STATUS\nx-amzn-ErrorType\nBODY` (an empty second line: no
/// header; a first line that is not a number: 200).
pub fn response(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let status = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let header = parts
        .next()
        .filter(|h| !h.is_empty())
        .and_then(|h| std::str::from_utf8(h).ok());
    let body = parts.next().unwrap_or_default();

    if let Some(code) = error_code(header, body) {
        assert!(!code.is_empty() && code.len() <= 100, "code out of bounds");
        assert!(
            code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
            "code is not a bounded token: {code:?}"
        );
    }
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    match classify(status, header, body) {
        Ok(AuthResult::Tokens(_)) => {
            let result = json.as_ref().and_then(|j| j.get("AuthenticationResult"));
            assert!(
                result.is_some_and(|r| r.is_object()),
                "tokens from no tokens"
            );
        }
        Ok(AuthResult::Challenge(c)) => {
            let name = json.as_ref().and_then(|j| j.get("ChallengeName"));
            assert_eq!(name.and_then(|n| n.as_str()), Some(c.name.as_str()));
        }
        Err(ExchangeError::Cognito { type_name, .. }) => {
            assert_eq!(type_name, type_name.trim(), "type name not trimmed");
            assert!(!type_name.contains(['#', ':']), "type name not normalised");
            assert!(
                type_name == crate::exchange::error::UNREADABLE_TYPE
                    || crate::exchange::error::is_type_token(&type_name),
                "type name carried as it came: {type_name:?}"
            );
        }
        Err(_) => {}
    }
}

/// The JWKS parser: a key set that parses holds only usable RS256 keys, each under its `kid`.
pub fn jwks(data: &[u8]) {
    use crate::jwt::keys::MAX_MODULUS_BYTES;
    if let Ok(set) = crate::jwt::parse_jwks(data, "fuzz") {
        assert!(!set.keys.is_empty(), "a key set without keys");
        for (kid, key) in &set.keys {
            assert!(
                !kid.is_empty() && *kid == key.kid,
                "a key under another kid"
            );
            assert!(
                (256..=MAX_MODULUS_BYTES).contains(&key.modulus_len),
                "modulus of {} bytes",
                key.modulus_len
            );
            // A signature of the wrong length or of nothing is never valid.
            assert!(!key.verify_rs256(b"x", &[]));
            assert!(!key.verify_rs256(b"x", &vec![0; key.modulus_len]));
        }
    }
}
