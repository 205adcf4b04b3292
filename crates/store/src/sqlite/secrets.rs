//! The `secrets` table: actors' secret values, sealed with AES-256-GCM (see `crate::crypto`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::actors;
use crate::crypto::Sealer;
use crate::model::check_name;
use crate::{SecretString, StoreError, StoreResult, now_ms};

/// Largest secret value accepted, in bytes.
const MAX_VALUE_LEN: usize = 64 * 1024;

fn sealer(sealer: Option<&Sealer>) -> StoreResult<&Sealer> {
    sealer.ok_or(StoreError::NoSecretKey)
}

pub(super) fn set(
    conn: &mut Connection,
    key: Option<&Sealer>,
    actor: &str,
    name: &str,
    value: &str,
) -> StoreResult<()> {
    let key = sealer(key)?;
    check_name("secret", name)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(StoreError::InvalidInput(format!(
            "a secret value is at most {MAX_VALUE_LEN} bytes"
        )));
    }
    let sealed = key.seal(actor, name, value)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    actors::require(&tx, actor)?;
    let now = now_ms();
    tx.execute(
        "INSERT INTO secrets (actor, name, nonce, ciphertext, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
         ON CONFLICT (actor, name) DO UPDATE SET \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        params![actor, name, sealed.nonce.as_slice(), sealed.ciphertext, now],
    )?;
    tx.commit()?;
    Ok(())
}

pub(super) fn get(
    conn: &Connection,
    key: Option<&Sealer>,
    actor: &str,
    name: &str,
) -> StoreResult<Option<SecretString>> {
    let key = sealer(key)?;
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT nonce, ciphertext FROM secrets WHERE actor = ?1 AND name = ?2")?
        .query_row([actor, name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(nonce, ciphertext)| key.open(actor, name, &nonce, &ciphertext))
        .transpose()
}

pub(super) fn names(conn: &Connection, actor: &str) -> StoreResult<Vec<String>> {
    actors::require(conn, actor)?;
    let mut stmt =
        conn.prepare_cached("SELECT name FROM secrets WHERE actor = ?1 ORDER BY name")?;
    let rows = stmt.query_map([actor], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn delete(conn: &Connection, actor: &str, name: &str) -> StoreResult<()> {
    let deleted = conn.execute(
        "DELETE FROM secrets WHERE actor = ?1 AND name = ?2",
        [actor, name],
    )?;
    if deleted == 0 {
        return Err(StoreError::NoSecret {
            actor: actor.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}
