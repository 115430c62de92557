//! Properties that must hold for every input, checked on generated ones (proptest): route
//! matching never crosses a segment boundary, header hygiene never lets a claim header the
//! client sent through in any spelling, and the authorizer accepts exactly the tokens an
//! independent verifier (jsonwebtoken alone, with the same checks written out) accepts.

use std::sync::Arc;
use std::time::Duration;

use cognito_gate::config::{Config, Source, TokenUsePolicy};
use cognito_gate::jwt::verify::RoutePolicy;
use cognito_gate::jwt::{JwksCache, Verifier};
use cognito_gate::pipeline::path::normalise;
use cognito_gate::pipeline::RouteTable;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::common::{TestKey, CLIENT_ID, ISSUER};

fn parse(text: &str) -> Config {
    let source = Source {
        name: "properties".into(),
        base_dir: ".".into(),
    };
    Config::parse_with_env(text, &source, &|_| None).expect("generated config is valid")
}

/// Path segments that make boundary cases likely: shared prefixes, dots, params, encodings.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("ab".to_string()),
        Just("a.b".to_string()),
        Just("a;x".to_string()),
        Just("%61".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just("".to_string()),
        "[a-c]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![Just("a"), Just("ab"), Just("b")], 1..3)
        .prop_map(|s| format!("/{}", s.join("/")))
}

/// 512 cases per property on every run; failures are printed, not persisted to a file.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A route line of the routes harness: a prefix in mixed case, maybe methods, a host, `ci`.
fn route_line() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("admin"),
        Just("Admin"),
        Just("api"),
        Just("a"),
        Just("b")
    ];
    let prefix = prop_oneof![
        Just("/".to_string()),
        prop::collection::vec(seg, 1..3).prop_map(|s| format!("/{}", s.join("/"))),
    ];
    let methods = prop::collection::vec(
        prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")],
        0..3,
    );
    let host = prop_oneof![Just(""), Just(" host=x.example"), Just(" host=y.example")];
    (prefix, methods, host, any::<bool>()).prop_map(|(p, m, h, ci)| {
        let m = if m.is_empty() {
            String::new()
        } else {
            format!(" methods={}", m.join(","))
        };
        format!("R {p}{m}{h}{}", if ci { " ci" } else { "" })
    })
}

/// A request line: any of the methods, a host or none, a path in mixed case and encodings.
fn request_line() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("admin"),
        Just("ADMIN"),
        Just("aDmIn"),
        Just("%61dmin"),
        Just("%41DMIN"),
        Just("api"),
        Just("API"),
        Just("a"),
        Just("A"),
        Just("b"),
        Just("x"),
        Just(".."),
        Just("."),
        Just("admin;p"),
        Just(""),
    ];
    let method = prop_oneof![
        Just("GET"),
        Just("HEAD"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("OPTIONS"),
    ];
    let host = prop_oneof![
        Just("-"),
        Just("x.example"),
        Just("X.Example"),
        Just("y.example")
    ];
    (method, host, prop::collection::vec(seg, 0..4))
        .prop_map(|(m, h, s)| format!("Q {m} {h} /{}", s.join("/")))
}

