//! JWTs from configured issuers: each algorithm accepted with its claims mapped; every kind of
//! bad token refused.

use patchbay_identity::{AuthError, Authenticator, ConfigError, Credential};
use serde_json::json;

use crate::common::*;

/// An issuer with one key of each algorithm, mapping agentkeys claims.
fn agentkeys_issuer() -> Authenticator {
    let keys = [
        pem_key("rsa.pub", ""),
        pem_key("ec.pub", ""),
        pem_key("ed.pub", ""),
        format!("[[jwt.keys]]\nsecret = \"{HS_SECRET}\"\n"),
    ]
    .concat();
    authenticator(
        &issuer_toml(
            &keys,
            r#"actor_claim = "agentkeys.omni_account"
vendor_claim = "agentkeys.vendor"
roles_claim = "scope""#,
        ),
        None,
    )
}

/// An issuer with the RSA key only, default claim mapping.
fn rsa_issuer() -> Authenticator {
    authenticator(&issuer_toml(&pem_key("rsa.pub", ""), ""), None)
}

#[tokio::test]
async fn each_algorithm_is_accepted_with_claims_mapped() {
    let auth = agentkeys_issuer();
    let signers = [rsa(), ec(), ed(), hs(HS_SECRET.as_bytes())];
    for (i, signer) in signers.into_iter().enumerate() {
        // Literal dotted keys for some, nested objects for the others.
        let token = if i % 2 == 0 {
            signer.sign(&claims(json!({
                "agentkeys.omni_account": format!("omni-{i}"),
                "agentkeys.vendor": "xiaozhi",
                "scope": "tools:read tools:call",
            })))
        } else {
            signer.sign(&claims(json!({
                "agentkeys": {"omni_account": format!("omni-{i}"), "vendor": "xiaozhi"},
                "scope": ["tools:read", "tools:call"],
            })))
        };
        let identity = auth
            .authenticate(&token)
            .await
            .unwrap_or_else(|e| panic!("{:?} refused: {e}", signer.alg));
        assert_eq!(identity.actor, format!("omni-{i}"));
        assert_eq!(identity.vendor.as_deref(), Some("xiaozhi"));
        assert_eq!(identity.roles, vec!["tools:read", "tools:call"]);
        assert_eq!(
            identity.credential,
            Credential::Jwt {
                issuer: ISS.into(),
                subject: "alice".into()
            }
        );
    }
}

#[tokio::test]
async fn default_mapping_uses_sub_and_a_prefix() {
    let auth = authenticator(
        &issuer_toml(
            &pem_key("ed.pub", ""),
            r#"actor_prefix = "idp:"
roles_claim = "roles""#,
        ),
        None,
    );
    let identity = auth
        .authenticate(&ed().sign(&claims(json!({"roles": ["admin"]}))))
        .await
        .unwrap();
    assert_eq!(identity.actor, "idp:alice");
    assert_eq!(identity.vendor, None);
    assert!(identity.has_role("admin"));
}

