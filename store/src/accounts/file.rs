//! The accounts in the data folder's `accounts.json` (0600), today's format. The daemon and
//! the `user` commands are two processes changing it: every change reads the file afresh and
//! writes it back (to a fresh temporary file, fsynced, renamed over) under an exclusive
//! `flock` on `accounts.json.lock`, so neither loses the other's. Reads use the last contents
//! seen, re-read when the file is another one: each write renames a new file over the old, so
//! its inode changes even when the clock has not ticked since the last write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Tells one version of the file from another: its inode, modification time and length.
type Stamp = (u64, Option<SystemTime>, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((ino, m.modified().ok(), m.len()))
}

use serde::{Deserialize, Serialize};

use super::{Account, AccountStore, AccountStoreError, Grant};

/// What the file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Contents {
    users: BTreeMap<String, Account>,
    /// Each script token's key → its grant.
    tokens: BTreeMap<String, Grant>,
}

pub struct FileAccounts {
    path: PathBuf,
    /// The contents and the file they were read from (`None`: written here).
    seen: Mutex<(Option<Stamp>, Contents)>,
}

impl std::fmt::Debug for FileAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAccounts")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, what: &str) -> impl Fn(std::io::Error) -> AccountStoreError {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| AccountStoreError::Io(format!("cannot {what} {path}: {e}"))
}

impl FileAccounts {
    /// Opens (without creating) the accounts file at `path`: the first account makes it.
    pub fn open(path: &Path) -> Result<Self, AccountStoreError> {
        let accounts = Self {
            path: path.to_path_buf(),
            seen: Mutex::new((None, Contents::default())),
        };
        accounts.current()?;
        Ok(accounts)
    }

