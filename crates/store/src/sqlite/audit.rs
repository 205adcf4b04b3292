//! The `audit` table: appends in one transaction, queries, call trees and retention.

use rusqlite::types::{Type, Value as SqlValue};
use rusqlite::{Connection, Row, TransactionBehavior, params, params_from_iter};

use crate::{AuditQuery, AuditRecord, Retention, StoreResult, now_ms};

const COLUMNS: &str = "time, actor, vendor, credential, front_door, session, operation, call_id, \
                       parent_call_id, duration_ms, outcome, bytes_in, bytes_out, input, output";

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn json_column(row: &Row<'_>, at: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(at)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        time: row.get(0)?,
        actor: row.get(1)?,
        vendor: row.get(2)?,
        credential: row.get(3)?,
        front_door: row.get(4)?,
        session: row.get(5)?,
        operation: row.get(6)?,
        call_id: row.get(7)?,
        parent_call_id: row.get(8)?,
        duration_ms: to_u64(row.get(9)?),
        outcome: row.get(10)?,
        bytes_in: to_u64(row.get(11)?),
        bytes_out: to_u64(row.get(12)?),
        input: json_column(row, 13)?,
        output: json_column(row, 14)?,
    })
}

pub(super) fn append(conn: &mut Connection, records: &[AuditRecord]) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO audit ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ))?;
        for r in records {
            let input = r.input.as_ref().map(|v| v.to_string());
            let output = r.output.as_ref().map(|v| v.to_string());
            stmt.execute(params![
                r.time,
                r.actor,
                r.vendor,
                r.credential,
                r.front_door,
                r.session,
                r.operation,
                r.call_id,
                r.parent_call_id,
                to_i64(r.duration_ms),
                r.outcome,
                to_i64(r.bytes_in),
                to_i64(r.bytes_out),
                input,
                output,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// An operation pattern (`*` is the only wildcard) as a SQLite GLOB pattern.
fn glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn query(conn: &Connection, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<SqlValue> = Vec::new();
    if let Some(since) = q.since {
        clauses.push("time >= ?");
        values.push(since.into());
    }
    if let Some(until) = q.until {
        clauses.push("time < ?");
        values.push(until.into());
    }
    if let Some(pattern) = &q.operation {
        clauses.push("operation GLOB ?");
        values.push(glob(pattern).into());
    }
    if let Some(outcome) = &q.outcome {
        clauses.push("outcome = ?");
        values.push(outcome.clone().into());
    }
    if let Some(actor) = &q.actor {
        clauses.push("actor = ?");
        values.push(actor.clone().into());
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    values.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit {filter} ORDER BY time DESC, id DESC LIMIT ?"
    ))?;
    let mut records = stmt
        .query_map(params_from_iter(values), from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    records.reverse();
    Ok(records)
}

pub(super) fn tree(conn: &Connection, call_id: &str) -> StoreResult<Vec<AuditRecord>> {
    // UNION (not UNION ALL) visits each call id once, so even a cycle in bad data terminates.
    // Starting from the id itself, not its record, shows the children of a call whose own
    // record is not written yet (a batch still running).
    let mut stmt = conn.prepare_cached(&format!(
        "WITH RECURSIVE tree(call_id) AS ( \
             SELECT ?1 \
             UNION \
             SELECT audit.call_id FROM audit JOIN tree ON audit.parent_call_id = tree.call_id \
         ) \
         SELECT {COLUMNS} FROM audit WHERE call_id IN tree ORDER BY time, id"
    ))?;
    let rows = stmt.query_map([call_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn prune(conn: &mut Connection, retention: Retention) -> StoreResult<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut deleted = 0;
    if let Some(max_age) = retention.max_age {
        let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(age);
        deleted += tx.execute("DELETE FROM audit WHERE time < ?1", [cutoff])?;
    }
    if let Some(max_rows) = retention.max_rows {
        deleted += tx.execute(
            "DELETE FROM audit WHERE id <= \
             (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            [to_i64(max_rows)],
        )?;
    }
    tx.commit()?;
    Ok(deleted as u64)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn only_star_is_a_wildcard() {
        assert_eq!(glob("github.*"), "github.*");
        assert_eq!(glob("a?b[c]"), "a[?]b[[]c]");
    }
}
