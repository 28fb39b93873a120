//! FHIR R4 JSON: the types ([`schema`]), checking a resource ([`validate`]), bundles in
//! and out ([`bundle`]) and the audit trail's AuditEvents ([`audit`]).

pub mod audit;
pub mod bundle;
pub mod schema;
pub mod validate;

pub use validate::Invalid;
