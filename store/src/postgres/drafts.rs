//! Drafts in PostgreSQL: the table `drafts`, one row per person, case and form.

use crate::drafts::{Draft, DraftError, DraftKey, DraftStore};

use super::Pg;

#[derive(Debug, Clone)]
pub struct PgDrafts {
    pg: Pg,
}

impl PgDrafts {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

fn err(e: impl std::fmt::Display) -> DraftError {
    DraftError(e.to_string())
}

impl DraftStore for PgDrafts {
    fn get(&self, key: &DraftKey) -> Result<Option<Draft>, DraftError> {
        let k = key.clone();
        let row = self
            .pg
            .run(move |c| {
                Ok(c.query_opt(
                    "SELECT draft::text FROM drafts WHERE user_name = $1 AND case_id = $2 AND form = $3",
                    &[&k.user, &k.case, &k.form],
                )?)
            })
            .map_err(err)?;
        match row {
            Some(row) => {
                let text: String = row.get(0);
                serde_json::from_str(&text).map(Some).map_err(err)
            }
            None => Ok(None),
        }
    }

    fn put(&self, key: &DraftKey, draft: &Draft) -> Result<(), DraftError> {
        let (k, json) = (key.clone(), serde_json::to_string(draft).map_err(err)?);
        self.pg
            .run(move |c| {
                c.execute(
                    "INSERT INTO drafts (user_name, case_id, form, draft) VALUES ($1, $2, $3, $4::text::jsonb)
                     ON CONFLICT (user_name, case_id, form) DO UPDATE SET draft = EXCLUDED.draft",
                    &[&k.user, &k.case, &k.form, &json],
                )?;
                Ok(())
            })
            .map_err(err)
    }

    fn all(&self) -> Result<Vec<(DraftKey, Draft)>, DraftError> {
        let rows = self
            .pg
            .run(|c| {
                Ok(c.query(
                    "SELECT user_name, case_id, form, draft::text FROM drafts ORDER BY 1, 2, 3",
                    &[],
                )?)
            })
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let key = DraftKey {
                    user: r.get(0),
                    case: r.get(1),
                    form: r.get(2),
                };
                Ok((
                    key,
                    serde_json::from_str(&r.get::<_, String>(3)).map_err(err)?,
                ))
            })
            .collect()
    }

    fn remove(&self, key: &DraftKey) -> Result<(), DraftError> {
        let k = key.clone();
        self.pg
            .run(move |c| {
                c.execute(
                    "DELETE FROM drafts WHERE user_name = $1 AND case_id = $2 AND form = $3",
                    &[&k.user, &k.case, &k.form],
                )?;
                Ok(())
            })
            .map_err(err)
    }
}
