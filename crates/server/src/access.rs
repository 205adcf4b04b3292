//! Who may use the hub, and what each caller sees: the authenticator that turns a presented
//! credential into an [`Identity`], and the rules that turn an identity into a policy.
//! Front doors authenticate every request the same way; sessions ask [`Access::policy_for`].

use std::sync::Arc;

use patchbay_core::{AllowAll, AuditSink, Policy, Rules, Subject};
use patchbay_identity::{AuthError, Authenticator, Identity};

/// Makes the audit sink of one caller: who it is and through which front door it came.
pub trait AuditFor: Send + Sync {
    fn audit_for(&self, who: &Authenticated) -> Arc<dyn AuditSink>;
}

/// One authenticated caller, as a session sees it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Identity,
    /// `stdio`, `http`, ...
    pub front_door: &'static str,
    /// The front door's session id, when it has one: known only from the session's second
    /// request on (an HTTP session gets its id in the answer to `initialize`).
    pub session: Arc<std::sync::OnceLock<String>>,
}

/// Authentication and policy for a hub.
#[derive(Clone, Default)]
pub struct Access {
    /// `None`: no authentication configured; every caller sees everything (loopback only).
    pub authenticator: Option<Arc<Authenticator>>,
    pub rules: Arc<Rules>,
    pub audit: Option<Arc<dyn AuditFor>>,
}

impl Access {
    pub fn open() -> Self {
        Self::default()
    }

    pub fn requires_auth(&self) -> bool {
        self.authenticator.is_some()
    }

    /// Authenticates a bearer credential (a header's value without `Bearer `, or `?token=`).
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        match &self.authenticator {
            Some(a) => a.authenticate(token).await,
            None => Err(AuthError::Missing),
        }
    }

    /// The policy of `identity` (everything, when no authentication is configured).
    pub fn policy_for(&self, identity: Option<&Identity>) -> Arc<dyn Policy> {
        match identity {
            None => Arc::new(AllowAll),
            Some(id) => Arc::new(self.rules.policy_for(Subject {
                actor: &id.actor,
                roles: &id.roles,
                vendor: id.vendor.as_deref(),
            })),
        }
    }

    pub fn audit_for(&self, caller: &Authenticated) -> Option<Arc<dyn AuditSink>> {
        self.audit.as_ref().map(|a| a.audit_for(caller))
    }
}

/// The credential of an HTTP request: `Authorization: Bearer …`, else a `token` query
/// parameter (for devices that cannot set headers).
pub fn http_credential(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Result<String, AuthError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
        return patchbay_identity::bearer_token(value).map(str::to_owned);
    }
    uri.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .map(percent_decode)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_header_or_the_query() {
        let mut headers = axum::http::HeaderMap::new();
        let uri: axum::http::Uri = "/mcp?x=1&token=pb_a%2Bb".parse().unwrap();
        assert_eq!(http_credential(&headers, &uri).unwrap(), "pb_a+b");
        headers.insert("authorization", "Bearer pb_header".parse().unwrap());
        assert_eq!(http_credential(&headers, &uri).unwrap(), "pb_header");
        let bare: axum::http::Uri = "/mcp".parse().unwrap();
        assert!(matches!(
            http_credential(&axum::http::HeaderMap::new(), &bare),
            Err(AuthError::Missing)
        ));
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
}
