//! `[dev_idp]`: the embedded development stand-in for the private API, and its users.

use std::time::Duration;

use super::Ctx;
use crate::config::raw::*;
use crate::config::*;

pub(crate) const DEFAULT_DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(super) fn dev_idp(cx: &mut Ctx, d: RawDevIdp) -> DevIdpConfig {
    let listen = match d.listen.as_deref() {
        Some(l) => cx
            .addr("dev_idp.listen", l)
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
        None => {
            cx.err("dev_idp.listen", "required");
            ([127, 0, 0, 1], 0).into()
        }
    };
    let mut users = Vec::new();
    for (i, u) in d.users.into_iter().enumerate() {
        let key = format!("dev_idp.users[{i}]");
        let username = match u.username {
            Some(n) if !n.is_empty() => n,
            _ => {
                cx.err(format!("{key}.username"), "required");
                String::new()
            }
        };
        let password = match u.password {
            Some(p) if !p.is_empty() => Secret::new(p),
            _ => {
                cx.err(format!("{key}.password"), "required");
                Secret::new("")
            }
        };
        if users.iter().any(|x: &DevUser| x.username == username) {
            cx.err(
                format!("{key}.username"),
                format!("duplicate user {username:?}"),
            );
        }
        users.push(DevUser {
            username,
            password,
            groups: u.groups,
            attributes: u.attributes.into_iter().collect(),
            force_new_password: u.force_new_password,
        });
    }
    DevIdpConfig {
        listen,
        token_lifetime: cx.positive_duration(
            "dev_idp.token_lifetime",
            d.token_lifetime.as_deref(),
            DEFAULT_DEV_TOKEN_LIFETIME,
        ),
        signing_keys: d
            .signing_keys
            .as_deref()
            .and_then(|f| cx.path("dev_idp.signing_keys", f, true)),
        users,
    }
}
