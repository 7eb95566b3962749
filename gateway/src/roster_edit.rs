//! The changes an administrator makes to `routing.toml` from the roster page: a specialist
//! into or out of a pool, a specialist's duty hours. Each change is made on the file's text
//! with `toml_edit`, so comments, order and layout stay as the administrator wrote them; the
//! new text must pass the same checks as the file ([`Roster::parse`]) before it replaces the
//! old one, whole (`daemon::private::write_file`: temporary file, fsync, rename). The router
//! picks the new file up at its next check, as after an edit by hand. Pure of HTTP.

use std::path::Path;
use std::sync::Mutex;

use toml_edit::{Array, DocumentMut, Item, Value};

use crate::routing::{Roster, RosterError};

/// One change of the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds a specialist to a pool's members.
    AddMember { pool: String, specialist: String },
    /// Takes a specialist out of a pool's members (the lead stays the lead).
    RemoveMember { pool: String, specialist: String },
    /// Replaces a specialist's duty hours, one shift per entry (`mon-fri 08:00-17:00`).
    SetDuty {
        specialist: String,
        duty: Vec<String>,
    },
}

impl Change {
    /// A short account of the change for the audit log: ids and hours, nothing about patients.
    pub fn describe(&self) -> String {
        match self {
            Change::AddMember { pool, specialist } => format!("pool {pool} + {specialist}"),
            Change::RemoveMember { pool, specialist } => format!("pool {pool} - {specialist}"),
            Change::SetDuty { specialist, duty } => {
                format!("duty {specialist}: {}", duty.join("; "))
            }
        }
    }
}

/// Why a change was not made; the file is then as it was.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} is not valid TOML, fix it by hand first: {source}")]
    Syntax {
        file: String,
        source: toml_edit::TomlError,
    },
    #[error("there is no [[pool]] with id '{0}' in routing.toml")]
    NoPool(String),
    #[error("there is no [[specialist]] with id '{0}' in routing.toml")]
    NoSpecialist(String),
    #[error("{specialist} is already a member of pool {pool}")]
    AlreadyMember { pool: String, specialist: String },
    #[error("{specialist} is not a member of pool {pool}")]
    NotMember { pool: String, specialist: String },
    #[error("{0}")]
    Malformed(String),
    /// The new text fails the roster's checks: the parser's own words.
    #[error("the change was not saved: {0}")]
    Refused(#[from] RosterError),
    #[error("cannot write {file}: {source}; the gateway needs write access to its folder")]
    Write {
        file: String,
        source: std::io::Error,
    },
}

/// The `[[kind]]` entry whose `id` is `id`.
fn entry<'a>(doc: &'a mut DocumentMut, kind: &str, id: &str) -> Option<&'a mut toml_edit::Table> {
    doc.get_mut(kind)?
        .as_array_of_tables_mut()?
        .iter_mut()
        .find(|t| t.get("id").and_then(Item::as_str) == Some(id))
}

/// The list `key` of `table` (made when missing).
fn list<'a>(table: &'a mut toml_edit::Table, key: &str) -> Result<&'a mut Array, EditError> {
    if !table.contains_key(key) {
        table.insert(key, toml_edit::value(Array::new()));
    }
    table
        .get_mut(key)
        .and_then(Item::as_array_mut)
        .ok_or_else(|| EditError::Malformed(format!("{key} is not a list in routing.toml")))
}

/// `text` (the file `file`) with `change` made, formatting kept; not yet checked as a roster.
pub fn apply(file: &Path, text: &str, change: &Change) -> Result<String, EditError> {
    let mut doc: DocumentMut = text.parse().map_err(|source| EditError::Syntax {
        file: file.display().to_string(),
        source,
    })?;
    match change {
        Change::AddMember { pool, specialist } | Change::RemoveMember { pool, specialist } => {
            if entry(&mut doc, "specialist", specialist).is_none() {
                return Err(EditError::NoSpecialist(specialist.clone()));
            }
            let table =
                entry(&mut doc, "pool", pool).ok_or_else(|| EditError::NoPool(pool.clone()))?;
            let members = list(table, "members")?;
            let at = members
                .iter()
                .position(|m| m.as_str() == Some(specialist.as_str()));
            match (change, at) {
                (Change::AddMember { .. }, None) => {
                    members.push(specialist.as_str());
                }
                (Change::AddMember { .. }, Some(_)) => {
                    return Err(EditError::AlreadyMember {
                        pool: pool.clone(),
                        specialist: specialist.clone(),
                    })
                }
                (_, Some(i)) => {
                    members.remove(i);
                }
                (_, None) => {
                    return Err(EditError::NotMember {
                        pool: pool.clone(),
                        specialist: specialist.clone(),
                    })
                }
            };
        }
        Change::SetDuty { specialist, duty } => {
            let table = entry(&mut doc, "specialist", specialist)
                .ok_or_else(|| EditError::NoSpecialist(specialist.clone()))?;
            let shifts: Array = duty.iter().map(|d| Value::from(d.as_str())).collect();
            table.insert("duty", toml_edit::value(shifts));
        }
    }
    Ok(doc.to_string())
}

