//! Accounts of the people who use a daemon's API — specialists and administrators at the
//! gateway, doctors and administrators at a clinic — because a report must be signed by a
//! real, named person. Passwords are stored as argon2 hashes; a login yields a session token
//! (12 hours), and `user token` a long-lived token for scripts. Tokens are stored as SHA-256
//! hashes, so the database never holds anything that logs in by itself.
//!
//! The acting user always comes from the token ([`Authenticated`]), never from a request body.

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a login session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Hospital: reads, asks, reports. Linked to a specialist id in `routing.toml`.
    Specialist,
    /// Clinic: creates consultations, answers, reads reports.
    Doctor,
    /// Either site: everything, including assigning and managing accounts.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "specialist" => Some(Role::Specialist),
            "doctor" => Some(Role::Doctor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A user as the API sees them (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    pub role: Role,
    /// The name printed on reports and in timelines.
    pub display_name: String,
    /// Specialists: their id in `routing.toml`.
    pub specialist: Option<String>,
    /// Specialists: the qualification printed on reports.
    pub qualification: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    user: User,
    hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    user: String,
    /// Unix seconds; `None` for script tokens.
    expires: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("index error: {0}")]
    Index(String),
    #[error("user {0} exists; pass --replace to set a new password")]
    Exists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("the password is too short: at least {MIN_PASSWORD} characters")]
    ShortPassword,
    #[error("a user name is 1-64 letters, digits, '.', '-' or '_'")]
    BadName,
    #[error("wrong user name or password")]
    BadLogin,
}

