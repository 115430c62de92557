//! What the configuration asks of AWS, before any CloudFormation: the stage and path prefix that
//! `private_api.base_url` names, the Cognito actions the exchange calls and at which paths, and
//! each pool's JWKS (where Cognito serves it, where the API serves it). Every problem is
//! collected with its key, as config validation does.

use crate::config::{
    AuthFlow, CognitoConfig, Config, ConfigError, ExchangeConfig, PoolConfig, PrivateApiConfig,
    RefreshFlow, DEFAULT_POOL,
};
use crate::exchange::api::Action;

/// The stage's name when `base_url` has no path (a custom domain's base path mapping).
pub(super) const DEFAULT_STAGE: &str = "prod";

pub(super) struct Plan {
    /// `None`: `base_url` has no path, a parameter names the stage.
    pub stage: Option<String>,
    /// `base_url`'s path after the stage: the gateway's actions and default JWKS paths lie
    /// under it.
    pub prefix: Vec<String>,
    /// `None` without `[exchange]`: no actions, no role.
    pub exchange: Option<ExchangePlan>,
    pub pools: Vec<PoolPlan>,
    /// What a reader of this configuration's template should know (stand-in values).
    pub notes: Vec<String>,
}

pub(super) struct ExchangePlan {
    pub auth_flow: AuthFlow,
    pub refresh_flow: RefreshFlow,
    pub user_pool_id: String,
    /// The pool's region; `None` when neither its issuer nor its id names one.
    pub region: Option<String>,
    pub methods: Vec<ActionMethod>,
}

/// A POST method: the action, the `[private_api.paths]` key, the path under the stage.
pub(super) struct ActionMethod {
    pub action: Action,
    pub key: String,
    pub path: Vec<String>,
}

pub(super) struct PoolPlan {
    pub name: String,
    /// The key of the pool's `jwks.url` (what a path conflict names).
    pub key: String,
    /// Where Cognito serves the pool's keys.
    pub jwks: JwksSource,
    /// Where the API serves them, under the stage.
    pub path: Vec<String>,
    /// Why the path or the source is not what the configuration says, when it is not.
    pub remarks: Vec<String>,
}

pub(super) enum JwksSource {
    /// `{issuer}/.well-known/jwks.json` of a Cognito issuer.
    Url(String),
    /// The issuer is not Cognito's (a development stand-in): the configured pool id in the
    /// stack's region.
    StackRegion { pool_id: String },
}

/// A Cognito issuer (`https://cognito-idp.{region}.amazonaws.com/{pool_id}`, or the
/// `issuer-cognito-idp` host of pools with the UPDATED issuer format): its region and pool id.
pub fn aws_issuer(issuer: &str) -> Option<(String, String)> {
    let url = reqwest::Url::parse(issuer).ok()?;
    if url.scheme() != "https" || url.port().is_some() {
        return None;
    }
    let host = url.host_str()?;
    let rest = host
        .strip_prefix("cognito-idp.")
        .or_else(|| host.strip_prefix("issuer-cognito-idp."))?;
    let region = rest.strip_suffix(".amazonaws.com")?;
    let mut segments = url.path_segments()?;
    let id = segments.next()?;
    if segments.next().is_some() || !is_region(region) || id.is_empty() {
        return None;
    }
    Some((region.to_string(), id.to_string()))
}