proptest! {
    #![proptest_config(config())]

    /// Over generated route tables (prefixes in mixed case, methods, hosts, `case_insensitive`)
    /// and requests (every method, ASCII case, percent-encodings, dot segments): nothing
    /// reaches a path that a longer route's prefix covers through a shorter route
    /// (`fuzz_harness::routes` holds the invariant; the fuzz step runs it too).
    #[test]
    fn no_method_case_or_encoding_falls_through_to_a_shorter_prefix(
        routes in prop::collection::vec(route_line(), 1..6),
        request in request_line(),
    ) {
        let input = format!("{}\n{request}\n", routes.join("\n"));
        cognito_gate::fuzz_harness::routes(input.as_bytes());
    }

    /// The route a path gets has a prefix that ends at a segment boundary of the path the
    /// gateway routes on, and that path has no empty, `.` or `..` segment.
    #[test]
    fn route_matching_never_crosses_a_segment_boundary(
        prefixes in prop::collection::btree_set(prefix(), 1..4),
        raw in path(),
    ) {
        let mut text = String::new();
        for (i, p) in prefixes.iter().enumerate() {
            text.push_str(&format!(
                "[[routes]]\nname = \"r{i}\"\npath_prefix = \"{p}\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n"
            ));
        }
        let config = parse(&text);
        let table = RouteTable::new(&config.routes);
        let Ok(normal) = normalise(&raw) else {
            // Refused paths (dot segments, encoded separators) never reach routing.
            return Ok(());
        };
        let route_path: &str = &normal.route;
        prop_assert!(!route_path.contains("//"), "{raw} -> {route_path}");
        for seg in route_path.split('/').skip(1) {
            prop_assert!(seg != "." && seg != "..", "{raw} -> {route_path}");
        }
        if let Some(route) = table.find(None, &Method::GET, route_path).found() {
            let p = route.path_prefix.as_str();
            prop_assert!(
                route_path == p || route_path.starts_with(&format!("{p}/")),
                "{raw} -> {route_path} matched {p}"
            );
            // And it is the longest such prefix.
            for other in &prefixes {
                if route_path == other || route_path.starts_with(&format!("{other}/")) {
                    prop_assert!(other.len() <= p.len(), "{route_path}: {other} is longer than {p}");
                }
            }
        } else {
            for p in &prefixes {
                prop_assert!(
                    !(route_path == p || route_path.starts_with(&format!("{p}/"))),
                    "{route_path} should have matched {p}"
                );
            }
        }
    }

    /// Whatever spelling a client uses for a claim header (any `-` written as `_`), none
    /// reaches the upstream; unrelated headers do.
    #[test]
    fn header_hygiene_never_forwards_a_claim_header_the_client_sent(
        variants in prop::collection::vec((0usize..3, prop::collection::vec(any::<bool>(), 16)), 1..8),
        unrelated in prop::collection::vec("x-app-[a-z]{1,8}", 0..4),
    ) {
        let claims = ["x-cognito-sub", "x-cognito-groups", "x-user-email"];
        let config = parse(
            "[cognito]\nissuer = \"https://issuer.example/pool\"\napp_clients = []\n[cognito.jwks]\nurl = \"http://127.0.0.1:1/jwks\"\n\
             [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n\
             claim_headers = { \"x-cognito-sub\" = \"sub\", \"x-cognito-groups\" = \"cognito:groups\", \"x-user-email\" = \"email\" }\n",
        );
        let table = RouteTable::new(&config.routes);
        let route = table.get("r").unwrap().clone();
        let mut headers = HeaderMap::new();
        for (which, underscores) in &variants {
            let spelled: String = claims[*which]
                .chars()
                .zip(underscores.iter().cycle())
                .map(|(c, u)| if c == '-' && *u { '_' } else { c })
                .collect();
            headers.append(
                HeaderName::from_bytes(spelled.as_bytes()).unwrap(),
                HeaderValue::from_static("admins"),
            );
        }
        for u in &unrelated {
            headers.insert(HeaderName::from_bytes(u.as_bytes()).unwrap(), HeaderValue::from_static("1"));
        }
        table.hygiene().clean(&mut headers, &route, false);
        for name in headers.keys() {
            let dashed = name.as_str().replace('_', "-");
            prop_assert!(!claims.contains(&dashed.as_str()), "{name} was forwarded");
        }
        for u in &unrelated {
            prop_assert!(headers.contains_key(u.as_str()), "{u} was dropped");
        }
    }
}

