//! Dial-in providers: a provider whose connection arrives instead of being made.
//!
//! An MCP server behind NAT connects to the hub (over WebSocket, at the front door) with the
//! token `patchbay provider add NAME` issued; the token names the provider, hence its
//! namespace. On that socket the hub is the MCP client, exactly as with any upstream: an
//! [`UpstreamClient`] serves the connection and an [`McpProvider`] routes calls over it, so
//! progress, cancellation and requests back (sampling, elicitation, roots) work unchanged.
//!
//! - The namespace is registered when the hub starts (from the store's list) or on the
//!   provider's first connection, in state `starting` until it first connects.
//! - A disconnect detaches the connection: calls in flight fail at once and new ones get
//!   `upstream_unavailable`; the catalog stays, and the state becomes `restarting` with a
//!   detail, until the provider dials in again.
//! - A second connection for the same provider replaces the first, which is closed normally.
//!
//! Nothing here knows WebSocket: the front door hands over a [`Transport`] and a way to close
//! it normally.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use patchbay_core::{NamespaceHandle, NamespaceSettings, Registry, RegistryError, UpstreamState};
use rmcp::{ServiceExt, service::RoleClient, transport::Transport};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    client::UpstreamClient,
    mcp::{Connection, McpProvider},
    routing::RoutingTransport,
    supervisor::{Lists, publish_capabilities, publish_catalog, publish_extras, watch_health},
};

/// Where dial-in providers' tokens are checked (the store, in the hub).
pub trait ProviderTokens: Send + Sync {
    /// The name of the provider `token` belongs to; `None` if it belongs to none. `Err` (with
    /// a reason) when it cannot be checked now.
    fn provider_of<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
}

/// Settings of dial-in providers.
#[derive(Debug, Clone)]
pub struct DialInSettings {
    /// Longest wait for `initialize` and the first `tools/list` of a new connection. Default
    /// 30 s.
    pub startup_timeout: Duration,
    /// Per-call timeout of dial-in namespaces; `None` uses the hub's default.
    pub call_timeout: Option<Duration>,
}

impl Default for DialInSettings {
    fn default() -> Self {
        Self {
            startup_timeout: Duration::from_secs(30),
            call_timeout: None,
        }
    }
}

/// What a dial-in namespace's state detail says before its provider first connects.
pub const WAITING: &str = "dial-in provider: waiting for it to connect";

/// Every dial-in provider of a hub.
pub struct DialIns {
    registry: Arc<Registry>,
    tokens: Option<Arc<dyn ProviderTokens>>,
    settings: DialInSettings,
    providers: Mutex<HashMap<String, Arc<DialIn>>>,
    shutdown: CancellationToken,
}

/// One dial-in provider: its namespace and its current connection, if any.
struct DialIn {
    provider: Arc<McpProvider>,
    handle: NamespaceHandle,
    /// Bumped by every new connection; a connection acts on the namespace only while it is
    /// the newest one.
    generation: AtomicU64,
    /// The newest connection's generation and the token that tells it it was replaced.
    current: Mutex<Option<(u64, CancellationToken)>>,
    /// Whether any connection became ready (for `restarting` rather than `failed`).
    ever_ready: std::sync::atomic::AtomicBool,
}

/// A connection whose token named a provider; [`Admitted::serve`] serves it.
pub struct Admitted {
    name: String,
    dialin: Arc<DialIn>,
    settings: DialInSettings,
    shutdown: CancellationToken,
}

/// How a dial-in connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A newer connection for the same provider took over (close it normally).
    Replaced,
    /// The hub is shutting down.
    Shutdown,
    /// The connection closed or failed, with why.
    Closed(String),
}

