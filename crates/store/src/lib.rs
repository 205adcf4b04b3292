//! The hub's persistent state: actors, tokens, bindings, encrypted secrets and the audit log.
//!
//! Everything goes through the object-safe [`Store`] trait (use it as `Arc<dyn Store>`), so a
//! PostgreSQL backend for deployments of several replicas can be added later without touching
//! callers. The embedded backend is [`SqliteStore`]: one database file, created with its parent
//! directories on first start, WAL mode, schema migrations applied automatically in order.
//!
//! Every method returns a boxed future: the SQLite backend runs its blocking calls on tokio's
//! blocking pool, so callers just `.await` and no request thread waits on the disk.
//!
//! Audit records are written off the request path by an [`AuditWriter`]: `record` never blocks,
//! a background task writes batches, and a crash loses at most the last second of records (see
//! [`AuditWriterConfig`]).
//!
//! Secret material never leaves through `Debug`, logs or error messages: token secrets and secret
//! values come back as [`SecretString`], the encryption key is a [`SecretKey`], and both print as
//! `[redacted]`. Only a SHA-256 hash of a token secret is stored, and secret values are sealed with
//! AES-256-GCM bound to their actor and name.
//!
//! ```
//! use std::sync::Arc;
//! use patchbay_store::{AuditRecord, AuditWriter, AuditWriterConfig, SecretKey, SqliteConfig,
//!                      SqliteStore, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), patchbay_store::StoreError> {
//! # let dir = tempfile::tempdir().unwrap();
//! let key = SecretKey::parse(&"ab".repeat(32))?; // the content of a key file, or an env var
//! let config = SqliteConfig::new(dir.path().join("patchbay.db")).with_secret_key(key);
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open(config)?);
//!
//! store.add_actor("alice", &["dev".to_owned()]).await?;
//! let (info, secret) = store.issue_token("alice", None, Some("laptop")).await?;
//! let (token, actor) = store.verify_token(secret.expose()).await?.expect("valid");
//! assert_eq!((token.id, actor.name), (info.id, "alice".to_owned()));
//!
//! let audit = AuditWriter::spawn(store.clone(), AuditWriterConfig::default());
//! audit.record(AuditRecord { actor: "alice".into(), call_id: "c1".into(), ..Default::default() });
//! audit.close().await; // on shutdown: writes what is queued
//! assert_eq!(store.audit_tail(10, Some("alice")).await?.len(), 1);
//! # Ok(())
//! # }
//! ```

mod audit;
mod crypto;
mod error;
mod key;
mod model;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use audit::{
    AuditQuery, AuditRecord, AuditStats, AuditWriter, AuditWriterConfig, CallNode, Retention,
};
pub use crypto::{PROVIDER_TOKEN_PREFIX, TOKEN_PREFIX, looks_like_token};
pub use error::StoreError;
pub use key::SecretKey;
pub use model::{
    Actor, Binding, MAX_NAME_LEN, MAX_PROVIDER_NAME_LEN, ProviderInfo, SecretString, TokenInfo,
    is_valid_name, is_valid_provider_name, now_ms,
};
pub use sqlite::{SqliteConfig, SqliteStore};