/// One generated token: its claims, the key that signs it, the kid it names, and whether its
/// payload is edited after signing.
#[derive(Debug, Clone)]
struct Case {
    claims: Value,
    signer: usize,
    kid: &'static str,
    tampered: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let now = crate::common::now();
    // Each field is mostly right, so that accepted tokens are common and each wrong value is
    // tried against otherwise valid tokens.
    (
        prop_oneof![6 => Just(json!(ISSUER)), 1 => Just(json!(format!("{ISSUER}/"))), 1 => Just(json!("https://evil.example/pool")), 1 => Just(Value::Null), 1 => Just(json!(1))],
        prop_oneof![4 => Just(json!("id")), 4 => Just(json!("access")), 1 => Just(json!("refresh")), 1 => Just(Value::Null), 1 => Just(json!(["id"]))],
        prop_oneof![8 => Just(json!(now + 600)), 1 => Just(json!(now - 600)), 1 => Just(Value::Null), 1 => Just(json!("9999999999")), 1 => Just(json!((now + 600) as f64 + 0.5))],
        prop_oneof![6 => Just(Value::Null), 1 => Just(json!(now - 600)), 1 => Just(json!(now + 600))],
        prop_oneof![6 => Just(json!(CLIENT_ID)), 1 => Just(json!("other-client")), 1 => Just(Value::Null), 1 => Just(json!([CLIENT_ID]))],
        prop_oneof![6 => Just(json!(CLIENT_ID)), 1 => Just(json!("other-client")), 1 => Just(Value::Null)],
        prop_oneof![4 => Just(0usize), 4 => Just(1usize), 1 => Just(2usize)],
        prop_oneof![8 => Just(None), 1 => Just(Some("k1")), 1 => Just(Some("k2")), 1 => Just(Some("unknown"))],
        prop_oneof![4 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(iss, token_use, exp, nbf, aud, client_id, signer, kid, tampered)| {
            let mut claims = serde_json::Map::new();
            for (k, v) in [("iss", iss), ("token_use", token_use), ("exp", exp), ("nbf", nbf), ("aud", aud), ("client_id", client_id)] {
                if !v.is_null() {
                    claims.insert(k.to_string(), v);
                }
            }
            claims.insert("sub".into(), json!("user"));
            // The signer's own kid unless another is named.
            let kid = kid.unwrap_or(["k1", "k2", "k3"][signer]);
            Case { claims: Value::Object(claims), signer, kid, tampered }
        })
}

/// The same checks, written out on top of jsonwebtoken: the JWKS holds k1 and k2; RS256; `exp`
/// a number, required, and in the future; `nbf`, when present, a number not in the future; `iss` exactly the issuer;
/// `token_use` id or access; an ID token's `aud` (a string) or an access token's `client_id`
/// is the app client.
fn independent(token: &str, keys: &[(String, jsonwebtoken::DecodingKey)], now: i64) -> bool {
    let Ok(header) = jsonwebtoken::decode_header(token) else {
        return false;
    };
    let Some((_, key)) = keys
        .iter()
        .find(|(kid, _)| Some(kid) == header.kid.as_ref())
    else {
        return false;
    };
    // jsonwebtoken checks the signature and the algorithm; the time claims are checked below,
    // since it reads only integer NumericDates and RFC 7519 allows fractions (as aws-jwt-verify
    // and the gateway do, seconds truncated).
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let Ok(data) = jsonwebtoken::decode::<Value>(token, key, &validation) else {
        return false;
    };
    let c = data.claims;
    let Some(exp) = c.get("exp").and_then(Value::as_f64) else {
        return false;
    };
    if now >= exp.trunc() as i64 {
        return false;
    }
    if let Some(nbf) = c.get("nbf") {
        match nbf.as_f64() {
            Some(n) if now >= n.trunc() as i64 => {}
            _ => return false,
        }
    }
    if c["iss"] != json!(ISSUER) {
        return false;
    }
    match c["token_use"].as_str() {
        Some("id") => c["aud"] == json!(CLIENT_ID),
        Some("access") => c["client_id"] == json!(CLIENT_ID),
        _ => false,
    }
}

proptest! {
    #![proptest_config(config())]

    /// The gateway's authorizer and the independent verifier agree on every generated token.
    #[test]
    fn the_authorizer_agrees_with_an_independent_verifier(case in case()) {
        let keys = [TestKey::load("k1"), TestKey::load("k2"), TestKey::load("k3")];
        let signed = keys[case.signer].sign_as(case.kid, &case.claims);
        let token = if case.tampered {
            use base64::Engine;
            let mut parts: Vec<String> = signed.split('.').map(str::to_string).collect();
            let mut claims = case.claims.clone();
            claims["sub"] = json!("admin");
            parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
            parts.join(".")
        } else {
            signed
        };
        let jwks = json!({"keys": [keys[0].jwk.clone(), keys[1].jwk.clone()]});
        let decoding: Vec<(String, jsonwebtoken::DecodingKey)> = keys[..2]
            .iter()
            .map(|k| {
                let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
                (k.kid.clone(), jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap())
            })
            .collect();
        let now = crate::common::now();
        let want = independent(&token, &decoding, now);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(async {
            let set = cognito_gate::jwt::parse_jwks(jwks.to_string().as_bytes(), "properties").unwrap();
            let cache = JwksCache::new(Some(set), None, Duration::from_secs(3600), Duration::from_secs(3600));
            let verifier = Arc::new(Verifier::new(vec![ISSUER.into()], vec![CLIENT_ID.into()], Duration::ZERO, cache));
            let policy = RoutePolicy { token_use: TokenUsePolicy::Any, scopes: &[], groups: &[] };
            verifier.verify(&token, policy, now).await.is_ok()
        });
        prop_assert_eq!(got, want, "{:?}", case);
    }
}