impl DialIns {
    /// Dial-in providers of `registry`, their tokens checked by `tokens` (`None`: the hub has
    /// no store, and every connection is refused).
    pub fn new(
        registry: Arc<Registry>,
        tokens: Option<Arc<dyn ProviderTokens>>,
        settings: DialInSettings,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            registry,
            tokens,
            settings,
            providers: Mutex::default(),
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DialIn>>> {
        self.providers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers provider `name`'s namespace, in state `starting` until it connects. Doing it
    /// twice is harmless.
    pub fn register(&self, name: &str) -> Result<(), RegistryError> {
        self.get_or_register(name).map(|_| ())
    }

    fn get_or_register(&self, name: &str) -> Result<Arc<DialIn>, RegistryError> {
        let mut providers = self.lock();
        if let Some(found) = providers.get(name) {
            return Ok(found.clone());
        }
        let provider = McpProvider::new(name);
        let handle = self.registry.register(
            name,
            NamespaceSettings {
                prefix: true,
                call_timeout: self.settings.call_timeout,
            },
            provider.clone(),
        )?;
        handle.set_state(UpstreamState::Starting, Some(WAITING.into()));
        let dialin = Arc::new(DialIn {
            provider,
            handle,
            generation: AtomicU64::new(0),
            current: Mutex::new(None),
            ever_ready: Default::default(),
        });
        providers.insert(name.to_owned(), dialin.clone());
        Ok(dialin)
    }

    /// Whether `namespace` belongs to a dial-in provider.
    pub fn is_dial_in(&self, namespace: &str) -> bool {
        self.lock().contains_key(namespace)
    }

    /// The names of the registered dial-in providers.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }

    /// Checks a connection's token; the error is the reason to give the peer.
    pub async fn admit(&self, token: &str) -> Result<Admitted, String> {
        let Some(tokens) = &self.tokens else {
            return Err("this hub has no dial-in providers (it has no store)".into());
        };
        let name = match tokens.provider_of(token).await {
            Ok(Some(name)) => name,
            Ok(None) => return Err("unknown provider token".into()),
            Err(why) => return Err(format!("the token cannot be checked now: {why}")),
        };
        let dialin = self.get_or_register(&name).map_err(|e| {
            tracing::error!(provider = %name, error = %e, "dial-in provider cannot be registered");
            format!("provider `{name}` cannot join the registry: {e}")
        })?;
        Ok(Admitted {
            name,
            dialin,
            settings: self.settings.clone(),
            shutdown: self.shutdown.clone(),
        })
    }
}

impl Admitted {
    /// The provider's name (its namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serves the connection until it ends: the hub as MCP client on `transport`, the
    /// provider's tools in the registry while it lasts. Replaces the provider's previous
    /// connection, if any; if this one is replaced in turn, `close_normally` is called (before
    /// the transport is closed) so the peer sees a normal close.
    pub async fn serve<T>(
        self,
        transport: T,
        close_normally: impl FnOnce(&str) + Send + 'static,
    ) -> Ended
    where
        T: Transport<RoleClient> + Send + 'static,
    {
        let mut farewell: Option<Farewell> = Some(Box::new(close_normally));
        let dialin = self.dialin;
        let generation = dialin.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let replaced = CancellationToken::new();
        let previous = dialin
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((generation, replaced.clone()));
        if let Some((_, previous)) = previous {
            tracing::info!(provider = %self.name, "a new connection replaces the provider's previous one");
            previous.cancel();
        }
        let ended = run(
            &dialin,
            &self.name,
            generation,
            &self.settings,
            transport,
            &replaced,
            &mut farewell,
            &self.shutdown,
        )
        .await;
        match &ended {
            Ended::Replaced | Ended::Shutdown => {}
            Ended::Closed(why) => {
                if dialin.is_current(generation) {
                    let state = if dialin.ever_ready.load(Ordering::Relaxed) {
                        UpstreamState::Restarting
                    } else {
                        UpstreamState::Failed
                    };
                    dialin.handle.set_state(
                        state,
                        Some(format!(
                            "dial-in provider disconnected ({why}); waiting for it to connect again"
                        )),
                    );
                }
                tracing::warn!(provider = %self.name, reason = %why, "dial-in provider disconnected");
            }
        }
        ended
    }
}

impl DialIn {
    fn is_current(&self, generation: u64) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(g, _)| *g == generation)
    }
}

/// Closes the socket normally, with a reason.
type Farewell = Box<dyn FnOnce(&str) + Send>;

