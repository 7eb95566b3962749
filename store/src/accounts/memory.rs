//! Accounts and sessions in memory. [`MemorySessions`] is the embedded daemons' session store
//! (a restart ends every session); [`MemoryAccounts`] serves tests. Clones are handles on the
//! same records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Account, AccountStore, AccountStoreError, Grant, SessionStore};

#[derive(Debug, Default)]
struct Records {
    accounts: BTreeMap<String, Account>,
    grants: BTreeMap<String, Grant>,
}

impl Records {
    fn grant(&mut self, key: &str, grant: Grant, now: i64) {
        self.grants.retain(|_, g| !g.expired(now));
        self.grants.insert(key.to_owned(), grant);
    }
}

fn lock(records: &Mutex<Records>) -> std::sync::MutexGuard<'_, Records> {
    records.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Default)]
pub struct MemoryAccounts(Arc<Mutex<Records>>);

impl AccountStore for MemoryAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountStoreError> {
        Ok(lock(&self.0).accounts.values().cloned().collect())
    }

    fn account(&self, name: &str) -> Result<Option<Account>, AccountStoreError> {
        Ok(lock(&self.0).accounts.get(name).cloned())
    }

    fn put_account(&self, account: Account, replace: bool) -> Result<(), AccountStoreError> {
        let mut r = lock(&self.0);
        if !replace && r.accounts.contains_key(&account.user.name) {
            return Err(AccountStoreError::Exists(account.user.name));
        }
        r.accounts.insert(account.user.name.clone(), account);
        Ok(())
    }

    fn set_deactivated(&self, name: &str, deactivated: bool) -> Result<(), AccountStoreError> {
        lock(&self.0)
            .accounts
            .get_mut(name)
            .ok_or_else(|| AccountStoreError::NoSuchUser(name.into()))?
            .user
            .deactivated = deactivated;
        Ok(())
    }

    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError> {
        let mut r = lock(&self.0);
        if !r.accounts.contains_key(&grant.user) {
            return Err(AccountStoreError::NoSuchUser(grant.user));
        }
        r.grant(key, grant, now);
        Ok(())
    }

    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError> {
        Ok(lock(&self.0).grants.get(key).cloned())
    }

    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError> {
        Ok(lock(&self.0).grants.remove(key).is_some())
    }

    fn grants(&self) -> Result<Vec<(String, Grant)>, AccountStoreError> {
        Ok(lock(&self.0)
            .grants
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect())
    }
}

#[derive(Debug, Clone, Default)]
pub struct MemorySessions(Arc<Mutex<Records>>);

impl SessionStore for MemorySessions {
    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError> {
        lock(&self.0).grant(key, grant, now);
        Ok(())
    }

    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError> {
        Ok(lock(&self.0).grants.get(key).cloned())
    }

    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError> {
        Ok(lock(&self.0).grants.remove(key).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapters_conform() {
        super::super::conformance::run(|| {
            let store = MemoryAccounts::default();
            let again = store.clone();
            (
                Box::new(store) as Box<dyn AccountStore>,
                Box::new(move || Box::new(again.clone()) as Box<dyn AccountStore>) as _,
            )
        });
        super::super::conformance::run_sessions(|| {
            let store = MemorySessions::default();
            let again = store.clone();
            (
                Box::new(store) as Box<dyn SessionStore>,
                Box::new(move || Box::new(again.clone()) as Box<dyn SessionStore>) as _,
            )
        });
    }
}
