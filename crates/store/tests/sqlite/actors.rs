use patchbay_store::StoreError;

use crate::fixture;

#[tokio::test]
async fn add_list_get_disable_enable() {
    let f = fixture();
    let alice = f
        .store
        .add_actor("alice", &["dev".into(), "ops".into(), "dev".into()])
        .await
        .unwrap();
    assert_eq!(alice.roles, ["dev", "ops"]);
    assert!(!alice.disabled);
    f.store.add_actor("bob@example.com", &[]).await.unwrap();

    let names: Vec<_> = f
        .store
        .actors()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alice", "bob@example.com"]);

    let disabled = f.store.disable_actor("alice").await.unwrap();
    assert!(disabled.disabled);
    assert!(f.store.actor("alice").await.unwrap().unwrap().disabled);
    assert!(!f.store.enable_actor("alice").await.unwrap().disabled);
    assert_eq!(f.store.actor("carol").await.unwrap(), None);
}

#[tokio::test]
async fn errors_are_clear() {
    let f = fixture();
    f.store.add_actor("alice", &[]).await.unwrap();
    let err = f.store.add_actor("alice", &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::ActorExists(_)));
    assert_eq!(err.to_string(), "actor `alice` already exists");

    let err = f.store.disable_actor("carol").await.unwrap_err();
    assert_eq!(err.to_string(), "no actor named `carol`");

    for bad in ["", "has space", "a/b", &"x".repeat(129)] {
        let err = f.store.add_actor(bad, &[]).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { kind: "actor", .. }),
            "{err}"
        );
    }
    let err = f
        .store
        .add_actor("dave", &["bad role".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidName { kind: "role", .. }),
        "{err}"
    );
}