/// Resolves when the connection is replaced, having asked the transport to close normally
/// first: before the connection is dropped or cancelled, either of which closes it as `going
/// away`.
async fn replaced_by_newer(replaced: &CancellationToken, farewell: &mut Option<Farewell>) {
    replaced.cancelled().await;
    if let Some(close) = farewell.take() {
        close("replaced by a newer connection of this provider");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run<T>(
    dialin: &DialIn,
    name: &str,
    generation: u64,
    settings: &DialInSettings,
    transport: T,
    replaced: &CancellationToken,
    farewell: &mut Option<Farewell>,
    shutdown: &CancellationToken,
) -> Ended
where
    T: Transport<RoleClient> + Send + 'static,
{
    let handle = &dialin.handle;
    let client = UpstreamClient::new(handle);
    let started = Instant::now();
    let transport = RoutingTransport::new(transport, client.callers.clone());
    let service = tokio::select! {
        r = tokio::time::timeout(settings.startup_timeout, client.clone().serve(transport)) => match r {
            Ok(Ok(service)) => service,
            Ok(Err(e)) => return Ended::Closed(format!("initialize failed: {e}")),
            Err(_) => return Ended::Closed(format!("no answer to initialize within {:?}", settings.startup_timeout)),
        },
        _ = replaced_by_newer(replaced, farewell) => return Ended::Replaced,
        _ = shutdown.cancelled() => return Ended::Shutdown,
    };
    let peer = service.peer().clone();
    peer.set_response_cache_config(rmcp::ClientCacheConfig::disabled())
        .await;
    let service_ct = service.cancellation_token();
    let mut waiting = Box::pin(service.waiting());
    // Every way out below closes the connection and, if this is the current one, detaches it
    // (in-flight calls fail at once: their answers can no longer arrive).
    let stop = |why: Ended| {
        if dialin.is_current(generation) {
            dialin.provider.detach();
        }
        why
    };

    let first = tokio::select! {
        r = tokio::time::timeout(settings.startup_timeout, publish_catalog(&peer, handle)) => {
            r.unwrap_or_else(|_| Err("tools/list timed out".into()))
        }
        _ = &mut waiting => Err("the provider closed the connection during start-up".into()),
        _ = replaced_by_newer(replaced, farewell) => { service_ct.cancel(); return Ended::Replaced; }
        _ = shutdown.cancelled() => { service_ct.cancel(); return Ended::Shutdown; }
    };
    if let Err(why) = first {
        service_ct.cancel();
        return Ended::Closed(why);
    }
    let lists = publish_capabilities(&peer, handle);
    tokio::select! {
        r = tokio::time::timeout(settings.startup_timeout, publish_extras(&peer, handle, lists)) => {
            if r.is_err() {
                tracing::warn!(provider = %name, "listing resources and prompts timed out");
            }
        }
        _ = replaced_by_newer(replaced, farewell) => { service_ct.cancel(); return Ended::Replaced; }
        _ = shutdown.cancelled() => { service_ct.cancel(); return Ended::Shutdown; }
    }
    {
        // Attached under the lock that says which connection is current, so a replaced
        // connection can never attach over its successor.
        let current = dialin.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().map(|(g, _)| *g) != Some(generation) {
            drop(current);
            if let Some(close) = farewell.take() {
                close("replaced by a newer connection of this provider");
            }
            service_ct.cancel();
            return Ended::Replaced;
        }
        dialin
            .provider
            .attach(Connection::new(peer.clone(), &client));
        handle.set_startup(started.elapsed());
        handle.set_state(UpstreamState::Ready, None);
    }
    dialin.ever_ready.store(true, Ordering::Relaxed);
    tracing::info!(provider = %name, took = ?started.elapsed(), "dial-in provider connected");
    let mut health = Box::pin(watch_health(&peer, &client.suspect, false));

    loop {
        tokio::select! {
            quit = &mut waiting => {
                let why = match quit {
                    Ok(reason) => format!("connection ended: {reason:?}"),
                    Err(e) => format!("connection task failed: {e}"),
                };
                return stop(Ended::Closed(why));
            }
            why = &mut health => {
                let ended = stop(Ended::Closed(why));
                service_ct.cancel();
                return ended;
            }
            _ = replaced_by_newer(replaced, farewell) => {
                let ended = stop(Ended::Replaced);
                service_ct.cancel();
                return ended;
            }
            _ = shutdown.cancelled() => {
                let ended = stop(Ended::Shutdown);
                service_ct.cancel();
                return ended;
            }
            _ = client.tools_changed.notified() => {
                if let Err(why) = publish_catalog(&peer, handle).await {
                    tracing::warn!(provider = %name, error = %why, "re-listing tools failed");
                }
            }
            _ = client.resources_changed.notified() => {
                publish_extras(&peer, handle, Lists { resources: true, prompts: false }).await;
            }
            _ = client.prompts_changed.notified() => {
                publish_extras(&peer, handle, Lists { resources: false, prompts: true }).await;
            }
        }
    }
}
