//! A small pool of SQLite connections to one file. In WAL mode readers never wait for the writer,
//! so each blocking task takes its own connection; writers queue on SQLite's lock, bounded by
//! `busy_timeout`. Idle connections are kept for reuse, up to a limit.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

/// Opens a connection with the per-connection settings every connection needs.
pub(crate) fn open_connection(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    // Foreign keys are off by default in SQLite, per connection.
    conn.pragma_update(None, "foreign_keys", true)?;
    // In WAL mode NORMAL is safe against application crashes; only a power loss can drop the
    // last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

pub(crate) struct Pool {
    path: PathBuf,
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    pub fn new(path: PathBuf, busy_timeout: Duration, max_idle: usize, first: Connection) -> Self {
        Pool {
            path,
            busy_timeout,
            max_idle,
            idle: Mutex::new(vec![first]),
        }
    }

    pub fn get(&self) -> rusqlite::Result<Pooled<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_connection(&self.path, self.busy_timeout)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self,
        })
    }
}

/// A connection borrowed from the pool; returned to it on drop.
pub(crate) struct Pooled<'a> {
    conn: Option<Connection>,
    pool: &'a Pool,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // A connection left inside a transaction is not reusable; let it close (rolling back).
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.pool.max_idle {
            idle.push(conn);
        }
    }
}
