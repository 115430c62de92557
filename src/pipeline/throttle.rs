//! The throttle's two stages: before authorization (a known API key where a route needs one,
//! then the limits keyed by route, address or key) and after it (identity limits, then quotas),
//! for proxy mode and the authorizer alike. What a refusal answers is the error map's.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::Identity;
use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::ops::access_log::Outcome;
use crate::throttle::Refusal;

use super::Gateway;

impl Gateway {
    /// The route's limits keyed by route, address or API key (and a known API key where one
    /// is required), before authorization; the API key's name, when the route takes one.
    pub(crate) async fn throttle_before(
        &self,
        route: &RouteConfig,
        headers: &http::HeaderMap,
        client: IpAddr,
        outcome: &mut Outcome,
    ) -> Result<Option<Arc<str>>, GatewayError> {
        let Some(t) = &self.throttle else {
            return Ok(None);
        };
        let mut api_key = None;
        let decided = t
            .before_auth(&route.name, headers, client, &mut api_key)
            .await;
        if outcome.logged {
            outcome.api_key.clone_from(&api_key);
        }
        decided.map_err(|r| refused(r, outcome))?;
        Ok(api_key)
    }

    /// The route's limits keyed by identity, then its quotas: after authorization, as the
    /// request goes upstream.
    pub(crate) async fn throttle_after(
        &self,
        route: &RouteConfig,
        identity: &Identity,
        api_key: Option<&str>,
        client: IpAddr,
        outcome: &mut Outcome,
    ) -> Result<(), GatewayError> {
        let Some(t) = &self.throttle else {
            return Ok(());
        };
        t.after_auth(&route.name, identity.verified(), api_key, client)
            .await
            .map_err(|r| refused(r, outcome))
    }
}

/// A throttle's refusal as the error it answers with; the limit goes to the access log.
fn refused(r: Refusal, outcome: &mut Outcome) -> GatewayError {
    match r {
        Refusal::ApiKey => GatewayError::ApiKeyRequired,
        Refusal::Limited(t) => {
            outcome.throttled = Some(t.limit.clone());
            GatewayError::Throttled(t)
        }
    }
}
