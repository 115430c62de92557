//! A pool's JWKS cache from its configuration: seeded from `file`, fetching from `url`. The
//! gateway, `verify-token` and `aws check` all build it here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::keys::{parse_jwks, JwksParseError, KeySet};
use super::{HttpJwksFetcher, JwksCache, JwksFetcher};
use crate::config::JwksConfig;

/// Why a pool's keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JwksBuildError {
    #[error("cognito.jwks.file: {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cognito.jwks.file: {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: JwksParseError,
    },
    #[error("cognito.jwks.url: {0}")]
    Client(#[from] crate::tls::ClientError),
}

/// The JWKS cache of `cfg`: seeded from the file, fetching from the URL (or from
/// `fetcher_override`, for tests).
pub fn build_jwks(
    cfg: &JwksConfig,
    fetcher_override: Option<Arc<dyn JwksFetcher>>,
) -> Result<Arc<JwksCache>, JwksBuildError> {
    let seed = match &cfg.file {
        Some(path) => Some(read_jwks_file(path)?),
        None => None,
    };
    let fetcher: Option<Arc<dyn JwksFetcher>> = match (fetcher_override, &cfg.url) {
        (Some(f), _) => Some(f),
        (None, Some(url)) => Some(Arc::new(HttpJwksFetcher::new(cfg, url.clone())?)),
        (None, None) => None,
    };
    Ok(JwksCache::new(
        seed,
        fetcher,
        cfg.refetch_cooldown,
        cfg.max_stale,
    ))
}

/// The keys of a JWKS file (read at start and on every reload).
pub(crate) fn read_jwks_file(path: &Path) -> Result<KeySet, JwksBuildError> {
    let body = std::fs::read(path).map_err(|source| JwksBuildError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jwks(&body, &path.display().to_string()).map_err(|source| JwksBuildError::Parse {
        path: path.to_path_buf(),
        source,
    })
}
