//! The SQLite schema, as numbered migrations. The database's `PRAGMA user_version` is the number
//! of the last migration applied; opening a store applies the missing ones in order, each in its
//! own `BEGIN IMMEDIATE` transaction (so two processes opening the same file at once apply each
//! migration exactly once). Never edit a released migration: add a new one at the end.
//!
//! Times are unix milliseconds (INTEGER). Tables are `STRICT`.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "actors and tokens",
        sql: "
            CREATE TABLE actors (
                name        TEXT PRIMARY KEY NOT NULL,
                roles       TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
                disabled    INTEGER NOT NULL DEFAULT 0,
                created_at  INTEGER NOT NULL
            ) STRICT;

            CREATE TABLE tokens (
                id            TEXT PRIMARY KEY NOT NULL,  -- tok_xxxxxxxx
                hash          BLOB NOT NULL UNIQUE,       -- SHA-256 of the secret; never the secret
                actor         TEXT NOT NULL REFERENCES actors(name),
                label         TEXT,
                created_at    INTEGER NOT NULL,
                expires_at    INTEGER,
                revoked_at    INTEGER,
                last_used_at  INTEGER
            ) STRICT;
            CREATE INDEX tokens_actor ON tokens(actor);
        ",
    },
    Migration {
        version: 2,
        name: "bindings and secrets",
        sql: "
            CREATE TABLE bindings (
                id          TEXT PRIMARY KEY NOT NULL,  -- bnd_xxxxxxxx
                actor       TEXT NOT NULL REFERENCES actors(name),
                vendor      TEXT NOT NULL,
                created_at  INTEGER NOT NULL,
                expires_at  INTEGER,
                revoked_at  INTEGER
            ) STRICT;
            CREATE INDEX bindings_actor ON bindings(actor);

            CREATE TABLE secrets (
                actor       TEXT NOT NULL REFERENCES actors(name),
                name        TEXT NOT NULL,
                nonce       BLOB NOT NULL,  -- 96-bit AES-GCM nonce, fresh per value
                ciphertext  BLOB NOT NULL,  -- AES-256-GCM of the value, tag appended
                created_at  INTEGER NOT NULL,
                updated_at  INTEGER NOT NULL,
                PRIMARY KEY (actor, name)
            ) STRICT;
        ",
    },
    Migration {
        version: 3,
        name: "audit log",
        sql: "
            CREATE TABLE audit (
                id              INTEGER PRIMARY KEY,  -- insertion order
                time            INTEGER NOT NULL,
                actor           TEXT NOT NULL,
                vendor          TEXT,
                credential      TEXT,
                front_door      TEXT NOT NULL,
                session         TEXT,
                operation       TEXT NOT NULL,
                call_id         TEXT NOT NULL,
                parent_call_id  TEXT,
                duration_ms     INTEGER NOT NULL,
                outcome         TEXT NOT NULL,
                bytes_in        INTEGER NOT NULL,
                bytes_out       INTEGER NOT NULL,
                input           TEXT,  -- JSON, only with payload recording on
                output          TEXT   -- JSON, only with payload recording on
            ) STRICT;
            CREATE INDEX audit_time ON audit(time);
            CREATE INDEX audit_actor_time ON audit(actor, time);
            CREATE INDEX audit_call ON audit(call_id);
            CREATE INDEX audit_parent ON audit(parent_call_id);
        ",
    },
    Migration {
        version: 4,
        name: "dial-in providers",
        sql: "
            CREATE TABLE providers (
                name        TEXT PRIMARY KEY NOT NULL,  -- the namespace its tools join
                hash        BLOB NOT NULL UNIQUE,       -- SHA-256 of its token; never the token
                created_at  INTEGER NOT NULL
            ) STRICT;
        ",
    },
];

/// The schema version this build writes.
pub(crate) const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Applies every missing migration; returns the schema version reached.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, LATEST)
}

/// Applies missing migrations up to `target` (tests use a lower target to build old databases).
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let found = user_version(conn)?;
    if found > LATEST {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LATEST,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version <= target) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        if user_version(&tx)? >= migration.version {
            continue;
        }
        let failed = |source| StoreError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", migration.version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied store schema migration"
        );
    }
    Ok(user_version(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, 1).unwrap();
        // Make migration 2 fail halfway: its second table already exists.
        conn.execute_batch("CREATE TABLE secrets (x INTEGER)")
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schema migration 2 (bindings and secrets) failed"),
            "{err}"
        );
        assert_eq!(user_version(&conn).unwrap(), 1);
        // The first half of migration 2 was rolled back with it.
        let bindings: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'bindings'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bindings, 0);
    }

    #[test]
    fn too_new_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    }
}
