//! `[routes.cors]`: a route's CORS policy.

use super::*;

pub(crate) const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// `[routes.cors]`: exact origins (scheme, host, optional port) or `*`, not `*` with
/// credentials; methods and header names as HTTP tokens.
pub(super) fn cors(cx: &mut Ctx, key: &str, c: RawCors) -> CorsConfig {
    let k = |f: &str| join_key(key, f);
    let allow_origins = if c.allow_origins.iter().any(|o| o == "*") {
        if c.allow_origins.len() > 1 {
            cx.err(k("allow_origins"), "\"*\" stands alone");
        }
        if c.allow_credentials {
            cx.err(
                k("allow_origins"),
                "\"*\" cannot be combined with allow_credentials (browsers refuse it): list the origins",
            );
        }
        None
    } else {
        if c.allow_origins.is_empty() {
            cx.err(k("allow_origins"), "required: exact origins, or [\"*\"]");
        }
        let mut origins = Vec::new();
        for (j, o) in c.allow_origins.iter().enumerate() {
            let ok = reqwest::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && !o.ends_with('/')
                    && u.query().is_none()
                    && u.username().is_empty()
            });
            match HeaderValue::from_str(o) {
                Ok(v) if ok => origins.push(v),
                _ => cx.err(
                    format!("{key}.allow_origins[{j}]"),
                    format!("not an origin (scheme://host[:port]): {o:?}"),
                ),
            }
        }
        Some(origins)
    };
    let mut methods = Vec::new();
    for (j, m) in c.allow_methods.iter().enumerate() {
        match Method::from_bytes(m.as_bytes()) {
            Ok(m) => methods.push(m.to_string()),
            Err(_) => cx.err(
                format!("{key}.allow_methods[{j}]"),
                format!("not a method: {m:?}"),
            ),
        }
    }
    if methods.is_empty() {
        methods = ["GET", "HEAD", "POST"].map(String::from).to_vec();
    }
    let mut names = |field: &str, list: &[String]| -> Option<HeaderValue> {
        let mut out = Vec::new();
        for (j, h) in list.iter().enumerate() {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => out.push(n.as_str().to_string()),
                Err(_) => cx.err(
                    format!("{key}.{field}[{j}]"),
                    format!("not a header name: {h:?}"),
                ),
            }
        }
        (!out.is_empty()).then(|| HeaderValue::from_str(&out.join(", ")).expect("header names"))
    };
    let allow_headers = names("allow_headers", &c.allow_headers);
    let expose_headers = names("expose_headers", &c.expose_headers);
    let max_age = cx.duration(&k("max_age"), c.max_age.as_deref(), DEFAULT_CORS_MAX_AGE);
    CorsConfig {
        allow_origins,
        allow_methods: HeaderValue::from_str(&methods.join(", ")).expect("method names"),
        allow_headers,
        expose_headers,
        max_age: HeaderValue::from(max_age.as_secs()),
        allow_credentials: c.allow_credentials,
    }
}