/// Looks like an AWS region name (`ap-northeast-1`, `us-gov-west-1`).
fn is_region(s: &str) -> bool {
    s.contains('-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The region a user pool id names (`ap-northeast-1_AbCdEf123`).
fn pool_id_region(id: &str) -> Option<&str> {
    let (region, rest) = id.split_once('_')?;
    (is_region(region) && !rest.is_empty()).then_some(region)
}

/// The region of the pool the exchange logs into: its Cognito issuer's, else its pool id's.
pub(super) fn exchange_region(
    cognito: Option<&CognitoConfig>,
    ex: &ExchangeConfig,
) -> Option<String> {
    cognito
        .and_then(|c| c.pool(&ex.pool))
        .and_then(|p| p.issuers.iter().find_map(|i| aws_issuer(i)))
        .map(|(region, _)| region)
        .or_else(|| pool_id_region(&ex.user_pool_id).map(String::from))
}

/// The `exchange.refresh_flow` value as the configuration spells it.
pub(super) fn refresh_flow_name(flow: RefreshFlow) -> &'static str {
    match flow {
        RefreshFlow::RefreshTokenAuth => "REFRESH_TOKEN_AUTH",
        RefreshFlow::GetTokensFromRefreshToken => "GetTokensFromRefreshToken",
    }
}

/// The key of the `i`th pool: `cognito` in the single form, else `cognito.pools[i]`.
pub(super) fn pool_key(cognito: &CognitoConfig, i: usize) -> String {
    if cognito.pools.len() == 1 && cognito.pools[0].name == DEFAULT_POOL {
        "cognito".to_string()
    } else {
        format!("cognito.pools[{i}]")
    }
}

/// What API Gateway takes as a path part ("a-zA-Z0-9._-"; `{}` would make a path parameter).
fn is_path_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

const PATH_PARTS: &str = "API Gateway path parts are letters, digits, '.', '_' and '-'";

struct Planner<'a> {
    cognito: &'a CognitoConfig,
    api: &'a PrivateApiConfig,
    errors: Vec<ConfigError>,
    plan: Plan,
}

/// The plan for `config`, or every problem with its key.
pub(super) fn plan(
    config: &Config,
    cognito: &CognitoConfig,
    api: &PrivateApiConfig,
) -> Result<Plan, Vec<ConfigError>> {
    let mut p = Planner {
        cognito,
        api,
        errors: Vec::new(),
        plan: Plan {
            stage: None,
            prefix: Vec::new(),
            exchange: None,
            pools: Vec::new(),
            notes: Vec::new(),
        },
    };
    p.stage();
    if let Some(ex) = &config.exchange {
        p.exchange(ex);
    }
    p.pools();
    p.conflicts();
    if p.errors.is_empty() {
        Ok(p.plan)
    } else {
        Err(p.errors)
    }
}