impl From<sled::Error> for AccountError {
    fn from(e: sled::Error) -> Self {
        AccountError::Index(e.to_string())
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> Result<String, AccountError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| AccountError::Index(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn token_key(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub struct Accounts {
    db: sled::Db,
    users: sled::Tree,
    tokens: sled::Tree,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    pub fn open(db: &sled::Db) -> Result<Self, AccountError> {
        Ok(Self {
            users: db.open_tree("accounts_users")?,
            tokens: db.open_tree("accounts_tokens")?,
            db: db.clone(),
        })
    }

    /// Adds `user` with `password` (or replaces their password and details with `replace`).
    pub fn add(&self, user: User, password: &str, replace: bool) -> Result<(), AccountError> {
        let name_ok = !user.name.is_empty()
            && user.name.len() <= 64
            && user
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err(AccountError::BadName);
        }
        if password.chars().count() < MIN_PASSWORD {
            return Err(AccountError::ShortPassword);
        }
        if !replace && self.users.contains_key(&user.name)? {
            return Err(AccountError::Exists(user.name));
        }
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| AccountError::Index(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Index(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccountError::Index(e.to_string()))?
            .to_string();
        let stored = serde_json::to_vec(&Stored {
            user: user.clone(),
            hash,
        })
        .map_err(|e| AccountError::Index(e.to_string()))?;
        self.users.insert(user.name.as_bytes(), stored)?;
        self.db.flush()?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, AccountError> {
        Ok(self.stored(name)?.map(|s| s.user))
    }

    fn stored(&self, name: &str) -> Result<Option<Stored>, AccountError> {
        Ok(match self.users.get(name)? {
            Some(v) => {
                Some(serde_json::from_slice(&v).map_err(|e| AccountError::Index(e.to_string()))?)
            }
            None => None,
        })
    }

    pub fn list(&self) -> Result<Vec<User>, AccountError> {
        self.users
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                let s: Stored =
                    serde_json::from_slice(&v).map_err(|e| AccountError::Index(e.to_string()))?;
                Ok(s.user)
            })
            .collect()
    }

    /// Checks a password; the same error whether the user or the password is wrong.
    pub fn verify(&self, name: &str, password: &str) -> Result<User, AccountError> {
        let Some(stored) = self.stored(name)? else {
            // Spend the same time as a real check, so timing does not tell who exists.
            let _ = Argon2::default().hash_password(
                password.as_bytes(),
                &SaltString::encode_b64(b"timing-equaliser").map_err(|_| AccountError::BadLogin)?,
            );
            return Err(AccountError::BadLogin);
        };
        let hash = PasswordHash::new(&stored.hash).map_err(|_| AccountError::BadLogin)?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .map_err(|_| AccountError::BadLogin)?;
        Ok(stored.user)
    }

    /// A session token for `name`, valid [`SESSION_SECS`]; `script` makes one that does not
    /// expire (revoke it with [`Accounts::revoke`]).
    pub fn issue_token(&self, name: &str, script: bool) -> Result<String, AccountError> {
        if self.get(name)?.is_none() {
            return Err(AccountError::NoSuchUser(name.into()));
        }
        let token = random_hex(32)?;
        let record = TokenRecord {
            user: name.into(),
            expires: (!script).then(|| now() + SESSION_SECS),
        };
        let value = serde_json::to_vec(&record).map_err(|e| AccountError::Index(e.to_string()))?;
        self.tokens.insert(token_key(&token), value)?;
        self.db.flush()?;
        Ok(token)
    }

    /// The user a token stands for, if it is valid now.
    pub fn resolve(&self, token: &str) -> Result<Option<User>, AccountError> {
        let Some(v) = self.tokens.get(token_key(token))? else {
            return Ok(None);
        };
        let record: TokenRecord =
            serde_json::from_slice(&v).map_err(|e| AccountError::Index(e.to_string()))?;
        if record.expires.is_some_and(|t| t <= now()) {
            self.tokens.remove(token_key(token))?;
            return Ok(None);
        }
        self.get(&record.user)
    }

    pub fn revoke(&self, token: &str) -> Result<(), AccountError> {
        self.tokens.remove(token_key(token))?;
        self.db.flush()?;
        Ok(())
    }
}

/// A JSON error: `{"code": "...", "message": "..."}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "log in with POST /api/v1/login, or send Authorization: Bearer TOKEN",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "refused", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The user behind a request: from `Authorization: Bearer TOKEN` or the `tpg_session`
/// cookie. Handlers that take it refuse anonymous calls with 401.
#[derive(Debug, Clone)]
pub struct Authenticated(pub User);

/// Where the extractor finds the accounts: the router's state implements this.
pub trait HasAccounts {
    fn accounts(&self) -> &Accounts;
}

fn token_of(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    let cookies = parts.headers.get(axum::http::header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| {
        c.trim()
            .strip_prefix("tpg_session=")
            .map(|t| t.trim().to_owned())
    })
}

impl<S> FromRequestParts<S> for Authenticated
where
    S: HasAccounts + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = token_of(parts).ok_or_else(ApiError::unauthenticated)?;
        match state.accounts().resolve(&token) {
            Ok(Some(user)) => Ok(Authenticated(user)),
            Ok(None) => Err(ApiError::unauthenticated()),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            role: Role::Specialist,
            display_name: "Li Wei".into(),
            specialist: Some("li".into()),
            qualification: Some("attending radiologist".into()),
        }
    }

    #[test]
    fn passwords_are_hashed_and_tokens_resolve_to_their_user() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let accounts = Accounts::open(&db).unwrap();
        assert!(matches!(
            accounts.add(user("li"), "short", false),
            Err(AccountError::ShortPassword)
        ));
        assert!(matches!(
            accounts.add(user("li wei"), "long enough password", false),
            Err(AccountError::BadName)
        ));
        accounts
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        assert!(matches!(
            accounts.add(user("li"), "another password", false),
            Err(AccountError::Exists(_))
        ));
        let raw: Vec<u8> = db
            .open_tree("accounts_users")
            .unwrap()
            .get("li")
            .unwrap()
            .unwrap()
            .to_vec();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("$argon2") && !text.contains("correct horse"));
        assert!(matches!(
            accounts.verify("li", "wrong password!"),
            Err(AccountError::BadLogin)
        ));
        assert!(matches!(
            accounts.verify("nobody", "correct horse battery"),
            Err(AccountError::BadLogin)
        ));
        assert_eq!(
            accounts.verify("li", "correct horse battery").unwrap().name,
            "li"
        );
        let token = accounts.issue_token("li", false).unwrap();
        assert_eq!(accounts.resolve(&token).unwrap().unwrap().name, "li");
        assert!(accounts.resolve("not-a-token").unwrap().is_none());
        accounts.revoke(&token).unwrap();
        assert!(accounts.resolve(&token).unwrap().is_none());
    }
}
