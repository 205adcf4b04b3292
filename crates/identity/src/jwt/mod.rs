//! JWTs from configured issuers: routing by `iss`, keys pinned to one algorithm each, claim
//! checks and claim mapping.

pub(crate) mod claims;
pub(crate) mod jwks;
pub(crate) mod keys;

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use self::{
    jwks::{Jwks, Source},
    keys::VerifyKey,
};
use crate::{
    AuthError, ConfigError, Credential, Identity,
    config::{JwtAlgorithm, JwtIssuerConfig},
};

/// Whether `token` has the shape of a compact JWS: three dot-separated base64url parts, the
/// first two non-empty (the third is empty for `alg: none`, which is then refused by name).
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What can be read from a JWT before its signature is checked: only used to choose how to
/// check it (never trusted).
pub(crate) struct Unverified {
    pub alg: JwtAlgorithm,
    pub kid: Option<String>,
    pub iss: Option<String>,
}

fn decode_part(part: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::invalid("malformed token"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::invalid("malformed token")),
    }
}

/// Reads the header's `alg` and `kid` and the payload's `iss`, refusing unsigned tokens and
/// algorithms Patchbay does not verify.
pub(crate) fn peek(token: &str) -> Result<Unverified, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return Err(AuthError::invalid("malformed token"));
    };
    let header = decode_part(header)?;
    let payload = decode_part(payload)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(AuthError::invalid("the token header has no `alg`")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(AuthError::invalid(
                "unsigned tokens (`alg: none`) are not accepted",
            ));
        }
        Some(alg) => JwtAlgorithm::from_header(alg).ok_or_else(|| {
            AuthError::invalid("unsupported algorithm (accepted: RS256, ES256, EdDSA, HS256)")
        })?,
    };
    Ok(Unverified {
        alg,
        kid: header.get("kid").and_then(Value::as_str).map(str::to_owned),
        iss: payload
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Maps a `jsonwebtoken` failure to a client-safe [`AuthError`].
pub(crate) fn map_error(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidSignature => AuthError::invalid("bad signature"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            AuthError::invalid("the algorithm does not match the key")
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" | "iss" | "aud" | "sub" | "nbf" => {
                AuthError::Invalid(format!("the token has no `{claim}` claim"))
            }
            _ => AuthError::invalid("a required claim is missing"),
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "exp" | "nbf" => AuthError::Invalid(format!("the `{claim}` claim is not a number")),
            _ => AuthError::invalid("a claim has the wrong type"),
        },
        _ => AuthError::invalid("malformed token"),
    }
}

/// Checks `token` against `key` (already known to fit its algorithm), returning its claims.
pub(crate) fn decode(
    token: &str,
    key: &VerifyKey,
    validation: &Validation,
) -> Result<Map<String, Value>, jsonwebtoken::errors::Error> {
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation).map(|data| data.claims)
}

/// The `jsonwebtoken` algorithm for ours.
pub(crate) fn jwt_algorithm(alg: JwtAlgorithm) -> jsonwebtoken::Algorithm {
    match alg {
        JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        JwtAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        JwtAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        JwtAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
    }
}

/// One `[[auth.jwt]]` issuer, ready to verify.
pub(crate) struct Issuer {
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<JwtAlgorithm>,
    keys: Vec<VerifyKey>,
    jwks: Option<Arc<Jwks>>,
    leeway: u64,
    actor_claim: String,
    actor_prefix: String,
    vendor_claim: Option<String>,
    roles_claim: Option<String>,
}

