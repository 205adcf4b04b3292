//! Why a credential was refused ([`AuthError`]), and why an [`crate::Authenticator`] could not be
//! built from its configuration ([`ConfigError`]) or could not mint a binding ([`BindingError`]).

use std::path::PathBuf;

/// Why a presented credential was refused.
///
/// Every message is safe to show the client: it never contains the token or any part of it,
/// nor a secret from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented.
    #[error("no credentials were presented")]
    Missing,
    /// The credential is not one this hub accepts: unknown token, bad signature, malformed
    /// token, algorithm not allowed, missing claim. The reason is a fixed text (it may name a
    /// claim from the configuration, never a value from the token).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The credential's expiry (`exp`, or the stored token's TTL) has passed.
    #[error("the token has expired")]
    Expired,
    /// The credential's `nbf` is still in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The JWT's `iss` is not a configured issuer, or does not match the one whose key signed it.
    #[error("the token's issuer is not accepted here")]
    WrongIssuer,
    /// The JWT's `aud` does not name this service.
    #[error("the token was issued for another audience")]
    WrongAudience,
    /// The token or binding has been revoked.
    #[error("the token has been revoked")]
    Revoked,
    /// The credential is fine, but its actor is disabled.
    #[error("the actor is disabled")]
    Disabled,
    /// The credential could not be checked right now (the store failed, a JWKS endpoint could
    /// not be reached). Not the client's fault: a front door answers 503 and the client retries.
    #[error("the credential could not be checked right now; try again later")]
    Unavailable,
}

impl AuthError {
    /// An [`AuthError::Invalid`] with a fixed reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        AuthError::Invalid(reason.into())
    }

    /// The HTTP status a front door answers with: 503 for [`AuthError::Unavailable`], 401
    /// otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::Unavailable => 503,
            _ => 401,
        }
    }

    /// The value of a `WWW-Authenticate` response header for this error (RFC 6750 §3):
    /// `Bearer realm="patchbay", error="invalid_token", error_description="..."`.
    ///
    /// A request without credentials gets the bare challenge `Bearer realm="patchbay"`, as
    /// RFC 6750 §3.1 asks; [`AuthError::Unavailable`] carries a description but no error code
    /// (it is not a problem with the token).
    pub fn www_authenticate(&self) -> String {
        const REALM: &str = "Bearer realm=\"patchbay\"";
        let description = quoted_string_safe(&self.to_string());
        match self {
            AuthError::Missing => REALM.to_owned(),
            AuthError::Unavailable => format!("{REALM}, error_description=\"{description}\""),
            _ => format!("{REALM}, error=\"invalid_token\", error_description=\"{description}\""),
        }
    }
}

/// Keeps only the characters RFC 6750 allows in `error_description` (printable ASCII except
/// `"` and `\`).
fn quoted_string_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// Why an [`crate::Authenticator`] could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named by the configuration could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is for (`JWT key`, `hub key`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// An `[[auth.tokens]]` entry is unusable.
    #[error("auth.tokens (actor `{actor}`): {message}")]
    StaticToken {
        /// The entry's actor.
        actor: String,
        /// What is wrong (never the token).
        message: String,
    },
    /// An `[[auth.jwt]]` entry is unusable.
    #[error("auth.jwt (issuer `{issuer}`): {message}")]
    Jwt {
        /// The entry's issuer.
        issuer: String,
        /// What is wrong.
        message: String,
    },
    /// The hub key file exists but holds no usable Ed25519 PKCS#8 key.
    #[error("hub key {path}: {message}")]
    HubKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Why a binding token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// `auth.hub_key` is not configured, so this hub has no key to sign bindings with.
    #[error("no hub key is configured (auth.hub_key): bindings cannot be minted")]
    NoHubKey,
    /// An argument is unusable (empty actor, vendor or binding id).
    #[error("{0}")]
    Invalid(String),
    /// Signing failed.
    #[error("signing the binding token failed: {0}")]
    Sign(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_gets_a_bare_challenge() {
        assert_eq!(
            AuthError::Missing.www_authenticate(),
            "Bearer realm=\"patchbay\""
        );
    }

    #[test]
    fn invalid_token_challenge() {
        assert_eq!(
            AuthError::Expired.www_authenticate(),
            "Bearer realm=\"patchbay\", error=\"invalid_token\", \
             error_description=\"the token has expired\""
        );
        let odd = AuthError::invalid("claim \"a\\b\" é");
        assert_eq!(
            odd.www_authenticate(),
            "Bearer realm=\"patchbay\", error=\"invalid_token\", \
             error_description=\"invalid token: claim 'a'b' ?\""
        );
    }

    #[test]
    fn status_codes() {
        assert_eq!(AuthError::Unavailable.status_code(), 503);
        assert_eq!(AuthError::Revoked.status_code(), 401);
        assert!(!AuthError::Unavailable.www_authenticate().contains("error="));
    }
}
