//! Reading a configuration: TOML, `${ENV}` substitution, serde's type errors (every one, each
//! naming its key), unknown keys, then validation. All problems are returned at once.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::types::Config;
use super::{env, raw, validate};

/// One problem in the configuration, naming the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub(crate) fn single(key: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            key: key.to_string(),
            message: message.into(),
        }])
    }
}

/// Where a configuration came from: relative paths inside it are resolved against `base_dir`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single("", format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(
            &text,
            &Source {
                name: path.display().to_string(),
                base_dir,
            },
        )
    }

    /// Parses configuration text, reading the process environment for `${NAME}` references.
    pub fn parse(text: &str, source: &Source) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(text, source, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text with an explicit environment lookup (tests use this).
    pub fn parse_with_env(
        text: &str,
        source: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors::single("", syntax_error(source, text, &e))
        })?;
        let mut errors = Vec::new();
        env::substitute_table(&mut value, "", env, &mut errors);
        // Keys already reported (an unset variable, a value of the wrong type): what validation
        // says later about the same key would only repeat the problem, less clearly.
        let mut reported: HashSet<String> = errors.iter().map(|e| e.key.clone()).collect();

        // A value of the wrong type stops serde at the first one; it is reported, removed, and
        // the rest deserialized again, so one run still reports every problem.
        let (raw, unknown) = loop {
            let mut unknown = Vec::new();
            let de = toml::Value::Table(value.clone());
            let mut on_unknown = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
            let ignored = serde_ignored::Deserializer::new(de, &mut on_unknown);
            let raw: Result<raw::RawConfig, _> = serde_path_to_error::deserialize(ignored);
            match raw {
                Ok(raw) => break (Some(raw), unknown),
                Err(e) => {
                    let key = typed_path(e.path());
                    if reported.insert(key.clone()) {
                        // serde quotes the bad value; a secret's stays out of the message.
                        let secret = key.ends_with("password")
                            || key.ends_with("client_secret")
                            || key.ends_with("encryption_key");
                        let message = if secret {
                            "must be a string".to_string()
                        } else {
                            e.inner().message().trim().to_string()
                        };
                        errors.push(ConfigError { key, message });
                    }
                    match remove_path(&mut value, e.path()) {
                        Some(removed) => {
                            reported.insert(removed);
                        }
                        None => break (None, unknown),
                    }
                }
            }
        };
        for key in unknown {
            errors.push(ConfigError {
                key,
                message: "unknown key".into(),
            });
        }
        let Some(raw) = raw else {
            return Err(ConfigErrors(errors));
        };
        let mut found = Vec::new();
        let config = validate::validate(raw, source, &mut found);
        errors.extend(found.into_iter().filter(|e| !reported.contains(&e.key)));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

fn syntax_error(source: &Source, text: &str, e: &toml::de::Error) -> String {
    // toml's message may span lines ("invalid table header\nexpected `.`, `]`"): one line here.
    let msg = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => {
            let mut start = span.start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(
                "{}: invalid TOML at line {line}, column {column}: {msg}",
                source.name
            )
        }
        None => format!("{}: invalid TOML: {msg}", source.name),
    }
}

/// Removes the value at `path` (its nearest enclosing key: a bad array element takes its whole
/// array) so that deserialization can go on past it. Returns the removed key, `None` when there
/// is nothing to remove.
fn remove_path(table: &mut toml::Table, path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    fn remove_at(value: &mut toml::Value, segments: &[&Segment]) -> bool {
        match segments {
            [Segment::Map { key }] => value
                .as_table_mut()
                .is_some_and(|t| t.remove(key.as_str()).is_some()),
            [Segment::Map { key }, rest @ ..] => value
                .get_mut(key.as_str())
                .is_some_and(|v| remove_at(v, rest)),
            [Segment::Seq { index }, rest @ ..] => {
                value.get_mut(*index).is_some_and(|v| remove_at(v, rest))
            }
            _ => false,
        }
    }
    let segments: Vec<&Segment> = path.iter().collect();
    let last_key = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))?;
    let segments = &segments[..=last_key];
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = remove_at(&mut root, segments);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed.then(|| segments_key(segments.iter().copied()))
}

fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => join_key(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn typed_path(path: &serde_path_to_error::Path) -> String {
    segments_key(path.iter())
}

fn segments_key<'a>(segments: impl Iterator<Item = &'a serde_path_to_error::Segment>) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join_key(&out, key),
            Segment::Enum { variant } => out = join_key(&out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

pub(crate) fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('"', "\\\""))
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        match Config::parse_with_env(text, &source, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn values_of_the_wrong_type_do_not_hide_the_other_problems() {
        let mut got = problems(
            r#"
[server]
max_connections = "many"
[[routes]]
name = 5
path_prefix = "/a"
upstream = "htp:/x"
auth = ["none", 3]
"#,
        );
        got.sort();
        assert_eq!(
            got,
            vec![
                r#"routes[0].auth[1]: invalid type: integer `3`, expected a string"#,
                r#"routes[0].name: invalid type: integer `5`, expected a string"#,
                r#"routes[0].upstream: not a URL: "htp:/x""#,
                r#"server.max_connections: invalid type: string "many", expected i64"#,
            ]
        );
    }

    #[test]
    fn worker_threads_defaults_to_auto_and_rejects_negatives() {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        let c = Config::parse_with_env("", &source, &|_| None).unwrap();
        assert_eq!(c.server.worker_threads, 0);
        let c =
            Config::parse_with_env("[server]\nworker_threads = 3\n", &source, &|_| None).unwrap();
        assert_eq!(c.server.worker_threads, 3);
        assert_eq!(
            problems("[server]\nworker_threads = -1\n"),
            vec!["server.worker_threads: must be at least 0, got -1".to_string()]
        );
    }

    #[test]
    fn ipv6_prefix_defaults_to_64_and_must_be_1_to_128() {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        let c = Config::parse_with_env("", &source, &|_| None).unwrap();
        assert_eq!(c.server.ipv6_prefix, 64);
        for ok in [1, 48, 128] {
            let text = format!("[server]\nipv6_prefix = {ok}\n");
            let c = Config::parse_with_env(&text, &source, &|_| None).unwrap();
            assert_eq!(c.server.ipv6_prefix, ok);
        }
        for bad in [0, 129, -64] {
            assert_eq!(
                problems(&format!("[server]\nipv6_prefix = {bad}\n")),
                vec![format!(
                    "server.ipv6_prefix: must be a prefix length from 1 to 128, got {bad}"
                )]
            );
        }
    }

    #[test]
    fn the_flood_guard_defaults_to_120_and_0_turns_it_off() {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        let cognito = "[cognito]\nissuer = \"https://idp.example/pool\"\napp_clients = []\n";
        let budget = |extra: &str| {
            let text =
                format!("{cognito}{extra}[cognito.jwks]\nurl = \"https://idp.example/jwks\"\n");
            Config::parse_with_env(&text, &source, &|_| None)
                .unwrap()
                .cognito
                .unwrap()
                .bad_signature_per_minute
        };
        assert_eq!(budget(""), 120);
        assert_eq!(budget("bad_signature_per_minute = 0\n"), 0);
        assert_eq!(budget("bad_signature_per_minute = 5\n"), 5);
        let text = format!(
            "{cognito}bad_signature_per_minute = -1\n[cognito.jwks]\nurl = \"https://idp.example/jwks\"\n"
        );
        assert_eq!(
            problems(&text),
            vec!["cognito.bad_signature_per_minute: must be at least 0, got -1".to_string()]
        );
        let text = format!(
            "{cognito}bad_signature_per_minute = 5000000000\n[cognito.jwks]\nurl = \"https://idp.example/jwks\"\n"
        );
        assert_eq!(
            problems(&text),
            vec!["cognito.bad_signature_per_minute: must be at most 4294967295".to_string()]
        );
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_quoted() {
        let got = problems(
            "[exchange]\nclient_id = \"c\"\nclient_secret = 987654321\n\
             [service_accounts.batch]\nusername = \"u\"\npassword = 123456789\n",
        );
        assert!(
            got.contains(&"exchange.client_secret: must be a string".to_string())
                && got.contains(&"service_accounts.batch.password: must be a string".to_string()),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|p| p.contains("987654321") || p.contains("123456789")),
            "{got:?}"
        );
    }

    #[test]
    fn an_unset_variable_is_reported_once_for_its_key() {
        let got = problems("[server]\nlisten = \"${CG_UNIT_UNSET}\"\n");
        assert_eq!(
            got,
            vec!["server.listen: environment variable CG_UNIT_UNSET is not set"]
        );
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_position() {
        let got = problems("[server]\nlisten = \n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("test: invalid TOML at line 2, column ") && !got[0].contains('\n'),
            "{got:?}"
        );
        // Non-ASCII text before the error does not throw the column off (or panic).
        let got = problems("# ü ü\n[server]\nlisten = \"é\" x\n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("test: invalid TOML at line 3, column 14: "),
            "{got:?}"
        );
    }
}
