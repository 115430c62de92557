//! The Cognito actions the dev IdP answers, one method each: request parsing, app client, pool
//! and SECRET_HASH checks, then the user directory and the minter.

use serde_json::{json, Map, Value};

use super::error::IdpError;
use super::tokens::Profile;
use super::tokens::{Minted, Origin};
use super::users::{constant_time_eq, SignIn};
use super::DevIdp;
use crate::exchange::secret_hash::secret_hash;

type Object = Map<String, Value>;

impl DevIdp {
    /// `AdminInitiateAuth`: ADMIN_USER_PASSWORD_AUTH, ADMIN_NO_SRP_AUTH, REFRESH_TOKEN_AUTH.
    pub(super) fn admin_initiate_auth(&self, body: &[u8]) -> Result<Value, IdpError> {
        let req = parse(body)?;
        let flow = required(&req, "AuthFlow")?;
        self.check_client(required(&req, "ClientId")?)?;
        self.check_pool(required(&req, "UserPoolId")?)?;
        let params = object(&req, "AuthParameters")?;
        match flow {
            "ADMIN_USER_PASSWORD_AUTH" | "ADMIN_NO_SRP_AUTH" => self.password_auth(&params),
            "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => self.refresh_auth(&params),
            _ => Err(unsupported_flow()),
        }
    }

    /// `InitiateAuth`: USER_PASSWORD_AUTH, REFRESH_TOKEN_AUTH.
    pub(super) fn initiate_auth(&self, body: &[u8]) -> Result<Value, IdpError> {
        let req = parse(body)?;
        let flow = required(&req, "AuthFlow")?;
        self.check_client(required(&req, "ClientId")?)?;
        let params = object(&req, "AuthParameters")?;
        match flow {
            "USER_PASSWORD_AUTH" => self.password_auth(&params),
            "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => self.refresh_auth(&params),
            _ => Err(unsupported_flow()),
        }
    }

    /// `AdminRespondToAuthChallenge` (`admin`) and `RespondToAuthChallenge`: NEW_PASSWORD_REQUIRED.
    pub(super) fn respond_to_auth_challenge(
        &self,
        body: &[u8],
        admin: bool,
    ) -> Result<Value, IdpError> {
        let req = parse(body)?;
        let name = required(&req, "ChallengeName")?;
        self.check_client(required(&req, "ClientId")?)?;
        if admin {
            self.check_pool(required(&req, "UserPoolId")?)?;
        }
        if name != "NEW_PASSWORD_REQUIRED" {
            return Err(IdpError::InvalidParameter(format!(
                "Unsupported challenge name {name:?}: the dev IdP only issues NEW_PASSWORD_REQUIRED"
            )));
        }
        let session = required(&req, "Session")?;
        let responses = object(&req, "ChallengeResponses")?;
        let username = required(&responses, "USERNAME")?;
        self.check_secret_hash(&[username], optional(&responses, "SECRET_HASH")?)?;
        let new_password = optional(&responses, "NEW_PASSWORD")?
            .ok_or_else(|| IdpError::missing("NEW_PASSWORD"))?;
        let now = self.now();
        let profile = self
            .directory
            .set_new_password(session, username, new_password, now)?;
        tracing::info!(user = %profile.username, "dev IdP: new password set");
        self.issue(&profile, &Origin::new(now), now, true)
    }

    /// `GetTokensFromRefreshToken`: the raw client secret instead of SECRET_HASH, and refresh
    /// token rotation (a new refresh token; the old one stops working).
    pub(super) fn get_tokens_from_refresh_token(&self, body: &[u8]) -> Result<Value, IdpError> {
        let req = parse(body)?;
        self.check_client(required(&req, "ClientId")?)?;
        let token = required(&req, "RefreshToken")?;
        if let Some(secret) = &self.client_secret {
            match optional(&req, "ClientSecret")? {
                Some(given) if constant_time_eq(given, secret.expose()) => {}
                _ => return Err(IdpError::bad_secret_hash(&self.client_id)),
            }
        }
        let (grant, profile, new_token) = self.directory.rotate(token)?;
        let minted = self.minter.mint(&profile, &grant.origin, self.now())?;
        Ok(tokens_json(minted, Some(new_token)))
    }

