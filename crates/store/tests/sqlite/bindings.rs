use std::time::Duration;

use patchbay_store::StoreError;

use crate::fixture;

#[tokio::test]
async fn create_get_list_revoke() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    f.store.add_actor("bob", &[]).await.unwrap();
    let b = f
        .store
        .create_binding("alice", "xiaozhi", Some(Duration::from_secs(86_400)))
        .await
        .unwrap();
    assert!(b.id.starts_with("bnd_") && b.id.len() == 12, "{}", b.id);
    assert_eq!((b.actor.as_str(), b.vendor.as_str()), ("alice", "xiaozhi"));
    f.store
        .create_binding("bob", "speaker", None)
        .await
        .unwrap();

    assert_eq!(f.store.binding(&b.id).await.unwrap().as_ref(), Some(&b));
    let (active, actor) = f.store.active_binding(&b.id).await.unwrap().unwrap();
    assert_eq!(
        (active.id.as_str(), actor.name.as_str()),
        (b.id.as_str(), "alice")
    );
    assert_eq!(
        f.store.bindings(Some("alice")).await.unwrap(),
        std::slice::from_ref(&b)
    );
    assert_eq!(f.store.bindings(None).await.unwrap().len(), 2);

    let revoked = f.store.revoke_binding(&b.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(f.store.active_binding(&b.id).await.unwrap().is_none());
    // Still listed, with its revocation time.
    assert_eq!(f.store.binding(&b.id).await.unwrap(), Some(revoked));

    let err = f.store.revoke_binding("bnd_x").await.unwrap_err();
    assert!(matches!(err, StoreError::NoBinding(_)));
    assert_eq!(err.to_string(), "no binding with id `bnd_x`");
    assert_eq!(f.store.binding("bnd_x").await.unwrap(), None);
}

#[tokio::test]
async fn expired_or_disabled_bindings_are_inactive() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let short = f
        .store
        .create_binding("alice", "xiaozhi", Some(Duration::from_millis(1)))
        .await
        .unwrap();
    let long = f
        .store
        .create_binding("alice", "xiaozhi", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(f.store.active_binding(&short.id).await.unwrap().is_none());
    assert!(f.store.active_binding(&long.id).await.unwrap().is_some());
    f.store.disable_actor("alice").await.unwrap();
    assert!(f.store.active_binding(&long.id).await.unwrap().is_none());

    let err = f
        .store
        .create_binding("alice", "bad vendor", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidName { kind: "vendor", .. }),
        "{err}"
    );
    let err = f
        .store
        .create_binding("ghost", "xiaozhi", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoActor(_)), "{err}");
}
