//! `cognito-gate aws check`: probes what the configuration depends on in AWS and prints a
//! checklist, one line per item, each failure with what to fix (DESIGN §9).
//!
//! The private API is probed with a login of a random user that cannot exist: the answer shows
//! whether the request reached Cognito (through the VPC endpoint, the resource policy and the
//! `x-apigw-api-id` header), whether the integration role or the SigV4 identity may call the
//! action (NotAuthorized/UserNotFound, not AccessDenied), and whether Cognito accepts the
//! SECRET_HASH. Nothing is changed in the pool: the login fails like any wrong password.

use rand::Rng as _;
use serde_json::Value;

use crate::cause::Cause;
use crate::config::{ApiStyle, Config, PoolConfig, PrivateApiConfig, Signing};
use crate::exchange::api::RawAnswer;
use crate::exchange::response::classify;
use crate::exchange::sigv4::Signer;
use crate::exchange::{CognitoErrorKind, DependencyError, ExchangeError, PrivateApi};

mod report;

pub use report::{Line, Report, Status};

/// An execute-api VPC endpoint hostname (`vpce-…-….execute-api.{region}.vpce.amazonaws.com`):
/// API Gateway needs `x-apigw-api-id` (or a Host override) to know which API is meant.
fn is_vpce_host(url: &reqwest::Url) -> bool {
    url.host_str()
        .is_some_and(|h| h.ends_with(".vpce.amazonaws.com"))
}

fn has_header(headers: &[(http::HeaderName, http::HeaderValue)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.as_str() == name)
}

const API_ID_HEADER: &str = "x-apigw-api-id";

/// Runs every check the configuration calls for.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    match &config.cognito {
        Some(cognito) => {
            for pool in &cognito.pools {
                jwks(&mut report, pool).await;
            }
        }
        None => report.skip("jwks", "no [cognito] section: no tokens are verified"),
    }
    match (&config.private_api, &config.exchange) {
        (Some(api), Some(exchange)) => {
            private_api(&mut report, api.clone(), exchange.clone()).await
        }
        (None, Some(_)) => report.skip(
            "private API",
            "no [private_api]: the exchange goes to the embedded dev IdP (development only)",
        ),
        (_, None) => report.skip(
            "private API",
            "no [exchange]: the gateway logs nobody in, so it needs no private API",
        ),
    }
    report
}

async fn jwks(report: &mut Report, pool: &PoolConfig) {
    let item = format!("jwks[{}]", pool.name);
    let cache = match crate::jwt::build_jwks(&pool.jwks, None) {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                item,
                e.to_string(),
                "fix [cognito.jwks] file (a JWKS document: {\"keys\": [...]}) or ca_file",
            );
            return;
        }
    };
    let Some(url) = &pool.jwks.url else {
        let keys = cache.snapshot().keys.keys.len();
        report.pass(
            item,
            format!("{keys} key(s) from the file; no url, so keys are not rotated"),
        );
        return;
    };
    match cache.refresh().await {
        Some(crate::jwt::RefreshOutcome::Updated { keys }) => {
            report.pass(item, format!("{keys} key(s) from {url}"))
        }
        Some(crate::jwt::RefreshOutcome::Failed(e)) => {
            let by_cause =
                Cause::tagged(&e).and_then(|c| fix_for_cause(c, url, "the pool's [cognito.jwks]"));
            let fix = if let Some(fix) = by_cause {
                fix
            } else if is_vpce_host(url) && !has_header(&pool.jwks.headers, API_ID_HEADER) {
                format!("the url is a VPC endpoint hostname: add headers = {{ \"{API_ID_HEADER}\" = \"<api-id>\" }} to the pool's [cognito.jwks]")
            } else if e.contains("403") {
                "the private API refused the request: check its resource policy (aws:SourceVpce) and the x-apigw-api-id header".to_string()
            } else if e.contains("HTTP status") {
                "check the url's path: the private API's jwks resource (see `cognito-gate aws template`) or {issuer}/.well-known/jwks.json".to_string()
            } else {
                "check that this host reaches the url: the execute-api VPC endpoint, its security group (443), private DNS, and ca_file for a private CA".to_string()
            };
            report.fail(item, format!("cannot load keys from {url}: {e}"), fix);
        }
        None => report.skip(item, "no url to fetch"),
    }
}

