//! nodus-vault: patient-held health records.

pub mod crypto;
mod error;
pub mod fhir;
pub mod log;
pub mod store;
pub mod vault;
pub mod wire;

pub use error::VaultError;
