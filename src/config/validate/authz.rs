//! `[authz]`: the external-authorizer listeners, who may call them, and Envoy's path prefix.

use super::Ctx;
use crate::config::raw::*;
use crate::config::*;

pub(super) fn authz(cx: &mut Ctx, a: RawAuthz) -> AuthzConfig {
    let grpc_listen = a
        .grpc_listen
        .as_deref()
        .and_then(|l| cx.addr("authz.grpc_listen", l));
    let http_listen = a
        .http_listen
        .as_deref()
        .and_then(|l| cx.addr("authz.http_listen", l));
    if a.grpc_listen.is_none() && a.http_listen.is_none() {
        cx.err(
            "authz",
            "needs grpc_listen, http_listen or both (where the proxies ask)",
        );
    }
    let allow_from = match &a.allow_from {
        Some(list) if list.is_empty() => {
            cx.err(
                "authz.allow_from",
                "empty: no proxy could ask (list the proxies' addresses or networks)",
            );
            Vec::new()
        }
        Some(list) => cx.cidrs("authz.allow_from", list),
        None => cx.cidrs(
            "authz.allow_from",
            &["127.0.0.0/8".into(), "::1/128".into()],
        ),
    };
    let path_prefix = match a.path_prefix {
        None => DEFAULT_AUTHZ_PATH_PREFIX.to_string(),
        Some(p)
            if p.starts_with('/')
                && p.len() > 1
                && !p.contains(['?', '#', ' ', '%'])
                && !["/nginx", "/traefik"].contains(&p.trim_end_matches('/')) =>
        {
            p.trim_end_matches('/').to_string()
        }
        Some(p) => {
            cx.err(
                "authz.path_prefix",
                format!("must be a path such as \"/envoy\", other than /nginx and /traefik: {p:?}"),
            );
            DEFAULT_AUTHZ_PATH_PREFIX.to_string()
        }
    };
    AuthzConfig {
        grpc_listen,
        http_listen,
        allow_from,
        path_prefix,
    }
}
