//! The forward proxy's part of a request that reaches the routes: through an intercepted
//! tunnel, or in absolute form on the main listener.

use http::header::HeaderValue;
use http::Request;

use super::{destination, Gateway};
use crate::auth;
use crate::error::GatewayError;

/// A request that came through the forward proxy's intercepted tunnel, with the `CONNECT`'s
/// credentials (its `Proxy-Authorization`), which apply to every request inside.
#[derive(Debug, Clone)]
pub struct Proxied {
    pub credentials: Option<HeaderValue>,
}

impl Gateway {
    /// The forward proxy's part of a request, when `[forward_proxy]` is configured: an
    /// absolute-form target must be an intercepted destination (403 with `Proxy-Status`
    /// otherwise), and `Proxy-Authorization: Basic` — on the request, or on the `CONNECT` of its
    /// tunnel — is its Basic credential. Whether the request came through the proxy.
    pub(super) fn forward_proxy_stage<B>(
        &self,
        req: &mut Request<B>,
    ) -> Result<bool, GatewayError> {
        let Some(cfg) = &self.config.forward_proxy else {
            return Ok(false);
        };
        let tunnelled = req.extensions_mut().remove::<Proxied>();
        let absolute = tunnelled.is_none()
            && req.version() <= http::Version::HTTP_11
            && req.uri().authority().is_some();
        if absolute && !destination::absolute_form_allowed(cfg, req.uri()) {
            return Err(GatewayError::ProxyDestination("destination_not_allowed"));
        }
        if !absolute && tunnelled.is_none() {
            return Ok(false);
        }
        let proxy_credentials = req
            .headers_mut()
            .remove(http::header::PROXY_AUTHORIZATION)
            .or(tunnelled.and_then(|t| t.credentials));
        if let Some(c) = proxy_credentials.filter(auth::basic::is_basic) {
            if !req.headers().contains_key(http::header::AUTHORIZATION) {
                req.headers_mut().insert(http::header::AUTHORIZATION, c);
            }
        }
        Ok(true)
    }
}
