//! The summary `check-config` prints.

use http::Method;

use super::types::*;

impl Config {
    /// A short human summary, printed by `check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.server;
        if let Some(l) = s.listen {
            out.push_str(&format!("listen        http://{l} (HTTP/1.1 + h2c)\n"));
        }
        if let Some(t) = &s.tls {
            let mtls = if t.client_ca.is_some() {
                ", client certificates required"
            } else {
                ""
            };
            out.push_str(&format!("listen        https://{} (TLS{mtls})\n", t.listen));
        }
        if let Some(a) = &self.admin {
            out.push_str(&format!("admin         http://{}\n", a.listen));
        }
        for (i, pool) in self.cognito.iter().flat_map(|c| c.pools.iter()).enumerate() {
            if self.cognito.as_ref().is_some_and(|c| c.pools.len() > 1) {
                out.push_str(&format!("pool {}        {}\n", i + 1, pool.name));
            }
            out.push_str(&format!("issuer        {}\n", pool.issuers.join(" or ")));
            let clients = if pool.app_clients.is_empty() {
                "any (not checked)".to_string()
            } else {
                pool.app_clients.join(", ")
            };
            out.push_str(&format!("app clients   {clients}\n"));
            let mut src = Vec::new();
            if let Some(u) = &pool.jwks.url {
                src.push(format!("url {u}"));
            }
            if let Some(f) = &pool.jwks.file {
                src.push(format!("file {}", f.display()));
            }
            out.push_str(&format!("jwks          {}\n", src.join(" + ")));
        }
        if let Some(p) = &self.private_api {
            let style = match p.style {
                ApiStyle::ApiGateway => "apigateway",
                ApiStyle::CognitoIdp => "cognito-idp",
            };
            let sign = match &p.sign {
                crate::config::Signing::None => String::new(),
                crate::config::Signing::SigV4 { region } => format!(", SigV4 for {region}"),
            };
            out.push_str(&format!("private api   {} ({style}{sign})\n", p.base_url));
        }
        if let Some(e) = &self.exchange {
            let secret = if e.client_secret.is_some() {
                ", SECRET_HASH"
            } else {
                ""
            };
            out.push_str(&format!(
                "exchange      client {} pool {} flow {}{secret}\n",
                e.client_id,
                e.user_pool_id,
                e.auth_flow.as_str()
            ));
        }
        for a in &self.service_accounts {
            out.push_str(&format!("service acct  {} (user {})\n", a.name, a.username));
        }
        if let Some(l) = &self.login_api {
            out.push_str(&format!(
                "login api     {}/login, /refresh, /challenge\n",
                l.path_prefix
            ));
        }
        if let Some(s) = &self.shared_state {
            out.push_str(&format!(
                "shared state  {}{} (timeout {}, prefix {:?}; values sealed)\n",
                s.url,
                if s.cluster { " cluster" } else { "" },
                humantime::format_duration(s.timeout),
                s.key_prefix
            ));
        }
        if let Some(a) = &self.authz {
            let nets: Vec<String> = a.allow_from.iter().map(|n| n.to_string()).collect();
            if let Some(g) = a.grpc_listen {
                out.push_str(&format!("authz grpc    {g} (Envoy ext_authz, h2c)\n"));
            }
            if let Some(h) = a.http_listen {
                out.push_str(&format!(
                    "authz http    http://{h} (Envoy HTTP under {}, nginx auth_request on /nginx, Traefik forwardAuth on /traefik)\n",
                    a.path_prefix
                ));
            }
            out.push_str(&format!("authz from    {}\n", nets.join(", ")));
        }
        if let Some(t) = &self.tracing {
            // Header names only: their values are credentials.
            let headers: Vec<&str> = t.headers.iter().map(|(k, _)| k.as_str()).collect();
            out.push_str(&format!(
                "tracing       OTLP/{} {} (sample_ratio {}, service {}{})\n",
                t.protocol.as_str(),
                t.endpoint,
                t.sample_ratio,
                t.service_name,
                if headers.is_empty() {
                    String::new()
                } else {
                    format!(", headers {}", headers.join(","))
                }
            ));
        }
        if let Some(d) = &self.dev_idp {
            out.push_str(&format!(
                "dev idp       http://{} ({} users; development only)\n",
                d.listen,
                d.users.len()
            ));
        }
        if self.routes.iter().any(|r| !r.throttle.is_empty()) {
            out.push_str(&format!(
                "throttle      {} limits, {}{}\n",
                self.throttle.limits.len(),
                if self.shared_state.is_some() {
                    "fleet-wide through [shared_state]"
                } else {
                    "per replica"
                },
                self.throttle
                    .api_keys
                    .as_ref()
                    .map(|k| format!(", {} API keys in {}", k.keys.len(), k.header))
                    .unwrap_or_default()
            ));
        }
        out.push_str(&format!("routes        {}\n", self.routes.len()));
        for r in &self.routes {
            let upstream = match &r.upstream {
                UpstreamTarget::Echo => "builtin:echo".to_string(),
                UpstreamTarget::None => "none (authorizer only)".to_string(),
                UpstreamTarget::Origin => "origin (the forward proxy's target)".to_string(),
                UpstreamTarget::Url {
                    scheme,
                    authority,
                    base_path,
                } => format!("{scheme}://{authority}{base_path}"),
            };
            let auth: Vec<&str> = r.auth.iter().map(|a| a.as_str()).collect();
            let mut extra = String::new();
            if !r.scopes.is_empty() {
                extra.push_str(&format!(" scopes={}", r.scopes.join(",")));
            }
            if !r.groups.is_empty() {
                extra.push_str(&format!(" groups={}", r.groups.join(",")));
            }
            // The pools whose tokens the route accepts, by any method: the exchange's pool
            // for basic and service, the listed (or every) pool for jwt.
            if let Some(pools) = route_pools(self, r) {
                extra.push_str(&format!(" pools={pools}"));
            }
            if r.case_insensitive {
                extra.push_str(" case_insensitive");
            }
            if !r.throttle.is_empty() {
                let limits: Vec<String> = r
                    .throttle
                    .iter()
                    .filter_map(|n| self.throttle.limits.get(n))
                    .map(describe_limit)
                    .collect();
                extra.push_str(&format!(" throttle={}", limits.join(",")));
            }
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let host = r.host.as_deref().unwrap_or("");
            out.push_str(&format!(
                "  {:<12} {:<7} {}{} -> {} auth={}{}\n",
                r.name,
                methods,
                host,
                r.path_prefix,
                upstream,
                auth.join(","),
                extra
            ));
        }
        out
    }
}

