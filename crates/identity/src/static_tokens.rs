//! `[[auth.tokens]]`: fixed tokens from the configuration, kept as SHA-256 digests and compared
//! in constant time.

use aws_lc_rs::{constant_time, digest};

use crate::{
    AuthError, ConfigError, Credential, Identity, config::StaticTokenConfig, jwt::looks_like_jwt,
};

/// Shortest accepted static token, in characters.
const MIN_LEN: usize = 16;

pub(crate) struct StaticTokens {
    entries: Vec<StaticEntry>,
}

struct StaticEntry {
    digest: digest::Digest,
    identity: Identity,
}

impl StaticTokens {
    pub(crate) fn new(config: &[StaticTokenConfig]) -> Result<Self, ConfigError> {
        let mut entries: Vec<StaticEntry> = Vec::with_capacity(config.len());
        for entry in config {
            let fail = |message: &str| ConfigError::StaticToken {
                actor: entry.actor.clone(),
                message: message.to_owned(),
            };
            if entry.actor.trim().is_empty() {
                return Err(fail("the actor is empty"));
            }
            if entry.token.chars().count() < MIN_LEN {
                return Err(fail(&format!(
                    "the token is shorter than {MIN_LEN} characters"
                )));
            }
            if entry.token.trim() != entry.token || entry.token.contains(char::is_whitespace) {
                return Err(fail("the token contains whitespace"));
            }
            if entry.token.starts_with(crate::STORED_TOKEN_PREFIX) {
                return Err(fail(
                    "the token starts with `pb_`, which is reserved for stored tokens",
                ));
            }
            if looks_like_jwt(&entry.token) {
                return Err(fail("the token is shaped like a JWT (three dotted parts)"));
            }
            let digest = digest::digest(&digest::SHA256, entry.token.as_bytes());
            if entries.iter().any(|e| e.digest.as_ref() == digest.as_ref()) {
                return Err(fail("the same token is configured twice"));
            }
            entries.push(StaticEntry {
                digest,
                identity: Identity {
                    actor: entry.actor.clone(),
                    vendor: entry.vendor.clone(),
                    roles: entry.roles.clone(),
                    credential: Credential::StaticToken {
                        label: entry.label.clone().unwrap_or_else(|| entry.actor.clone()),
                    },
                },
            });
        }
        Ok(Self { entries })
    }

    /// Compares the presented token's digest with every entry's, without stopping at a match.
    pub(crate) fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let presented = digest::digest(&digest::SHA256, token.as_bytes());
        let mut found = None;
        for entry in &self.entries {
            let equal =
                constant_time::verify_slices_are_equal(presented.as_ref(), entry.digest.as_ref())
                    .is_ok();
            if equal {
                found = Some(&entry.identity);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::invalid("unknown token"))
    }
}
