//! Shared language of the clinic agent and the gateway: identities, wire frames, protocol
//! versions and the link session state machines.
//!
//! Invariant: nothing in this crate does I/O or reads a clock. Every function that depends on
//! time takes `now: Instant` from its caller, so the tests drive both ends of a link on a
//! virtual clock (see `docs/protocol.md` for the wire format these types describe).

pub mod backoff;
pub mod cc;
pub mod clinic_id;
pub mod close;
pub mod config;
pub mod consult;
pub mod find;
pub mod frame;
pub mod heartbeat;
pub mod hours;
pub mod rng;
pub mod session;
pub mod sync;
pub mod version;

pub use clinic_id::ClinicId;
pub use close::CloseCode;
pub use frame::ControlFrame;
