//! PEM loading and rustls configurations: the TLS listener (with optional client certificates)
//! and the root stores of outbound clients (system roots plus extra CA files).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use crate::config::TlsConfig;

/// Why a certificate, key or CA file could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no usable private key: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: certificate and key do not match: {source}", path.display())]
    KeyMismatch {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: {source}", path.display())]
    ClientCa {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{}: {source}", path.display())]
    Reqwest {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("TLS versions: {0}")]
    Versions(#[source] rustls::Error),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file; an empty or unreadable file is an error.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<_, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Adds every certificate of `path` to `roots`.
fn add_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for c in load_certs(path)? {
        roots.add(c).map_err(|source| TlsError::Certificate {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// When the first certificate of the PEM file at `path` stops being valid (notAfter, Unix
/// seconds), for `cognito_gate_certificate_expiry_timestamp_seconds`; `None` when it cannot be
/// read or parsed (the TLS set-up reports that itself).
pub fn not_after(path: &Path) -> Option<i64> {
    let first = load_certs(path).ok()?.into_iter().next()?;
    der_not_after(&first)
}

/// notAfter of one DER certificate, Unix seconds.
pub fn der_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The server-side TLS configuration: TLS 1.2 and 1.3, ALPN h2 and http/1.1, client
/// certificates required when `client_ca` is set.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            add_roots(&mut roots, ca)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|source| TlsError::ClientCa {
                path: ca.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder
            .with_single_cert(certs, key)
            .map_err(|source| TlsError::KeyMismatch {
                path: cfg.cert.clone(),
                source,
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// System roots plus the certificates of `extra` (a PEM file), for outbound TLS.
pub(crate) fn client_config(extra: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra {
        add_roots(&mut roots, path)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The certificates of a PEM file as reqwest root certificates.
pub(crate) fn load_reqwest_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsError> {
    load_certs(path)?
        .into_iter()
        .map(|c| {
            reqwest::Certificate::from_der(c.as_ref()).map_err(|source| TlsError::Reqwest {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}

/// Why an outbound HTTP client (the private API's, the JWKS fetcher's) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Builds `builder` with the certificates of `ca_file` added to its roots.
pub(crate) fn reqwest_client(
    mut builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, ClientError> {
    if let Some(ca) = ca_file {
        for cert in load_reqwest_roots(ca)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(ClientError::Build)
}
