//! SigV4 for calls straight to Cognito (`sign = "sigv4"`): Cognito's Admin* actions only take
//! IAM-signed requests. Credentials come from the AWS SDK's providers, tried in the SDK's default
//! order (environment, profile, web identity / IRSA, ECS task role, EC2 instance profile through
//! IMDSv2), and are cached until shortly before they expire; the signature is the SDK's
//! (`aws-sigv4`). Which provider answered is kept, for logs and `aws check`.

use std::time::{Duration, SystemTime};

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

/// Credentials are replaced this long before they expire (the SDK's own identity cache uses the
/// same margin), so no request is signed with credentials about to lapse.
pub(crate) const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Cognito's signing name.
const SERVICE: &str = "cognito-idp";

/// The provider that produced a set of credentials, recorded on them.
#[derive(Debug, Clone, Copy)]
struct FoundBy(&'static str);

/// Tags what a provider returns with its name, and its failures too (a failure other than
/// "nothing here" ends the chain, and the log must say where).
#[derive(Debug)]
struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: ProvideCredentials> ProvideCredentials for Named<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            match self.inner.provide_credentials().await {
                Ok(mut c) => {
                    c.set_property(FoundBy(self.name));
                    Ok(c)
                }
                Err(e @ CredentialsError::CredentialsNotLoaded(_)) => Err(e),
                Err(e) => Err(CredentialsError::provider_error(format!(
                    "{}: {}",
                    self.name,
                    chain_text(&e)
                ))),
            }
        })
    }
}

/// An error and its sources on one line.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    // One line: the SDK lists the providers it tried on lines of their own.
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("no AWS credentials found: {0}")]
    NotFound(String),
    #[error("AWS credential provider failed: {0}")]
    Provider(String),
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

/// Signs requests to Cognito. One per private API client; shared by every call.
pub struct Signer {
    region: String,
    /// Bound on one credential fetch (a provider that hangs, e.g. IMDS off EC2, would hold up
    /// every call waiting for it).
    fetch_timeout: Duration,
    provider: Box<dyn ProvideCredentials>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The SDK's providers in the SDK's default order, their HTTP calls (ECS, IMDS, STS for web
    /// identity) made with rustls on ring like the rest of the gateway.
    pub(crate) fn from_environment(region: &str, fetch_timeout: Duration) -> Signer {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = ProviderConfig::default()
            .with_http_client(http)
            .with_region(Some(aws_config::Region::new(region.to_string())));
        use aws_config::{
            ecs::EcsCredentialsProvider,
            environment::credentials::EnvironmentVariableCredentialsProvider,
            imds::credentials::ImdsCredentialsProvider, profile::ProfileFileCredentialsProvider,
            web_identity_token::WebIdentityTokenCredentialsProvider,
        };
        fn named<P: ProvideCredentials + 'static>(name: &'static str, inner: P) -> Named<P> {
            Named { name, inner }
        }
        let chain = CredentialsProviderChain::first_try(
            "Environment",
            named("environment", EnvironmentVariableCredentialsProvider::new()),
        )
        .or_else(
            "Profile",
            named(
                "profile",
                ProfileFileCredentialsProvider::builder()
                    .configure(&conf)
                    .build(),
            ),
        )
        .or_else(
            "WebIdentityToken",
            named(
                "web identity",
                WebIdentityTokenCredentialsProvider::builder()
                    .configure(&conf)
                    .build(),
            ),
        )
        .or_else(
            "EcsContainer",
            named(
                "ECS container",
                EcsCredentialsProvider::builder().configure(&conf).build(),
            ),
        )
        .or_else(
            "Ec2InstanceMetadata",
            named(
                "EC2 instance metadata (IMDSv2)",
                ImdsCredentialsProvider::builder().configure(&conf).build(),
            ),
        );
        let mut signer = Signer::with_provider(region, chain);
        signer.fetch_timeout = fetch_timeout;
        signer
    }