#[tokio::test]
async fn missing_actor_claim_is_refused() {
    let auth = agentkeys_issuer();
    let error = reject(&auth, &rsa().sign(&claims(json!({"agentkeys": {}})))).await;
    assert!(
        matches!(&error, AuthError::Invalid(m) if m.contains("agentkeys.omni_account")),
        "{error}"
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid() {
    let auth = rsa_issuer();
    let expired = rsa().sign(&claims(json!({"exp": now() - 3600})));
    assert_eq!(reject(&auth, &expired).await, AuthError::Expired);
    let future = rsa().sign(&claims(json!({"nbf": now() + 3600})));
    assert_eq!(reject(&auth, &future).await, AuthError::NotYetValid);
    // Within the default 60 s leeway both pass.
    let slightly = rsa().sign(&claims(json!({"exp": now() - 20, "nbf": now() + 20})));
    auth.authenticate(&slightly).await.unwrap();
    // A token without `exp` is refused.
    let forever = rsa().sign(&claims(json!({"exp": null})));
    assert!(matches!(
        reject(&auth, &forever).await,
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn leeway_is_configurable() {
    let auth = authenticator(
        &issuer_toml(&pem_key("rsa.pub", ""), "leeway = \"0s\""),
        None,
    );
    let just_expired = rsa().sign(&claims(json!({"exp": now() - 5})));
    assert_eq!(reject(&auth, &just_expired).await, AuthError::Expired);
}

#[tokio::test]
async fn wrong_issuer_and_wrong_audience() {
    let auth = rsa_issuer();
    let other_iss = rsa().sign(&claims(json!({"iss": "https://evil.example"})));
    assert_eq!(reject(&auth, &other_iss).await, AuthError::WrongIssuer);
    let no_iss = rsa().sign(&claims(json!({"iss": null})));
    assert_eq!(reject(&auth, &no_iss).await, AuthError::WrongIssuer);
    let other_aud = rsa().sign(&claims(json!({"aud": "someone-else"})));
    assert_eq!(reject(&auth, &other_aud).await, AuthError::WrongAudience);
    let listed = rsa().sign(&claims(json!({"aud": ["someone-else", AUD]})));
    auth.authenticate(&listed).await.unwrap();
    let no_aud = rsa().sign(&claims(json!({"aud": null})));
    assert!(matches!(
        reject(&auth, &no_aud).await,
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn wrong_key_is_refused() {
    let auth = rsa_issuer();
    let error = reject(&auth, &rsa2().sign(&claims(json!({})))).await;
    assert_eq!(error, AuthError::invalid("bad signature"));
    // Another issuer's key cannot speak for this one either.
    let two = authenticator(
        &format!(
            "{}\n[[jwt]]\nissuer = \"https://other.example\"\naudience = \"{AUD}\"\n{}",
            issuer_toml(&pem_key("rsa.pub", ""), ""),
            pem_key("rsa2.pub", "")
        ),
        None,
    );
    reject(&two, &rsa2().sign(&claims(json!({})))).await;
    two.authenticate(&rsa2().sign(&claims(json!({"iss": "https://other.example"}))))
        .await
        .unwrap();
}

#[tokio::test]
async fn alg_none_is_refused() {
    let auth = agentkeys_issuer();
    let payload = b64(claims(json!({"agentkeys.omni_account": "mallory"})).to_string());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#] {
        let unsigned = format!("{}.{payload}.", b64(header));
        let error = reject(&auth, &unsigned).await;
        assert!(
            matches!(&error, AuthError::Invalid(m) if m.contains("alg: none")),
            "{error}"
        );
        // With a signature part that is not empty, too.
        let error = reject(&auth, &format!("{}.{payload}.c2ln", b64(header))).await;
        assert!(
            matches!(&error, AuthError::Invalid(m) if m.contains("alg: none")),
            "{error}"
        );
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm confusion: an attacker signs HS256 with the (public) RSA key as
    // the HMAC secret, hoping the verifier feeds the same key bytes to HMAC.
    let auth = rsa_issuer();
    let pem_text = read_key("rsa.pub");
    for secret in [pem_text.as_bytes().to_vec(), der("rsa.pub")] {
        let forged = hs(&secret).sign(&claims(json!({})));
        assert_eq!(
            reject(&auth, &forged).await,
            AuthError::invalid("no key of this issuer matches the token's `kid` and algorithm")
        );
    }
    // Even when the issuer also has an HS256 key, the RSA key never checks an HS256 token.
    let mixed = authenticator(
        &issuer_toml(
            &format!(
                "{}[[jwt.keys]]\nsecret = \"{HS_SECRET}\"\n",
                pem_key("rsa.pub", "")
            ),
            "",
        ),
        None,
    );
    let forged = hs(pem_text.as_bytes()).sign(&claims(json!({})));
    assert_eq!(
        reject(&mixed, &forged).await,
        AuthError::invalid("bad signature")
    );
    // And the configuration refuses to pin a public key to HS256.
    let error = Authenticator::new(
        &config(&issuer_toml(
            &pem_key("rsa.pub", "algorithm = \"HS256\""),
            "",
        )),
        None,
    )
    .unwrap_err();
    assert!(matches!(error, ConfigError::Jwt { .. }), "{error}");
}

#[tokio::test]
async fn algorithm_is_pinned_per_key_and_per_issuer() {
    // The RSA key pinned to RS256 never verifies an ES256 token, even one signed by an EC
    // key the issuer also holds under another kid.
    let auth = authenticator(
        &issuer_toml(
            &format!(
                "{}{}",
                pem_key("rsa.pub", "kid = \"r\"\nalgorithm = \"RS256\""),
                pem_key("ec.pub", "kid = \"e\"")
            ),
            "",
        ),
        None,
    );
    auth.authenticate(&ec().with_kid("e").sign(&claims(json!({}))))
        .await
        .unwrap();
    reject(&auth, &ec().with_kid("r").sign(&claims(json!({})))).await;
    reject(&auth, &rsa().with_kid("e").sign(&claims(json!({})))).await;
    // An issuer limited to EdDSA refuses RS256 tokens before looking at keys.
    let ed_only = authenticator(
        &issuer_toml(&pem_key("ed.pub", ""), "algorithms = [\"EdDSA\"]"),
        None,
    );
    reject(&ed_only, &rsa().sign(&claims(json!({})))).await;
    // A key whose PEM is not of the pinned algorithm is a configuration error.
    assert!(
        Authenticator::new(
            &config(&issuer_toml(
                &pem_key("ec.pub", "algorithm = \"RS256\""),
                ""
            )),
            None
        )
        .is_err()
    );
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let auth = agentkeys_issuer();
    for signer in [rsa(), ec(), ed(), hs(HS_SECRET.as_bytes())] {
        let token = signer.sign(&claims(json!({"agentkeys.omni_account": "alice"})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = b64(claims(json!({"agentkeys.omni_account": "root"})).to_string());
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        let error = reject(&auth, &tampered).await;
        assert_eq!(
            error,
            AuthError::invalid("bad signature"),
            "{:?}",
            signer.alg
        );
        // A flipped signature byte too.
        let mut sig = parts[2].to_owned();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        sig.replace_range(0..1, flipped);
        reject(&auth, &format!("{}.{}.{sig}", parts[0], parts[1])).await;
    }
}

#[tokio::test]
async fn inline_pem_and_pkcs1_rsa_keys_work() {
    let inline = format!(
        "[[jwt.keys]]\npem = \"\"\"\n{}\"\"\"\n{}",
        read_key("ec.pub"),
        pem_key("rsa.pkcs1.pub", "")
    );
    let auth = authenticator(&issuer_toml(&inline, ""), None);
    auth.authenticate(&ec().sign(&claims(json!({}))))
        .await
        .unwrap();
    auth.authenticate(&rsa().sign(&claims(json!({}))))
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_is_refused_without_echo() {
    let auth = rsa_issuer();
    for token in [
        "eyJub3QganNvbg.eyJub3QganNvbg.c2lnbmF0dXJl",
        "!!!.???.***",
        "a-static-looking-token-that-nobody-configured",
    ] {
        assert!(matches!(reject(&auth, token).await, AuthError::Invalid(_)));
    }
    assert_eq!(reject(&auth, "   ").await, AuthError::Missing);
    let long = "x".repeat(patchbay_identity::MAX_TOKEN_LEN + 1);
    assert!(matches!(reject(&auth, &long).await, AuthError::Invalid(_)));
}
