//! `${NAME}` and `${NAME:-default}` substitution in every string value of the configuration.

use super::{join_key, ConfigError};

pub(super) fn substitute_table(
    table: &mut toml::Table,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table.iter_mut() {
        substitute_value(value, &join_key(path, key), env, errors);
    }
}

fn substitute_value(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => errors.push(ConfigError {
                key: path.to_string(),
                message,
            }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_value(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        toml::Value::Table(t) => substitute_table(t, path, env, errors),
        _ => {}
    }
}

/// Replaces each `${NAME}` with the variable's value, and `${NAME:-default}` with the value or,
/// when it is unset or empty, `default`. `$${` stands for a literal `${`.
pub(super) fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${ in value".to_string())?;
            let inner = &body[..end];
            // `${NAME:-default}`: the default when NAME is unset or empty (as in POSIX sh).
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid environment variable name \"{name}\""));
            }
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn defaults() {
        let env = |n: &str| match n {
            "SET" => Some("v".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand("${SET:-d}", &env).unwrap(), "v");
        assert_eq!(expand("${UNSET:-d}", &env).unwrap(), "d");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("a${UNSET:-}b", &env).unwrap(), "ab");
        assert_eq!(
            expand("${UNSET:-http://x:1/y}", &env).unwrap(),
            "http://x:1/y"
        );
        assert!(expand("${UNSET}", &env).is_err());
        assert!(expand("${:-d}", &env).is_err());
    }

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_and_reports_unset() {
        assert_eq!(expand("a-${SECRET}-b", &env).unwrap(), "a-s3cr3t-b");
        assert_eq!(expand("$${SECRET} $5", &env).unwrap(), "${SECRET} $5");
        assert_eq!(
            expand("${MISSING}", &env).unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(expand("${SECRET", &env).is_err());
        assert!(expand("${BAD NAME}", &env).is_err());
    }
}
