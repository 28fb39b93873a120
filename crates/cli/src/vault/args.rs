//! The grammar of `nodus vault`.

use std::path::PathBuf;

use clap::Subcommand;

/// The vault commands (flattened into the top level).
#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Health records: FHIR R4, held by the patient, shared with providers by grant
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Records, grants, the audit log's length and its anchoring on the chain
    Status,
    /// This node as a provider: its peer id and vault key (a patient grants either)
    Id,
    /// Import a FHIR R4 Bundle (JSON): validated whole, then each resource kept sealed
    Import {
        /// The bundle file (a transaction, batch or collection Bundle)
        file: PathBuf,
    },
    /// The records held, oldest first
    List {
        /// Only this resource type (Observation, Condition, ...)
        #[arg(long = "type")]
        rtype: Option<String>,
    },
    /// One record's resource, decrypted
    Show {
        /// Type/id, as `list` prints it
        record: String,
    },
    /// Every record as a FHIR transaction Bundle (the same bytes until the vault changes)
    Export {
        /// Write it here instead of standard output
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Let a provider read the records of some types, until a date
    Grant {
        /// The provider's peer id (its node must be reachable) or its vault key as
        /// `nodus vault id` prints it (<peer id>:<key>)
        provider: String,
        /// Resource types, comma-separated (all types when left out)
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Until when: a date (2027-01-31, through that day, UTC), a time (RFC 3339) or
        /// a span from now (12h, 7d, 2w)
        #[arg(long)]
        until: Option<String>,
    },
    /// The grants given
    Grants,
    /// Take a provider's grant away: the records it covered get new keys
    Revoke {
        /// The provider's peer id
        provider: String,
    },
    /// As a provider: fetch what a patient granted this node
    Fetch {
        /// The patient's peer id
        patient: String,
        /// Only these types, comma-separated
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Write the records as a FHIR Bundle here
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// As a provider: add a record of your own (a FHIR resource, JSON) to a patient's vault
    Append {
        /// The patient's peer id
        patient: String,
        /// The resource file
        file: PathBuf,
    },
    /// Where this vault is also kept: list its replicas, or add or remove one
    Replicas {
        #[command(subcommand)]
        command: Option<ReplicasCommand>,
    },
    /// Agree to hold a copy of a patient's vault on this node (encrypted: it cannot read it)
    Hold {
        /// The patient's peer id
        patient: String,
    },
    /// The patients this node holds a copy for
    Holding,
    /// Take this node's vault back from a replica's copy (into an empty vault; the
    /// identity key and vault/vault.key must be the ones it was made with)
    Restore {
        /// The replica's peer id
        #[arg(long)]
        from: String,
    },
    /// The audit log: every import, grant, revoke, fetch and append as FHIR AuditEvents
    Log {
        #[command(subcommand)]
        command: Option<LogCommand>,
        /// First entry to show
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReplicasCommand {
    /// Keep this vault on a node too (its operator runs `nodus vault hold <this node>`)
    Add { peer: String },
    /// Stop sending this vault to a node
    Remove { peer: String },
}

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Check the chain of hashes, and each anchor against the chain
    Verify,
}