impl Issuer {
    pub(crate) fn new(config: &JwtIssuerConfig) -> Result<Self, ConfigError> {
        let fail = |message: String| ConfigError::Jwt {
            issuer: config.issuer.clone(),
            message,
        };
        if config.issuer.is_empty() {
            return Err(fail("the issuer is empty".into()));
        }
        if config.issuer == crate::binding::BINDING_ISSUER {
            return Err(fail(format!(
                "the issuer `{}` is reserved for this hub's binding tokens",
                crate::binding::BINDING_ISSUER
            )));
        }
        let audience = config.audience.to_vec();
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(fail("`audience` needs at least one non-empty value".into()));
        }
        if config.algorithms.is_empty() {
            return Err(fail("`algorithms` is empty".into()));
        }
        if config.actor_claim.is_empty() {
            return Err(fail("`actor_claim` is empty".into()));
        }
        let keys = config
            .keys
            .iter()
            .map(keys::from_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        if let Some(key) = keys.iter().find(|k| !config.algorithms.contains(&k.alg)) {
            return Err(fail(format!(
                "a key verifies {} but `algorithms` does not allow it",
                key.alg
            )));
        }
        let jwks = match &config.jwks {
            None => None,
            Some(location) => {
                let source = Source::parse(location).map_err(&fail)?;
                Some(Arc::new(
                    Jwks::new(
                        &config.issuer,
                        source,
                        config.jwks_refresh,
                        config.jwks_timeout,
                    )
                    .map_err(&fail)?,
                ))
            }
        };
        if keys.is_empty() && jwks.is_none() {
            return Err(fail("no keys: set `keys`, `jwks` or both".into()));
        }
        Ok(Self {
            issuer: config.issuer.clone(),
            audience,
            algorithms: config.algorithms.clone(),
            keys,
            jwks,
            leeway: config.leeway.as_secs(),
            actor_claim: config.actor_claim.clone(),
            actor_prefix: config.actor_prefix.clone(),
            vendor_claim: config.vendor_claim.clone(),
            roles_claim: config.roles_claim.clone(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.issuer
    }

    #[cfg(test)]
    pub(crate) fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    fn validation(&self, alg: JwtAlgorithm) -> Validation {
        let mut validation = Validation::new(jwt_algorithm(alg));
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation
    }

    /// Verifies a token whose unverified `iss` named this issuer.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
        unverified: &Unverified,
    ) -> Result<Identity, AuthError> {
        let alg = unverified.alg;
        if !self.algorithms.contains(&alg) {
            return Err(AuthError::invalid(
                "this issuer's tokens may not use that algorithm",
            ));
        }
        let kid = unverified.kid.as_deref();
        let mut candidates: Vec<VerifyKey> = self
            .keys
            .iter()
            .filter(|k| k.fits(alg, kid))
            .cloned()
            .collect();
        if let Some(jwks) = &self.jwks {
            let mut published = jwks.keys().await.ok();
            let known_kid = |keys: &[VerifyKey]| {
                kid.is_none_or(|kid| keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
            };
            let kid_known_here =
                kid.is_some_and(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            if !kid_known_here
                && !published.as_deref().is_some_and(|keys| known_kid(keys))
                && let Some(fresh) = jwks.refresh_for_unknown_kid().await
            {
                published = Some(fresh);
            }
            match published {
                Some(keys) => candidates.extend(keys.iter().filter(|k| k.fits(alg, kid)).cloned()),
                None if candidates.is_empty() => return Err(AuthError::Unavailable),
                None => {}
            }
        }
        if candidates.is_empty() {
            return Err(AuthError::invalid(
                "no key of this issuer matches the token's `kid` and algorithm",
            ));
        }
        let validation = self.validation(alg);
        for key in &candidates {
            match decode(token, key, &validation) {
                Ok(claims) => return self.identity(&claims),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(map_error(&e)),
            }
        }
        Err(AuthError::invalid("bad signature"))
    }

    /// Maps verified claims to an identity by this issuer's configuration.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let actor = claims::find(claims, &self.actor_claim)
            .and_then(claims::as_text)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the `{}` claim naming the actor is missing or empty",
                    self.actor_claim
                ))
            })?;
        let vendor = match &self.vendor_claim {
            None => None,
            Some(name) => match claims::find(claims, name) {
                None | Some(Value::Null) => None,
                Some(value) => Some(claims::as_text(value).ok_or_else(|| {
                    AuthError::Invalid(format!("the `{name}` claim is not a string"))
                })?),
            }
            .filter(|v| !v.is_empty()),
        };
        let roles = match &self.roles_claim {
            None => Vec::new(),
            Some(name) => match claims::find(claims, name) {
                None | Some(Value::Null) => Vec::new(),
                Some(value) => claims::as_list(value).ok_or_else(|| {
                    AuthError::Invalid(format!(
                        "the `{name}` claim is neither a list of strings nor a space-separated string"
                    ))
                })?,
            },
        };
        let subject = claims
            .get("sub")
            .and_then(claims::as_text)
            .unwrap_or_default();
        Ok(Identity {
            actor: format!("{}{actor}", self.actor_prefix),
            vendor,
            roles,
            credential: Credential::Jwt {
                issuer: self.issuer.clone(),
                subject,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(looks_like_jwt("eyJh.eyJz."));
        assert!(!looks_like_jwt("eyJh.eyJz"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".eyJz.c2ln"));
        assert!(!looks_like_jwt("ey+h.eyJz.c2ln"));
        assert!(!looks_like_jwt("pb_abcdef"));
    }

    #[test]
    fn peek_refuses_none() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        let err = peek(&format!("{header}.{payload}.")).err().unwrap();
        assert!(err.to_string().contains("alg: none"), "{err}");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","kid":"k"}"#);
        assert!(peek(&format!("{header}.{payload}.x")).is_err());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#);
        let ok = peek(&format!("{header}.{payload}.x")).unwrap();
        assert_eq!(ok.alg, JwtAlgorithm::ES256);
        assert_eq!(ok.kid.as_deref(), Some("k"));
        assert_eq!(ok.iss.as_deref(), Some("x"));
    }
}
