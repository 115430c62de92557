//! `[throttle.NAME]` and `[throttle.api_keys]`.

use std::collections::{BTreeMap, HashSet};

use super::Ctx;
use crate::config::raw::{RawApiKey, RawApiKeysFile, RawThrottle};
use crate::config::{
    join_key, ApiKeysConfig, LimitConfig, LimitKind, QuotaPeriod, Secret, ThrottleConfig,
    ThrottleKey,
};

/// The table name that holds the API keys rather than a limit.
pub const API_KEYS: &str = "api_keys";

/// The header API keys arrive in, by default (API Gateway's).
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// The most tokens per second a bucket may refill (one per microsecond: the shared buckets
/// count in microseconds).
const MAX_RATE: f64 = 1_000_000.0;

pub(super) fn throttle(cx: &mut Ctx, raw: BTreeMap<String, RawThrottle>) -> ThrottleConfig {
    let mut out = ThrottleConfig::default();
    for (name, t) in raw {
        let key = join_key("throttle", &name);
        if name == API_KEYS {
            out.api_keys = Some(api_keys(cx, &key, t));
            continue;
        }
        if let Some(limit) = limit(cx, &key, &name, t) {
            out.limits.insert(name, limit);
        }
    }
    if out.api_keys.is_none() {
        for l in out.limits.values().filter(|l| l.key == ThrottleKey::ApiKey) {
            cx.err(
                join_key(&join_key("throttle", &l.name), "key"),
                "\"api_key\" needs [throttle.api_keys] (the header and the known keys)",
            );
        }
    }
    out
}

fn limit(cx: &mut Ctx, key: &str, name: &str, t: RawThrottle) -> Option<LimitConfig> {
    let k = |field: &str| join_key(key, field);
    for (field, set) in [
        ("header", t.header.is_some()),
        ("file", t.file.is_some()),
        ("keys", !t.keys.is_empty()),
    ] {
        if set {
            cx.err(k(field), "only [throttle.api_keys] takes this");
        }
    }
    let throttle_key = match t.key.as_deref() {
        Some("route") => ThrottleKey::Route,
        Some("client_id") => ThrottleKey::ClientId,
        Some("sub") => ThrottleKey::Sub,
        Some("api_key") => ThrottleKey::ApiKey,
        Some("client_address") => ThrottleKey::ClientAddress,
        other => {
            cx.err(
                k("key"),
                format!(
                    "must be one of route, client_id, sub, api_key, client_address{}",
                    other.map(|o| format!(", got {o:?}")).unwrap_or_default()
                ),
            );
            return None;
        }
    };
    let kind = match (t.rate, t.burst, t.quota, t.period) {
        (Some(rate), burst, None, None) => {
            if !(rate > 0.0 && rate <= MAX_RATE) {
                cx.err(
                    k("rate"),
                    format!("must be above 0 and at most {MAX_RATE} per second, got {rate}"),
                );
            }
            let burst = match burst {
                Some(b) if (1..=i64::from(u32::MAX)).contains(&b) => b as u32,
                Some(b) => {
                    cx.err(k("burst"), format!("must be at least 1, got {b}"));
                    1
                }
                None => {
                    cx.err(
                        k("burst"),
                        "required with rate (how many requests may arrive at once)",
                    );
                    1
                }
            };
            LimitKind::Rate { rate, burst }
        }
        (None, None, Some(quota), period) => {
            if quota < 1 {
                cx.err(k("quota"), format!("must be at least 1, got {quota}"));
            }
            let period = match period.as_deref() {
                Some("day") => QuotaPeriod::Day,
                Some("week") => QuotaPeriod::Week,
                Some("month") => QuotaPeriod::Month,
                other => {
                    cx.err(
                        k("period"),
                        format!(
                            "must be day, week or month (UTC){}",
                            other.map(|o| format!(", got {o:?}")).unwrap_or_default()
                        ),
                    );
                    QuotaPeriod::Day
                }
            };
            LimitKind::Quota {
                quota: quota.max(1) as u64,
                period,
            }
        }
        _ => {
            cx.err(
                key,
                "a limit is either rate and burst (a token bucket) or quota and period",
            );
            return None;
        }
    };
    Some(LimitConfig {
        name: name.to_string(),
        kind,
        key: throttle_key,
    })
}

