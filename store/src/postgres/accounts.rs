//! Accounts, script tokens and login sessions in PostgreSQL, shared by every gateway node:
//! `accounts` (name → the account as JSON), `tokens` and `sessions` (key → grant). A session
//! made on one node is honoured on another.

use crate::accounts::{Account, AccountStore, AccountStoreError, Grant, SessionStore};

use super::{Pg, PgError};

fn err(e: PgError) -> AccountStoreError {
    AccountStoreError::Io(e.to_string())
}

fn json_err(e: serde_json::Error) -> AccountStoreError {
    AccountStoreError::Io(e.to_string())
}

#[derive(Debug, Clone)]
pub struct PgAccounts {
    pg: Pg,
}

impl PgAccounts {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

/// Keeps `grant` under `key` in `table`, dropping the grants expired at `now`.
fn put_grant(
    c: &mut impl postgres::GenericClient,
    table: &str,
    key: &str,
    grant: &Grant,
    now: i64,
) -> Result<(), PgError> {
    let json = serde_json::to_string(grant).map_err(|e| PgError::Query(e.to_string()))?;
    c.execute(
        &format!("DELETE FROM {table} WHERE expires IS NULL OR expires <= $1"),
        &[&now],
    )?;
    c.execute(
        &format!(
            "INSERT INTO {table} (key, grant_json, expires) VALUES ($1, $2::text::jsonb, $3)
             ON CONFLICT (key) DO UPDATE SET grant_json = EXCLUDED.grant_json, expires = EXCLUDED.expires"
        ),
        &[&key, &json, &grant.expires],
    )?;
    Ok(())
}

fn get_grant(pg: &Pg, table: &'static str, key: &str) -> Result<Option<Grant>, AccountStoreError> {
    let key = key.to_owned();
    let row = pg
        .run(move |c| {
            Ok(c.query_opt(
                &format!("SELECT grant_json::text FROM {table} WHERE key = $1"),
                &[&key],
            )?)
        })
        .map_err(err)?;
    row.map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(json_err))
        .transpose()
}

fn drop_grant(pg: &Pg, table: &'static str, key: &str) -> Result<bool, AccountStoreError> {
    let key = key.to_owned();
    pg.run(move |c| Ok(c.execute(&format!("DELETE FROM {table} WHERE key = $1"), &[&key])? > 0))
        .map_err(err)
}

impl AccountStore for PgAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountStoreError> {
        let rows = self
            .pg
            .run(|c| Ok(c.query("SELECT account::text FROM accounts ORDER BY name", &[])?))
            .map_err(err)?;
        rows.iter()
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(json_err))
            .collect()
    }

    fn account(&self, name: &str) -> Result<Option<Account>, AccountStoreError> {
        let name = name.to_owned();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT account::text FROM accounts WHERE name = $1",
                    &[&name],
                )?)
            })
            .map_err(err)?;
        row.map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(json_err))
            .transpose()
    }

    fn put_account(&self, account: Account, replace: bool) -> Result<(), AccountStoreError> {
        let name = account.user.name.clone();
        let json = serde_json::to_string(&account).map_err(json_err)?;
        let who = name.clone();
        let written = self
            .pg
            .run(move |c| {
                let sql = if replace {
                    "INSERT INTO accounts (name, account) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (name) DO UPDATE SET account = EXCLUDED.account"
                } else {
                    "INSERT INTO accounts (name, account) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (name) DO NOTHING"
                };
                Ok(c.execute(sql, &[&who, &json])?)
            })
            .map_err(err)?;
        if written == 0 {
            return Err(AccountStoreError::Exists(name));
        }
        Ok(())
    }

    fn set_deactivated(&self, name: &str, deactivated: bool) -> Result<(), AccountStoreError> {
        let who = name.to_owned();
        let changed = self
            .pg
            .run(move |c| {
                Ok(c.execute(
                    "UPDATE accounts SET account = jsonb_set(account, '{user,deactivated}', to_jsonb($2::boolean))
                     WHERE name = $1",
                    &[&who, &deactivated],
                )?)
            })
            .map_err(err)?;
        if changed == 0 {
            return Err(AccountStoreError::NoSuchUser(name.into()));
        }
        Ok(())
    }

    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError> {
        let (key, user) = (key.to_owned(), grant.user.clone());
        let known = self
            .pg
            .run(move |c| {
                let mut tx = c.transaction()?;
                let known = tx
                    .query_opt(
                        "SELECT 1 FROM accounts WHERE name = $1 FOR SHARE",
                        &[&grant.user],
                    )?
                    .is_some();
                if known {
                    put_grant(&mut tx, "tokens", &key, &grant, now)?;
                    tx.commit()?;
                }
                Ok(known)
            })
            .map_err(err)?;
        if !known {
            return Err(AccountStoreError::NoSuchUser(user));
        }
        Ok(())
    }

    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError> {
        get_grant(&self.pg, "tokens", key)
    }

    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError> {
        drop_grant(&self.pg, "tokens", key)
    }

    fn grants(&self) -> Result<Vec<(String, Grant)>, AccountStoreError> {
        let rows = self
            .pg
            .run(|c| Ok(c.query("SELECT key, grant_json::text FROM tokens ORDER BY key", &[])?))
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let grant = serde_json::from_str(&r.get::<_, String>(1)).map_err(json_err)?;
                Ok((r.get::<_, String>(0), grant))
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct PgSessions {
    pg: Pg,
}

impl PgSessions {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

impl SessionStore for PgSessions {
    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError> {
        let key = key.to_owned();
        self.pg
            .run(move |c| put_grant(c, "sessions", &key, &grant, now))
            .map_err(err)
    }

    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError> {
        get_grant(&self.pg, "sessions", key)
    }

    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError> {
        drop_grant(&self.pg, "sessions", key)
    }
}
