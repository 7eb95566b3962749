//! Durable storage shared by the clinic agent and the gateway: content-addressed blob files
//! ([`blob`]), what the pilot reads out of a DICOM instance ([`dicom`]), and group commit of
//! fsyncs shared by concurrent writers ([`group`]), and the consultation logs both sites keep
//! the same way ([`consult`]), and the write gate that lets a backup read the index as one
//! consistent cut ([`gate`]). The sled indexes that point into the blobs belong to each
//! daemon.
//!
//! Invariant: a blob is visible under its final name only after its bytes are fsynced and its
//! SHA-256 matches the name; nothing is ever overwritten or deleted automatically.

pub mod accounts;
pub mod alerts;
pub mod archive;
pub mod audit;
pub mod blob;
pub mod board;
pub mod conformance;
pub mod consult;
pub mod coordination;
pub mod crash;
pub mod dicom;
pub mod drafts;
pub mod events;
pub mod gate;
pub mod group;
pub mod keys;
pub mod objects;
pub mod outbox;
pub mod postgres;
pub mod structure;
