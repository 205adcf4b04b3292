//! The `bindings` table: a vendor's devices bound to an actor.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{actors, insert_with_fresh_id};
use crate::crypto::random_id;
use crate::model::{check_name, expiry};
use crate::{Actor, Binding, StoreError, StoreResult, now_ms};

const COLUMNS: &str = "bindings.id, bindings.actor, bindings.vendor, bindings.created_at, \
                       bindings.expires_at, bindings.revoked_at";
const N_COLUMNS: usize = 6;

fn from_row(row: &Row<'_>) -> rusqlite::Result<Binding> {
    Ok(Binding {
        id: row.get(0)?,
        actor: row.get(1)?,
        vendor: row.get(2)?,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

pub(super) fn create(
    conn: &mut Connection,
    actor: &str,
    vendor: &str,
    ttl: Option<Duration>,
) -> StoreResult<Binding> {
    check_name("vendor", vendor)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    actors::require(&tx, actor)?;
    let now = now_ms();
    let expires_at = expiry(now, ttl)?;
    let binding = insert_with_fresh_id(|| {
        let binding = Binding {
            id: random_id("bnd_")?,
            actor: actor.to_owned(),
            vendor: vendor.to_owned(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let inserted = tx.execute(
            "INSERT INTO bindings (id, actor, vendor, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                binding.id,
                binding.actor,
                binding.vendor,
                binding.created_at,
                binding.expires_at
            ],
        );
        Ok((binding, inserted))
    })?;
    tx.commit()?;
    Ok(binding)
}

pub(super) fn get(conn: &Connection, id: &str) -> StoreResult<Option<Binding>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM bindings WHERE id = ?1"))?;
    Ok(stmt.query_row([id], from_row).optional()?)
}

pub(super) fn active(conn: &Connection, id: &str) -> StoreResult<Option<(Binding, Actor)>> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, {} FROM bindings JOIN actors ON actors.name = bindings.actor \
             WHERE bindings.id = ?1",
            actors::COLUMNS
        ))?
        .query_row([id], |row| {
            Ok((from_row(row)?, actors::from_row(row, N_COLUMNS)?))
        })
        .optional()?;
    Ok(found.filter(|(binding, actor)| binding.is_active(now_ms()) && !actor.disabled))
}

pub(super) fn list(conn: &Connection, actor: Option<&str>) -> StoreResult<Vec<Binding>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM bindings WHERE ?1 IS NULL OR actor = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([actor], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn revoke(conn: &Connection, id: &str) -> StoreResult<Binding> {
    let changed = conn.execute(
        "UPDATE bindings SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now_ms()],
    )?;
    if changed == 0 {
        return Err(StoreError::NoBinding(id.to_owned()));
    }
    get(conn, id)?.ok_or_else(|| StoreError::NoBinding(id.to_owned()))
}
