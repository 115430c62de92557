//! `cognito-gate verify-token`: the authorizer on one token against one route, explained.

use std::io::Read as _;
use std::process::ExitCode;

use super::{exit, runtime};
use crate::config::Config;

pub fn verify_token(config: Config, route: Option<String>, token: String) -> ExitCode {
    crate::observe::init_logs(&crate::config::LogConfig {
        level: "warn".into(),
        format: crate::config::LogFormat::Text,
    });
    let token = if token == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("cannot read the token from stdin: {e}");
            return ExitCode::from(exit::CONFIG);
        }
        s.trim().to_string()
    } else {
        token
    };
    let Some(cognito) = config.cognito.clone() else {
        eprintln!("cognito: the configuration has no [cognito] section");
        return ExitCode::from(exit::CONFIG);
    };
    let route = match super::explain::pick_route(&config, route.as_deref()) {
        Ok(r) => r.clone(),
        Err(e) => {
            eprintln!("--route: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    // The pool the token names (by its issuer), else the first: the explanation says which.
    let iss = crate::jwt::verify::token_from_header(token.as_bytes())
        .ok()
        .and_then(|t| crate::jwt::verify::decode(t).ok())
        .and_then(|d| {
            d.claims
                .get("iss")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
    let pool = iss
        .as_deref()
        .and_then(|i| cognito.pool_for_issuer(i))
        .unwrap_or(cognito.first())
        .clone();
    runtime().block_on(async move {
        let jwks = match crate::jwt::build_jwks(&pool.jwks, None) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(exit::CONFIG);
            }
        };
        if let Some(crate::jwt::RefreshOutcome::Failed(e)) = jwks.refresh().await {
            eprintln!(
                "warning: JWKS fetch failed ({e}); using the keys from cognito.jwks.file if any"
            );
        }
        let verifier = crate::jwt::Verifier::new(
            pool.issuers.clone(),
            pool.app_clients.clone(),
            cognito.clock_skew,
            jwks,
        );
        let out = super::explain::explain(&verifier, &pool.name, &route, &token).await;
        print!("{}", out.text);
        if out.allowed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(exit::DENY)
        }
    })
}
