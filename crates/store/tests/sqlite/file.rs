use std::time::Duration;

use patchbay_store::{AuditRecord, SqliteConfig, SqliteStore, Store};

use crate::{all_bytes, contains, fixture, key};

#[tokio::test]
async fn created_with_parent_dirs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("patchbay.db");
    let store = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
    store.add_actor("alice", &[]).await.unwrap();
    assert!(path.is_file());

    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SqliteStore::latest_schema_version());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "database readable by others: {mode:o}");
    }
}

/// Neither a token secret nor a secret value is written to disk in the clear: not in the
/// database file, not in its WAL, neither while open nor after closing.
#[tokio::test]
async fn no_secret_reaches_the_disk() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let (_, token) = f
        .store
        .issue_token("alice", Some(Duration::from_secs(60)), Some("laptop"))
        .await
        .unwrap();
    let (_, provider_token) = f.store.add_provider("dialin").await.unwrap();
    let value = "s3cr3t-VALUE-0123456789-abcdefghij";
    f.store
        .set_secret("alice", "github_token", value)
        .await
        .unwrap();
    assert!(
        f.store
            .verify_token(token.expose())
            .await
            .unwrap()
            .is_some()
    );
    f.store
        .append_audit(vec![AuditRecord {
            actor: "alice".into(),
            call_id: "c1".into(),
            ..AuditRecord::default()
        }])
        .await
        .unwrap();

    let token_body = &token.expose()[3..];
    let check = |bytes: &[u8]| {
        assert!(!bytes.is_empty());
        assert!(
            contains(bytes, b"laptop"),
            "the search should see plain data"
        );
        assert!(
            !contains(bytes, token.expose().as_bytes()),
            "token secret on disk"
        );
        assert!(
            !contains(bytes, token_body.as_bytes()),
            "token body on disk"
        );
        assert!(!contains(bytes, value.as_bytes()), "secret value on disk");
        assert!(
            !contains(bytes, &provider_token.expose().as_bytes()[4..]),
            "provider token on disk"
        );
    };
    check(&all_bytes(f.dir.path()));
    let dir = f.dir;
    drop(f.store);
    check(&all_bytes(dir.path()));
    // And the secret is still there for whoever holds the key.
    let store = crate::open(dir.path(), Some(key(1)));
    assert_eq!(
        store
            .secret("alice", "github_token")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        value
    );
}

#[tokio::test]
async fn concurrent_calls_share_the_file() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let (_, secret) = store
                .issue_token("alice", None, Some(&format!("t{i}")))
                .await
                .unwrap();
            store.verify_token(secret.expose()).await.unwrap().is_some()
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap());
    }
    assert_eq!(f.store.tokens(Some("alice")).await.unwrap().len(), 16);
}
