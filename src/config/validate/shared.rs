//! `[shared_state]`.

use std::time::Duration;

use base64::Engine;

use super::*;

pub(crate) const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(100);
pub(crate) const DEFAULT_KEY_PREFIX: &str = "cognito-gate:";

pub(super) fn shared_state(cx: &mut Ctx, s: RawSharedState) -> SharedStateConfig {
    let url = match s.url {
        Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
            match reqwest::Url::parse(&u) {
                Ok(parsed) if parsed.host().is_some() => {
                    if !parsed.username().is_empty() || parsed.password().is_some() {
                        cx.err(
                            "shared_state.url",
                            "put credentials in shared_state.username and shared_state.password, not in the URL",
                        );
                    }
                    u
                }
                _ => {
                    cx.err("shared_state.url", format!("not a URL: {u:?}"));
                    u
                }
            }
        }
        Some(u) => {
            cx.err(
                "shared_state.url",
                format!("must be redis:// or rediss://, got {u:?}"),
            );
            u
        }
        None => {
            cx.err("shared_state.url", "required");
            String::new()
        }
    };
    let encryption_key_text = cx.secret_or_file(
        "shared_state.encryption_key",
        s.encryption_key,
        s.encryption_key_file,
    );
    let password = cx.secret_or_file("shared_state.password", s.password, s.password_file);
    let encryption_key = match encryption_key_text.as_deref() {
        Some(k) => match base64::engine::general_purpose::STANDARD.decode(k.trim()) {
            Ok(bytes) if bytes.len() == 32 => Secret::new(k.trim()),
            Ok(bytes) => {
                cx.err(
                    "shared_state.encryption_key",
                    format!("must be 32 bytes, base64; this is {} bytes", bytes.len()),
                );
                Secret::new("")
            }
            Err(_) => {
                cx.err("shared_state.encryption_key", "must be 32 bytes, base64");
                Secret::new("")
            }
        },
        None => {
            cx.err(
                "shared_state.encryption_key",
                "required: 32 bytes, base64 (e.g. head -c32 /dev/urandom | base64)",
            );
            Secret::new("")
        }
    };
    let ca_file = s
        .ca_file
        .filter(|f| !f.is_empty())
        .and_then(|f| cx.path("shared_state.ca_file", &f, true));
    if ca_file.is_some() && !url.starts_with("rediss://") {
        cx.err("shared_state.ca_file", "only used with a rediss:// url");
    }
    let key_prefix = s.key_prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.into());
    if key_prefix.contains(['{', '}']) || key_prefix.contains(char::is_whitespace) {
        cx.err(
            "shared_state.key_prefix",
            "may not contain braces (cluster hash tags) or white space",
        );
    }
    SharedStateConfig {
        url,
        cluster: s.cluster,
        username: s.username.filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()).map(Secret::new),
        ca_file,
        key_prefix,
        timeout: cx.positive_duration(
            "shared_state.timeout",
            s.timeout.as_deref(),
            DEFAULT_SHARED_TIMEOUT,
        ),
        encryption_key,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Source};

    fn problems(shared: &str, with_exchange: bool) -> Vec<String> {
        let exchange = if with_exchange {
            "[private_api]\nbase_url = \"http://127.0.0.1:1/dev\"\n[exchange]\nclient_id = \"c\"\nuser_pool_id = \"p\"\n"
        } else {
            ""
        };
        let text =
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{exchange}[shared_state]\n{shared}");
        let source = Source {
            name: "t".into(),
            base_dir: ".".into(),
        };
        match Config::parse_with_env(&text, &source, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const KEY: &str = "encryption_key = \"KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\"";

    #[test]
    fn every_problem_names_its_key_and_no_secret() {
        assert!(problems(&format!("url = \"redis://127.0.0.1:6379\"\n{KEY}"), true).is_empty());
        assert!(problems(
            &format!("url = \"rediss://v:6379\"\ncluster = true\ntimeout = \"50ms\"\n{KEY}"),
            true
        )
        .is_empty());
        assert_eq!(
            problems("url = \"http://x\"\nencryption_key = \"c2hvcnQ=\"\ntimeout = \"0s\"\nkey_prefix = \"{a}\"\nca_file = \"/nonexistent/ca.pem\"", true),
            vec![
                "shared_state.url: must be redis:// or rediss://, got \"http://x\"",
                "shared_state.encryption_key: must be 32 bytes, base64; this is 5 bytes",
                "shared_state.ca_file: file not found: \"/nonexistent/ca.pem\"",
                "shared_state.key_prefix: may not contain braces (cluster hash tags) or white space",
                "shared_state.timeout: must be greater than zero",
            ]
        );
        assert_eq!(
            problems(
                &format!("url = \"redis://v:6379\"\nca_file = \"Cargo.toml\"\n{KEY}"),
                true
            ),
            vec!["shared_state.ca_file: only used with a rediss:// url"]
        );
        let missing = problems("", true);
        assert!(
            missing.contains(&"shared_state.url: required".to_string()),
            "{missing:?}"
        );
        assert!(missing
            .iter()
            .any(|p| p.starts_with("shared_state.encryption_key: required")));
        let creds = problems(&format!("url = \"redis://u:hunter2@v:6379\"\n{KEY}"), true);
        assert_eq!(
            creds,
            vec!["shared_state.url: put credentials in shared_state.username and shared_state.password, not in the URL"]
        );
        assert!(creds.iter().all(|p| !p.contains("hunter2")));
        // Throttling alone may share state: no [exchange] needed.
        assert!(problems(&format!("url = \"redis://v:6379\"\n{KEY}"), false).is_empty());
    }
}
