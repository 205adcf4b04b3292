use std::time::Duration;

use patchbay_store::{SecretString, StoreError, looks_like_token};

use crate::{Fixture, fixture};

/// Whether `secret` verifies now.
async fn verifies(f: &Fixture, secret: &SecretString) -> bool {
    f.store
        .verify_token(secret.expose())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn issue_then_verify() {
    let f = fixture();
    f.store.add_actor("alice", &["dev".into()]).await.unwrap();
    let (info, secret) = f
        .store
        .issue_token("alice", Some(Duration::from_secs(3600)), Some("laptop"))
        .await
        .unwrap();
    assert!(
        info.id.starts_with("tok_") && info.id.len() == 12,
        "{}",
        info.id
    );
    assert!(secret.expose().starts_with("pb_") && secret.expose().len() == 46);
    assert!(looks_like_token(secret.expose()));
    assert_eq!(info.label.as_deref(), Some("laptop"));
    assert!(info.expires_at.unwrap() > info.created_at);
    assert!(!format!("{secret:?}").contains(secret.expose()));

    let (found, actor) = f
        .store
        .verify_token(secret.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, info.id);
    assert_eq!(actor.name, "alice");
    assert_eq!(actor.roles, ["dev"]);
    assert!(found.last_used_at.is_some());

    // Listing never shows secrets; it shows the token, with its last use.
    let listed = f.store.tokens(Some("alice")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, found.last_used_at);
    assert!(f.store.tokens(Some("bob")).await.unwrap().is_empty());
    assert_eq!(f.store.tokens(None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_secret_is_unknown() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let (_, secret) = f.store.issue_token("alice", None, None).await.unwrap();
    let mut wrong = secret.expose().to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    assert!(f.store.verify_token(&wrong).await.unwrap().is_none());
    assert!(f.store.verify_token("").await.unwrap().is_none());
    assert!(f.store.verify_token("pb_").await.unwrap().is_none());
}

#[tokio::test]
async fn revoked_token_stops_verifying() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let (info, secret) = f.store.issue_token("alice", None, None).await.unwrap();
    assert!(verifies(&f, &secret).await);
    let revoked = f.store.revoke_token(&info.id).await.unwrap();
    let first = revoked.revoked_at.unwrap();
    assert!(!verifies(&f, &secret).await);
    // Revoking again keeps the first time.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        f.store.revoke_token(&info.id).await.unwrap().revoked_at,
        Some(first)
    );

    let err = f.store.revoke_token("tok_x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoToken(_)));
    assert_eq!(err.to_string(), "no token with id `tok_x`");
}

#[tokio::test]
async fn expired_token_stops_verifying() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let (_, secret) = f
        .store
        .issue_token("alice", Some(Duration::from_millis(1)), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!verifies(&f, &secret).await);
}

#[tokio::test]
async fn disabled_actor_token_stops_verifying_and_returns_when_enabled() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let (_, secret) = f.store.issue_token("alice", None, None).await.unwrap();
    f.store.disable_actor("alice").await.unwrap();
    assert!(!verifies(&f, &secret).await);
    f.store.enable_actor("alice").await.unwrap();
    assert!(verifies(&f, &secret).await);
}

#[tokio::test]
async fn tokens_need_a_known_actor() {
    let f = fixture();
    let err = f.store.issue_token("ghost", None, None).await.unwrap_err();
    assert_eq!(err.to_string(), "no actor named `ghost`");
}
