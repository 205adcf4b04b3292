//! The `[auth]` section deserializes from TOML as documented, and refuses unknown fields.

use std::time::Duration;

use patchbay_identity::{AuthConfig, JwtAlgorithm, config::OneOrMany};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    auth: AuthConfig,
}

const EXAMPLE: &str = r#"
[auth]
hub_key = "/var/lib/patchbay/hub-key.pem"

[[auth.tokens]]
actor = "ci"
token = "a-long-random-string-from-your-secret-store"
roles = ["runner"]

[[auth.tokens]]
actor = "kitchen"
token = "another-long-random-string"
vendor = "xiaozhi"
label = "kitchen speaker"

[[auth.jwt]]
issuer = "https://agentkeys.example"
audience = ["patchbay", "patchbay-staging"]
algorithms = ["ES256", "EdDSA"]
jwks = "https://agentkeys.example/.well-known/jwks.json"
jwks_refresh = "5m"
jwks_timeout = "3s"
leeway = "30s"
actor_claim = "agentkeys.omni_account"
actor_prefix = "ak:"
vendor_claim = "agentkeys.vendor"
roles_claim = "scope"

[[auth.jwt]]
issuer = "https://ci.example"
audience = "patchbay"

[[auth.jwt.keys]]
kid = "2025"
algorithm = "RS256"
pem_file = "/etc/patchbay/ci-rs256.pub.pem"

[[auth.jwt.keys]]
secret_file = "/etc/patchbay/ci-hs256.secret"
"#;

#[test]
fn documented_example_parses() {
    let file: File = toml::from_str(EXAMPLE).unwrap();
    let auth = file.auth;
    assert!(auth.is_configured());
    assert_eq!(auth.tokens.len(), 2);
    assert_eq!(auth.tokens[1].vendor.as_deref(), Some("xiaozhi"));
    let ak = &auth.jwt[0];
    assert_eq!(ak.audience.to_vec(), vec!["patchbay", "patchbay-staging"]);
    assert_eq!(
        ak.algorithms,
        vec![JwtAlgorithm::ES256, JwtAlgorithm::EdDSA]
    );
    assert_eq!(ak.jwks_refresh, Duration::from_secs(300));
    assert_eq!(ak.leeway, Duration::from_secs(30));
    assert_eq!(ak.actor_claim, "agentkeys.omni_account");
    let ci = &auth.jwt[1];
    assert_eq!(ci.audience, OneOrMany::One("patchbay".into()));
    assert_eq!(ci.keys.len(), 2);
    assert_eq!(ci.keys[0].algorithm, Some(JwtAlgorithm::RS256));
    // Defaults.
    assert_eq!(ci.algorithms, JwtAlgorithm::ALL.to_vec());
    assert_eq!(ci.jwks_refresh, Duration::from_secs(600));
    assert_eq!(ci.jwks_timeout, Duration::from_secs(10));
    assert_eq!(ci.leeway, Duration::from_secs(60));
    assert_eq!(ci.actor_claim, "sub");
    assert_eq!(ci.vendor_claim, None);
    assert!(!AuthConfig::default().is_configured());
}

#[test]
fn unknown_fields_and_bad_values_are_refused() {
    for bad in [
        "[auth]\nhubkey = \"x\"",
        "[[auth.tokens]]\nactor = \"a\"\ntoken = \"0123456789abcdef\"\nrole = \"x\"",
        "[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\nleeway = \"soon\"",
        "[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"none\"]",
        "[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"HS512\"]",
        "[[auth.jwt]]\nissuer = \"i\"\n",
    ] {
        assert!(toml::from_str::<File>(bad).is_err(), "accepted: {bad}");
    }
}

#[test]
fn issuer_configuration_is_checked() {
    use patchbay_identity::Authenticator;
    let check = |text: &str| Authenticator::new(&toml::from_str(text).unwrap(), None);
    // No keys at all; reserved issuer; short HS256 secret; two key sources at once; a key
    // of an algorithm the issuer does not allow; a private key where a public one belongs.
    let private = crate::common::key_path("ed.key");
    let public = crate::common::key_path("ed.pub");
    for bad in [
        "[[jwt]]\nissuer = \"i\"\naudience = \"a\"".to_owned(),
        "[[jwt]]\nissuer = \"patchbay\"\naudience = \"a\"\njwks = \"/x\"".to_owned(),
        "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\n[[jwt.keys]]\nsecret = \"short\"".to_owned(),
        format!(
            "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\n[[jwt.keys]]\nsecret = \"{}\"\npem_file = \"{}\"",
            crate::common::HS_SECRET,
            public.display()
        ),
        format!(
            "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\n[[jwt.keys]]\npem_file = \"{}\"",
            public.display()
        ),
        format!(
            "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\n[[jwt.keys]]\npem_file = \"{}\"",
            private.display()
        ),
        "[[jwt]]\nissuer = \"i\"\naudience = []\njwks = \"/x\"".to_owned(),
        "[[jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks = \"/x\"\n[[jwt]]\nissuer = \"i\"\naudience = \"b\"\njwks = \"/y\"".to_owned(),
    ] {
        let error = check(&bad).expect_err(&bad);
        assert!(
            !error.to_string().contains("short\""),
            "the error repeats a secret: {error}"
        );
    }
}
