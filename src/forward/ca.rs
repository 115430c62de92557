//! The forward proxy's issuing CA: loads the CA the operator made (`cognito-gate ca init`),
//! issues a leaf certificate per intercepted name on first use (ECDSA P-256, SAN = the name,
//! short validity) and keeps its TLS configuration until shortly before it expires.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::{CaConfig, CaKey};
use crate::metrics::Counter;

/// Why the CA cannot be used. Names the file, never the key's contents.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is not a usable PEM ({source})")]
    Parse {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot issue a certificate for {name:?}: {source}")]
    Issue { name: String, source: rcgen::Error },
    #[error("TLS configuration for {name:?}: {source}")]
    Tls { name: String, source: rustls::Error },
}

pub struct Ca {
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as the operator made it, sent after each leaf.
    ca_der: CertificateDer<'static>,
    validity: Duration,
    /// Per name, the TLS configuration with its leaf; kept for half the leaf's validity.
    cache: moka::sync::Cache<String, Arc<rustls::ServerConfig>>,
    issued: Counter,
}

impl Ca {
    pub fn load(cfg: &CaConfig, validity: Duration, issued: Counter) -> Result<Ca, CaError> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|source| CaError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let cert_pem = read(&cfg.cert)?;
        let key_pem = match &cfg.key {
            CaKey::File(p) => read(p)?,
            CaKey::Pem(s) => s.expose().to_string(),
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|source| CaError::Parse {
            what: "forward_proxy.ca_key",
            source,
        })?;
        let params =
            CertificateParams::from_ca_cert_pem(&cert_pem).map_err(|source| CaError::Parse {
                what: "forward_proxy.ca_cert",
                source,
            })?;
        let ca_der = rustls_pemfile_der(&cert_pem).ok_or(CaError::Parse {
            what: "forward_proxy.ca_cert",
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
        // The issuer as rcgen needs it: the CA's name and key (its own signature is not used).
        let issuer = params.self_signed(&key).map_err(|source| CaError::Parse {
            what: "forward_proxy.ca_cert and ca_key together",
            source,
        })?;
        Ok(Ca {
            issuer,
            key,
            ca_der,
            validity,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(validity / 2)
                .build(),
            issued,
        })
    }

    /// When the CA certificate stops being valid (notAfter, Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        crate::tls::der_not_after(&self.ca_der)
    }

    /// The TLS configuration that answers as `name`, issuing its certificate on first use.
    pub fn server_config(&self, name: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        self.cache
            .try_get_with(name.to_string(), || self.issue(name).map(Arc::new))
            .map_err(|e| match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(e) => CaError::Tls {
                    name: name.to_string(),
                    source: rustls::Error::General(e.to_string()),
                },
            })
    }

    fn issue(&self, name: &str) -> Result<rustls::ServerConfig, CaError> {
        let err = |source| CaError::Issue {
            name: name.to_string(),
            source,
        };
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(err)?;
        let now = time::OffsetDateTime::now_utc();
        // An hour of slack for clocks behind the gateway's.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + self.validity;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().map_err(err)?;
        let leaf = params
            .signed_by(&leaf_key, &self.issuer, &self.key)
            .map_err(err)?;
        let tls_err = |source| CaError::Tls {
            name: name.to_string(),
            source,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), self.ca_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .map_err(tls_err)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.issued.inc();
        tracing::info!(
            name,
            validity_secs = self.validity.as_secs(),
            "issued a certificate for an intercepted name"
        );
        Ok(config)
    }
}

/// The first certificate of a PEM text, as DER.
fn rustls_pemfile_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// A new CA for the forward proxy: (certificate PEM, key PEM). ECDSA P-256, valid ten years,
/// allowed to issue end-entity certificates only.
pub fn generate(common_name: &str) -> Result<(String, String), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cognito-gate");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}
