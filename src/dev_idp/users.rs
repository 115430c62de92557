//! The dev IdP's user directory and its in-memory state: users (whose password may change
//! through NEW_PASSWORD_REQUIRED), pending challenge sessions and refresh tokens, the last two
//! bounded so that a client looping on logins cannot grow them without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::error::IdpError;
use super::tokens::{random_token, stable_sub, Origin, Profile};
use crate::config::{DevUser, Secret};

/// Most pending challenge sessions and refresh tokens kept (each); the oldest go first.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// How long a challenge session can be answered (Cognito's default AuthSessionValidity).
pub(crate) const SESSION_TTL_SECS: i64 = 180;
/// Cognito's default password policy minimum length.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;

struct User {
    profile: Profile,
    password: Secret,
    force_new_password: bool,
}

/// The outcome of a correct password.
pub(crate) enum SignIn {
    Done(Profile),
    /// The user must choose a new password first; answer with this session.
    NewPasswordRequired {
        profile: Profile,
        session: String,
    },
}

/// A refresh token's grant: whose it is and where its chain of tokens started.
#[derive(Debug, Clone)]
pub struct Grant {
    pub username: String,
    pub origin: Origin,
}

struct PendingChallenge {
    username: String,
    expires_at: i64,
}

/// A map that keeps at most `cap` entries, evicting the oldest inserted first.
pub(crate) struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn insert(&mut self, key: String, value: V) {
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
        // Keys removed explicitly stay in `order` until here.
        if self.order.len() > self.cap.saturating_mul(2) {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        self.map.remove(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

pub(crate) struct Directory {
    users: Mutex<HashMap<String, User>>,
    sessions: Mutex<Bounded<PendingChallenge>>,
    grants: Mutex<Bounded<Grant>>,
}

impl Directory {
    pub fn new(users: &[DevUser]) -> Directory {
        Directory::with_capacity(users, MAX_ENTRIES)
    }

    pub(crate) fn with_capacity(users: &[DevUser], cap: usize) -> Directory {
        let users = users
            .iter()
            .map(|u| {
                let user = User {
                    profile: Profile {
                        username: u.username.clone(),
                        sub: stable_sub(&u.username),
                        groups: u.groups.clone(),
                        attributes: u.attributes.clone(),
                    },
                    password: u.password.clone(),
                    force_new_password: u.force_new_password,
                };
                (u.username.clone(), user)
            })
            .collect();
        Directory {
            users: Mutex::new(users),
            sessions: Mutex::new(Bounded::new(cap)),
            grants: Mutex::new(Bounded::new(cap)),
        }
    }

    /// Checks a password. Unknown users and wrong passwords are told apart, like a pool without
    /// PreventUserExistenceErrors.
    pub(crate) fn sign_in(
        &self,
        username: &str,
        password: &str,
        now: i64,
    ) -> Result<SignIn, IdpError> {
        let (profile, force) = {
            let users = lock(&self.users);
            let user = users.get(username).ok_or(IdpError::UserNotFound)?;
            if !constant_time_eq(user.password.expose(), password) {
                return Err(IdpError::bad_credentials());
            }
            (user.profile.clone(), user.force_new_password)
        };
        if !force {
            return Ok(SignIn::Done(profile));
        }
        let session = random_token::<96>();
        lock(&self.sessions).insert(
            session.clone(),
            PendingChallenge {
                username: profile.username.clone(),
                expires_at: now.saturating_add(SESSION_TTL_SECS),
            },
        );
        Ok(SignIn::NewPasswordRequired { profile, session })
    }

    /// Answers NEW_PASSWORD_REQUIRED: the session must be live and the user's, the password long
    /// enough. Sets the password, clears the flag and ends the session. A password refused by
    /// the policy leaves the session usable for another try.
    pub(crate) fn set_new_password(
        &self,
        session: &str,
        username: &str,
        new_password: &str,
        now: i64,
    ) -> Result<Profile, IdpError> {
        {
            let sessions = lock(&self.sessions);
            match sessions.get(session) {
                Some(p) if p.username == username && p.expires_at > now => {}
                _ => return Err(IdpError::invalid_session()),
            }
        }
        if new_password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(IdpError::InvalidPassword(
                "Password does not conform to policy: Password not long enough".into(),
            ));
        }
        if lock(&self.sessions).remove(session).is_none() {
            // Answered concurrently by someone else.
            return Err(IdpError::invalid_session());
        }
        let mut users = lock(&self.users);
        let user = users.get_mut(username).ok_or(IdpError::UserNotFound)?;
        user.password = Secret::new(new_password);
        user.force_new_password = false;
        Ok(user.profile.clone())
    }

    /// A new refresh token for `username`.
    pub(crate) fn issue_refresh_token(&self, username: &str, origin: &Origin) -> String {
        let token = random_token::<48>();
        lock(&self.grants).insert(
            token.clone(),
            Grant {
                username: username.to_string(),
                origin: origin.clone(),
            },
        );
        token
    }

    /// The grant behind a refresh token (REFRESH_TOKEN_AUTH: the token stays valid).
    pub fn grant(&self, refresh_token: &str) -> Result<(Grant, Profile), IdpError> {
        let grant = lock(&self.grants)
            .get(refresh_token)
            .cloned()
            .ok_or_else(IdpError::invalid_refresh_token)?;
        let profile = self.profile(&grant.username)?;
        Ok((grant, profile))
    }

    /// Redeems a refresh token for a new one (GetTokensFromRefreshToken with rotation and no
    /// grace period: the old token stops working at once).
    pub fn rotate(&self, refresh_token: &str) -> Result<(Grant, Profile, String), IdpError> {
        let grant = lock(&self.grants)
            .remove(refresh_token)
            .ok_or_else(IdpError::invalid_refresh_token)?;
        let profile = self.profile(&grant.username)?;
        let new_token = self.issue_refresh_token(&grant.username, &grant.origin);
        Ok((grant, profile, new_token))
    }

    fn profile(&self, username: &str) -> Result<Profile, IdpError> {
        lock(&self.users)
            .get(username)
            .map(|u| u.profile.clone())
            .ok_or(IdpError::UserNotFound)
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        (lock(&self.sessions).len(), lock(&self.grants).len())
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the maps stay
/// consistent: every update is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Compares two secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
