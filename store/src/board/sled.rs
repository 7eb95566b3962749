//! The link board on the gateway's sled trees of today: `board_facts` (clinic → [`Facts`],
//! JSON) and `board_history` (`clinic/at_ms` (big-endian) → throughput and RTT (f64) and
//! backlog items (u64), big-endian).

use proto::ClinicId;

use super::{BoardError, BoardStore, Facts, Sample};

#[derive(Debug, Clone)]
pub struct SledBoard {
    facts: sled::Tree,
    history: sled::Tree,
}

fn err(e: impl std::fmt::Display) -> BoardError {
    BoardError(e.to_string())
}

fn prefix(clinic: &ClinicId) -> Vec<u8> {
    [clinic.as_str().as_bytes(), b"/"].concat()
}

fn key(clinic: &ClinicId, at_ms: i64) -> Vec<u8> {
    [prefix(clinic).as_slice(), &at_ms.to_be_bytes()].concat()
}

fn encode(s: &Sample) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&s.throughput_bps.to_be_bytes());
    v[8..16].copy_from_slice(&s.rtt_ms.to_be_bytes());
    v[16..].copy_from_slice(&s.backlog_items.to_be_bytes());
    v
}

fn decode(at_ms: i64, v: &[u8]) -> Option<Sample> {
    let part = |r: std::ops::Range<usize>| <[u8; 8]>::try_from(v.get(r)?).ok();
    Some(Sample {
        at_ms,
        throughput_bps: f64::from_be_bytes(part(0..8)?),
        rtt_ms: f64::from_be_bytes(part(8..16)?),
        backlog_items: u64::from_be_bytes(part(16..24)?),
    })
}

impl SledBoard {
    pub fn open(db: &sled::Db) -> Result<Self, BoardError> {
        Ok(Self {
            facts: db.open_tree("board_facts").map_err(err)?,
            history: db.open_tree("board_history").map_err(err)?,
        })
    }
}

impl BoardStore for SledBoard {
    fn clinics(&self) -> Result<Vec<(ClinicId, Facts)>, BoardError> {
        let mut out = Vec::new();
        for entry in self.facts.iter() {
            let (k, v) = entry.map_err(err)?;
            let clinic = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| ClinicId::new(k).ok());
            // A row that cannot be read is skipped: the clinic's next link writes it again.
            if let (Some(clinic), Ok(facts)) = (clinic, serde_json::from_slice(&v)) {
                out.push((clinic, facts));
            }
        }
        Ok(out)
    }

    fn keep(&self, clinic: &ClinicId, facts: &Facts) -> Result<(), BoardError> {
        let v = serde_json::to_vec(facts).map_err(err)?;
        self.facts.insert(clinic.as_str(), v).map_err(err)?;
        Ok(())
    }

    fn history(&self, clinic: &ClinicId, since_ms: i64) -> Result<Vec<Sample>, BoardError> {
        let p = prefix(clinic);
        let mut out = Vec::new();
        for kv in self.history.range(key(clinic, since_ms)..) {
            let (k, v) = kv.map_err(err)?;
            if !k.starts_with(&p) {
                break;
            }
            let at = k
                .get(p.len()..)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .map(i64::from_be_bytes);
            if let Some(sample) = at.and_then(|at| decode(at, &v)) {
                out.push(sample);
            }
        }
        Ok(out)
    }

    fn sample(&self, clinic: &ClinicId, sample: &Sample) -> Result<(), BoardError> {
        self.history
            .insert(key(clinic, sample.at_ms), &encode(sample))
            .map_err(err)?;
        Ok(())
    }

    fn prune(&self, clinic: &ClinicId, before_ms: i64) -> Result<(), BoardError> {
        let old = self
            .history
            .range(key(clinic, 0)..key(clinic, before_ms))
            .keys();
        for k in old {
            self.history.remove(k.map_err(err)?).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_sled_adapter_conforms() {
        let dir = tempfile::tempdir().unwrap();
        super::super::conformance::run(crate::conformance::sled_subjects(dir.path(), |db| {
            Box::new(SledBoard::open(db).unwrap()) as Box<dyn BoardStore>
        }));
    }
}
