//! Errors of the store. Messages name what was asked for and never contain secret material.

use std::path::PathBuf;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("actor `{0}` already exists")]
    ActorExists(String),

    #[error("no actor named `{0}`")]
    NoActor(String),

    #[error("no token with id `{0}`")]
    NoToken(String),

    #[error("no binding with id `{0}`")]
    NoBinding(String),

    #[error("provider `{0}` already exists")]
    ProviderExists(String),

    #[error("no provider named `{0}`")]
    NoProvider(String),

    #[error("actor `{actor}` has no secret named `{name}`")]
    NoSecret { actor: String, name: String },

    /// A name (actor, vendor, secret) outside the allowed characters or length.
    #[error(
        "invalid {kind} name `{name}`: use 1-128 characters of letters, digits, `_`, `-`, `.` and `@`"
    )]
    InvalidName { kind: &'static str, name: String },

    /// An argument out of range (for example a TTL too large to represent).
    #[error("{0}")]
    InvalidInput(String),

    #[error("no secret key is configured, so secrets can be neither stored nor read")]
    NoSecretKey,

    /// Key material that could not be parsed; the message never repeats the material.
    #[error("invalid secret key: {0}")]
    InvalidSecretKey(String),

    #[error(
        "secret `{name}` of actor `{actor}` cannot be decrypted: the secret key is not the one it was stored with, or the stored value was altered or moved"
    )]
    Decrypt { actor: String, name: String },

    /// The system random generator or a cipher failed (should not happen).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),

    #[error("cannot open the store at `{path}`: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "the store's schema version {found} is newer than this build supports ({supported}); use a newer patchbay"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    /// A stored row that does not decode (hand-edited or corrupted database).
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt { what: &'static str, detail: String },

    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),

    #[error("store task failed: {0}")]
    Task(String),
}
