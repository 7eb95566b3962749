//! Accounts of the people who use a daemon's API — specialists and administrators at the
//! gateway, doctors and administrators at a clinic — because a report must be signed by a
//! real, named person. Passwords are stored as argon2 hashes; a login yields a session token
//! (12 hours), and `user token` a long-lived token for scripts. Script tokens are stored as
//! SHA-256 hashes, so the file never holds anything that logs in by itself.
//!
//! The acting user always comes from the token (`daemon::login::Authenticated`), never from a
//! request body. This module holds no HTTP: the routes and extractors are in `login` and `web`.

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// How long a login session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;
/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

use store::accounts::{Account, AccountStore, AccountStoreError, Grant, SessionStore};
pub use store::accounts::{Role, User};

/// Days a script token lasts unless its maker says otherwise.
pub const SCRIPT_TOKEN_DAYS: u32 = 90;

/// A short fingerprint of a stored password hash, never the hash itself.
fn password_fingerprint(hash: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(hash.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
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
    #[error("the account {0} is deactivated; an administrator can reactivate it")]
    Deactivated(String),
    #[error("too many failed logins for this user; try again in {retry_after} s")]
    Locked { retry_after: i64 },
    #[error("too many logins are being checked at once; try again in a few seconds")]
    Busy,
    #[error("the role must be one of: {0}")]
    Role(String),
    #[error("a specialist account needs the specialist's id in routing.toml (--specialist ID, or the specialist field)")]
    NoSpecialistId,
    #[error("an administrator cannot deactivate their own account; ask another administrator")]
    OwnAccount,
    #[error("an administrator cannot change their own role; ask another administrator")]
    OwnRole,
}

/// The role named `name`, when it is one of this site's `roles`.
pub fn site_role(name: &str, roles: &[Role]) -> Result<Role, AccountError> {
    Role::parse(name)
        .filter(|r| roles.contains(r))
        .ok_or_else(|| role_error(roles))
}

fn role_error(roles: &[Role]) -> AccountError {
    let names: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    AccountError::Role(names.join(", "))
}

/// Whether `user` may have an account at a site whose accounts have `roles`: the role is one
/// of them, and a specialist names their id in `routing.toml`.
pub fn check_details(user: &User, roles: &[Role]) -> Result<(), AccountError> {
    if !roles.contains(&user.role) {
        return Err(role_error(roles));
    }
    if user.role == Role::Specialist && user.specialist.is_none() {
        return Err(AccountError::NoSpecialistId);
    }
    Ok(())
}

impl From<AccountStoreError> for AccountError {
    fn from(e: AccountStoreError) -> Self {
        match e {
            AccountStoreError::Io(e) => AccountError::Index(e),
            AccountStoreError::Exists(n) => AccountError::Exists(n),
            AccountStoreError::NoSuchUser(n) => AccountError::NoSuchUser(n),
        }
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

/// Failed logins allowed for one name before it is locked for a while.
pub const FREE_FAILURES: u32 = 5;
/// The first lock; each further failure doubles it, up to [`MAX_LOCK_SECS`].
pub const FIRST_LOCK_SECS: i64 = 30;
pub const MAX_LOCK_SECS: i64 = 15 * 60;

/// Passwords checked at once (argon2 takes about 19 MiB and tens of milliseconds each); more
/// wait up to 5 s, then are told to try again.
const VERIFYING: usize = 4;
static VERIFICATIONS: crate::slots::Slots =
    crate::slots::Slots::new(VERIFYING, std::time::Duration::from_secs(5));
/// User names whose failures are remembered at once: beyond, names no longer locked are
/// forgotten first, and if all are locked new names wait.
const MAX_TRACKED_NAMES: usize = 10_000;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    /// Attempts being checked now: counted as failures until they are known, so parallel
    /// guesses cannot all be checked before the lock.
    in_flight: u32,
    locked_until: i64,
}

/// The accounts of one daemon, over the accounts and sessions ports (`store::accounts`).
/// Embedded, they are a JSON file in its data folder (`accounts.json`, 0600), changed by the
/// `user` commands and the running daemon in turn and re-read when it changes, so accounts
/// can be managed while the daemon runs; login sessions live in the daemon's memory, so a
/// restart asks people to log in again.
pub struct Accounts {
    /// Failed logins per user name (in memory: a restart forgets them).
    failures: std::sync::Mutex<std::collections::HashMap<String, Failures>>,
    /// Passwords checked with argon2 since the daemon started.
    verified: std::sync::atomic::AtomicU64,
    store: std::sync::Arc<dyn AccountStore>,
    sessions: std::sync::Arc<dyn SessionStore>,
    /// Where logins, failed logins, lock-outs and logouts are recorded (the gateway's audit
    /// log), when there is one.
    audit: Option<std::sync::Arc<dyn store::audit::AuditLog>>,
    /// Names whose lock-out is recorded, until when: a locked name is recorded once per lock,
    /// not once per refused attempt (each record is a sync a guesser could make us pay).
    locks_noted: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn hex_key(token: &str) -> String {
    token_key(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Accounts {
    /// The accounts file at `path` (opened, not created: the first account makes it), with
    /// sessions in memory.
    pub fn open(path: &std::path::Path) -> Result<Self, AccountError> {
        Ok(Self::new(
            std::sync::Arc::new(store::accounts::file::FileAccounts::open(path)?),
            std::sync::Arc::new(store::accounts::memory::MemorySessions::default()),
        ))
    }

    /// The accounts kept by `store`, with sessions kept by `sessions`.
    pub fn new(
        store: std::sync::Arc<dyn AccountStore>,
        sessions: std::sync::Arc<dyn SessionStore>,
    ) -> Self {
        Self {
            failures: Default::default(),
            verified: Default::default(),
            store,
            sessions,
            audit: None,
            locks_noted: Default::default(),
        }
    }

    /// Records every login attempt and logout in `audit`.
    pub fn with_audit(mut self, audit: std::sync::Arc<dyn store::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Records `action` by `user` from `from` (the name tried, for a login), when there is an
    /// audit log; the login or logout it describes goes ahead only once it is recorded.
    fn record(&self, user: &str, from: &str, action: &str) -> Result<(), AccountError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        audit
            .record(at_ms, user, from, action, user)
            .map(drop)
            .map_err(|e| AccountError::Index(e.to_string()))
    }

    /// [`Self::login`] from the client at `from`, recorded in the audit log: `login`,
    /// `login_failed`, `login_locked` or `login_deactivated`, under the name tried.
    pub fn login_from(&self, name: &str, password: &str, from: &str) -> Result<User, AccountError> {
        let result = self.login(name, password);
        let action = match &result {
            Ok(_) => "login",
            Err(AccountError::BadLogin | AccountError::NoSuchUser(_)) => "login_failed",
            Err(AccountError::Locked { retry_after }) => {
                let now = now();
                let mut noted = self.locks_noted.lock().unwrap_or_else(|p| p.into_inner());
                noted.retain(|_, t| *t > now);
                if noted.contains_key(name) || noted.len() >= MAX_TRACKED_NAMES {
                    return result;
                }
                noted.insert(name.to_owned(), now + retry_after);
                "login_locked"
            }
            Err(AccountError::Deactivated(_)) => "login_deactivated",
            Err(_) => return result,
        };
        self.record(name, from, action)?;
        result
    }

    /// Asks `name` for their password again before an act that cannot be undone (signing a
    /// report): throttled like a login, so the form is no way to guess a password, and
    /// recorded in the audit log as `reauth` or `reauth_failed`.
    pub fn reconfirm(&self, name: &str, password: &str, from: &str) -> Result<(), AccountError> {
        let result = self.login(name, password);
        let action = if result.is_ok() {
            "reauth"
        } else {
            "reauth_failed"
        };
        self.record(name, from, action)?;
        result.map(drop)
    }

    /// [`Self::revoke`] of a session or token, recorded as `logout` of its user.
    pub fn logout_from(&self, token: &str, from: &str) -> Result<(), AccountError> {
        if let Some(user) = self.resolve(token)? {
            self.record(&user.name, from, "logout")?;
        }
        self.revoke(token)
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
        if !replace && self.store.account(&user.name)?.is_some() {
            return Err(AccountError::Exists(user.name));
        }
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| AccountError::Index(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Index(e.to_string()))?;
        // Hashed before the lock is taken: argon2 takes tens of milliseconds.
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccountError::Index(e.to_string()))?
            .to_string();
        Ok(self.store.put_account(Account { user, hash }, replace)?)
    }

    /// Adds `user` at a site whose accounts have `roles` (or replaces their password and
    /// details with `replace`): the same checks for the `user` commands and the pages.
    pub fn add_at(
        &self,
        roles: &[Role],
        user: User,
        password: &str,
        replace: bool,
    ) -> Result<(), AccountError> {
        check_details(&user, roles)?;
        self.add(user, password, replace)
    }

    /// Changes an account's details (role, name shown, specialist link, qualification), its
    /// password kept, with the same checks as adding it at a site whose accounts have
    /// `roles`; answers the details before and after. An administrator may not change their
    /// own role (nobody might be left to change it back).
    pub fn change_details(
        &self,
        roles: &[Role],
        actor: &str,
        changed: User,
    ) -> Result<(User, User), AccountError> {
        check_details(&changed, roles)?;
        let Some(mut account) = self.store.account(&changed.name)? else {
            return Err(AccountError::NoSuchUser(changed.name));
        };
        if actor == changed.name && account.user.role != changed.role {
            return Err(AccountError::OwnRole);
        }
        let before = account.user.clone();
        account.user = User {
            deactivated: before.deactivated,
            ..changed
        };
        let after = account.user.clone();
        self.store.put_account(account, true)?;
        Ok((before, after))
    }

    /// `actor` deactivates another's account; their own they may not (nobody would be left to
    /// reactivate it, and a slip would lock them out).
    pub fn deactivate_by(&self, actor: &str, name: &str) -> Result<(), AccountError> {
        if actor == name {
            return Err(AccountError::OwnAccount);
        }
        self.set_deactivated(name, true)
    }

    /// Deactivates (or reactivates) an account; its sessions end at once.
    pub fn set_deactivated(&self, name: &str, deactivated: bool) -> Result<(), AccountError> {
        Ok(self.store.set_deactivated(name, deactivated)?)
    }

    pub fn get(&self, name: &str) -> Result<Option<User>, AccountError> {
        Ok(self.store.account(name)?.map(|a| a.user))
    }

    pub fn list(&self) -> Result<Vec<User>, AccountError> {
        Ok(self.store.accounts()?.into_iter().map(|a| a.user).collect())
    }

    /// Checks a login, throttling guesses: after [`FREE_FAILURES`] wrong passwords for a name,
    /// it is refused for a while without checking (`Err(Locked)` says how long), and each
    /// further failure doubles the wait. A success clears the count. An attempt counts
    /// before its password is checked, so parallel guesses get no more checks than serial
    /// ones; at most [`VERIFYING`] passwords are checked at once in the process.
    pub fn login(&self, name: &str, password: &str) -> Result<User, AccountError> {
        let now = now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if !failures.contains_key(name) && failures.len() >= MAX_TRACKED_NAMES {
                failures.retain(|_, f| f.locked_until > now || f.in_flight > 0);
                if failures.len() >= MAX_TRACKED_NAMES {
                    return Err(AccountError::Busy);
                }
            }
            let f = failures.entry(name.to_owned()).or_default();
            if f.locked_until > now {
                return Err(AccountError::Locked {
                    retry_after: f.locked_until - now,
                });
            }
            // Attempts being checked count as failures until known; once a lock has run out,
            // one attempt at a time.
            if f.in_flight >= FREE_FAILURES.saturating_sub(f.count).max(1) {
                return Err(AccountError::Locked {
                    retry_after: FIRST_LOCK_SECS,
                });
            }
            f.in_flight += 1;
        }
        let result = match VERIFICATIONS.take() {
            Some(_slot) => self.verify(name, password),
            None => Err(AccountError::Busy),
        };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = failures.entry(name.to_owned()).or_default();
        f.in_flight = f.in_flight.saturating_sub(1);
        match &result {
            Ok(_) => {
                failures.remove(name);
            }
            Err(AccountError::BadLogin) => {
                f.count += 1;
                if f.count >= FREE_FAILURES {
                    let doublings = (f.count - FREE_FAILURES).min(10);
                    let lock = (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS);
                    f.locked_until = now + lock;
                }
            }
            Err(_) => {
                if f.count == 0 && f.in_flight == 0 {
                    failures.remove(name);
                }
            }
        }
        result
    }

    /// Passwords checked with argon2 since the daemon started (the throttle's tests and
    /// metrics).
    pub fn verifications(&self) -> u64 {
        self.verified.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks a password; the same error whether the user or the password is wrong.
    pub fn verify(&self, name: &str, password: &str) -> Result<User, AccountError> {
        self.verified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(stored) = self.store.account(name)? else {
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
        if stored.user.deactivated {
            return Err(AccountError::Deactivated(stored.user.name));
        }
        Ok(stored.user)
    }

    /// A login session token for `name`, valid [`SESSION_SECS`], kept in memory.
    pub fn session(&self, name: &str) -> Result<String, AccountError> {
        let Some(stored) = self.store.account(name)? else {
            return Err(AccountError::NoSuchUser(name.into()));
        };
        let token = random_hex(32)?;
        let now = now();
        let grant = Grant {
            user: name.into(),
            expires: Some(now + SESSION_SECS),
            under: Some(password_fingerprint(&stored.hash)),
        };
        self.sessions.grant(&hex_key(&token), grant, now)?;
        Ok(token)
    }

    /// A token for scripts, valid [`SCRIPT_TOKEN_DAYS`], stored (hashed) in the accounts file.
    pub fn script_token(&self, name: &str) -> Result<String, AccountError> {
        self.script_token_for(name, SCRIPT_TOKEN_DAYS)
    }

    /// A token for scripts valid `days` days (at least one), stored (hashed) in the accounts
    /// file; expired ones are dropped from it.
    pub fn script_token_for(&self, name: &str, days: u32) -> Result<String, AccountError> {
        let Some(stored) = self.store.account(name)? else {
            return Err(AccountError::NoSuchUser(name.into()));
        };
        let token = random_hex(32)?;
        let now = now();
        let grant = Grant {
            user: name.into(),
            expires: Some(now + i64::from(days.max(1)) * 86_400),
            under: Some(password_fingerprint(&stored.hash)),
        };
        self.store.grant(&hex_key(&token), grant, now)?;
        Ok(token)
    }

    /// The user a token stands for, if it is valid now.
    pub fn resolve(&self, token: &str) -> Result<Option<User>, AccountError> {
        let key = hex_key(token);
        let record = match self.sessions.granted(&key)? {
            Some(r) => Some(r),
            None => self.store.granted(&key)?,
        };
        let Some(record) = record else {
            return Ok(None);
        };
        // A token without an end (made before tokens expired) is no longer honoured.
        if record.expired(now()) {
            return Ok(None);
        }
        let Some(stored) = self.store.account(&record.user)? else {
            return Ok(None);
        };
        if record
            .under
            .as_ref()
            .is_some_and(|u| *u != password_fingerprint(&stored.hash))
        {
            // Issued under a password since replaced.
            return Ok(None);
        }
        Ok(Some(stored.user).filter(|u| !u.deactivated))
    }

    /// Ends a session (logout) or removes a script token.
    pub fn revoke(&self, token: &str) -> Result<(), AccountError> {
        let key = hex_key(token);
        if !self.sessions.revoke(&key)? {
            self.store.revoke(&key)?;
        }
        Ok(())
    }
}

/// `user` subcommands of both daemons: manage the accounts file of the data folder (they work
/// while the daemon runs).
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user (or, with --replace, set their password and details). The password is read
    /// from the terminal, or from the first line of standard input when it is not a terminal.
    Add {
        name: String,
        /// `specialist` or `admin` at the gateway; `doctor` or `admin` at a clinic.
        #[arg(long)]
        role: String,
        /// The name printed on reports and timelines.
        #[arg(long)]
        display_name: String,
        /// Specialists: their id in routing.toml.
        #[arg(long)]
        specialist: Option<String>,
        /// Specialists: the qualification printed on their reports.
        #[arg(long)]
        qualification: Option<String>,
        #[arg(long)]
        replace: bool,
    },
    /// Print a token for scripts (`Authorization: Bearer TOKEN`), valid for `--days` (90);
    /// a new password for the user ends it.
    Token {
        name: String,
        #[arg(long, default_value_t = SCRIPT_TOKEN_DAYS)]
        days: u32,
    },
    /// List the users.
    List,
    /// Stop an account: it can no longer log in, and its sessions and tokens stop working.
    Deactivate { name: String },
    /// Let a deactivated account log in again.
    Reactivate { name: String },
}

/// Runs a `user` subcommand against the accounts file at `path`; `roles` are the roles this
/// daemon knows.
pub fn run_user_command(
    accounts: Accounts,
    location: &str,
    command: UserCommand,
    roles: &[Role],
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            role,
            display_name,
            specialist,
            qualification,
            replace,
        } => {
            let user = User {
                name: name.clone(),
                role: site_role(&role, roles)?,
                display_name,
                specialist,
                qualification,
                deactivated: false,
            };
            // Checked before the password is asked for, and again as it is stored.
            check_details(&user, roles)?;
            let password = read_password(&format!("Password for {name}: "))?;
            accounts.add_at(roles, user, &password, replace)?;
            println!("user {name} saved in {location}");
        }
        UserCommand::Token { name, days } => {
            println!("{}", accounts.script_token_for(&name, days)?)
        }
        UserCommand::Deactivate { name } => {
            accounts.set_deactivated(&name, true)?;
            println!("user {name} deactivated");
        }
        UserCommand::Reactivate { name } => {
            accounts.set_deactivated(&name, false)?;
            println!("user {name} reactivated");
        }
        UserCommand::List => {
            for u in accounts.list()? {
                println!(
                    "{}\t{:?}\t{}\t{}",
                    u.name,
                    u.role,
                    u.display_name,
                    u.specialist.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(prompt)?);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Where handlers find the accounts: the router's state implements this.
pub trait HasAccounts {
    fn accounts(&self) -> &Accounts;
    /// The client's address as the audit log records it, from the request's extensions
    /// (where the daemon's listener put it); `-` when the daemon does not say.
    fn client(&self, extensions: &axum::http::Extensions) -> String {
        let _ = extensions;
        "-".into()
    }
    /// Whether the daemon serves its pages over TLS (cookies then carry `Secure`).
    fn tls(&self) -> bool {
        false
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
            deactivated: false,
        }
    }

    #[test]
    fn details_change_with_the_password_kept_and_nobody_changes_their_own_role() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.json")).unwrap();
        let roles = [Role::Specialist, Role::Admin];
        accounts
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        let mut boss = user("boss");
        boss.role = Role::Admin;
        boss.specialist = None;
        accounts
            .add(boss.clone(), "another long password", false)
            .unwrap();
        let mut changed = user("li");
        changed.role = Role::Admin;
        changed.specialist = None;
        changed.qualification = Some("chief radiologist".into());
        let (before, after) = accounts.change_details(&roles, "boss", changed).unwrap();
        assert_eq!((before.role, after.role), (Role::Specialist, Role::Admin));
        assert_eq!(
            accounts
                .verify("li", "correct horse battery")
                .unwrap()
                .qualification
                .as_deref(),
            Some("chief radiologist"),
            "the password still opens the changed account"
        );
        boss.role = Role::Specialist;
        boss.specialist = Some("boss".into());
        assert!(matches!(
            accounts.change_details(&roles, "boss", boss),
            Err(AccountError::OwnRole)
        ));
        assert!(matches!(
            accounts.change_details(&roles, "boss", user("nobody")),
            Err(AccountError::NoSuchUser(_))
        ));
    }

    #[test]
    fn passwords_are_hashed_and_tokens_resolve_to_their_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let accounts = Accounts::open(&path).unwrap();
        assert!(matches!(
            accounts.add(user("li"), "short", false),
            Err(AccountError::ShortPassword)
        ));
        assert!(matches!(
            accounts.add(user("li wei"), "long enough password", false),
            Err(AccountError::BadName)
        ));
        // Another process (the `user add` command) writes the file; the daemon sees it.
        Accounts::open(&path)
            .unwrap()
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        assert!(matches!(
            accounts.add(user("li"), "another password", false),
            Err(AccountError::Exists(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
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
        let session = accounts.session("li").unwrap();
        assert_eq!(accounts.resolve(&session).unwrap().unwrap().name, "li");
        assert!(accounts.resolve("not-a-token").unwrap().is_none());
        accounts.revoke(&session).unwrap();
        assert!(accounts.resolve(&session).unwrap().is_none());
        // Guessing is throttled: after five wrong passwords even the right one waits.
        for _ in 0..FREE_FAILURES {
            assert!(matches!(
                accounts.login("li", "a wrong guess"),
                Err(AccountError::BadLogin)
            ));
        }
        match accounts.login("li", "correct horse battery") {
            Err(AccountError::Locked { retry_after }) => {
                assert!(retry_after > 0 && retry_after <= FIRST_LOCK_SECS)
            }
            other => panic!("not locked: {other:?}"),
        }
        accounts.failures.lock().unwrap().clear();
        assert!(accounts.login("li", "correct horse battery").is_ok());
        let script = Accounts::open(&path).unwrap().script_token("li").unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&script));
        assert_eq!(accounts.resolve(&script).unwrap().unwrap().name, "li");
    }

    /// Fifty wrong guesses sent at once for one name get no more password checks than five
    /// sent one after another: each attempt counts before it is checked.
    #[test]
    fn parallel_guesses_are_counted_before_they_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let accounts = std::sync::Arc::new(Accounts::open(&path).unwrap());
        accounts
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        let before = accounts.verifications();
        let guesses: Vec<_> = (0..50)
            .map(|i| {
                let accounts = accounts.clone();
                std::thread::spawn(move || accounts.login("li", &format!("guess number {i}")))
            })
            .collect();
        let outcomes: Vec<_> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
        let checked = accounts.verifications() - before;
        assert!(
            checked <= u64::from(FREE_FAILURES),
            "{checked} passwords checked"
        );
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Err(AccountError::BadLogin | AccountError::Locked { .. }))));
        assert!(
            matches!(
                accounts.login("li", "correct horse battery"),
                Err(AccountError::Locked { .. })
            ),
            "locked, even with the right password"
        );
    }

    /// A new password (set by an administrator's `user add --replace`, another process)
    /// ends the sessions and script tokens made under the old one; script tokens expire.
    #[test]
    fn a_password_reset_ends_old_sessions_and_tokens_and_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        let accounts = Accounts::open(&path).unwrap();
        accounts
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        let session = accounts.session("li").unwrap();
        let script = accounts.script_token("li").unwrap();
        assert!(accounts.resolve(&session).unwrap().is_some());
        assert!(accounts.resolve(&script).unwrap().is_some());
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let (_, record) = file["tokens"].as_object().unwrap().iter().next().unwrap();
        let days = (record["expires"].as_i64().unwrap() - now()) / 86_400;
        assert!(
            (89..=90).contains(&days),
            "a script token lasts 90 days: {days}"
        );
        // Written by another process, as the CLI does.
        Accounts::open(&path)
            .unwrap()
            .add(user("li"), "a brand new password", true)
            .unwrap();
        assert!(
            accounts.resolve(&session).unwrap().is_none(),
            "session ended"
        );
        assert!(accounts.resolve(&script).unwrap().is_none(), "token ended");
        let fresh = accounts.session("li").unwrap();
        assert!(accounts.resolve(&fresh).unwrap().is_some());
    }

    /// A lock ends: once its time has passed, the right password logs in again.
    #[test]
    fn a_lock_runs_out_and_the_right_password_works_again() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.json")).unwrap();
        accounts
            .add(user("li"), "correct horse battery", false)
            .unwrap();
        for _ in 0..FREE_FAILURES {
            let _ = accounts.login("li", "a wrong guess");
        }
        assert!(matches!(
            accounts.login("li", "correct horse battery"),
            Err(AccountError::Locked { .. })
        ));
        accounts
            .failures
            .lock()
            .unwrap()
            .get_mut("li")
            .unwrap()
            .locked_until = now() - 1;
        assert_eq!(
            accounts.login("li", "correct horse battery").unwrap().name,
            "li",
            "the lock has run out"
        );
    }

    /// The `user` commands and the administrators' page add accounts under one set of rules.
    #[test]
    fn a_site_takes_its_own_roles_and_a_specialist_names_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(&dir.path().join("accounts.json")).unwrap();
        let gateway = [Role::Specialist, Role::Admin];
        let clinic = [Role::Doctor, Role::Admin];
        let doctor = User {
            role: Role::Doctor,
            specialist: None,
            ..user("wang")
        };
        let refused = accounts.add_at(&gateway, doctor.clone(), "long enough password", false);
        assert!(
            matches!(&refused, Err(AccountError::Role(r)) if r == "specialist, admin"),
            "{refused:?}"
        );
        assert!(matches!(
            site_role("doctor", &gateway),
            Err(AccountError::Role(_))
        ));
        assert_eq!(site_role("doctor", &clinic).unwrap(), Role::Doctor);
        let anonymous = User {
            specialist: None,
            ..user("li")
        };
        assert!(matches!(
            accounts.add_at(&gateway, anonymous, "long enough password", false),
            Err(AccountError::NoSpecialistId)
        ));
        assert!(
            accounts.list().unwrap().is_empty(),
            "nothing refused is stored"
        );
        accounts
            .add_at(&clinic, doctor, "long enough password", false)
            .unwrap();
        accounts
            .add_at(&gateway, user("li"), "long enough password", false)
            .unwrap();
        assert!(matches!(
            accounts.deactivate_by("li", "li"),
            Err(AccountError::OwnAccount)
        ));
        accounts.deactivate_by("li", "wang").unwrap();
        assert!(accounts.get("wang").unwrap().unwrap().deactivated);
    }
}
