//! A write gate over a daemon's index. Writers that change several trees together (an event
//! and its indexes, a verified instance and its forwarding entry) hold it shared while they
//! write; an online backup holds it alone while it exports the index, so the export is one
//! consistent cut: every such write is in it whole or not at all.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<RwLock<()>>);

impl WriteGate {
    /// Held by a writer for the length of one multi-tree write; many writers hold it at once.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a backup while it reads the index: writers wait until it is dropped.
    pub fn freeze(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}
