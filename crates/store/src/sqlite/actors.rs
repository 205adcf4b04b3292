//! The `actors` table.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::is_constraint_violation;
use crate::model::check_name;
use crate::{Actor, StoreError, StoreResult, now_ms};

/// Columns [`from_row`] reads, in order.
pub(super) const COLUMNS: &str = "actors.name, actors.roles, actors.disabled, actors.created_at";

/// An actor from [`COLUMNS`] starting at column `at`.
pub(super) fn from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Actor> {
    let roles: String = row.get(at + 1)?;
    let roles = serde_json::from_str(&roles)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at + 1, Type::Text, Box::new(e)))?;
    Ok(Actor {
        name: row.get(at)?,
        roles,
        disabled: row.get(at + 2)?,
        created_at: row.get(at + 3)?,
    })
}

pub(super) fn add(conn: &Connection, name: &str, roles: &[String]) -> StoreResult<Actor> {
    check_name("actor", name)?;
    let mut unique: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        check_name("role", role)?;
        if !unique.contains(role) {
            unique.push(role.clone());
        }
    }
    let actor = Actor {
        name: name.to_owned(),
        roles: unique,
        disabled: false,
        created_at: now_ms(),
    };
    let roles_json = serde_json::to_string(&actor.roles).expect("strings serialize");
    let inserted = conn.execute(
        "INSERT INTO actors (name, roles, disabled, created_at) VALUES (?1, ?2, 0, ?3)",
        params![actor.name, roles_json, actor.created_at],
    );
    match inserted {
        Ok(_) => Ok(actor),
        Err(e) if is_constraint_violation(&e) => Err(StoreError::ActorExists(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<Actor>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM actors ORDER BY name"))?;
    let rows = stmt.query_map([], |row| from_row(row, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn get(conn: &Connection, name: &str) -> StoreResult<Option<Actor>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM actors WHERE name = ?1"))?;
    Ok(stmt.query_row([name], |row| from_row(row, 0)).optional()?)
}

/// The actor, or [`StoreError::NoActor`].
pub(super) fn require(conn: &Connection, name: &str) -> StoreResult<Actor> {
    get(conn, name)?.ok_or_else(|| StoreError::NoActor(name.to_owned()))
}

pub(super) fn set_disabled(conn: &Connection, name: &str, disabled: bool) -> StoreResult<Actor> {
    let changed = conn.execute(
        "UPDATE actors SET disabled = ?2 WHERE name = ?1",
        params![name, disabled],
    )?;
    if changed == 0 {
        return Err(StoreError::NoActor(name.to_owned()));
    }
    require(conn, name)
}
