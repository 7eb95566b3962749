//! The hospital's specialties, as its gateway last sent them: what the new-consultation form
//! offers. Kept in `specialties.json` in the data folder, so the form works offline and after
//! a restart with the last list.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use proto::frame::Specialty;
use tracing::{info, warn};

/// The file in the data folder.
pub const FILE: &str = "specialties.json";

pub struct Specialties {
    path: PathBuf,
    /// `None` until a gateway has sent a list (a new clinic that never connected).
    list: RwLock<Option<Vec<Specialty>>>,
}

impl Specialties {
    /// The last list kept in `data_dir`. A file that cannot be read is reported and treated
    /// as no list: the next connection brings one.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<Specialty>>(&bytes) {
                Ok(mut list) => {
                    list.retain(Specialty::is_sane);
                    Some(list)
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "the kept list of specialties cannot be read; the form takes a typed specialty until the gateway sends a new list");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot read the kept list of specialties");
                None
            }
        };
        Self {
            path,
            list: RwLock::new(list),
        }
    }

    /// The last list the gateway sent, if it ever sent one.
    pub fn list(&self) -> Option<Vec<Specialty>> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Keeps a list the gateway sent (durably, then in memory); the same list again writes
    /// nothing. Blocking.
    pub fn replace(&self, list: Vec<Specialty>) -> std::io::Result<()> {
        if self.list().as_ref() == Some(&list) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
        daemon::private::write_file(&self.path, &bytes)?;
        info!(
            specialties = list.len(),
            "the hospital's list of specialties arrived"
        );
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = Some(list);
        Ok(())
    }

    /// The specialty `id` names, if the list has it.
    pub fn find(&self, id: &str) -> Option<Specialty> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()?
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cardiology() -> Specialty {
        Specialty {
            id: "cardiology".into(),
            zh: Some("心内科".into()),
            en: Some("Cardiology".into()),
        }
    }

    #[test]
    fn the_last_list_survives_a_restart_and_a_damaged_file_is_no_list() {
        let dir = tempfile::tempdir().unwrap();
        let first = Specialties::open(dir.path());
        assert_eq!(first.list(), None, "no gateway has sent one yet");
        first.replace(vec![cardiology()]).unwrap();
        assert_eq!(first.find("cardiology"), Some(cardiology()));
        assert_eq!(first.find("neurology"), None);

        let again = Specialties::open(dir.path());
        assert_eq!(again.list(), Some(vec![cardiology()]));

        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert_eq!(Specialties::open(dir.path()).list(), None);
    }
}
