//! The records the store keeps about actors and their credentials, and the name rules.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Longest actor, vendor or secret name.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` is usable as an actor, vendor or secret name: 1-128 characters of ASCII
/// letters, digits, `_`, `-`, `.` and `@` (the namespace characters plus `@` for e-mail-like names).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

pub(crate) fn check_name(kind: &'static str, name: &str) -> Result<(), StoreError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        // Never echo something that long or odd back whole: it may be a pasted secret.
        let shown: String = name.chars().take(40).collect();
        Err(StoreError::InvalidName { kind, name: shown })
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `now + ttl` in unix milliseconds, or `None` without a TTL.
pub(crate) fn expiry(now: i64, ttl: Option<Duration>) -> Result<Option<i64>, StoreError> {
    let Some(ttl) = ttl else { return Ok(None) };
    i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ms| now.checked_add(ms.max(1)))
        .map(Some)
        .ok_or_else(|| StoreError::InvalidInput(format!("ttl {ttl:?} is too large")))
}

/// What [`TokenInfo::is_active`] and [`Binding::is_active`] mean: not revoked, and not expired
/// at `now` (unix ms).
fn unrevoked_and_unexpired(revoked_at: Option<i64>, expires_at: Option<i64>, now: i64) -> bool {
    revoked_at.is_none() && expires_at.is_none_or(|e| e > now)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Unique name (see [`is_valid_name`]).
    pub name: String,
    /// Roles, for policy rules per role.
    pub roles: Vec<String>,
    /// A disabled actor's tokens and bindings do not verify.
    pub disabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A bearer token as listed: everything except the secret, which is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Public id, `tok_` and 8 random characters; what `token revoke` takes.
    pub id: String,
    pub actor: String,
    /// Free-form label given at issue (`--name`).
    pub label: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Unix milliseconds; `None` while valid.
    pub revoked_at: Option<i64>,
    /// Unix milliseconds of the last successful verification, recorded at most once a minute.
    pub last_used_at: Option<i64>,
}

impl TokenInfo {
    /// Neither revoked nor expired at `now` (unix ms). Says nothing about the actor.
    pub fn is_active(&self, now: i64) -> bool {
        unrevoked_and_unexpired(self.revoked_at, self.expires_at, now)
    }
}

/// A vendor's devices bound to an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Public id, `bnd_` and 8 random characters; carried in the binding's JWT.
    pub id: String,
    pub actor: String,
    /// The vendor (for example `xiaozhi`), for policy rules per vendor.
    pub vendor: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds; `None` never expires.
    pub expires_at: Option<i64>,
    /// Unix milliseconds; `None` while valid.
    pub revoked_at: Option<i64>,
}

impl Binding {
    /// Neither revoked nor expired at `now` (unix ms). Says nothing about the actor.
    pub fn is_active(&self, now: i64) -> bool {
        unrevoked_and_unexpired(self.revoked_at, self.expires_at, now)
    }
}

/// Longest dial-in provider name (it is a namespace, which leaves room for a tool name).
pub const MAX_PROVIDER_NAME_LEN: usize = 64;

/// Whether `name` is usable as a dial-in provider's name, which is also its namespace: 1-64
/// characters of ASCII letters, digits, `_` and `-`.
pub fn is_valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PROVIDER_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// A dial-in tool provider: an MCP server that connects to the hub (`/providers/ws`) with its
/// token, and whose tools join the registry under the namespace `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The provider's name and its namespace (see [`is_valid_provider_name`]).
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A secret string: a token secret or a decrypted secret value. `Debug` prints `[redacted]` and
/// there is no `Display`, so it cannot reach a log by accident; [`SecretString::expose`] reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself. Use it where it is needed, never in a log or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "alice",
            "a",
            "ci-runner_2",
            "alice@example.com",
            "x.y",
            &"a".repeat(128),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "ä", "a\0", "${x}", &"a".repeat(129)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn secret_string_debug_redacts() {
        let s = SecretString::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn expiry_overflows_cleanly() {
        assert_eq!(expiry(10, None).unwrap(), None);
        assert_eq!(
            expiry(10, Some(Duration::from_millis(5))).unwrap(),
            Some(15)
        );
        assert!(expiry(10, Some(Duration::MAX)).is_err());
    }
}
