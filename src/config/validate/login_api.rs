//! `[login_api]`: where the token endpoints for apps are served.

use super::Ctx;
use crate::config::raw::*;
use crate::config::*;

pub(super) fn login_api(cx: &mut Ctx, l: RawLoginApi) -> LoginApiConfig {
    let p = l.path_prefix.unwrap_or_else(|| "/auth".into());
    let p = if p.starts_with('/') && p.len() > 1 && !p.contains(['?', '#', ' ']) {
        p.trim_end_matches('/').to_string()
    } else {
        cx.err(
            "login_api.path_prefix",
            format!("must be a path such as \"/auth\": {p:?}"),
        );
        "/auth".into()
    };
    LoginApiConfig { path_prefix: p }
}
