//! Vendor bindings: the hub key is created on first use (0600), binding tokens verify,
//! carry actor and vendor, and fail as Revoked once the binding is revoked.

use std::{sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patchbay_identity::{
    AuthError, Authenticator, BINDING_AUDIENCE, BINDING_ISSUER, BindingError, Credential,
    MemoryTokenLookup, TokenLookup,
};
use serde_json::json;

use crate::common::*;

fn hub(path: &std::path::Path, lookup: &MemoryTokenLookup) -> Authenticator {
    let shared: Arc<dyn TokenLookup> = Arc::new(lookup.clone());
    authenticator(&format!("hub_key = \"{}\"", path.display()), Some(shared))
}

#[tokio::test]
async fn mint_verify_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("state/keys/hub-key.pem");
    let lookup = MemoryTokenLookup::new();
    let auth = hub(&key, &lookup);
    assert!(auth.has_hub_key());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "hub key mode {mode:o}");
    }
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));

    lookup.add_binding("bnd-1");
    let token = auth
        .mint_binding("alice", "xiaozhi", "bnd-1", Some(Duration::from_secs(3600)))
        .unwrap();
    let identity = auth.authenticate(&token).await.unwrap();
    assert_eq!(identity.actor, "alice");
    assert_eq!(identity.vendor.as_deref(), Some("xiaozhi"));
    assert_eq!(
        identity.credential,
        Credential::Binding { id: "bnd-1".into() }
    );

    // A second hub process on the same key file accepts the same binding.
    let again = hub(&key, &lookup);
    again.authenticate(&token).await.unwrap();

    // Without a TTL the binding lasts until revoked.
    lookup.add_binding("bnd-2");
    let forever = auth
        .mint_binding("alice", "speaker", "bnd-2", None)
        .unwrap();
    auth.authenticate(&forever).await.unwrap();

    assert!(lookup.revoke_binding("bnd-1"));
    assert_eq!(reject(&auth, &token).await, AuthError::Revoked);
    auth.authenticate(&forever).await.unwrap();

    // A binding the store never heard of counts as revoked.
    let unknown = auth
        .mint_binding("alice", "xiaozhi", "bnd-9", None)
        .unwrap();
    assert_eq!(reject(&auth, &unknown).await, AuthError::Revoked);
}

#[tokio::test]
async fn bindings_are_checked_like_any_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("hub-key.pem");
    let lookup = MemoryTokenLookup::new();
    lookup.add_binding("b");
    let auth = hub(&key, &lookup);

    // Sign with the hub key directly to make tokens mint_binding would not.
    let text = std::fs::read_to_string(&key).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let pkcs8 = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    let hub_key = EncodingKey::from_ed_der(&pkcs8);
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &hub_key).unwrap()
    };
    let base = |extra: serde_json::Value| {
        let mut c = json!({
            "iss": BINDING_ISSUER, "aud": BINDING_AUDIENCE, "sub": "alice",
            "vendor": "xiaozhi", "bid": "b", "iat": now(), "exp": now() + 600,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    auth.authenticate(&sign(base(json!({})))).await.unwrap();
    assert_eq!(
        reject(&auth, &sign(base(json!({"exp": now() - 3600})))).await,
        AuthError::Expired
    );
    assert_eq!(
        reject(&auth, &sign(base(json!({"aud": "patchbay"})))).await,
        AuthError::WrongAudience
    );
    assert!(matches!(
        reject(&auth, &sign(base(json!({"bid": ""})))).await,
        AuthError::Invalid(_)
    ));

    // `iss: patchbay` signed by any other key is refused.
    let claims = base(json!({}));
    for forged in [
        ed().sign(&claims),
        rsa().sign(&claims),
        hs(HS_SECRET.as_bytes()).sign(&claims),
    ] {
        assert!(matches!(
            reject(&auth, &forged).await,
            AuthError::Invalid(_)
        ));
    }
    // So is one from another hub's key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = hub(&other_dir.path().join("k.pem"), &lookup);
    let foreign = other.mint_binding("alice", "xiaozhi", "b", None).unwrap();
    assert!(matches!(
        reject(&auth, &foreign).await,
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn without_a_hub_key() {
    let auth = Authenticator::new(&Default::default(), None).unwrap();
    assert!(!auth.has_hub_key());
    assert!(matches!(
        auth.mint_binding("a", "v", "b", None),
        Err(BindingError::NoHubKey)
    ));
    let dir = tempfile::tempdir().unwrap();
    let lookup = MemoryTokenLookup::new();
    lookup.add_binding("b");
    let token = hub(&dir.path().join("k.pem"), &lookup)
        .mint_binding("a", "v", "b", None)
        .unwrap();
    assert!(matches!(reject(&auth, &token).await, AuthError::Invalid(_)));
    assert!(matches!(
        hub(&dir.path().join("k.pem"), &lookup).mint_binding("", "v", "b", None),
        Err(BindingError::Invalid(_))
    ));
}

#[test]
fn an_openssl_ed25519_key_works_as_hub_key_and_junk_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.pem");
    std::fs::copy(key_path("ed.key"), &path).unwrap();
    let lookup = MemoryTokenLookup::new();
    hub(&path, &lookup)
        .mint_binding("a", "v", "b", None)
        .unwrap();

    std::fs::copy(key_path("ec.key"), &path).unwrap();
    let error = Authenticator::new(&config(&format!("hub_key = \"{}\"", path.display())), None)
        .unwrap_err();
    assert!(error.to_string().contains("Ed25519"), "{error}");
}
