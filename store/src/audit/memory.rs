//! The audit log in memory, on a [`Machine`] that can lose power: a record is durable when
//! `record` returns.

use std::sync::{Arc, Mutex};

use super::{AuditError, AuditLog, Record, GENESIS};
use crate::crash::Machine;

#[derive(Debug, Clone)]
pub struct MemoryAudit {
    machine: Machine,
    records: Arc<Mutex<Vec<Record>>>,
    boot: u64,
}

impl MemoryAudit {
    pub fn new(machine: &Machine) -> Self {
        Self {
            boot: machine.booted(),
            machine: machine.clone(),
            records: Arc::default(),
        }
    }

    /// The same log after the machine powered on again.
    pub fn boot(&self) -> Self {
        Self {
            machine: self.machine.clone(),
            records: self.records.clone(),
            boot: self.machine.booted(),
        }
    }
}

impl AuditLog for MemoryAudit {
    fn record(
        &self,
        at_ms: i64,
        user: &str,
        address: &str,
        action: &str,
        target: &str,
    ) -> Result<Record, AuditError> {
        self.machine.step(self.boot)?;
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let prev = records.last().map_or(GENESIS, |r| r.hash.as_str());
        let record = Record::chained(
            records.len() as u64,
            prev,
            at_ms,
            user,
            address,
            action,
            target,
        );
        records.push(record.clone());
        Ok(record)
    }

    fn records(&self) -> Result<Vec<Record>, AuditError> {
        self.machine.step(self.boot)?;
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    fn verify(&self) -> Result<(u64, String), AuditError> {
        super::verified(&self.records()?, "memory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_audit_keeps_the_port_contract() {
        super::super::conformance::run(|| {
            let log = MemoryAudit::new(&Machine::new(1));
            let again = log.clone();
            (
                Box::new(log) as Box<dyn AuditLog>,
                Box::new(move || Box::new(again.boot()) as Box<dyn AuditLog>)
                    as Box<dyn Fn() -> Box<dyn AuditLog>>,
            )
        });
    }
}
