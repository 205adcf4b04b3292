use patchbay_store::StoreError;

use crate::{db_path, fixture, key, open};

#[tokio::test]
async fn round_trip_list_replace_delete() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    f.store.add_actor("bob", &[]).await.unwrap();
    f.store
        .set_secret("alice", "github_token", "ghp_alice")
        .await
        .unwrap();
    f.store.set_secret("alice", "api.key", "k1").await.unwrap();
    f.store
        .set_secret("bob", "github_token", "ghp_bob")
        .await
        .unwrap();

    let value = f
        .store
        .secret("alice", "github_token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), "ghp_alice");
    assert!(!format!("{value:?}").contains("ghp_alice"));
    assert_eq!(
        f.store
            .secret("bob", "github_token")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "ghp_bob"
    );
    assert_eq!(f.store.secret("alice", "missing").await.unwrap(), None);
    assert_eq!(
        f.store.secret_names("alice").await.unwrap(),
        ["api.key", "github_token"]
    );

    f.store
        .set_secret("alice", "github_token", "ghp_rotated")
        .await
        .unwrap();
    assert_eq!(
        f.store
            .secret("alice", "github_token")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "ghp_rotated"
    );

    f.store.delete_secret("alice", "api.key").await.unwrap();
    assert_eq!(
        f.store.secret_names("alice").await.unwrap(),
        ["github_token"]
    );
    let err = f.store.delete_secret("alice", "api.key").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "actor `alice` has no secret named `api.key`"
    );

    let err = f.store.set_secret("ghost", "x", "v").await.unwrap_err();
    assert!(matches!(err, StoreError::NoActor(_)), "{err}");
    let err = f
        .store
        .set_secret("alice", "${bad}", "v")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidName { kind: "secret", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_key_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), Some(key(1)));
        store.add_actor("alice", &[]).await.unwrap();
        store
            .set_secret("alice", "github_token", "ghp_alice")
            .await
            .unwrap();
    }
    let store = open(dir.path(), Some(key(2)));
    let err = store.secret("alice", "github_token").await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("secret `github_token` of actor `alice` cannot be decrypted")
            && message.contains("secret key"),
        "{message}"
    );
    assert!(!message.contains("ghp_alice"));
    // Names stay listable without the right key.
    assert_eq!(store.secret_names("alice").await.unwrap(), ["github_token"]);
}

#[tokio::test]
async fn without_a_key_secrets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    store.add_actor("alice", &[]).await.unwrap();
    let err = store.set_secret("alice", "x", "v").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSecretKey), "{err}");
    let err = store.secret("alice", "x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoSecretKey), "{err}");
}

/// A ciphertext copied into another actor's row (by someone with write access to the file) does
/// not decrypt there: the actor and name are bound in as associated data.
#[tokio::test]
async fn ciphertext_moved_to_another_row_fails() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    f.store.add_actor("mallory", &[]).await.unwrap();
    f.store
        .set_secret("alice", "github_token", "ghp_alice")
        .await
        .unwrap();
    f.store
        .set_secret("mallory", "github_token", "mine")
        .await
        .unwrap();
    f.store.set_secret("alice", "other", "x").await.unwrap();

    let conn = rusqlite::Connection::open(db_path(f.dir.path())).unwrap();
    conn.execute(
        "UPDATE secrets SET (nonce, ciphertext) = \
             (SELECT nonce, ciphertext FROM secrets WHERE actor = 'alice' AND name = 'github_token') \
         WHERE (actor = 'mallory' AND name = 'github_token') OR (actor = 'alice' AND name = 'other')",
        [],
    )
    .unwrap();
    drop(conn);

    let err = f.store.secret("mallory", "github_token").await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");
    let err = f.store.secret("alice", "other").await.unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");
    // The original row still opens.
    assert_eq!(
        f.store
            .secret("alice", "github_token")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "ghp_alice"
    );
}