/// What to fix for a connection that failed with `cause`, calling `url` for `what`
/// ("[private_api]" or the pool's "[cognito.jwks]"); `None` where the cause says nothing
/// specific.
fn fix_for_cause(cause: Cause, url: &reqwest::Url, what: &str) -> Option<String> {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(443);
    Some(match cause {
        Cause::Dns if host.ends_with(".amazonaws.com") && host.contains(".execute-api.") && !is_vpce_host(url) => format!(
            "{host} resolves only inside a VPC whose execute-api endpoint has private DNS enabled (PrivateDnsEnabled: true): enable it, or use the endpoint's own name https://vpce-<id>.execute-api.<region>.vpce.amazonaws.com with headers = {{ \"{API_ID_HEADER}\" = \"<api-id>\" }} in {what}"
        ),
        Cause::Dns => format!(
            "{host} does not resolve from this host: check the name in {what} (aws ec2 describe-vpc-endpoints lists the endpoint's DNS names) and this host's resolver"
        ),
        Cause::Refused => format!(
            "nothing listens on {host}:{port}: check the url's port in {what} (443 for a VPC endpoint) and that the service is up"
        ),
        Cause::TlsUnknownIssuer => format!(
            "the certificate of {host} is signed by a CA this host does not trust: set ca_file in {what} to that CA's PEM bundle (or add it to the system trust store)"
        ),
        Cause::TlsNameMismatch => format!(
            "the certificate of {host} is not for that name: use the name it was issued for in {what} (the execute-api or vpce DNS name, never an IP address)"
        ),
        Cause::TlsExpired => format!(
            "the certificate of {host} has expired or is not valid yet: renew it, or check this host's clock"
        ),
        Cause::Reset => format!(
            "{host}:{port} closed the connection: a TLS port spoken to in plain HTTP (or the reverse)? check the url's scheme in {what}"
        ),
        Cause::Timeout | Cause::Tls | Cause::Other => return None,
    })
}

/// A user name that no pool has.
fn random_user() -> (String, String) {
    let mut rng = rand::thread_rng();
    let user = format!("cognito-gate-check-{:016x}", rng.gen::<u64>());
    let password = format!("Ck-{:032x}!", rng.gen::<u128>());
    (user, password)
}

/// `: message`, or nothing when the answer had none.
fn said(msg: &str) -> String {
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {msg}")
    }
}

fn message(answer: &RawAnswer) -> String {
    match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(o)) => o
            .get("message")
            .or_else(|| o.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

/// Who calls Cognito for the gateway, for advice.
fn caller(api: &PrivateApiConfig) -> &'static str {
    match (api.style, &api.sign) {
        (_, Signing::SigV4 { .. }) => "the gateway's AWS identity",
        (ApiStyle::ApiGateway, Signing::None) => "the private API's execution role",
        (ApiStyle::CognitoIdp, Signing::None) => "the caller (unsigned)",
    }
}

