//! Static tokens from the configuration and stored (`pb_`) tokens through the lookup.

use std::sync::Arc;

use patchbay_identity::{
    AuthError, Authenticator, ConfigError, Credential, Identity, MemoryTokenLookup, TokenLookup,
};

use crate::common::*;

const CI_TOKEN: &str = "ci-token-0123456789abcdef";
const OPS_TOKEN: &str = "ops-token-fedcba9876543210";

fn statics() -> Authenticator {
    authenticator(
        &format!(
            r#"
[[tokens]]
actor = "ci"
token = "{CI_TOKEN}"
roles = ["runner"]

[[tokens]]
actor = "speaker"
token = "{OPS_TOKEN}"
vendor = "xiaozhi"
label = "living-room"
"#
        ),
        None,
    )
}

#[tokio::test]
async fn static_tokens() {
    let auth = statics();
    let ci = auth.authenticate(CI_TOKEN).await.unwrap();
    assert_eq!(ci.actor, "ci");
    assert_eq!(ci.roles, vec!["runner"]);
    assert_eq!(ci.vendor, None);
    assert_eq!(
        ci.credential,
        Credential::StaticToken { label: "ci".into() }
    );
    let speaker = auth.authenticate(&format!("  {OPS_TOKEN} ")).await.unwrap();
    assert_eq!(speaker.actor, "speaker");
    assert_eq!(speaker.vendor.as_deref(), Some("xiaozhi"));
    assert_eq!(
        speaker.credential,
        Credential::StaticToken {
            label: "living-room".into()
        }
    );
    for wrong in [
        "ci-token-0123456789abcdeX",
        "ci-token-0123456789abcde",
        "CI-TOKEN-0123456789ABCDEF",
    ] {
        assert_eq!(
            reject(&auth, wrong).await,
            AuthError::invalid("unknown token")
        );
    }
    assert_eq!(reject(&auth, "").await, AuthError::Missing);
}

#[test]
fn static_token_configuration_is_checked() {
    let cases = [
        ("short", "too-short"),
        ("reserved", "pb_looks_like_a_stored_token"),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
        ("spaces", "a token with spaces in it"),
    ];
    for (actor, token) in cases {
        let error = Authenticator::new(
            &config(&format!(
                "[[tokens]]\nactor = \"{actor}\"\ntoken = \"{token}\"\n"
            )),
            None,
        )
        .unwrap_err();
        assert!(matches!(error, ConfigError::StaticToken { .. }), "{error}");
        assert!(
            !error.to_string().contains(token),
            "{error} repeats the token"
        );
    }
    let twice = format!(
        "[[tokens]]\nactor = \"a\"\ntoken = \"{CI_TOKEN}\"\n[[tokens]]\nactor = \"b\"\ntoken = \"{CI_TOKEN}\"\n"
    );
    assert!(Authenticator::new(&config(&twice), None).is_err());
}

#[test]
fn static_token_debug_is_redacted() {
    let config = config(&format!(
        "[[tokens]]\nactor = \"ci\"\ntoken = \"{CI_TOKEN}\"\n"
    ));
    let shown = format!("{config:?}");
    assert!(!shown.contains(CI_TOKEN), "{shown}");
}

fn stored_identity(actor: &str, id: &str) -> Identity {
    Identity {
        actor: actor.into(),
        vendor: None,
        roles: vec!["dev".into()],
        credential: Credential::StoredToken { id: id.into() },
    }
}

#[tokio::test]
async fn stored_tokens() {
    let lookup = MemoryTokenLookup::new();
    let alice = "pb_alice_6f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let bob = "pb_bob_0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    lookup.insert_token(alice, stored_identity("alice", "tok-1"));
    lookup.insert_token(bob, stored_identity("bob", "tok-2"));
    let shared: Arc<dyn TokenLookup> = Arc::new(lookup.clone());
    let auth = Authenticator::new(&Default::default(), Some(shared)).unwrap();

    let identity = auth.authenticate(alice).await.unwrap();
    assert_eq!(identity, stored_identity("alice", "tok-1"));
    assert_eq!(
        reject(&auth, "pb_unknown_00000000000000000000").await,
        AuthError::invalid("unknown token")
    );

    assert!(lookup.revoke_token(alice));
    assert_eq!(reject(&auth, alice).await, AuthError::Revoked);

    auth.authenticate(bob).await.unwrap();
    lookup.disable_actor("bob");
    assert_eq!(reject(&auth, bob).await, AuthError::Disabled);

    // Without a store, stored tokens are unknown.
    let storeless = statics();
    assert_eq!(
        reject(&storeless, alice).await,
        AuthError::invalid("unknown token")
    );
}

#[tokio::test]
async fn a_failing_store_is_unavailable() {
    struct Down;
    impl TokenLookup for Down {
        fn verify<'a>(
            &'a self,
            _secret: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Option<Identity>, AuthError>> {
            Box::pin(async { Err(AuthError::Unavailable) })
        }
        fn binding_active<'a>(&'a self, _id: &'a str) -> futures::future::BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
    }
    let auth = Authenticator::new(&Default::default(), Some(Arc::new(Down))).unwrap();
    let error = reject(&auth, "pb_whatever_0123456789").await;
    assert_eq!(error, AuthError::Unavailable);
    assert_eq!(error.status_code(), 503);
}