/// One change at a time: each reads the file, changes it and writes it whole.
static WRITING: Mutex<()> = Mutex::new(());

/// Makes `change` to the roster file `path`: the new text is checked as the router would check
/// it and written atomically; answers the new roster.
pub fn change(path: &Path, change: &Change) -> Result<Roster, EditError> {
    let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| EditError::Read {
        file: file.clone(),
        source,
    })?;
    let new = apply(path, &text, change)?;
    let roster = Roster::parse(path, &new)?;
    daemon::private::write_file(path, new.as_bytes())
        .map_err(|source| EditError::Write { file, source })?;
    Ok(roster)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROSTER: &str = r#"# The hospital's readers.
[[specialist]]
id = "li"   # radiology, days
name = "Li Wei"
specialties = ["radiology"]
qualification = "attending radiologist"
years_independent = 12
utc_offset = "+08:00"
duty = ["mon-fri 08:00-17:00"]

[[specialist]]
id = "zhang"
name = "Zhang Min"
specialties = ["cardiology"]
qualification = "attending cardiologist"
years_independent = 9
utc_offset = "+08:00"
duty = ["daily 00:00-24:00"]

# Chest pain goes here first.
[[pool]]
id = "cardiology"
members = ["zhang"]
lead = "zhang"

[[pool]]
id = "radiology"
members = ["li"]
lead = "li"

[[rule]]
id = "all"
pool = "radiology"
"#;

    fn file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routing.toml");
        std::fs::write(&path, ROSTER).unwrap();
        (dir, path)
    }

    #[test]
    fn a_specialist_moved_into_a_pool_is_written_with_the_comments_kept() {
        let (_dir, path) = file();
        let add = Change::AddMember {
            pool: "cardiology".into(),
            specialist: "li".into(),
        };
        let roster = change(&path, &add).unwrap();
        assert_eq!(roster.pools["cardiology"].members, ["zhang", "li"]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# Chest pain goes here first."), "{text}");
        assert!(text.contains(r#"id = "li"   # radiology, days"#), "{text}");
        assert!(text.contains(r#"members = ["zhang", "li"]"#), "{text}");
        assert_eq!(Roster::load(&path).unwrap(), roster);
        assert!(matches!(
            change(&path, &add),
            Err(EditError::AlreadyMember { .. })
        ));
    }

    #[test]
    fn a_change_the_roster_refuses_leaves_the_file_as_it_was() {
        let (_dir, path) = file();
        // The last member out: the parser says a pool needs members.
        let out = Change::RemoveMember {
            pool: "radiology".into(),
            specialist: "li".into(),
        };
        let e = change(&path, &out).unwrap_err();
        assert!(e.to_string().contains("members is empty"), "{e}");
        let bad_hours = Change::SetDuty {
            specialist: "li".into(),
            duty: vec!["mon-fri 8-17".into()],
        };
        let e = change(&path, &bad_hours).unwrap_err();
        assert!(e.to_string().contains("mon-fri 08:00-17:00"), "{e}");
        let nobody = Change::AddMember {
            pool: "radiology".into(),
            specialist: "ghost".into(),
        };
        assert!(matches!(
            change(&path, &nobody),
            Err(EditError::NoSpecialist(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ROSTER);
    }

    #[test]
    fn duty_hours_are_replaced_in_the_files_syntax() {
        let (_dir, path) = file();
        let duty = Change::SetDuty {
            specialist: "li".into(),
            duty: vec!["mon-fri 08:00-17:00".into(), "sat 08:00-12:00".into()],
        };
        let roster = change(&path, &duty).unwrap();
        assert_eq!(roster.specialists["li"].duty.len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"duty = ["mon-fri 08:00-17:00", "sat 08:00-12:00"]"#),
            "{text}"
        );
        assert_eq!(
            duty.describe(),
            "duty li: mon-fri 08:00-17:00; sat 08:00-12:00"
        );
    }
}