async fn private_api(
    report: &mut Report,
    cfg: PrivateApiConfig,
    exchange: crate::config::ExchangeConfig,
) {
    let api = match PrivateApi::new(cfg.clone(), exchange.clone()) {
        Ok(a) => a,
        Err(e) => {
            report.fail(
                "private API",
                e.to_string(),
                "fix [private_api] ca_file or headers",
            );
            return;
        }
    };
    let base = cfg.base_url.as_str();
    // x-apigw-api-id: needed when base_url is the endpoint's own hostname.
    let api_id_needed = cfg.style == ApiStyle::ApiGateway && is_vpce_host(&cfg.base_url);
    let api_id_sent = has_header(&cfg.headers, API_ID_HEADER);
    if api_id_needed && !api_id_sent {
        report.fail(
            API_ID_HEADER,
            format!("base_url {base} is a VPC endpoint hostname and no {API_ID_HEADER} header is sent, so API Gateway cannot tell which API is meant"),
            format!("add headers = {{ \"{API_ID_HEADER}\" = \"<api-id>\" }} to [private_api] (the ApiId output of the template), or use the https://<api-id>-<vpce-id>.execute-api.<region>.amazonaws.com alias"),
        );
    }
    // SigV4: which provider has credentials.
    if let Some(signer) = api.signer() {
        sigv4_credentials(report, signer).await;
    }

    let (user, password) = random_user();
    let (action, body) = api.login_request(&user, &password);
    let item = "private API";
    let answer = match api.send(action, &body).await {
        Ok(a) => a,
        Err(e) => {
            let fix = match e {
                ExchangeError::Dependency(DependencyError::Credentials) => {
                    "see the SigV4 credentials line".to_string()
                }
                ExchangeError::Dependency(DependencyError::Connect(cause))
                    if fix_for_cause(cause, &cfg.base_url, "[private_api]").is_some() =>
                {
                    fix_for_cause(cause, &cfg.base_url, "[private_api]").unwrap_or_default()
                }
                ExchangeError::Dependency(DependencyError::Timeout) => format!(
                    "nothing answered within {:?}: check the VPC endpoint's security group (443 from this host), its private DNS, and base_url",
                    cfg.timeout
                ),
                _ => "check that base_url resolves from here (private DNS of the VPC endpoint) and that the endpoint's security group allows 443 from this host".to_string(),
            };
            report.fail(item, format!("{base}: {e}"), fix);
            if api.signer().is_some() {
                report.skip("SigV4 signature", "not checked: nothing was signed");
            }
            report.skip("SECRET_HASH", "not checked: Cognito was not reached");
            return;
        }
    };
    let msg = message(&answer);
    let code = crate::exchange::response::error_code(answer.error_type.as_deref(), &answer.body);
    let result = classify(answer.status, answer.error_type.as_deref(), &answer.body);
    let reached = match &result {
        Err(ExchangeError::Cognito { kind, type_name }) => match kind {
            k if k.is_bad_credentials() => {
                report.pass(
                    item,
                    format!(
                        "{} reached Cognito, which answered {type_name} for an unknown user: {} may call {}",
                        if cfg.style == ApiStyle::ApiGateway { "the private API" } else { "the endpoint" },
                        caller(&cfg),
                        action.name()
                    ),
                );
                true
            }
            CognitoErrorKind::ResourceNotFound => {
                report.fail(
                    item,
                    format!("Cognito answered {type_name}{}", said(&msg)),
                    format!(
                        "Cognito does not know the pool or the app client: check exchange.user_pool_id ({}) and exchange.client_id, and that the endpoint is in the pool's region",
                        exchange.user_pool_id
                    ),
                );
                true
            }
            CognitoErrorKind::InvalidParameter if msg.to_ascii_lowercase().contains("flow") => {
                report.fail(
                    item,
                    format!("Cognito answered {type_name}{}", said(&msg)),
                    format!(
                        "enable ALLOW_{} on the app client (its explicit auth flows), or change exchange.auth_flow",
                        exchange.auth_flow.as_str()
                    ),
                );
                true
            }
            _ => {
                report.fail(
                    item,
                    format!("Cognito answered {type_name}{}", said(&msg)),
                    "an unknown user should get NotAuthorizedException or UserNotFoundException: check the app client and the pool's settings for this error",
                );
                true
            }
        },
        Err(ExchangeError::Dependency(DependencyError::Denied)) => {
            let code = code.unwrap_or_else(|| "AccessDenied".into());
            let fix = match (&cfg.sign, code.as_str()) {
                (Signing::SigV4 { .. }, "SignatureDoesNotMatch" | "InvalidSignatureException") => {
                    "the secret access key does not belong to the access key id: fix the credentials the provider hands out".to_string()
                }
                (Signing::SigV4 { .. }, "InvalidClientTokenId" | "UnrecognizedClientException") => {
                    "AWS does not know this access key id (deleted, from another partition, or a session token is missing)".to_string()
                }
                (Signing::SigV4 { .. }, c) if c.starts_with("ExpiredToken") => {
                    "the temporary credentials expired: check the provider refreshes them (and the host's clock)".to_string()
                }
                _ => format!(
                    "allow cognito-idp:{} on arn:aws:cognito-idp:<region>:<account>:userpool/{} for {} (the template's role has exactly the actions the config uses)",
                    action.name(),
                    exchange.user_pool_id,
                    caller(&cfg)
                ),
            };
            report.fail(
                item,
                format!("AWS refused the call: {code}{}", said(&msg)),
                fix,
            );
            false
        }
        Err(ExchangeError::Dependency(DependencyError::Forbidden)) => {
            let missing_route = msg.contains("Missing Authentication Token");
            let fix = if missing_route {
                format!("no such resource: check the stage in base_url and [private_api.paths] (this call: POST {})", api.target(action).0)
            } else if !api_id_sent && cfg.style == ApiStyle::ApiGateway {
                format!("see the {API_ID_HEADER} line")
            } else if cfg.style == ApiStyle::ApiGateway {
                "the API's resource policy refused this caller: add this VPC endpoint's id to its aws:SourceVpce condition (the template's VpcEndpointIds parameter), and check that x-apigw-api-id names this API".to_string()
            } else {
                "the endpoint refused the request: check its endpoint policy".to_string()
            };
            report.fail(item, format!("HTTP 403 from {base}{}", said(&msg)), fix);
            false
        }
        Err(ExchangeError::Dependency(d)) => {
            report.fail(
                item,
                format!("{d} (HTTP {})", answer.status),
                "the answer is not Cognito's: check the integration (URI arn:aws:apigateway:<region>:cognito-idp:action/<Action>, Content-Type application/x-amz-json-1.1) and its integration responses",
            );
            false
        }
        Err(e) => {
            report.fail(
                item,
                e.to_string(),
                "unexpected answer to a login of an unknown user",
            );
            false
        }
        Ok(_) => {
            report.fail(
                item,
                format!("Cognito accepted a login of the random user {user}"),
                "the endpoint is not the Cognito pool it should be: check base_url",
            );
            false
        }
    };
    if api_id_needed && api_id_sent {
        if reached {
            report.pass(API_ID_HEADER, "sent, and accepted by API Gateway");
        } else {
            report.fail(
                API_ID_HEADER,
                "sent, but the call did not reach Cognito",
                "check that its value is the private API's id (the template's ApiId output)",
            );
        }
    } else if !api_id_needed {
        let refused = matches!(
            result,
            Err(ExchangeError::Dependency(DependencyError::Forbidden))
        ) && !msg.contains("Missing Authentication Token");
        if cfg.style == ApiStyle::ApiGateway && !api_id_sent && refused {
            report.fail(
                API_ID_HEADER,
                "not sent, and API Gateway refused the call (403)",
                format!("if base_url is the VPC endpoint's hostname, add headers = {{ \"{API_ID_HEADER}\" = \"<api-id>\" }} to [private_api] (the template's ApiId output); otherwise the resource policy refused this VPC endpoint (aws:SourceVpce)"),
            );
        } else if api_id_sent {
            report.pass(API_ID_HEADER, "sent, and accepted by API Gateway");
        } else {
            report.pass(
                API_ID_HEADER,
                "not needed: base_url names the API (or Cognito) itself",
            );
        }
    }
    if let Signing::SigV4 { region } = &cfg.sign {
        if reached {
            report.pass(
                "SigV4 signature",
                format!("Cognito accepted the signature (region {region})"),
            );
        } else if matches!(
            result,
            Err(ExchangeError::Dependency(DependencyError::Denied))
        ) {
            report.fail(
                "SigV4 signature",
                "Cognito refused the signed call (see the private API line)",
                format!("the signing region is {region}: it must be the pool's region (set [private_api] region)"),
            );
        } else {
            report.skip("SigV4 signature", "not checked: Cognito was not reached");
        }
    }
    secret_hash(report, reached, &msg, &exchange);
}

