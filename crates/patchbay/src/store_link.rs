//! The store, as the rest of the hub uses it: the identity layer's lookup of stored tokens
//! and bindings, actors' secrets, dial-in providers' tokens, and the audit sink that records
//! every call.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use futures::future::BoxFuture;
use patchbay_core::{AuditSink, CallRecord};
use patchbay_identity::{AuthError, Credential, Identity, TokenLookup};
use patchbay_providers::{ActorSecrets, ProviderTokens};
use patchbay_server::access::{AuditFor, Authenticated};
use patchbay_store::{
    AuditRecord, AuditWriter, AuditWriterConfig, Retention, SecretKey, SqliteConfig, SqliteStore,
    Store,
};

use crate::config::Config;

/// Opens (creating it on first use) the store the configuration names.
pub fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let path = config.store_path();
    let mut sqlite = SqliteConfig::new(&path);
    if let Some(key) = secret_key(config)? {
        sqlite = sqlite.with_secret_key(key);
    }
    let store = SqliteStore::open(sqlite)
        .with_context(|| format!("opening the store at {}", path.display()))?;
    Ok(Arc::new(store))
}

/// The key that encrypts secrets: `[store] secret_key_file`, else `PATCHBAY_SECRET_KEY`.
fn secret_key(config: &Config) -> anyhow::Result<Option<SecretKey>> {
    let file = config
        .store
        .as_ref()
        .and_then(|s| s.secret_key_file.as_ref());
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret key file {}", path.display()))?,
        None => match std::env::var("PATCHBAY_SECRET_KEY") {
            Ok(v) if !v.trim().is_empty() => v,
            _ => return Ok(None),
        },
    };
    SecretKey::parse(text.trim())
        .map(Some)
        .context("the secret key must be 32 bytes, as 64 hex digits or base64")
}

/// Stored `pb_` tokens and bindings, for the authenticator.
pub struct StoreLookup(pub Arc<dyn Store>);

impl TokenLookup for StoreLookup {
    fn verify<'a>(&'a self, secret: &'a str) -> BoxFuture<'a, Result<Option<Identity>, AuthError>> {
        Box::pin(async move {
            let found = self.0.verify_token(secret).await.map_err(|e| {
                tracing::warn!(error = %e, "token lookup failed");
                AuthError::Unavailable
            })?;
            Ok(found.map(|(token, actor)| Identity {
                actor: actor.name,
                vendor: None,
                roles: actor.roles,
                credential: Credential::StoredToken { id: token.id },
            }))
        })
    }

    fn binding_active<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move { matches!(self.0.active_binding(id).await, Ok(Some(_))) })
    }
}

/// Actors' secrets, for upstreams whose settings use `${actor.secret.NAME}`.
pub struct StoreSecrets(pub Arc<dyn Store>);

impl ActorSecrets for StoreSecrets {
    fn secret<'a>(
        &'a self,
        actor: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            match self.0.secret(actor, name).await {
                Ok(value) => Ok(value.map(|v| v.expose().to_owned())),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Dial-in providers' tokens, checked against the store.
pub struct StoreProviderTokens(pub Arc<dyn Store>);

impl ProviderTokens for StoreProviderTokens {
    fn provider_of<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            self.0
                .verify_provider_token(token)
                .await
                .map(|found| found.map(|p| p.name))
                .map_err(|e| {
                    tracing::warn!(error = %e, "provider token lookup failed");
                    "the store is unavailable".to_owned()
                })
        })
    }
}

/// Records calls through the store's batching writer.
pub struct Audit {
    writer: AuditWriter,
    payloads: bool,
}

impl Audit {
    /// Starts the writer, and an hourly pruning by `retention` and `max_rows`.
    pub fn start(store: Arc<dyn Store>, config: &crate::config::AuditConfig) -> Arc<Self> {
        let writer = AuditWriter::spawn(store.clone(), AuditWriterConfig::default());
        let retention = Retention {
            max_age: Some(config.retention),
            max_rows: Some(config.max_rows),
        };
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                if let Err(e) = store.prune_audit(retention).await {
                    tracing::warn!(error = %e, "pruning the audit log failed");
                }
            }
        });
        Arc::new(Self {
            writer,
            payloads: config.payloads,
        })
    }

    /// Writes what is queued; at shutdown.
    pub async fn close(&self) {
        self.writer.close().await;
    }
}

impl AuditFor for Audit {
    fn audit_for(&self, who: &Authenticated) -> Arc<dyn AuditSink> {
        let credential = match &who.identity.credential {
            Credential::StoredToken { id } | Credential::Binding { id } => Some(id.clone()),
            Credential::StaticToken { label } => Some(format!("static:{label}")),
            Credential::Jwt { issuer, .. } => Some(format!("jwt:{issuer}")),
            Credential::Configured { label } => Some(format!("config:{label}")),
        };
        Arc::new(CallerAudit {
            writer: self.writer.clone(),
            payloads: self.payloads,
            actor: who.identity.actor.clone(),
            vendor: who.identity.vendor.clone(),
            credential,
            front_door: who.front_door.to_owned(),
            session: who.session.clone(),
        })
    }
}

/// One caller's records.
struct CallerAudit {
    writer: AuditWriter,
    payloads: bool,
    actor: String,
    vendor: Option<String>,
    credential: Option<String>,
    front_door: String,
    session: Arc<std::sync::OnceLock<String>>,
}

impl AuditSink for CallerAudit {
    fn wants_payloads(&self) -> bool {
        self.payloads
    }

    fn record(&self, r: CallRecord) {
        let time = r
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.writer.record(AuditRecord {
            time,
            actor: self.actor.clone(),
            vendor: self.vendor.clone(),
            credential: self.credential.clone(),
            front_door: self.front_door.clone(),
            session: self.session.get().cloned(),
            operation: r.operation,
            call_id: r.call_id.to_string(),
            parent_call_id: r.parent.map(|p| p.to_string()),
            duration_ms: r.duration.as_millis() as u64,
            outcome: r.outcome,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            input: r.input,
            output: r.output,
        });
    }
}
