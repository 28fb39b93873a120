use crate::crypto::CryptoError;
use crate::fhir::Invalid;
use crate::store::StoreError;
use crate::wire::Refusal;

/// Errors of the vault service.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the bundle is not valid FHIR R4: {0}")]
    Invalid(#[from] Invalid),
    #[error("{0} does not open with its key: the record was tampered with")]
    Tampered(String),
    #[error(
        "{record} was appended by the provider {author}; an import does not replace it (give the resource another id)"
    )]
    NotImported { record: String, author: String },
    #[error("no record {0} in the vault (`nodus vault list` shows them)")]
    NoRecord(String),
    #[error(
        "{0:?} is not a FHIR R4 resource type (e.g. Observation, Condition, MedicationRequest)"
    )]
    UnknownType(String),
    #[error("no grant to {0} (`nodus vault grants` lists them)")]
    NoGrant(String),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the audit log is broken at entry {entry}: {why}")]
    LogBroken { entry: u64, why: String },
    #[error("{0}")]
    Peer(String),
    #[error(
        "{0} is neither a peer id nor a vault key (`nodus vault id` on the provider's node prints its key)"
    )]
    BadProvider(String),
    #[error(
        "this vault is not empty: a restore goes only into an empty one (move vault/vault.redb away first, keeping vault/vault.key)"
    )]
    NotEmpty,
    #[error("the replica's copy cannot be restored: {0}")]
    Restore(String),
    #[error("the vault has stopped")]
    Stopped,
}

macro_rules! store_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for VaultError {
            fn from(e: $t) -> Self {
                VaultError::Store(e.into())
            }
        }
    )*};
}
store_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
