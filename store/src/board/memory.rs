//! The link board in memory. Clones are handles on the same board.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto::ClinicId;

use super::{BoardError, BoardStore, Facts, Sample};

#[derive(Debug, Default)]
struct Rows {
    facts: BTreeMap<ClinicId, Facts>,
    history: BTreeMap<(ClinicId, i64), Sample>,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryBoard(Arc<Mutex<Rows>>);

impl MemoryBoard {
    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BoardStore for MemoryBoard {
    fn clinics(&self) -> Result<Vec<(ClinicId, Facts)>, BoardError> {
        Ok(self
            .rows()
            .facts
            .iter()
            .map(|(c, f)| (c.clone(), f.clone()))
            .collect())
    }

    fn keep(&self, clinic: &ClinicId, facts: &Facts) -> Result<(), BoardError> {
        self.rows().facts.insert(clinic.clone(), facts.clone());
        Ok(())
    }

    fn history(&self, clinic: &ClinicId, since_ms: i64) -> Result<Vec<Sample>, BoardError> {
        Ok(self
            .rows()
            .history
            .range((clinic.clone(), since_ms)..=(clinic.clone(), i64::MAX))
            .map(|(_, s)| *s)
            .collect())
    }

    fn sample(&self, clinic: &ClinicId, sample: &Sample) -> Result<(), BoardError> {
        self.rows()
            .history
            .insert((clinic.clone(), sample.at_ms), *sample);
        Ok(())
    }

    fn prune(&self, clinic: &ClinicId, before_ms: i64) -> Result<(), BoardError> {
        self.rows()
            .history
            .retain(|(c, at), _| c != clinic || *at >= before_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_adapter_conforms() {
        super::super::conformance::run(|| {
            let board = MemoryBoard::default();
            let again = board.clone();
            (
                Box::new(board) as Box<dyn BoardStore>,
                Box::new(move || Box::new(again.clone()) as Box<dyn BoardStore>) as _,
            )
        });
    }
}
