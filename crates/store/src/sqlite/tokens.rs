//! The `tokens` table: bearer tokens, stored as SHA-256 hashes of their secrets.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{actors, insert_with_fresh_id};
use crate::crypto::{hash_token, mint_token, random_id};
use crate::model::expiry;
use crate::{Actor, SecretString, StoreError, StoreResult, TokenInfo, now_ms};

/// `last_used_at` is rewritten at most this often per token, so verification is mostly a read.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// Longest label accepted, in bytes.
const MAX_LABEL_LEN: usize = 256;

const COLUMNS: &str = "tokens.id, tokens.actor, tokens.label, tokens.created_at, \
                       tokens.expires_at, tokens.revoked_at, tokens.last_used_at";
const N_COLUMNS: usize = 7;

fn from_row(row: &Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        actor: row.get(1)?,
        label: row.get(2)?,
        created_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked_at: row.get(5)?,
        last_used_at: row.get(6)?,
    })
}

pub(super) fn issue(
    conn: &mut Connection,
    actor: &str,
    ttl: Option<Duration>,
    label: Option<&str>,
) -> StoreResult<(TokenInfo, SecretString)> {
    if let Some(label) = label
        && (label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control))
    {
        return Err(StoreError::InvalidInput(format!(
            "a token label is at most {MAX_LABEL_LEN} bytes without control characters"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    actors::require(&tx, actor)?;
    let now = now_ms();
    let expires_at = expiry(now, ttl)?;
    let issued = insert_with_fresh_id(|| {
        let (secret, hash) = mint_token()?;
        let info = TokenInfo {
            id: random_id("tok_")?,
            actor: actor.to_owned(),
            label: label.map(str::to_owned),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let inserted = tx.execute(
            "INSERT INTO tokens (id, hash, actor, label, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                info.id,
                hash.as_slice(),
                info.actor,
                info.label,
                info.created_at,
                info.expires_at
            ],
        );
        Ok(((info, secret), inserted))
    })?;
    tx.commit()?;
    Ok(issued)
}

pub(super) fn verify(conn: &Connection, secret: &str) -> StoreResult<Option<(TokenInfo, Actor)>> {
    let hash = hash_token(secret);
    let found = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, {} FROM tokens JOIN actors ON actors.name = tokens.actor \
             WHERE tokens.hash = ?1",
            actors::COLUMNS
        ))?
        .query_row([hash.as_slice()], |row| {
            Ok((from_row(row)?, actors::from_row(row, N_COLUMNS)?))
        })
        .optional()?;
    let Some((mut info, actor)) = found else {
        return Ok(None);
    };
    let now = now_ms();
    if !info.is_active(now) || actor.disabled {
        return Ok(None);
    }
    if info
        .last_used_at
        .is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS)
    {
        // Bookkeeping only: a busy database must not turn a valid token away.
        match conn.execute(
            "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
            params![info.id, now],
        ) {
            Ok(_) => info.last_used_at = Some(now),
            Err(error) => {
                tracing::debug!(token = %info.id, %error, "could not record token use");
            }
        }
    }
    Ok(Some((info, actor)))
}

pub(super) fn list(conn: &Connection, actor: Option<&str>) -> StoreResult<Vec<TokenInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tokens WHERE ?1 IS NULL OR actor = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([actor], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn revoke(conn: &Connection, id: &str) -> StoreResult<TokenInfo> {
    let changed = conn.execute(
        "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
        params![id, now_ms()],
    )?;
    if changed == 0 {
        return Err(StoreError::NoToken(id.to_owned()));
    }
    Ok(conn.query_row(
        &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
        [id],
        from_row,
    )?)
}
