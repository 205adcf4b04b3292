//! The `providers` table: dial-in tool providers, each with the SHA-256 hash of its token.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::is_constraint_violation;
use crate::crypto::{PROVIDER_TOKEN_PREFIX, hash_token, mint_secret};
use crate::model::is_valid_provider_name;
use crate::{ProviderInfo, SecretString, StoreError, StoreResult, now_ms};

const COLUMNS: &str = "name, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ProviderInfo> {
    Ok(ProviderInfo {
        name: row.get(0)?,
        created_at: row.get(1)?,
    })
}

pub(super) fn add(conn: &Connection, name: &str) -> StoreResult<(ProviderInfo, SecretString)> {
    if !is_valid_provider_name(name) {
        let shown: String = name.chars().take(40).collect();
        return Err(StoreError::InvalidInput(format!(
            "invalid provider name `{shown}`: use 1-64 characters of letters, digits, `_` and `-` \
             (it is the namespace of the provider's tools)"
        )));
    }
    let (secret, hash) = mint_secret(PROVIDER_TOKEN_PREFIX)?;
    let info = ProviderInfo {
        name: name.to_owned(),
        created_at: now_ms(),
    };
    let inserted = conn.execute(
        "INSERT INTO providers (name, hash, created_at) VALUES (?1, ?2, ?3)",
        params![info.name, hash.as_slice(), info.created_at],
    );
    match inserted {
        Ok(_) => Ok((info, secret)),
        Err(e) if is_constraint_violation(&e) => Err(StoreError::ProviderExists(name.to_owned())),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn list(conn: &Connection) -> StoreResult<Vec<ProviderInfo>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM providers ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn verify(conn: &Connection, secret: &str) -> StoreResult<Option<ProviderInfo>> {
    let hash = hash_token(secret);
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM providers WHERE hash = ?1"))?
        .query_row([hash.as_slice()], from_row)
        .optional()?)
}

pub(super) fn revoke(conn: &Connection, name: &str) -> StoreResult<ProviderInfo> {
    let found = conn
        .query_row(
            &format!("DELETE FROM providers WHERE name = ?1 RETURNING {COLUMNS}"),
            [name],
            from_row,
        )
        .optional()?;
    found.ok_or_else(|| StoreError::NoProvider(name.to_owned()))
}
