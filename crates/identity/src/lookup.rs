//! What identity needs from the store: checking stored (`pb_...`) tokens and asking whether a
//! binding is still active. The store implements [`TokenLookup`]; [`MemoryTokenLookup`] is an
//! in-memory one for tests and small embeddings.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use aws_lc_rs::digest;
use futures::future::BoxFuture;

use crate::{AuthError, Identity};

/// The store's side of authentication.
pub trait TokenLookup: Send + Sync {
    /// Checks a stored token's secret (the whole `pb_...` string).
    ///
    /// - `Ok(Some(identity))`: valid; the identity's credential is
    ///   [`crate::Credential::StoredToken`] with the token's id.
    /// - `Ok(None)`: no such token.
    /// - `Err(AuthError::Revoked | Expired | Disabled)`: the token is known but no longer
    ///   accepted (revoked, past its TTL, or its actor is disabled).
    /// - `Err(AuthError::Unavailable)`: the store could not answer.
    fn verify<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Option<Identity>, AuthError>>;

    /// Whether the binding `id` exists and is not revoked (nor its actor disabled). A store
    /// that cannot answer should say `false`: a binding is refused rather than trusted.
    fn binding_active<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool>;
}

/// A [`TokenLookup`] kept in memory: tokens are held as SHA-256 digests, as a store would.
#[derive(Clone, Default)]
pub struct MemoryTokenLookup {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Default)]
struct Memory {
    tokens: HashMap<[u8; 32], Entry>,
    bindings: HashSet<String>,
    disabled_actors: HashSet<String>,
}

struct Entry {
    identity: Identity,
    revoked: bool,
}

fn digest_of(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl MemoryTokenLookup {
    /// An empty lookup.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Memory) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Adds a token: `secret` authenticates as `identity`.
    pub fn insert_token(&self, secret: &str, identity: Identity) {
        self.with(|m| {
            m.tokens.insert(
                digest_of(secret),
                Entry {
                    identity,
                    revoked: false,
                },
            )
        });
    }

    /// Revokes a token by its secret; `false` when it was unknown.
    pub fn revoke_token(&self, secret: &str) -> bool {
        self.with(|m| match m.tokens.get_mut(&digest_of(secret)) {
            Some(entry) => {
                entry.revoked = true;
                true
            }
            None => false,
        })
    }

    /// Disables an actor: its tokens fail with [`AuthError::Disabled`], its bindings are no
    /// longer active.
    pub fn disable_actor(&self, actor: &str) {
        self.with(|m| m.disabled_actors.insert(actor.to_owned()));
    }

    /// Marks binding `id` active.
    pub fn add_binding(&self, id: &str) {
        self.with(|m| m.bindings.insert(id.to_owned()));
    }

    /// Revokes binding `id`; `false` when it was not active.
    pub fn revoke_binding(&self, id: &str) -> bool {
        self.with(|m| m.bindings.remove(id))
    }
}

impl TokenLookup for MemoryTokenLookup {
    fn verify<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        let answer = self.with(|m| match m.tokens.get(&digest_of(secret)) {
            None => Ok(None),
            Some(entry) if entry.revoked => Err(AuthError::Revoked),
            Some(entry) if m.disabled_actors.contains(&entry.identity.actor) => {
                Err(AuthError::Disabled)
            }
            Some(entry) => Ok(Some(entry.identity.clone())),
        });
        Box::pin(async move { answer })
    }

    fn binding_active<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        let active = self.with(|m| m.bindings.contains(id));
        Box::pin(async move { active })
    }
}
