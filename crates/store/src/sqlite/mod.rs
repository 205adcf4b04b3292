//! The embedded SQLite store: one database file in WAL mode, created with its parent directories
//! on first start, migrated automatically (see `migrations`). Every call runs on tokio's blocking
//! pool with its own pooled connection, so the async side never waits on the disk.

mod actors;
mod audit;
mod bindings;
mod migrations;
mod pool;
mod providers;
mod secrets;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use crate::crypto::Sealer;
use crate::{
    Actor, AuditQuery, AuditRecord, Binding, ProviderInfo, Retention, SecretKey, SecretString,
    Store, StoreError, StoreFuture, StoreResult, TokenInfo,
};
use pool::{Pool, open_connection};

/// Where and how the SQLite store keeps its data.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file. It and its parent directories are created on first start (the file
    /// readable by its owner only, on Unix). SQLite keeps `-wal` and `-shm` files beside it.
    pub path: PathBuf,
    /// How long a statement waits for a lock held by another connection or process before
    /// failing with "database is locked". Default: 5 s.
    pub busy_timeout: Duration,
    /// The key that encrypts actors' secrets at rest. Without one, the secret methods fail with
    /// [`StoreError::NoSecretKey`] and everything else works. Default: none.
    pub secret_key: Option<SecretKey>,
    /// Idle connections kept open for reuse. More concurrent calls open more connections, closed
    /// again when returned beyond this count. Default: 8.
    pub max_idle_connections: usize,
}

impl SqliteConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            busy_timeout: Duration::from_secs(5),
            secret_key: None,
            max_idle_connections: 8,
        }
    }

    /// The same, with a secret key.
    pub fn with_secret_key(mut self, key: SecretKey) -> Self {
        self.secret_key = Some(key);
        self
    }
}

/// The SQLite [`Store`]. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    pool: Pool,
    sealer: Option<Sealer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field(
                "secret_key",
                &self.inner.sealer.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies missing migrations. Blocking: call it
    /// at start-up or from a blocking task.
    pub fn open(config: SqliteConfig) -> StoreResult<SqliteStore> {
        let path = config.path.clone();
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.into()))?;
        }
        create_private_file(&path).map_err(|e| fail(e.into()))?;
        let mut conn = open_connection(&path, config.busy_timeout).map_err(|e| fail(e.into()))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| fail(e.into()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "the store could not switch to WAL mode");
        }
        let version = migrations::migrate(&mut conn)?;
        tracing::debug!(path = %path.display(), version, "store opened");
        let sealer = config.secret_key.as_ref().map(Sealer::new).transpose()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                pool: Pool::new(
                    path.clone(),
                    config.busy_timeout,
                    config.max_idle_connections,
                    conn,
                ),
                path,
                sealer,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version this build creates and migrates to.
    pub fn latest_schema_version() -> u32 {
        migrations::LATEST
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    fn run<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = inner.pool.get()?;
                f(&mut conn, &inner)
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }
}

/// Creates `path` empty and private (0600 on Unix) if it does not exist, so the database and
/// the `-wal`/`-shm` files SQLite derives from it are never readable by others.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `error` is a constraint (such as a unique key) refusing a write.
fn is_constraint_violation(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation)
}

/// Inserts a row under a freshly drawn random id: `attempt` draws the id, builds the row, tries
/// the insert and gives back the row with the insert's result. Ids carry 40 random bits: a
/// collision is rare, and a fresh draw fixes it (up to five draws in all).
fn insert_with_fresh_id<T>(
    mut attempt: impl FnMut() -> StoreResult<(T, rusqlite::Result<usize>)>,
) -> StoreResult<T> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (row, inserted) = attempt()?;
        match inserted {
            Ok(_) => return Ok(row),
            Err(e) if is_constraint_violation(&e) && attempts < 5 => {}
            Err(e) => return Err(e.into()),
        }
    }
}