/// The result of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The future every [`Store`] method returns: boxed so the trait stays object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// Persistent state of the hub. Object-safe: hold it as `Arc<dyn Store>`.
///
/// Names (actors, vendors, secret names) follow [`is_valid_name`]. Times are unix milliseconds.
/// Borrowed arguments are copied before the future is returned, so a future only borrows `self`.
pub trait Store: Send + Sync + 'static {
    // ----- actors -----

    /// Adds an actor. Fails with [`StoreError::ActorExists`] if the name is taken.
    fn add_actor(&self, name: &str, roles: &[String]) -> StoreFuture<'_, Actor>;

    /// Every actor, by name.
    fn actors(&self) -> StoreFuture<'_, Vec<Actor>>;

    /// One actor, or `None` if there is none by that name.
    fn actor(&self, name: &str) -> StoreFuture<'_, Option<Actor>>;

    /// Disables or enables an actor. A disabled actor's tokens and bindings stop verifying at once.
    fn set_actor_disabled(&self, name: &str, disabled: bool) -> StoreFuture<'_, Actor>;

    /// Disables an actor (see [`Store::set_actor_disabled`]).
    fn disable_actor(&self, name: &str) -> StoreFuture<'_, Actor> {
        self.set_actor_disabled(name, true)
    }

    /// Enables a disabled actor again.
    fn enable_actor(&self, name: &str) -> StoreFuture<'_, Actor> {
        self.set_actor_disabled(name, false)
    }

    // ----- tokens -----

    /// Issues a bearer token for `actor`, valid for `ttl` (forever when `None`). The secret is
    /// returned once and never stored: only its SHA-256 hash is.
    fn issue_token(
        &self,
        actor: &str,
        ttl: Option<Duration>,
        label: Option<&str>,
    ) -> StoreFuture<'_, (TokenInfo, SecretString)>;

    /// The token and its actor for a presented secret; `None` if the secret is unknown, revoked,
    /// expired, or its actor is disabled. Looks the secret up by hash, so timing tells nothing.
    /// Records `last_used_at` (at most once a minute per token, to keep verification cheap).
    fn verify_token(&self, secret: &str) -> StoreFuture<'_, Option<(TokenInfo, Actor)>>;

    /// Tokens (never their secrets), optionally of one actor only, oldest first.
    fn tokens(&self, actor: Option<&str>) -> StoreFuture<'_, Vec<TokenInfo>>;

    /// Revokes a token; it stops verifying at once. Revoking a revoked token keeps the first time.
    fn revoke_token(&self, id: &str) -> StoreFuture<'_, TokenInfo>;

    // ----- bindings -----

    /// Records a binding of a vendor's devices to `actor`, valid for `ttl` (forever when `None`).
    /// The binding's JWT is minted elsewhere; the store keeps what revocation needs.
    fn create_binding(
        &self,
        actor: &str,
        vendor: &str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'_, Binding>;

    /// One binding by id, whatever its state.
    fn binding(&self, id: &str) -> StoreFuture<'_, Option<Binding>>;

    /// The binding and its actor if the binding may be used now; `None` if it is unknown, revoked,
    /// expired, or its actor is disabled.
    fn active_binding(&self, id: &str) -> StoreFuture<'_, Option<(Binding, Actor)>>;

    /// Bindings, optionally of one actor only, oldest first.
    fn bindings(&self, actor: Option<&str>) -> StoreFuture<'_, Vec<Binding>>;

    /// Revokes a binding. Revoking a revoked binding keeps the first time.
    fn revoke_binding(&self, id: &str) -> StoreFuture<'_, Binding>;

    // ----- secrets -----

    /// Stores (or replaces) `actor`'s secret `name`, encrypted at rest.
    fn set_secret(&self, actor: &str, name: &str, value: &str) -> StoreFuture<'_, ()>;

    /// `actor`'s secret `name`, decrypted; `None` if there is none. Fails with
    /// [`StoreError::Decrypt`] if the key is wrong or the stored value was altered or moved.
    fn secret(&self, actor: &str, name: &str) -> StoreFuture<'_, Option<SecretString>>;

    /// The names of `actor`'s secrets, sorted (never the values).
    fn secret_names(&self, actor: &str) -> StoreFuture<'_, Vec<String>>;

    /// Deletes `actor`'s secret `name`; [`StoreError::NoSecret`] if there is none.
    fn delete_secret(&self, actor: &str, name: &str) -> StoreFuture<'_, ()>;

    // ----- dial-in providers -----

    /// Registers a dial-in provider named `name` (see [`is_valid_provider_name`]) and issues its
    /// token (`pbp_` and 43 base64url characters). The token is returned once and never stored:
    /// only its SHA-256 hash is. Fails with [`StoreError::ProviderExists`] if the name is taken.
    fn add_provider(&self, name: &str) -> StoreFuture<'_, (ProviderInfo, SecretString)>;

    /// Every dial-in provider, by name.
    fn providers(&self) -> StoreFuture<'_, Vec<ProviderInfo>>;

    /// The provider a presented token belongs to; `None` if the token is unknown (or its provider
    /// was revoked). Looks the token up by hash.
    fn verify_provider_token(&self, secret: &str) -> StoreFuture<'_, Option<ProviderInfo>>;

    /// Removes a dial-in provider: its token stops verifying at once (a connection already open
    /// stays until it closes). [`StoreError::NoProvider`] if there is none by that name.
    fn revoke_provider(&self, name: &str) -> StoreFuture<'_, ProviderInfo>;

    // ----- audit -----

    /// Appends records in one transaction. Callers on a request path use an [`AuditWriter`].
    fn append_audit(&self, records: Vec<AuditRecord>) -> StoreFuture<'_, ()>;

    /// The newest records matching `query` (at most `query.limit`), oldest first.
    fn audit_query(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>>;

    /// The last `limit` records, optionally of one actor, oldest first.
    fn audit_tail(&self, limit: usize, actor: Option<&str>) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.audit_query(AuditQuery {
            actor: actor.map(str::to_owned),
            limit,
            ..AuditQuery::default()
        })
    }

    /// The record of `call_id` and every record descending from it through `parent_call_id`, in
    /// order of time (a call starts before the calls it causes, so parents come first). Children
    /// are found even while the root's own record is not written yet; empty if nothing matches.
    /// [`CallNode::build`] turns the list into a tree.
    fn audit_tree(&self, call_id: &str) -> StoreFuture<'_, Vec<AuditRecord>>;

    /// Deletes records older than `retention.max_age` and beyond the newest
    /// `retention.max_rows`; returns how many were deleted.
    fn prune_audit(&self, retention: Retention) -> StoreFuture<'_, u64>;
}