/// `per_app(50/s burst 100 by client_id)`, `daily(100000/day by api_key)`.
fn describe_limit(l: &crate::config::LimitConfig) -> String {
    let what = match l.kind {
        crate::config::LimitKind::Rate { rate, burst } => format!("{rate}/s burst {burst}"),
        crate::config::LimitKind::Quota { quota, period } => {
            format!("{quota}/{}", period.as_str())
        }
    };
    format!("{}({what} by {})", l.name, l.key.as_str())
}

/// The pools a route accepts tokens of, for the summary; `None` without [cognito].
fn route_pools(config: &Config, r: &RouteConfig) -> Option<String> {
    let cognito = config.cognito.as_ref()?;
    let mut names: Vec<&str> = Vec::new();
    if r.auth.contains(&AuthMethod::Jwt) {
        if r.pools.is_empty() {
            names.extend(cognito.pools.iter().map(|p| p.name.as_str()));
        } else {
            names.extend(r.pools.iter().map(String::as_str));
        }
    }
    let exchanges = r.auth.contains(&AuthMethod::Basic) || r.auth.contains(&AuthMethod::Service);
    if let Some(e) = config.exchange.as_ref().filter(|_| exchanges) {
        if !names.contains(&e.pool.as_str()) {
            names.push(&e.pool);
        }
    }
    (!names.is_empty()).then(|| names.join(","))
}
