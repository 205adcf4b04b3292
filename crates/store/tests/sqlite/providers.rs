use patchbay_store::{PROVIDER_TOKEN_PREFIX, StoreError};

use crate::fixture;

#[tokio::test]
async fn add_verify_list_revoke() {
    let f = fixture();
    let (info, token) = f.store.add_provider("laptop-tools").await.unwrap();
    assert_eq!(info.name, "laptop-tools");
    assert!(token.expose().starts_with(PROVIDER_TOKEN_PREFIX));
    assert_eq!(token.expose().len(), PROVIDER_TOKEN_PREFIX.len() + 43);

    let found = f.store.verify_provider_token(token.expose()).await.unwrap();
    assert_eq!(found, Some(info.clone()));
    assert_eq!(
        f.store.verify_provider_token("pbp_nope").await.unwrap(),
        None
    );
    // A provider token is not an actor's token, and the other way round.
    assert!(
        f.store
            .verify_token(token.expose())
            .await
            .unwrap()
            .is_none()
    );

    let (_, other) = f.store.add_provider("b").await.unwrap();
    assert_ne!(other.expose(), token.expose());
    let names: Vec<String> = f
        .store
        .providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["b", "laptop-tools"]);

    assert_eq!(f.store.revoke_provider("laptop-tools").await.unwrap(), info);
    assert_eq!(
        f.store.verify_provider_token(token.expose()).await.unwrap(),
        None
    );
    assert_eq!(f.store.providers().await.unwrap().len(), 1);
    // The name is free again, with a new token.
    let (_, again) = f.store.add_provider("laptop-tools").await.unwrap();
    assert_ne!(again.expose(), token.expose());
}

#[tokio::test]
async fn errors_are_clear() {
    let f = fixture();
    f.store.add_provider("tools").await.unwrap();
    let err = f.store.add_provider("tools").await.unwrap_err();
    assert!(matches!(err, StoreError::ProviderExists(_)), "{err}");
    for bad in ["", "a.b", "a b", "x@y", &"a".repeat(65)] {
        let err = f.store.add_provider(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{bad}: {err}");
    }
    let err = f.store.revoke_provider("missing").await.unwrap_err();
    assert!(matches!(err, StoreError::NoProvider(_)), "{err}");
}