fn api_keys(cx: &mut Ctx, key: &str, t: RawThrottle) -> ApiKeysConfig {
    let k = |field: &str| join_key(key, field);
    for (field, set) in [
        ("rate", t.rate.is_some()),
        ("burst", t.burst.is_some()),
        ("quota", t.quota.is_some()),
        ("period", t.period.is_some()),
        ("key", t.key.is_some()),
    ] {
        if set {
            cx.err(
                k(field),
                "[throttle.api_keys] holds the API keys, not a limit",
            );
        }
    }
    let header_text = t
        .header
        .unwrap_or_else(|| DEFAULT_API_KEY_HEADER.to_string());
    let header = match http::HeaderName::from_bytes(header_text.as_bytes()) {
        Ok(h) if h == http::header::AUTHORIZATION || crate::hop::is_hop_by_hop(&h) => {
            cx.err(
                k("header"),
                "must not be Authorization or a hop-by-hop header",
            );
            http::HeaderName::from_static(DEFAULT_API_KEY_HEADER)
        }
        Ok(h) => h,
        Err(_) => {
            cx.err(
                k("header"),
                format!("not a valid header name: {header_text:?}"),
            );
            http::HeaderName::from_static(DEFAULT_API_KEY_HEADER)
        }
    };
    let mut keys = Vec::new();
    let mut names = HashSet::new();
    let mut values = HashSet::new();
    let file = t.file.and_then(|f| cx.path(&k("file"), &f, true));
    if let Some(path) = &file {
        let file_key = k("file");
        match std::fs::read_to_string(path) {
            Ok(text) => match toml::from_str::<RawApiKeysFile>(&text) {
                Ok(parsed) => {
                    let at = format!("{file_key} ({})", path.display());
                    add_keys(cx, &at, parsed.keys, &mut keys, &mut names, &mut values);
                }
                // The parser's message quotes the line, which may hold a key: not echoed.
                Err(e) => cx.err(
                    file_key,
                    format!(
                        "{}: not an API keys file ([[keys]] name = \"…\" key = \"…\"){}",
                        path.display(),
                        e.span()
                            .map(|s| format!(" near byte {}", s.start))
                            .unwrap_or_default()
                    ),
                ),
            },
            Err(e) => cx.err(file_key, format!("cannot read {}: {e}", path.display())),
        }
    }
    add_keys(cx, &k("keys"), t.keys, &mut keys, &mut names, &mut values);
    if keys.is_empty() {
        cx.err(key, "no API keys: give file or keys");
    }
    ApiKeysConfig { header, file, keys }
}

/// The shortest API key accepted: 20 characters, API Gateway's minimum.
const MIN_API_KEY_LEN: usize = 20;

fn add_keys(
    cx: &mut Ctx,
    at: &str,
    raw: Vec<RawApiKey>,
    keys: &mut Vec<(String, Secret)>,
    names: &mut HashSet<String>,
    values: &mut HashSet<String>,
) {
    for (i, entry) in raw.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let (Some(name), Some(key)) = (entry.name, entry.key) else {
            cx.err(here, "each key needs name and key");
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            cx.err(
                format!("{here}.name"),
                "must be printable ASCII without spaces (it is logged and used as a metric label)",
            );
            continue;
        }
        if key.len() < MIN_API_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
            || http::HeaderValue::from_str(&key).is_err()
        {
            cx.err(
                format!("{here}.key"),
                format!(
                    "must be at least {MIN_API_KEY_LEN} printable ASCII characters without spaces"
                ),
            );
            continue;
        }
        if !names.insert(name.clone()) {
            cx.err(format!("{here}.name"), format!("duplicate name {name:?}"));
            continue;
        }
        if !values.insert(key.clone()) {
            cx.err(
                format!("{here}.key"),
                format!("the same key as another name ({name:?})"),
            );
            continue;
        }
        keys.push((name, Secret::new(key)));
    }
}

