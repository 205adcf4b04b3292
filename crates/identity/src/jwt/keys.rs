//! Verification keys, each pinned to one algorithm: from configuration (PEM, shared secret) or
//! from a JWKS entry.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    VerificationAlgorithm,
};
use jsonwebtoken::{
    DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};

use crate::{
    config::{JwtAlgorithm, JwtKeyConfig},
    pem,
};

/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash's size).
const MIN_SECRET_LEN: usize = 32;

/// A key that verifies tokens of exactly one algorithm.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    /// When set, only tokens whose header names this `kid` are checked against the key.
    pub kid: Option<String>,
    pub alg: JwtAlgorithm,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether a token with header `alg` and `kid` may be checked against this key.
    pub(crate) fn fits(&self, alg: JwtAlgorithm, kid: Option<&str>) -> bool {
        self.alg == alg
            && match (&self.kid, kid) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }
}

fn public_algorithm(alg: JwtAlgorithm) -> Option<&'static dyn VerificationAlgorithm> {
    match alg {
        JwtAlgorithm::RS256 => Some(&RSA_PKCS1_2048_8192_SHA256),
        JwtAlgorithm::ES256 => Some(&ECDSA_P256_SHA256_FIXED),
        JwtAlgorithm::EdDSA => Some(&ED25519),
        JwtAlgorithm::HS256 => None,
    }
}

/// Builds a key from an `[[auth.jwt.keys]]` entry. Errors are messages for a [`crate::ConfigError`].
pub(crate) fn from_config(config: &JwtKeyConfig) -> Result<VerifyKey, String> {
    let sources = [
        config.pem.is_some(),
        config.pem_file.is_some(),
        config.secret.is_some(),
        config.secret_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err("a key needs exactly one of `pem`, `pem_file`, `secret`, `secret_file`".into());
    }
    let kid = config.kid.clone();
    let which = kid
        .as_deref()
        .map(|k| format!("key `{k}`"))
        .unwrap_or_else(|| "a key".into());

    if config.secret.is_some() || config.secret_file.is_some() {
        if let Some(alg) = config.algorithm.filter(|a| *a != JwtAlgorithm::HS256) {
            return Err(format!(
                "{which}: a shared secret can only verify HS256, not {alg}"
            ));
        }
        let secret = match (&config.secret, &config.secret_file) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| format!("{which}: cannot read {}: {e}", path.display()))?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                bytes
            }
            (None, None) => unreachable!("checked above"),
        };
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "{which}: an HS256 secret must be at least {MIN_SECRET_LEN} bytes"
            ));
        }
        return Ok(VerifyKey {
            kid,
            alg: JwtAlgorithm::HS256,
            key: DecodingKey::from_secret(&secret),
        });
    }

    let text = match (&config.pem, &config.pem_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{which}: cannot read {}: {e}", path.display()))?,
        (None, None) => unreachable!("checked above"),
    };
    let block = pem::decode(&text).map_err(|e| format!("{which}: {e}"))?;
    match block.label.as_str() {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        label if label.contains("PRIVATE") => {
            return Err(format!(
                "{which}: this is a private key; configure the public key"
            ));
        }
        label => {
            return Err(format!(
                "{which}: expected a `PUBLIC KEY` PEM block, found `{label}`"
            ));
        }
    }
    let alg = match config.algorithm {
        Some(JwtAlgorithm::HS256) => {
            return Err(format!(
                "{which}: a public key cannot verify HS256 (algorithm confusion)"
            ));
        }
        Some(alg) => public_algorithm(alg)
            .and_then(|v| ParsedPublicKey::new(v, &block.der).ok())
            .map(|_| alg)
            .ok_or_else(|| format!("{which}: not a public key usable with {alg}"))?,
        None => [
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ]
        .into_iter()
        .find(|alg| {
            public_algorithm(*alg).is_some_and(|v| ParsedPublicKey::new(v, &block.der).is_ok())
        })
        .ok_or_else(|| {
            format!("{which}: not an RSA (2048-8192 bits), P-256 or Ed25519 public key")
        })?,
    };
    let key = match alg {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_der(&block.der),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_der(&block.der),
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_der(&block.der),
        JwtAlgorithm::HS256 => unreachable!("refused above"),
    };
    Ok(VerifyKey { kid, alg, key })
}

/// Builds a key from one JWKS entry; `None` for entries Patchbay does not use (encryption
/// keys, symmetric keys, other curves and algorithms), so one odd key never spoils the set.
pub(crate) fn from_jwk(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let declared = match &jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(JwtAlgorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(JwtAlgorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(JwtAlgorithm::EdDSA),
        Some(_) => return None,
    };
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => JwtAlgorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            JwtAlgorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            JwtAlgorithm::EdDSA
        }
        _ => return None,
    };
    if declared.is_some_and(|d| d != by_type) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg: by_type,
        key,
    })
}
