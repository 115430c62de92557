//! Path normalisation and route matching, as the pipeline does them: the request target's path
//! (as `http` parses it) -> `normalise` -> `RouteTable::find` on the routed path, and
//! `strip_segments` for `strip_prefix` routes.
//!
//! Invariants: the forwarded and routed paths hold no empty, `.` or `..` segment, no encoded
//! separator or control character; the forwarded path is a fixed point (normalising it again
//! changes nothing, so an upstream's one decoding cannot produce a new escape); a path routed to
//! `/admin` starts with that segment; and no upstream that resolves the forwarded path
//! (servlet-style: `;params` dropped, then decoded; or nginx-style: decoded, no params) lands
//! under a protected prefix that the gateway did not route to.

use std::sync::OnceLock;

use http::Method;

use crate::config::{Config, Source};
use crate::pipeline::path::{normalise, NormalPath};
use crate::pipeline::routes::{prefix_matches, RouteMatch};
use crate::pipeline::RouteTable;
use crate::proxy::forward::strip_segments;

const ROUTES: &str = r#"
[[routes]]
name = "root"
path_prefix = "/"
upstream = "builtin:echo"
auth = ["none"]

[[routes]]
name = "public"
path_prefix = "/public"
upstream = "builtin:echo"
auth = ["none"]

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "builtin:echo"
auth = ["none"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "builtin:echo"
auth = ["none"]
strip_prefix = true

[[routes]]
name = "api-admin"
path_prefix = "/api/admin"
upstream = "builtin:echo"
auth = ["none"]
strip_prefix = true
"#;

/// The routes a resolved path must reach, by their leading segments.
const PROTECTED: [(&[&str], &str); 2] = [(&["api", "admin"], "api-admin"), (&["admin"], "admin")];

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let source = Source {
            name: "fuzz-routes".into(),
            base_dir: ".".into(),
        };
        let config = Config::parse_with_env(ROUTES, &source, &|_| None).expect("route config");
        RouteTable::new(&config.routes)
    })
}

pub fn path(data: &[u8]) {
    // Whatever the text, normalising it does not panic.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalise(text);
    }
    // What reaches the pipeline: an origin-form target that `http` accepted.
    let Ok(target) = http::uri::PathAndQuery::try_from(data) else {
        return;
    };
    let raw = target.path();
    if !raw.starts_with('/') {
        return;
    }
    let Ok(normal) = normalise(raw) else {
        return; // 400
    };
    let (forward, route) = (normal.forward.as_ref(), normal.route.as_ref());
    clean(forward, true);
    clean(route, false);
    assert_eq!(
        normalise(forward),
        Ok(NormalPath {
            forward: forward.into(),
            route: route.into()
        }),
        "normalising {forward:?} again changes it"
    );
    assert!(
        http::uri::PathAndQuery::try_from(forward).is_ok(),
        "{forward:?} cannot be forwarded"
    );

    let table = table();
    let found = match table.find(None, &Method::GET, route) {
        RouteMatch::Found(r) => r,
        // A case variant of a longer prefix (`/ADMIN`) is refused: nothing is forwarded.
        RouteMatch::CaseVariant(_) => return,
        other => panic!("{other:?} for {route:?}: `/` serves every method"),
    };
    assert!(prefix_matches(&found.path_prefix, route));
    if found.name == "admin" {
        assert!(
            route == "/admin" || route.starts_with("/admin/"),
            "{route:?}"
        );
    }
    if found.strip_prefix {
        let rest = strip_segments(forward, found.path_prefix.matches('/').count());
        assert!(forward.ends_with(rest) && (rest.is_empty() || rest.starts_with('/')));
    }
    for (model, resolved) in [
        ("servlet", resolve(forward, true)),
        ("nginx", resolve(forward, false)),
    ] {
        for (prefix, name) in PROTECTED {
            let under = resolved.len() >= prefix.len()
                && prefix.iter().zip(&resolved).all(|(p, s)| p.as_bytes() == s);
            if under {
                assert_eq!(
                    found.name, name,
                    "{raw:?} is routed to {:?}; a {model} upstream resolves {forward:?} under {name}",
                    found.name
                );
                break;
            }
        }
    }
}

/// A normalised path: no empty segment but a trailing one, no dot segment (also with params),
/// no encoded separator or control character, no backslash.
fn clean(path: &str, with_params: bool) {
    assert!(path.starts_with('/'), "{path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.split(';').next().unwrap_or_default();
        assert!(name != "." && name != "..", "dot segment in {path:?}");
        assert!(
            !segment.is_empty() || i == segments.len() - 1,
            "empty segment in {path:?}"
        );
        assert!(with_params || !segment.contains(';'), "params in {path:?}");
    }
    let lower = path.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%2e", "\\"] {
        assert!(!lower.contains(bad), "{bad} in {path:?}");
    }
    for c in 0..0x20u8 {
        assert!(
            !lower.contains(&format!("%{c:02x}")),
            "%{c:02x} in {path:?}"
        );
    }
    assert!(!lower.contains("%7f") && !path.bytes().any(|b| b < 0x20 || b == 0x7f));
}

/// The segments an upstream resolves `path` to: decoded once, empty and `.` segments dropped,
/// `..` applied. `servlet`: `;params` dropped from each segment before decoding (Tomcat,
/// Spring); else kept (nginx). An encoded `/` decoded here separates segments.
pub(super) fn resolve(path: &str, servlet: bool) -> Vec<Vec<u8>> {
    let decoded: Vec<Vec<u8>> = path
        .split('/')
        .map(|s| {
            let s = if servlet {
                s.split(';').next().unwrap_or_default()
            } else {
                s
            };
            percent_decode(s.as_bytes())
        })
        .collect();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in decoded.join(&b'/').split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s.to_vec()),
        }
    }
    out
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}