/// `routes[].throttle`: known limit names, each once; identity keys only where a caller is
/// authenticated.
pub(super) fn route_throttle(
    cx: &mut Ctx,
    key: &str,
    names: Vec<String>,
    authenticated: bool,
    limits: &BTreeMap<String, ThrottleKey>,
) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let here = format!("{key}[{i}]");
        if name == API_KEYS {
            cx.err(
                here,
                "[throttle.api_keys] holds the API keys; name a limit with key = \"api_key\"",
            );
            continue;
        }
        let Some(limit_key) = limits.get(&name) else {
            cx.err(here, format!("no [throttle.{name}]"));
            continue;
        };
        if limit_key.is_identity() && !authenticated {
            cx.err(
                here,
                format!(
                    "{name:?} is keyed by {}, which needs auth \"jwt\", \"basic\" or \"service\" on the route",
                    limit_key.as_str()
                ),
            );
            continue;
        }
        if !seen.insert(name.clone()) {
            cx.err(here, format!("{name:?} listed twice"));
            continue;
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LimitKind, QuotaPeriod, Source, ThrottleKey};

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        let source = Source {
            name: "t".into(),
            base_dir: ".".into(),
        };
        let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n{text}");
        Config::parse_with_env(&text, &source, &|_| None)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    const ROUTE: &str = "[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    const KEYS: &str =
        "[throttle.api_keys]\nkeys = [{ name = \"partner-a\", key = \"0123456789abcdefghij\" }]\n";

    #[test]
    fn limits_parse_and_attach_in_order() {
        let c = parse(&format!(
            "[throttle.burst]\nrate = 5\nburst = 20\nkey = \"client_address\"\n\
             [throttle.daily]\nquota = 1000\nperiod = \"day\"\nkey = \"api_key\"\n{KEYS}\
             {ROUTE}throttle = [\"daily\", \"burst\"]\n"
        ))
        .unwrap();
        assert_eq!(c.routes[0].throttle, ["daily", "burst"]);
        let b = &c.throttle.limits["burst"];
        assert_eq!(
            b.kind,
            LimitKind::Rate {
                rate: 5.0,
                burst: 20
            }
        );
        assert_eq!(b.key, ThrottleKey::ClientAddress);
        assert_eq!(
            c.throttle.limits["daily"].kind,
            LimitKind::Quota {
                quota: 1000,
                period: QuotaPeriod::Day
            }
        );
        let keys = c.throttle.api_keys.unwrap();
        assert_eq!(keys.header, "x-api-key");
        assert_eq!(keys.keys[0].0, "partner-a");
    }

    #[test]
    fn every_problem_names_its_key_and_no_api_key_is_echoed() {
        let e = parse(&format!(
            "[throttle.a]\nrate = 0\nkey = \"user\"\n\
             [throttle.b]\nrate = 1\nburst = 1\nquota = 5\nkey = \"route\"\n\
             [throttle.c]\nquota = 0\nperiod = \"year\"\nkey = \"api_key\"\n\
             [throttle.d]\nrate = 1\nburst = 1\nkey = \"sub\"\n\
             {ROUTE}throttle = [\"d\", \"nope\", \"api_keys\"]\n"
        ))
        .unwrap_err();
        for want in [
            "throttle.a.key: must be one of route, client_id, sub, api_key, client_address, got \"user\"",
            "throttle.b: a limit is either rate and burst (a token bucket) or quota and period",
            "throttle.c.quota: must be at least 1, got 0",
            "throttle.c.period: must be day, week or month (UTC), got \"year\"",
            "throttle.c.key: \"api_key\" needs [throttle.api_keys] (the header and the known keys)",
            "routes[0].throttle[0]: \"d\" is keyed by sub, which needs auth \"jwt\", \"basic\" or \"service\" on the route",
            "routes[0].throttle[1]: no [throttle.nope]",
            "routes[0].throttle[2]: [throttle.api_keys] holds the API keys; name a limit with key = \"api_key\"",
        ] {
            assert!(e.iter().any(|p| p == want), "missing {want:?} in {e:#?}");
        }
        let e = parse(
            "[throttle.burst]\nrate = 2\nkey = \"route\"\n\
             [throttle.api_keys]\nheader = \"authorization\"\nrate = 1\n\
             keys = [{ name = \"a\", key = \"short-secret\" }, { name = \"has space\", key = \"0123456789abcdefghij\" }]\n",
        )
        .unwrap_err();
        for want in [
            "throttle.burst.burst: required with rate (how many requests may arrive at once)",
            "throttle.api_keys.rate: [throttle.api_keys] holds the API keys, not a limit",
            "throttle.api_keys.header: must not be Authorization or a hop-by-hop header",
            "throttle.api_keys.keys[0].key: must be at least 20 printable ASCII characters without spaces",
            "throttle.api_keys.keys[1].name: must be printable ASCII without spaces (it is logged and used as a metric label)",
        ] {
            assert!(e.iter().any(|p| p == want), "missing {want:?} in {e:#?}");
        }
        assert!(e.iter().all(|p| !p.contains("short-secret")), "{e:#?}");
    }

    #[test]
    fn api_keys_from_a_file_and_its_errors_without_the_keys() {
        let dir = std::env::temp_dir().join(format!("cg-apikeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[[keys]]\nname = \"a\"\nkey = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n[[keys]]\nname = \"b\"\nkey = \"bbbbbbbbbbbbbbbbbbbbbbbb\"\n",
        )
        .unwrap();
        let c = parse(&format!(
            "[throttle.api_keys]\nfile = {:?}\nheader = \"x-partner-key\"\n",
            good.display().to_string()
        ))
        .unwrap();
        let k = c.throttle.api_keys.unwrap();
        assert_eq!(k.keys.len(), 2);
        assert_eq!(k.header, "x-partner-key");
        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[keys]]\nname = \"a\"\nkey = \"secret-value-here-xyz\"\nextra = 1\n",
        )
        .unwrap();
        let e = parse(&format!(
            "[throttle.api_keys]\nfile = {:?}\n",
            bad.display().to_string()
        ))
        .unwrap_err();
        assert!(e[0].starts_with("throttle.api_keys.file: "), "{e:?}");
        assert!(e[0].contains("not an API keys file"), "{e:?}");
        assert!(e.iter().all(|p| !p.contains("secret-value-here")), "{e:?}");
        let dup = dir.join("dup.toml");
        std::fs::write(
            &dup,
            "[[keys]]\nname = \"a\"\nkey = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n[[keys]]\nname = \"a\"\nkey = \"cccccccccccccccccccccccc\"\n[[keys]]\nname = \"c\"\nkey = \"aaaaaaaaaaaaaaaaaaaaaaaa\"\n",
        )
        .unwrap();
        let e = parse(&format!(
            "[throttle.api_keys]\nfile = {:?}\n",
            dup.display().to_string()
        ))
        .unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.ends_with("[1].name: duplicate name \"a\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.ends_with("[2].key: the same key as another name (\"c\")")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
