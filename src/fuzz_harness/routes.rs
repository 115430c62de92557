//! Route choice over route tables the input makes, as the pipeline does it: the request's path
//! -> `normalise` -> `RouteTable::find` with the method and host.
//!
//! The input is text, one item a line (anything else is skipped, so every mutation still says
//! something):
//! - `R <prefix> [methods=GET,POST] [host=NAME] [ci]`: a route (`ci`: `case_insensitive`);
//! - `Q <METHOD> <host or -> <path>`: the request (the last one counts).
//!
//! Invariant (DESIGN §4, after the third review): nothing reaches an upstream path that a
//! longer route's prefix covers — in any method, ASCII case or encoding an upstream resolves —
//! through a shorter route. The route chosen is the longest prefix of the request's virtual
//! host that matches (case-insensitively only where that route says so); a method it does not
//! allow is a 405 naming what it allows; a longer prefix matched only in another case is a
//! refusal; and no upstream that resolves the forwarded path case-insensitively (servlet- or
//! nginx-style) lands under a longer prefix than the route's.

use http::Method;

use crate::config::{Config, RouteConfig, Source};
use crate::pipeline::path::normalise;
use crate::pipeline::routes::{prefix_matches, prefix_matches_ignoring_case, RouteMatch};
use crate::pipeline::RouteTable;

const MAX_ROUTES: usize = 8;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

struct Request<'a> {
    method: Method,
    host: Option<String>,
    path: &'a str,
}

/// The route table and the request the input describes; `None` when it describes no request.
fn parse(text: &str) -> Option<(String, Request<'_>)> {
    let mut config = String::new();
    let mut routes = 0;
    let mut request = None;
    for line in text.lines() {
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        match words.next() {
            Some("R") if routes < MAX_ROUTES => {
                let Some(prefix) = words.next().filter(|p| {
                    p.starts_with('/')
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
                }) else {
                    continue;
                };
                let mut extra = String::new();
                for w in words {
                    if let Some(list) = w.strip_prefix("methods=") {
                        let methods: Vec<String> = list
                            .split(',')
                            .filter(|m| METHODS.contains(m))
                            .map(|m| format!("{m:?}"))
                            .collect();
                        extra.push_str(&format!("methods = [{}]\n", methods.join(", ")));
                    } else if let Some(h) = w.strip_prefix("host=") {
                        if !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b == b'.') {
                            extra.push_str(&format!("host = {h:?}\n"));
                        }
                    } else if w == "ci" {
                        extra.push_str("case_insensitive = true\n");
                    }
                }
                config.push_str(&format!(
                    "[[routes]]\nname = \"r{routes}\"\npath_prefix = {prefix:?}\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n{extra}"
                ));
                routes += 1;
            }
            Some("Q") => {
                let (Some(method), Some(host)) = (words.next(), words.next()) else {
                    continue;
                };
                let Some(path) = line.splitn(4, ' ').nth(3) else {
                    continue;
                };
                let Ok(method) = Method::from_bytes(method.as_bytes()) else {
                    continue;
                };
                let host = (host != "-").then(|| host.to_ascii_lowercase());
                request = Some(Request { method, host, path });
            }
            _ => {}
        }
    }
    Some((config, request?))
}

pub fn routes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((config, req)) = parse(text) else {
        return;
    };
    let source = Source {
        name: "fuzz-routes".into(),
        base_dir: ".".into(),
    };
    // Two routes with one prefix and host but no methods to tell them apart, and the like, are
    // the loader's to refuse; what loads is what the gateway would serve.
    let Ok(config) = Config::parse_with_env(&config, &source, &|_| None) else {
        return;
    };
    // Every prefix the loader accepts is a path the normaliser leaves as it is: one a request
    // can match.
    for r in &config.routes {
        let n = normalise(&r.path_prefix);
        assert!(
            n.as_ref()
                .is_ok_and(|n| n.route == r.path_prefix && n.forward == r.path_prefix),
            "the loader accepted {:?}, which normalises to {n:?}",
            r.path_prefix
        );
    }
    let table = RouteTable::new(&config.routes);
    let Ok(target) = http::uri::PathAndQuery::try_from(req.path) else {
        return;
    };
    if !target.path().starts_with('/') {
        return;
    }
    let Ok(normal) = normalise(target.path()) else {
        return; // 400
    };
    let path = normal.route.as_ref();
    let host = req.host.as_deref();
    let eligible = |r: &RouteConfig| r.host.as_deref().is_none_or(|h| Some(h) == host);
    let matches = |r: &RouteConfig| {
        prefix_matches(&r.path_prefix, path)
            || (r.case_insensitive && prefix_matches_ignoring_case(&r.path_prefix, path))
    };
    // Every route of this host whose prefix covers the path in some ASCII case.
    let covering: Vec<&RouteConfig> = config
        .routes
        .iter()
        .filter(|r| eligible(r) && prefix_matches_ignoring_case(&r.path_prefix, path))
        .collect();
    let longest_cover = covering.iter().map(|r| r.path_prefix.len()).max();
    match table.find(host, &req.method, path) {
        RouteMatch::Found(r) => {
            assert!(
                eligible(r) && matches(r),
                "{:?} does not match {path:?}",
                r.name
            );
            assert!(
                r.methods.is_empty() || r.methods.contains(&req.method),
                "{:?} does not allow {}",
                r.name,
                req.method
            );
            assert_eq!(
                longest_cover,
                Some(r.path_prefix.len()),
                "{path:?} ({}) reached {:?} though a longer prefix covers it",
                req.method,
                r.name
            );
            let forward = normal.forward.as_ref();
            for servlet in [true, false] {
                let resolved = super::path::resolve(forward, servlet);
                let longer = config
                    .routes
                    .iter()
                    .filter(|p| eligible(p) && p.path_prefix.len() > r.path_prefix.len());
                for p in longer {
                    let prefix: Vec<&str> =
                        p.path_prefix.split('/').filter(|s| !s.is_empty()).collect();
                    let under = resolved.len() >= prefix.len()
                        && prefix
                            .iter()
                            .zip(&resolved)
                            .all(|(a, s)| a.as_bytes().eq_ignore_ascii_case(s));
                    assert!(
                        !under,
                        "an upstream resolves {forward:?} under {:?}, routed to {:?}",
                        p.name, r.name
                    );
                }
            }
        }
        RouteMatch::MethodNotAllowed { route, allow } => {
            assert!(eligible(route) && matches(route));
            assert_eq!(longest_cover, Some(route.path_prefix.len()));
            let allow = allow.to_str().expect("method names");
            assert!(!allow.is_empty(), "405 that allows nothing");
            assert!(
                !allow.split(", ").any(|m| m == req.method.as_str()),
                "405 for {} that Allow names",
                req.method
            );
            // Every route of that prefix refuses the method.
            for r in config.routes.iter().filter(|r| {
                eligible(r) && matches(r) && r.path_prefix.len() == route.path_prefix.len()
            }) {
                assert!(!r.methods.is_empty() && !r.methods.contains(&req.method));
            }
        }
        RouteMatch::CaseVariant(v) => {
            assert!(eligible(v) && !v.case_insensitive);
            assert!(
                prefix_matches_ignoring_case(&v.path_prefix, path)
                    && !prefix_matches(&v.path_prefix, path)
            );
            assert_eq!(longest_cover, Some(v.path_prefix.len()));
        }
        RouteMatch::None => {
            assert!(
                covering.is_empty(),
                "no route, though {:?} covers {path:?}",
                covering[0].name
            );
        }
    }
}