impl Planner<'_> {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// The stage is the first path segment of `base_url`; the rest is the prefix.
    fn stage(&mut self) {
        let base = &self.api.base_url;
        let segments: Vec<String> = base
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        if !base.host_str().unwrap_or("").contains(".execute-api.") {
            self.plan.notes.push(format!(
                "private_api.base_url ({base}) is not an API Gateway URL: once the stack is \
                 created, set it to the BaseUrl output."
            ));
        }
        let Some((stage, prefix)) = segments.split_first() else {
            self.plan.notes.push(format!(
                "private_api.base_url ({base}) has no path to name the stage: the StageName \
                 parameter does (default \"{DEFAULT_STAGE}\"), for a custom domain's base path \
                 mapping."
            ));
            return;
        };
        let stage_ok = stage.len() <= 128
            && stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !stage_ok {
            self.err(
                "private_api.base_url",
                format!(
                    "its first path segment {stage:?} names the stage, and API Gateway stage \
                     names are letters, digits, '-' and '_'"
                ),
            );
        }
        if let Some(bad) = prefix.iter().find(|p| !is_path_part(p)) {
            self.err(
                "private_api.base_url",
                format!("path segment {bad:?}: {PATH_PARTS}"),
            );
        }
        self.plan.stage = Some(stage.clone());
        self.plan.prefix = prefix.to_vec();
    }

    /// A `[private_api.paths]` value as path parts under the prefix (`/` is the prefix itself).
    fn action_parts(&mut self, key: &str, path: &str) -> Option<Vec<String>> {
        let mut parts = self.plan.prefix.clone();
        if path == "/" {
            return Some(parts);
        }
        for part in path.trim_start_matches('/').split('/') {
            if !is_path_part(part) {
                self.err(key, format!("{path:?}: {PATH_PARTS} (and none is empty)"));
                return None;
            }
            parts.push(part.to_string());
        }
        Some(parts)
    }

    fn exchange(&mut self, ex: &ExchangeConfig) {
        let region = exchange_region(Some(self.cognito), ex);
        if region.is_none() {
            self.plan.notes.push(format!(
                "exchange.user_pool_id {:?} names no region: the Cognito actions and the role's \
                 pool ARN are in the stack's region.",
                ex.user_pool_id
            ));
        }
        let mut methods = Vec::new();
        for action in Action::used_by(ex.auth_flow, ex.refresh_flow) {
            let (key, path) = action.path(&self.api.paths);
            let key = format!("private_api.paths.{key}");
            if let Some(path) = self.action_parts(&key, path) {
                methods.push(ActionMethod { action, key, path });
            }
        }
        self.plan.exchange = Some(ExchangePlan {
            auth_flow: ex.auth_flow,
            refresh_flow: ex.refresh_flow,
            user_pool_id: ex.user_pool_id.clone(),
            region,
            methods,
        });
    }

    fn pools(&mut self) {
        let pools = &self.cognito.pools;
        let several = pools.len() > 1;
        for (i, pool) in pools.iter().enumerate() {
            let key = pool_key(self.cognito, i);
            if let Some(p) = self.pool(pool, &key, several) {
                self.plan.pools.push(p);
            }
        }
    }

    fn pool(&mut self, pool: &PoolConfig, key: &str, several: bool) -> Option<PoolPlan> {
        let mut remarks = Vec::new();
        let aws = pool.issuers.iter().find(|i| aws_issuer(i).is_some());
        let jwks = match aws {
            Some(issuer) => {
                if issuer.starts_with("https://issuer-cognito-idp.") {
                    remarks.push(
                        "The pool's issuer is in the UPDATED format: its keys are fetched \
                         under that issuer."
                            .to_string(),
                    );
                }
                JwksSource::Url(format!(
                    "{}/.well-known/jwks.json",
                    issuer.trim_end_matches('/')
                ))
            }
            None => {
                let pool_id = pool.user_pool_id.clone().unwrap_or_default();
                if pool_id.is_empty() {
                    self.err(
                        format!("{key}.issuer"),
                        "names no user pool id: set region and user_pool_id",
                    );
                    return None;
                }
                let why = format!(
                    "is not a Cognito issuer, so its region and pool id cannot be derived: this \
                     uses the stack's region and the pool id {pool_id:?}. Set the pool's region \
                     and user_pool_id for the real pool."
                );
                let remark = format!("The issuer {:?} {why}", pool.issuer);
                self.plan.notes.push(format!(
                    "Pool {:?}: its issuer {:?} {why}",
                    pool.name, pool.issuer
                ));
                remarks.push(remark);
                JwksSource::StackRegion { pool_id }
            }
        };
        let url_key = format!("{key}.jwks.url");
        let path = match self.jwks_path_in_api(pool) {
            Some(p) => {
                if let Some(bad) = p.iter().find(|p| !is_path_part(p)) {
                    self.err(url_key, format!("path segment {bad:?}: {PATH_PARTS}"));
                    return None;
                }
                p
            }
            // Under the prefix (checked with base_url); pool names are valid path parts.
            None => {
                let mut p = self.plan.prefix.clone();
                if several {
                    p.push(pool.name.clone());
                }
                p.push("jwks".into());
                remarks.push(match &pool.jwks.url {
                    Some(u) => format!(
                        "{url_key} ({u}) is not under private_api.base_url: point it at this \
                         method (the JwksUrl output)."
                    ),
                    None => format!(
                        "The pool has no jwks.url (its keys come from a file): to fetch them \
                         through this API, set {url_key} to this method (the JwksUrl output)."
                    ),
                });
                p
            }
        };
        Some(PoolPlan {
            name: pool.name.clone(),
            key: url_key,
            jwks,
            path,
            remarks,
        })
    }

    /// The pool's `jwks.url` as a path of this API, when it lies under the stage's URL.
    fn jwks_path_in_api(&self, pool: &PoolConfig) -> Option<Vec<String>> {
        let url = pool.jwks.url.as_ref()?;
        let base = &self.api.base_url;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return None;
        }
        let segments: Vec<String> = url
            .path_segments()?
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let rest = match &self.plan.stage {
            Some(stage) => segments.strip_prefix(std::slice::from_ref(stage))?.to_vec(),
            None => segments,
        };
        (!rest.is_empty()).then_some(rest)
    }

    /// Two methods of one verb on one path: each later one names the key of the first.
    fn conflicts(&mut self) {
        let mut methods: Vec<(&str, &[String], &str)> = Vec::new();
        if let Some(ex) = &self.plan.exchange {
            methods.extend(ex.methods.iter().map(|m| ("POST", &m.path[..], &m.key[..])));
        }
        methods.extend(
            self.plan
                .pools
                .iter()
                .map(|p| ("GET", &p.path[..], &p.key[..])),
        );
        let mut found = Vec::new();
        for (i, (verb, path, key)) in methods.iter().enumerate() {
            if let Some((_, _, first)) =
                methods[..i].iter().find(|(v, p, _)| v == verb && p == path)
            {
                found.push(ConfigError {
                    key: key.to_string(),
                    message: format!(
                        "{verb} /{} is also {first}'s: one method per path",
                        path.join("/")
                    ),
                });
            }
        }
        self.errors.extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn config(toml: &str) -> Config {
        let source = Source {
            name: "test".into(),
            base_dir: std::env::temp_dir(),
        };
        Config::parse(toml, &source).unwrap()
    }

    fn plan_of(toml: &str) -> Result<Plan, Vec<ConfigError>> {
        let c = config(toml);
        plan(
            &c,
            c.cognito.as_ref().unwrap(),
            c.private_api.as_ref().unwrap(),
        )
    }

    const POOL: &str = r#"
[cognito]
region = "eu-west-1"
user_pool_id = "eu-west-1_Pool12345"
app_clients = []
[cognito.jwks]
url = "https://abc.execute-api.eu-west-1.amazonaws.com/live/keys/pool"
"#;

    #[test]
    fn the_flows_decide_the_actions() {
        use Action::*;
        let table = [
            (
                AuthFlow::AdminUserPassword,
                RefreshFlow::RefreshTokenAuth,
                vec![AdminInitiateAuth, AdminRespondToAuthChallenge, InitiateAuth],
            ),
            (
                AuthFlow::AdminNoSrp,
                RefreshFlow::GetTokensFromRefreshToken,
                vec![
                    AdminInitiateAuth,
                    AdminRespondToAuthChallenge,
                    GetTokensFromRefreshToken,
                ],
            ),
            (
                AuthFlow::UserPassword,
                RefreshFlow::RefreshTokenAuth,
                vec![InitiateAuth, RespondToAuthChallenge],
            ),
            (
                AuthFlow::UserPassword,
                RefreshFlow::GetTokensFromRefreshToken,
                vec![
                    InitiateAuth,
                    RespondToAuthChallenge,
                    GetTokensFromRefreshToken,
                ],
            ),
        ];
        for (auth, refresh, expected) in table {
            assert_eq!(
                Action::used_by(auth, refresh),
                expected,
                "{auth:?} {refresh:?}"
            );
        }
    }

    #[test]
    fn cognito_issuers_name_region_and_pool() {
        let pool = Some((
            "ap-northeast-1".to_string(),
            "ap-northeast-1_Ab1".to_string(),
        ));
        assert_eq!(
            aws_issuer("https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Ab1"),
            pool
        );
        assert_eq!(
            aws_issuer(
                "https://issuer-cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Ab1"
            ),
            pool
        );
        for other in [
            "http://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Ab1",
            "https://cognito-idp.ap-northeast-1.amazonaws.com:8443/ap-northeast-1_Ab1",
            "https://cognito-idp.ap-northeast-1.amazonaws.com/",
            "https://cognito-idp.ap-northeast-1.amazonaws.com/a/b",
            "https://cognito-idp.evil.example.com/ap-northeast-1_Ab1",
            "https://cognito-idp.AP.amazonaws.com/x",
            "http://127.0.0.1:4577/dev-pool",
        ] {
            assert_eq!(aws_issuer(other), None, "{other}");
        }
        assert_eq!(pool_id_region("us-gov-west-1_Abc"), Some("us-gov-west-1"));
        assert_eq!(pool_id_region("dev-pool"), None);
        assert_eq!(pool_id_region("eu-west-1_"), None);
    }

    #[test]
    fn base_url_names_stage_and_prefix_and_jwks_url_its_path() {
        let p = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com/live/idp/\"\n"
        ))
        .unwrap();
        assert_eq!(p.stage.as_deref(), Some("live"));
        assert_eq!(p.prefix, ["idp"]);
        assert!(p.exchange.is_none());
        assert_eq!(p.pools.len(), 1);
        // jwks.url lies under the stage: its own path (not under the prefix) is kept.
        assert_eq!(p.pools[0].path, ["keys", "pool"]);
        assert!(p.pools[0].remarks.is_empty());
        assert!(matches!(&p.pools[0].jwks, JwksSource::Url(u)
            if u == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool12345/.well-known/jwks.json"));
        assert!(p.notes.is_empty(), "{:?}", p.notes);

        // Another host: the default path, under the prefix, and a remark saying so.
        let p = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://xyz.execute-api.eu-west-1.amazonaws.com/live/idp\"\n"
        ))
        .unwrap();
        assert_eq!(p.pools[0].path, ["idp", "jwks"]);
        assert!(p.pools[0].remarks[0].contains("is not under private_api.base_url"));

        // No path: the stage is a parameter, jwks.url's whole path is the method's.
        let p = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com\"\n"
        ))
        .unwrap();
        assert_eq!(p.stage, None);
        assert_eq!(p.pools[0].path, ["live", "keys", "pool"]);
        assert!(p.notes[0].contains("has no path to name the stage"));
    }

    #[test]
    fn bad_stage_and_path_parts_are_named() {
        let errors = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com/li.ve/a~b\"\n\
             [private_api.paths]\nadmin_initiate_auth = \"/x//y\"\n\
             [exchange]\nclient_id = \"c\"\n"
        ))
        .err()
        .unwrap();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "private_api.base_url",
                "private_api.base_url",
                "private_api.paths.admin_initiate_auth"
            ],
            "{errors:?}"
        );
        assert!(errors[0].message.contains("\"li.ve\" names the stage"));
        assert!(errors[1].message.contains("\"a~b\""));

        // A jwks.url under the stage is taken as it is, and must be a path API Gateway can have.
        let errors = plan_of(&format!(
            "{}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com/live\"\n",
            POOL.replace("keys/pool", "keys/p~1")
        ))
        .err()
        .unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "cognito.jwks.url");
        assert_eq!(
            errors[0].message,
            "path segment \"p~1\": API Gateway path parts are letters, digits, '.', '_' and '-'"
        );
    }

    #[test]
    fn the_keys_come_from_the_exchange_pool_and_the_paths_from_the_config() {
        let p = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com/live\"\n\
             [private_api.paths]\ninitiate_auth = \"/\"\n\
             [exchange]\nclient_id = \"c\"\n"
        ))
        .unwrap();
        let ex = p.exchange.unwrap();
        assert_eq!(ex.region.as_deref(), Some("eu-west-1"));
        assert_eq!(ex.user_pool_id, "eu-west-1_Pool12345");
        let paths: Vec<(Action, Vec<String>)> =
            ex.methods.into_iter().map(|m| (m.action, m.path)).collect();
        assert_eq!(
            paths,
            [
                (
                    Action::AdminInitiateAuth,
                    vec!["admin-initiate-auth".to_string()]
                ),
                (
                    Action::AdminRespondToAuthChallenge,
                    vec!["admin-respond-to-auth-challenge".to_string()]
                ),
                (Action::InitiateAuth, vec![]),
            ]
        );
    }

    #[test]
    fn a_jwks_path_taken_by_an_action_is_a_conflict() {
        let errors = plan_of(&format!(
            "{POOL}[private_api]\nbase_url = \"https://abc.execute-api.eu-west-1.amazonaws.com/live\"\n\
             [private_api.paths]\nadmin_initiate_auth = \"/keys/pool\"\nadmin_respond_to_auth_challenge = \"/keys/pool\"\n\
             [exchange]\nclient_id = \"c\"\n"
        ))
        .err()
        .unwrap();
        // Different verbs may share a path; the same verb may not.
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].key,
            "private_api.paths.admin_respond_to_auth_challenge"
        );
        assert_eq!(
            errors[0].message,
            "POST /keys/pool is also private_api.paths.admin_initiate_auth's: one method per path"
        );
    }
}
