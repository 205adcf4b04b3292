//! The SQLite store against real database files in a temporary directory.

mod actors;
mod audit;
mod bindings;
mod file;
mod providers;
mod secrets;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchbay_store::{SecretKey, SqliteConfig, SqliteStore, Store};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
}

pub fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32])
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("state").join("patchbay.db")
}

pub fn open(dir: &Path, key: Option<SecretKey>) -> Arc<dyn Store> {
    let mut config = SqliteConfig::new(db_path(dir));
    config.secret_key = key;
    Arc::new(SqliteStore::open(config).expect("store opens"))
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Some(key(1)));
    Fixture { dir, store }
}

/// Every byte of every file in `dir` (the database and its `-wal`/`-shm` files).
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