impl Store for SqliteStore {
    fn add_actor(&self, name: &str, roles: &[String]) -> StoreFuture<'_, Actor> {
        let (name, roles) = (name.to_owned(), roles.to_vec());
        self.run(move |conn, _| actors::add(conn, &name, &roles))
    }

    fn actors(&self) -> StoreFuture<'_, Vec<Actor>> {
        self.run(|conn, _| actors::list(conn))
    }

    fn actor(&self, name: &str) -> StoreFuture<'_, Option<Actor>> {
        let name = name.to_owned();
        self.run(move |conn, _| actors::get(conn, &name))
    }

    fn set_actor_disabled(&self, name: &str, disabled: bool) -> StoreFuture<'_, Actor> {
        let name = name.to_owned();
        self.run(move |conn, _| actors::set_disabled(conn, &name, disabled))
    }

    fn issue_token(
        &self,
        actor: &str,
        ttl: Option<Duration>,
        label: Option<&str>,
    ) -> StoreFuture<'_, (TokenInfo, SecretString)> {
        let (actor, label) = (actor.to_owned(), label.map(str::to_owned));
        self.run(move |conn, _| tokens::issue(conn, &actor, ttl, label.as_deref()))
    }

    fn verify_token(&self, secret: &str) -> StoreFuture<'_, Option<(TokenInfo, Actor)>> {
        let secret = SecretString::new(secret);
        self.run(move |conn, _| tokens::verify(conn, secret.expose()))
    }

    fn tokens(&self, actor: Option<&str>) -> StoreFuture<'_, Vec<TokenInfo>> {
        let actor = actor.map(str::to_owned);
        self.run(move |conn, _| tokens::list(conn, actor.as_deref()))
    }

    fn revoke_token(&self, id: &str) -> StoreFuture<'_, TokenInfo> {
        let id = id.to_owned();
        self.run(move |conn, _| tokens::revoke(conn, &id))
    }

    fn create_binding(
        &self,
        actor: &str,
        vendor: &str,
        ttl: Option<Duration>,
    ) -> StoreFuture<'_, Binding> {
        let (actor, vendor) = (actor.to_owned(), vendor.to_owned());
        self.run(move |conn, _| bindings::create(conn, &actor, &vendor, ttl))
    }

    fn binding(&self, id: &str) -> StoreFuture<'_, Option<Binding>> {
        let id = id.to_owned();
        self.run(move |conn, _| bindings::get(conn, &id))
    }

    fn active_binding(&self, id: &str) -> StoreFuture<'_, Option<(Binding, Actor)>> {
        let id = id.to_owned();
        self.run(move |conn, _| bindings::active(conn, &id))
    }

    fn bindings(&self, actor: Option<&str>) -> StoreFuture<'_, Vec<Binding>> {
        let actor = actor.map(str::to_owned);
        self.run(move |conn, _| bindings::list(conn, actor.as_deref()))
    }

    fn revoke_binding(&self, id: &str) -> StoreFuture<'_, Binding> {
        let id = id.to_owned();
        self.run(move |conn, _| bindings::revoke(conn, &id))
    }

    fn set_secret(&self, actor: &str, name: &str, value: &str) -> StoreFuture<'_, ()> {
        let (actor, name, value) = (actor.to_owned(), name.to_owned(), SecretString::new(value));
        self.run(move |conn, inner| {
            secrets::set(conn, inner.sealer.as_ref(), &actor, &name, value.expose())
        })
    }

    fn secret(&self, actor: &str, name: &str) -> StoreFuture<'_, Option<SecretString>> {
        let (actor, name) = (actor.to_owned(), name.to_owned());
        self.run(move |conn, inner| secrets::get(conn, inner.sealer.as_ref(), &actor, &name))
    }

    fn secret_names(&self, actor: &str) -> StoreFuture<'_, Vec<String>> {
        let actor = actor.to_owned();
        self.run(move |conn, _| secrets::names(conn, &actor))
    }

    fn delete_secret(&self, actor: &str, name: &str) -> StoreFuture<'_, ()> {
        let (actor, name) = (actor.to_owned(), name.to_owned());
        self.run(move |conn, _| secrets::delete(conn, &actor, &name))
    }

    fn add_provider(&self, name: &str) -> StoreFuture<'_, (ProviderInfo, SecretString)> {
        let name = name.to_owned();
        self.run(move |conn, _| providers::add(conn, &name))
    }

    fn providers(&self) -> StoreFuture<'_, Vec<ProviderInfo>> {
        self.run(|conn, _| providers::list(conn))
    }

    fn verify_provider_token(&self, secret: &str) -> StoreFuture<'_, Option<ProviderInfo>> {
        let secret = SecretString::new(secret);
        self.run(move |conn, _| providers::verify(conn, secret.expose()))
    }

    fn revoke_provider(&self, name: &str) -> StoreFuture<'_, ProviderInfo> {
        let name = name.to_owned();
        self.run(move |conn, _| providers::revoke(conn, &name))
    }

    fn append_audit(&self, records: Vec<AuditRecord>) -> StoreFuture<'_, ()> {
        self.run(move |conn, _| audit::append(conn, &records))
    }

    fn audit_query(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditRecord>> {
        self.run(move |conn, _| audit::query(conn, &query))
    }

    fn audit_tree(&self, call_id: &str) -> StoreFuture<'_, Vec<AuditRecord>> {
        let call_id = call_id.to_owned();
        self.run(move |conn, _| audit::tree(conn, &call_id))
    }

    fn prune_audit(&self, retention: Retention) -> StoreFuture<'_, u64> {
        self.run(move |conn, _| audit::prune(conn, retention))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database left by an older build (schema version 1, with an actor and a token in it) is
    /// migrated to the latest version on open, keeping its data.
    #[tokio::test]
    async fn opening_an_old_database_migrates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrations::migrate_to(&mut conn, 1).unwrap();
            assert_eq!(migrations::user_version(&conn).unwrap(), 1);
            conn.execute(
                "INSERT INTO actors (name, roles, disabled, created_at) VALUES ('alice', '[\"dev\"]', 0, 1)",
                [],
            )
            .unwrap();
            let hash = crate::crypto::hash_token("pb_old_secret");
            conn.execute(
                "INSERT INTO tokens (id, hash, actor, created_at) VALUES ('tok_old00000', ?1, 'alice', 1)",
                [hash.as_slice()],
            )
            .unwrap();
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('bindings', 'audit')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(tables, 0);
        }

        let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
        {
            let conn = store.inner.pool.get().unwrap();
            assert_eq!(
                migrations::user_version(&conn).unwrap(),
                SqliteStore::latest_schema_version()
            );
        }
        let actor = store.actor("alice").await.unwrap().unwrap();
        assert_eq!(actor.roles, ["dev"]);
        let (token, _) = store.verify_token("pb_old_secret").await.unwrap().unwrap();
        assert_eq!(token.id, "tok_old00000");
        // The tables of the later migrations exist and work.
        store
            .create_binding("alice", "xiaozhi", None)
            .await
            .unwrap();
        store
            .append_audit(vec![AuditRecord {
                call_id: "c1".into(),
                ..AuditRecord::default()
            }])
            .await
            .unwrap();
        assert_eq!(store.audit_tail(10, None).await.unwrap().len(), 1);

        // Opening again is a no-op.
        drop(store);
        let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
        assert_eq!(store.bindings(None).await.unwrap().len(), 1);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", migrations::LATEST + 1)
                .unwrap();
        }
        let err = SqliteStore::open(SqliteConfig::new(&path)).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }
}
