//! Shared helpers: fixture keys, signing, configuration, and a rejection check that the
//! error never repeats the token.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use patchbay_identity::{AuthConfig, AuthError, Authenticator, TokenLookup};
use serde_json::{Value, json};

pub const ISS: &str = "https://idp.example";
pub const AUD: &str = "patchbay";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

pub fn read_key(name: &str) -> String {
    std::fs::read_to_string(key_path(name)).unwrap()
}

/// The DER inside a fixture's PEM.
pub fn der(name: &str) -> Vec<u8> {
    let text = read_key(name);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs tokens with one key.
pub struct Signer {
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub kid: Option<String>,
}

impl Signer {
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.to_owned());
        self
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// RS256 with `tests/keys/rsa.key` (PKCS#1).
pub fn rsa() -> Signer {
    Signer {
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&der("rsa.key")),
        kid: None,
    }
}

/// RS256 with the other RSA key, `tests/keys/rsa2.key`.
pub fn rsa2() -> Signer {
    Signer {
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&der("rsa2.key")),
        kid: None,
    }
}

/// ES256 with `tests/keys/ec.key` (PKCS#8, P-256).
pub fn ec() -> Signer {
    Signer {
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&der("ec.key")),
        kid: None,
    }
}

/// EdDSA with `tests/keys/ed.key` (PKCS#8, Ed25519).
pub fn ed() -> Signer {
    Signer {
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(&der("ed.key")),
        kid: None,
    }
}

pub const HS_SECRET: &str = "an-hs256-shared-secret-of-at-least-32-bytes";

/// HS256 with `secret`.
pub fn hs(secret: &[u8]) -> Signer {
    Signer {
        alg: Algorithm::HS256,
        key: EncodingKey::from_secret(secret),
        kid: None,
    }
}

/// Standard claims (`iss`, `aud`, `sub`, `iat`, `exp` in ten minutes), with `extra` merged
/// in; a `null` in `extra` removes that claim.
pub fn claims(extra: Value) -> Value {
    let mut base = json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 600,
    });
    let map = base.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base
}

pub fn config(toml_text: &str) -> AuthConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad test config: {e}\n{toml_text}"))
}

pub fn authenticator(toml_text: &str, lookup: Option<Arc<dyn TokenLookup>>) -> Authenticator {
    Authenticator::new(&config(toml_text), lookup).unwrap()
}

/// `[[jwt]]` for [`ISS`] with the given key lines and extra settings.
pub fn issuer_toml(keys: &str, extra: &str) -> String {
    format!(
        r#"
[[jwt]]
issuer = "{ISS}"
audience = "{AUD}"
{extra}
{keys}
"#
    )
}

/// One `[[jwt.keys]]` entry for a fixture public key file.
pub fn pem_key(file: &str, more: &str) -> String {
    format!(
        "[[jwt.keys]]\npem_file = \"{}\"\n{more}\n",
        key_path(file).display()
    )
}

/// Authenticates `token`, expecting a refusal, and checks that neither the error's message
/// nor its `WWW-Authenticate` value repeats the token or any of its parts.
pub async fn reject(auth: &Authenticator, token: &str) -> AuthError {
    let error = auth
        .authenticate(token)
        .await
        .expect_err("the token should be refused");
    let shown = [
        error.to_string(),
        error.www_authenticate(),
        format!("{error:?}"),
    ];
    for text in shown.iter().filter(|_| token.trim().len() >= 4) {
        assert!(!text.contains(token), "`{text}` repeats the token");
        for part in token.split('.').filter(|p| p.len() >= 8) {
            assert!(!text.contains(part), "`{text}` repeats part of the token");
        }
    }
    error
}