async fn sigv4_credentials(report: &mut Report, signer: &Signer) {
    match signer.credentials().await {
        Ok(c) => {
            let expiry = match c.expiry().and_then(|e| e.duration_since(std::time::SystemTime::now()).ok()) {
                Some(left) => format!(", expiring in {}s (renewed {}s before)", left.as_secs(), crate::exchange::sigv4::REFRESH_BEFORE.as_secs()),
                None => ", long-term".to_string(),
            };
            report.pass(
                "SigV4 credentials",
                format!("found by the {} provider{expiry}", Signer::provider_of(&c)),
            );
        }
        Err(e) => report.fail(
            "SigV4 credentials",
            e.to_string(),
            "give the workload an identity: an ECS task role, IRSA (web identity) on EKS, an EC2 instance profile (IMDSv2), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ),
    }
}

fn secret_hash(
    report: &mut Report,
    reached: bool,
    msg: &str,
    exchange: &crate::config::ExchangeConfig,
) {
    let item = "SECRET_HASH";
    if !reached {
        report.skip(item, "not checked: Cognito was not reached");
        return;
    }
    let m = msg.to_ascii_lowercase();
    let about_secret = m.contains("secret hash") || m.contains("secret_hash");
    let wants_secret =
        m.contains("configured for secret") || (about_secret && m.contains("not received"));
    match &exchange.client_secret {
        Some(_) if about_secret => report.fail(
            item,
            format!("Cognito could not verify the SECRET_HASH: {msg}"),
            format!(
                "exchange.client_secret is not the secret of app client {}",
                exchange.client_id
            ),
        ),
        Some(_) => report.pass(item, "sent, and Cognito did not object"),
        None if wants_secret => report.fail(
            item,
            format!("the app client has a secret: {msg}"),
            "set exchange.client_secret (e.g. \"${COGNITO_CLIENT_SECRET}\")",
        ),
        None => report.pass(item, "none sent, and Cognito did not ask for one"),
    }
}
