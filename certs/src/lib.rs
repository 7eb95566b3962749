//! The pilot PKI: a small certificate authority run by the pilot administrator, the
//! certificates it issues to the gateway and to each clinic, revocation, and the rustls
//! configurations that both daemons build from those files.
//!
//! The `certs` binary is a thin CLI over [`pki::Pki`]; the tests mint their certificates with
//! the same library.

pub mod identity;
pub mod pki;
pub mod tls;

pub use pki::{Pki, PkiError};