    /// The file's contents, re-read when it is another file than the one last seen.
    fn current(&self) -> Result<Contents, AccountStoreError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path);
        if now.is_some() && now != seen.0 {
            *seen = (now, self.read()?);
        }
        Ok(seen.1.clone())
    }

    /// The file as it is on disk now.
    fn read(&self) -> Result<Contents, AccountStoreError> {
        let text = std::fs::read(&self.path).map_err(io(&self.path, "read"))?;
        serde_json::from_slice(&text).map_err(|e| {
            AccountStoreError::Io(format!(
                "{} is not an accounts file: {e}; restore it from a backup",
                self.path.display()
            ))
        })
    }

    /// Reads the file afresh, lets `change` change it and writes it back, all under the lock.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<T, AccountStoreError>,
    ) -> Result<T, AccountStoreError> {
        let lock_path = self.path.with_extension("json.lock");
        let lock = create(&lock_path, false).map_err(io(&lock_path, "lock"))?;
        keep_owner(&self.path, &lock);
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(&lock_path, "lock")(e.into()))?;
        let mut contents = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::default(),
            _ => self.read()?,
        };
        let out = change(&mut contents)?;
        self.write(&contents)?;
        // Unlocked when `lock` closes.
        Ok(out)
    }

    fn write(&self, contents: &Contents) -> Result<(), AccountStoreError> {
        use std::io::Write;
        let err = io(&self.path, "write");
        let text = serde_json::to_vec_pretty(contents)
            .map_err(|e| AccountStoreError::Io(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        // A fresh file, never one found at that name: whatever was left there (even a link
        // planted by the daemon's user for root's `user add` to follow) goes first.
        let _ = std::fs::remove_file(&tmp);
        let mut f = create(&tmp, true).map_err(&err)?;
        keep_owner(&self.path, &f);
        f.write_all(&text).map_err(&err)?;
        f.sync_all().map_err(&err)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(&err)?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            (stamp(&self.path), contents.clone());
        Ok(())
    }
}

/// Opens `path` for writing, readable by its owner only; `new` refuses an existing file.
fn create(path: &Path, new: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Gives the new file `new` the owner of `path` (or of its folder): an administrator running
/// `user add` as root must not leave the file unreadable to the daemon's own user. Changed on
/// the open file, never through a path. Without the right to change owners nothing changes,
/// and nothing needs to: the writer is then that user.
fn keep_owner(path: &Path, new: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::symlink_metadata(path)
            .or_else(|_| std::fs::symlink_metadata(path.parent().unwrap_or(Path::new("."))));
        if let Ok(m) = owner {
            let _ = std::os::unix::fs::fchown(new, Some(m.uid()), Some(m.gid()));
        }
    }
}

impl AccountStore for FileAccounts {
    fn accounts(&self) -> Result<Vec<Account>, AccountStoreError> {
        Ok(self.current()?.users.into_values().collect())
    }

    fn account(&self, name: &str) -> Result<Option<Account>, AccountStoreError> {
        Ok(self.current()?.users.remove(name))
    }

    fn put_account(&self, account: Account, replace: bool) -> Result<(), AccountStoreError> {
        self.modify(|c| {
            if !replace && c.users.contains_key(&account.user.name) {
                return Err(AccountStoreError::Exists(account.user.name.clone()));
            }
            c.users.insert(account.user.name.clone(), account);
            Ok(())
        })
    }

    fn set_deactivated(&self, name: &str, deactivated: bool) -> Result<(), AccountStoreError> {
        self.modify(|c| {
            c.users
                .get_mut(name)
                .ok_or_else(|| AccountStoreError::NoSuchUser(name.into()))?
                .user
                .deactivated = deactivated;
            Ok(())
        })
    }

    fn grant(&self, key: &str, grant: Grant, now: i64) -> Result<(), AccountStoreError> {
        self.modify(|c| {
            if !c.users.contains_key(&grant.user) {
                return Err(AccountStoreError::NoSuchUser(grant.user.clone()));
            }
            c.tokens.retain(|_, g| !g.expired(now));
            c.tokens.insert(key.to_owned(), grant);
            Ok(())
        })
    }

    fn granted(&self, key: &str) -> Result<Option<Grant>, AccountStoreError> {
        Ok(self.current()?.tokens.remove(key))
    }

    fn revoke(&self, key: &str) -> Result<bool, AccountStoreError> {
        if !self.current()?.tokens.contains_key(key) {
            return Ok(false);
        }
        self.modify(|c| Ok(c.tokens.remove(key).is_some()))
    }

    fn grants(&self) -> Result<Vec<(String, Grant)>, AccountStoreError> {
        Ok(self.current()?.tokens.clone().into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_file_adapter_conforms() {
        super::super::conformance::run(|| {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            let path = dir.path().join("accounts.json");
            let store = FileAccounts::open(&path).unwrap();
            // Another process: its own handle, cache and lock descriptor.
            let again = move || {
                let _keep = &dir;
                Box::new(FileAccounts::open(&path).unwrap()) as Box<dyn AccountStore>
            };
            (
                Box::new(store) as Box<dyn AccountStore>,
                Box::new(again) as _,
            )
        });
    }

    #[test]
    fn the_file_keeps_its_format_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        // A file written before the port, as it was.
        std::fs::write(
            &path,
            br#"{"users": {"li": {"user": {"name": "li", "role": "specialist",
                "display_name": "Li", "specialist": "li", "qualification": null},
                "hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}},
               "tokens": {"ab": {"user": "li", "expires": 4102444800}}}"#,
        )
        .unwrap();
        let store = FileAccounts::open(&path).unwrap();
        assert_eq!(
            store.account("li").unwrap().unwrap().user.display_name,
            "Li"
        );
        assert_eq!(
            store.granted("ab").unwrap().unwrap().expires,
            Some(4_102_444_800)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // Rewritten by root (an administrator's `user add`), the file stays the daemon's.
            if std::fs::metadata(&path).unwrap().uid() == 0 {
                std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            }
            let owner = std::fs::metadata(&path).unwrap();
            store.set_deactivated("li", true).unwrap();
            let m = std::fs::metadata(&path).unwrap();
            assert_eq!((m.uid(), m.gid()), (owner.uid(), owner.gid()));
            assert_eq!(m.permissions().mode() & 0o077, 0, "only its owner reads it");
        }
        let text: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(text["users"]["li"]["user"]["deactivated"], true);
        assert_eq!(text["tokens"]["ab"]["user"], "li");
    }

    #[test]
    fn a_damaged_file_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.json");
        std::fs::write(&path, b"{not json").unwrap();
        let e = FileAccounts::open(&path).unwrap_err().to_string();
        assert!(e.contains("accounts.json is not an accounts file"), "{e}");
        assert!(e.contains("backup"), "{e}");
    }
}