    pub fn with_provider(region: &str, provider: impl ProvideCredentials + 'static) -> Signer {
        Signer {
            region: region.to_string(),
            fetch_timeout: Duration::from_secs(30),
            provider: Box::new(provider),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The provider that produced `credentials` ("environment", "ECS container", ...).
    pub(crate) fn provider_of(credentials: &Credentials) -> &'static str {
        credentials
            .get_property::<FoundBy>()
            .map_or("custom provider", |f| f.0)
    }

    /// Cached credentials, replaced `REFRESH_BEFORE` their expiry. One fetch at a time: callers
    /// that arrive during a fetch wait for it. When a renewal fails, credentials that have not
    /// expired yet are still used (with a warning), like the SDK's cache.
    pub async fn credentials(&self) -> Result<Credentials, SignError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some(c) = cached.as_ref() {
            if c.expiry().is_none_or(|e| e > now + REFRESH_BEFORE) {
                return Ok(c.clone());
            }
        }
        let fetched =
            match tokio::time::timeout(self.fetch_timeout, self.provider.provide_credentials())
                .await
            {
                Ok(r) => r,
                Err(_) => Err(CredentialsError::provider_timed_out(self.fetch_timeout)),
            };
        match fetched {
            Ok(c) => {
                tracing::debug!(
                    provider = Signer::provider_of(&c),
                    expires_in_s = c
                        .expiry()
                        .and_then(|e| e.duration_since(now).ok())
                        .map(|d| d.as_secs()),
                    "AWS credentials loaded for SigV4"
                );
                *cached = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let error = match &e {
                    CredentialsError::CredentialsNotLoaded(_) => {
                        SignError::NotFound(chain_text(&e))
                    }
                    _ => SignError::Provider(chain_text(&e)),
                };
                match cached.as_ref() {
                    Some(c) if c.expiry().is_some_and(|x| x > now) => {
                        tracing::warn!(provider = Signer::provider_of(c), error = %error,
                            "AWS credentials could not be renewed; using the current ones until they expire");
                        Ok(c.clone())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// The headers that sign a request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials). `headers` are the ones to sign besides
    /// `host`, which comes from `url`.
    pub async fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(Vec<(String, String)>, &'static str), SignError> {
        let credentials = self.credentials().await?;
        let provider = Signer::provider_of(&credentials);
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SignError::Signing(chain_text(&e)))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SignError::Signing(chain_text(&e)))?
            .into_parts();
        let out = instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok((out, provider))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Hands out numbered credentials expiring `lifetime` from now, counting calls.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: Option<Duration>,
        fail_after: u32,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n > self.fail_after {
                return future::ProvideCredentials::ready(Err(CredentialsError::provider_error(
                    "endpoint down",
                )));
            }
            let mut b = Credentials::builder()
                .access_key_id(format!("AKID{n}"))
                .secret_access_key("secret")
                .provider_name("test");
            if let Some(l) = self.lifetime {
                b = b.expiry(SystemTime::now() + l);
            }
            future::ProvideCredentials::ready(Ok(b.build()))
        }
    }

    fn signer(lifetime: Option<Duration>, fail_after: u32) -> (Signer, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let p = Named {
            name: "counting",
            inner: Counting {
                calls: calls.clone(),
                lifetime,
                fail_after,
            },
        };
        (Signer::with_provider("ap-northeast-1", p), calls)
    }

    #[tokio::test]
    async fn long_lived_credentials_are_fetched_once() {
        let (s, calls) = signer(Some(Duration::from_secs(3600)), u32::MAX);
        for _ in 0..5 {
            let c = s.credentials().await.unwrap();
            assert_eq!(c.access_key_id(), "AKID1");
            assert_eq!(Signer::provider_of(&c), "counting");
        }
        let (s, calls2) = signer(None, u32::MAX);
        for _ in 0..3 {
            s.credentials().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(calls2.load(Ordering::SeqCst), 1, "no expiry: kept");
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_replaced() {
        let (s, calls) = signer(Some(REFRESH_BEFORE - Duration::from_secs(60)), u32::MAX);
        assert_eq!(s.credentials().await.unwrap().access_key_id(), "AKID1");
        assert_eq!(s.credentials().await.unwrap().access_key_id(), "AKID2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_unexpired_credentials_and_then_fails_clearly() {
        let (s, _) = signer(Some(REFRESH_BEFORE - Duration::from_secs(60)), 1);
        assert_eq!(s.credentials().await.unwrap().access_key_id(), "AKID1");
        // Renewal fails, the first set is still valid for four minutes.
        assert_eq!(s.credentials().await.unwrap().access_key_id(), "AKID1");
        let (s, _) = signer(Some(Duration::from_secs(3600)), 0);
        let e = s.credentials().await.unwrap_err();
        assert!(
            matches!(&e, SignError::Provider(m) if m.contains("counting: ") && m.contains("endpoint down")),
            "{e}"
        );
    }

    #[derive(Debug)]
    struct Hangs;

    impl ProvideCredentials for Hangs {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_hangs_is_cut_off() {
        let mut s = Signer::with_provider(
            "ap-northeast-1",
            Named {
                name: "hangs",
                inner: Hangs,
            },
        );
        s.fetch_timeout = Duration::from_secs(5);
        let e = s.credentials().await.unwrap_err();
        assert!(
            matches!(&e, SignError::Provider(m) if m.contains("timed out after 5 seconds")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn signed_headers_carry_the_scope_and_the_session_token() {
        let p = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
        let s = Signer::with_provider("eu-west-1", p);
        let (headers, _) = s
            .sign(
                "https://cognito-idp.eu-west-1.amazonaws.com/",
                &[("content-type", "application/x-amz-json-1.1")],
                b"{}",
            )
            .await
            .unwrap();
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let auth = get("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(
            auth.contains("/eu-west-1/cognito-idp/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains("content-type;host"), "{auth}");
        assert_eq!(get("x-amz-security-token"), "session");
        assert!(!get("x-amz-date").is_empty());
    }
}
