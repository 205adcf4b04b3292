//! [`Authenticator`]: one entry point for every front door, from a bearer string to an
//! [`Identity`].

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{
    AuthError, BindingError, ConfigError, Identity, TokenLookup,
    binding::{BINDING_ISSUER, HubKey},
    config::AuthConfig,
    jwt::{self, Issuer, looks_like_jwt},
    static_tokens::StaticTokens,
};

/// Prefix of tokens issued by `patchbay token issue` and kept in the store.
pub const STORED_TOKEN_PREFIX: &str = "pb_";
/// Longest bearer token considered, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Turns presented credentials into identities. Built once from `[auth]`; cheap to share
/// behind an `Arc`, and safe to call from many tasks at once.
pub struct Authenticator {
    statics: StaticTokens,
    issuers: HashMap<String, Issuer>,
    hub: Option<HubKey>,
    lookup: Option<Arc<dyn TokenLookup>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("hub_key", &self.hub.is_some())
            .field("lookup", &self.lookup.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds an authenticator from `[auth]`. Reads key files and loads (or creates) the hub
    /// key; JWKS documents are fetched later, on first use. `lookup` checks stored tokens and
    /// bindings; without it `pb_...` tokens and bindings are refused.
    pub fn new(
        config: &AuthConfig,
        lookup: Option<Arc<dyn TokenLookup>>,
    ) -> Result<Self, ConfigError> {
        let statics = StaticTokens::new(&config.tokens)?;
        let mut issuers = HashMap::new();
        for entry in &config.jwt {
            let issuer = Issuer::new(entry)?;
            if issuers.contains_key(issuer.name()) {
                return Err(ConfigError::Jwt {
                    issuer: entry.issuer.clone(),
                    message: "the issuer is configured twice".into(),
                });
            }
            issuers.insert(issuer.name().to_owned(), issuer);
        }
        let hub = config
            .hub_key
            .as_deref()
            .map(HubKey::load_or_create)
            .transpose()?;
        Ok(Self {
            statics,
            issuers,
            hub,
            lookup,
        })
    }

    /// Whether bindings can be minted and accepted (a hub key is configured).
    pub fn has_hub_key(&self) -> bool {
        self.hub.is_some()
    }

    /// Who presents `bearer` (the token alone, without `Bearer `; see [`bearer_token`]).
    ///
    /// Chosen by shape: `pb_...` is a stored token; three dot-separated base64url parts are a
    /// JWT (a binding when its `iss` is `patchbay`, else routed to the `[[auth.jwt]]` entry
    /// of its `iss`); anything else is compared with the static tokens.
    pub async fn authenticate(&self, bearer: &str) -> Result<Identity, AuthError> {
        let token = bearer.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid("the token is too long"));
        }
        let result = if token.starts_with(STORED_TOKEN_PREFIX) {
            self.stored(token).await
        } else if looks_like_jwt(token) {
            self.jwt(token).await
        } else {
            self.statics.authenticate(token)
        };
        if let Err(error) = &result {
            tracing::debug!(%error, "authentication refused");
        }
        result
    }

    async fn stored(&self, token: &str) -> Result<Identity, AuthError> {
        let Some(lookup) = &self.lookup else {
            return Err(AuthError::invalid("unknown token"));
        };
        lookup
            .verify(token)
            .await?
            .ok_or_else(|| AuthError::invalid("unknown token"))
    }

    async fn jwt(&self, token: &str) -> Result<Identity, AuthError> {
        let unverified = jwt::peek(token)?;
        match unverified.iss.as_deref() {
            Some(BINDING_ISSUER) => {
                let Some(hub) = &self.hub else {
                    return Err(AuthError::invalid("this hub accepts no binding tokens"));
                };
                let (identity, binding_id) = hub.verify(token, &unverified)?;
                let active = match &self.lookup {
                    Some(lookup) => lookup.binding_active(&binding_id).await,
                    None => false,
                };
                if active {
                    Ok(identity)
                } else {
                    Err(AuthError::Revoked)
                }
            }
            Some(iss) => match self.issuers.get(iss) {
                Some(issuer) => issuer.authenticate(token, &unverified).await,
                None => Err(AuthError::WrongIssuer),
            },
            None => Err(AuthError::WrongIssuer),
        }
    }

    /// Mints a binding token: `vendor` acts for `actor` under binding `binding_id`, for `ttl`
    /// (`None`: until revoked). The caller records the binding in the store first, so
    /// [`TokenLookup::binding_active`] knows it.
    pub fn mint_binding(
        &self,
        actor: &str,
        vendor: &str,
        binding_id: &str,
        ttl: Option<Duration>,
    ) -> Result<String, BindingError> {
        self.hub
            .as_ref()
            .ok_or(BindingError::NoHubKey)?
            .mint(actor, vendor, binding_id, ttl)
    }

    #[cfg(test)]
    pub(crate) fn issuer(&self, name: &str) -> Option<&Issuer> {
        self.issuers.get(name)
    }
}

/// The token of an `Authorization` header value: `Bearer TOKEN` (scheme case-insensitive).
/// A missing or empty value is [`AuthError::Missing`]; another scheme is
/// [`AuthError::Invalid`].
pub fn bearer_token(authorization: &str) -> Result<&str, AuthError> {
    let value = authorization.trim();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::invalid(
            "use the Bearer scheme: `Authorization: Bearer TOKEN`",
        ));
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_token("bearer   abc ").unwrap(), "abc");
        assert_eq!(bearer_token(""), Err(AuthError::Missing));
        assert_eq!(bearer_token("Bearer "), Err(AuthError::Missing));
        let basic = bearer_token("Basic dXNlcjpwYXNz").unwrap_err();
        assert!(!basic.to_string().contains("dXNlcjpwYXNz"));
    }

    #[tokio::test]
    async fn jwks_refetch_is_rate_limited_per_minute() {
        // A JWKS file whose only key has kid "a": tokens naming other kids trigger at most
        // one re-read a minute.
        let dir = tempfile::tempdir().unwrap();
        let jwks_path = dir.path().join("jwks.json");
        let x =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [7u8; 32]);
        std::fs::write(
            &jwks_path,
            format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"a","x":"{x}"}}]}}"#),
        )
        .unwrap();
        let config: AuthConfig = toml::from_str(&format!(
            r#"
            [[jwt]]
            issuer = "https://idp.test"
            audience = "patchbay"
            jwks = "{}"
            "#,
            jwks_path.display()
        ))
        .unwrap();
        let auth = Authenticator::new(&config, None).unwrap();
        let jwks = auth.issuer("https://idp.test").unwrap().jwks().unwrap();
        let token = |kid: &str| {
            use base64::Engine;
            let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            format!(
                "{}.{}.{}",
                e(&format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#)),
                e(r#"{"iss":"https://idp.test","aud":"patchbay","sub":"x","exp":99999999999}"#),
                e("sig")
            )
        };
        let first = auth.authenticate(&token("a")).await.unwrap_err();
        assert_eq!(first, AuthError::invalid("bad signature"));
        assert_eq!(jwks.fetches(), 1);
        auth.authenticate(&token("b")).await.unwrap_err();
        assert_eq!(jwks.fetches(), 2, "an unknown kid re-reads the JWKS");
        auth.authenticate(&token("c")).await.unwrap_err();
        auth.authenticate(&token("d")).await.unwrap_err();
        assert_eq!(jwks.fetches(), 2, "but at most once a minute");
    }
}