    fn password_auth(&self, params: &Object) -> Result<Value, IdpError> {
        let username = required(params, "USERNAME")?;
        let password = required(params, "PASSWORD")?;
        self.check_secret_hash(&[username], optional(params, "SECRET_HASH")?)?;
        let now = self.now();
        match self.directory.sign_in(username, password, now)? {
            SignIn::Done(profile) => self.issue(&profile, &Origin::new(now), now, true),
            SignIn::NewPasswordRequired { profile, session } => {
                Ok(new_password_challenge(&profile, &session))
            }
        }
    }

    /// REFRESH_TOKEN_AUTH: new ID and access tokens, no new refresh token (like Cognito without
    /// rotation). SECRET_HASH must use the canonical user name (or the `sub`), not an alias.
    fn refresh_auth(&self, params: &Object) -> Result<Value, IdpError> {
        let token = required(params, "REFRESH_TOKEN")?;
        let hash = optional(params, "SECRET_HASH")?;
        let (grant, profile) = self.directory.grant(token)?;
        self.check_secret_hash(&[&profile.username, &profile.sub], hash)?;
        let minted = self.minter.mint(&profile, &grant.origin, self.now())?;
        Ok(tokens_json(minted, None))
    }

    fn issue(
        &self,
        profile: &Profile,
        origin: &Origin,
        now: i64,
        with_refresh_token: bool,
    ) -> Result<Value, IdpError> {
        let minted = self.minter.mint(profile, origin, now)?;
        let refresh = with_refresh_token.then(|| {
            self.directory
                .issue_refresh_token(&profile.username, origin)
        });
        Ok(tokens_json(minted, refresh))
    }

    fn check_client(&self, client_id: &str) -> Result<(), IdpError> {
        if client_id == self.client_id {
            Ok(())
        } else {
            Err(IdpError::ResourceNotFound(format!(
                "User pool client {client_id} does not exist."
            )))
        }
    }

    fn check_pool(&self, pool_id: &str) -> Result<(), IdpError> {
        if pool_id == self.user_pool_id {
            Ok(())
        } else {
            Err(IdpError::ResourceNotFound(format!(
                "User pool {pool_id} does not exist."
            )))
        }
    }

    /// With a client secret configured, `given` must be the SECRET_HASH of one of `usernames`.
    fn check_secret_hash(&self, usernames: &[&str], given: Option<&str>) -> Result<(), IdpError> {
        let Some(secret) = &self.client_secret else {
            return Ok(());
        };
        let ok = given.is_some_and(|given| {
            usernames
                .iter()
                .any(|u| constant_time_eq(given, &secret_hash(secret.expose(), u, &self.client_id)))
        });
        if ok {
            Ok(())
        } else {
            Err(IdpError::bad_secret_hash(&self.client_id))
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }
}

fn unsupported_flow() -> IdpError {
    IdpError::InvalidParameter("Initiate Auth method not supported.".into())
}

/// Cognito's success body.
fn tokens_json(m: Minted, refresh_token: Option<String>) -> Value {
    let mut result = json!({
        "AccessToken": m.access_token,
        "ExpiresIn": m.expires_in,
        "IdToken": m.id_token,
        "TokenType": "Bearer",
    });
    if let Some(r) = refresh_token {
        result["RefreshToken"] = Value::String(r);
    }
    json!({ "AuthenticationResult": result, "ChallengeParameters": {} })
}

fn new_password_challenge(profile: &Profile, session: &str) -> Value {
    let attributes: Object = profile
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "ChallengeName": "NEW_PASSWORD_REQUIRED",
        "Session": session,
        "ChallengeParameters": {
            "USER_ID_FOR_SRP": profile.username,
            "requiredAttributes": "[]",
            "userAttributes": Value::Object(attributes).to_string(),
        },
    })
}

fn parse(body: &[u8]) -> Result<Object, IdpError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(IdpError::InvalidParameter(
            "The request body is not a JSON object.".into(),
        )),
    }
}

/// A non-empty string field; absent, null and "" are all missing.
fn required<'a>(m: &'a Object, name: &str) -> Result<&'a str, IdpError> {
    match optional(m, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(IdpError::missing(name)),
    }
}

fn optional<'a>(m: &'a Object, name: &str) -> Result<Option<&'a str>, IdpError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(IdpError::InvalidParameter(format!(
            "{name} must be a string."
        ))),
    }
}

/// A map of strings (AuthParameters, ChallengeResponses); absent means empty.
fn object(m: &Object, name: &str) -> Result<Object, IdpError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(Object::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(_) => Err(IdpError::InvalidParameter(format!(
            "{name} must be a map of strings."
        ))),
    }
}
