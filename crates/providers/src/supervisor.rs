//! The supervisor of one upstream: connect, publish the catalog, serve, and on a lost
//! connection mark the namespace unavailable and reconnect with capped exponential backoff.
//! Nothing here ever blocks another upstream: each supervisor is its own task.

use std::{sync::Arc, time::Duration};

use patchbay_core::{Backoff, NamespaceHandle, RegistryError, UpstreamState};
use rmcp::{
    model::{ClientRequest, PingRequest},
    service::{Peer, RoleClient, ServiceError},
};
use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    actor_values::{ActorSecrets, depends_on_actor, fill},
    client::UpstreamClient,
    http::{self, HttpSpec},
    lane::Lane,
    mcp::{Connection, McpProvider},
    sessions::{Keying, SessionConnections},
    stdio::{self, StdioSpec, kill_group},
};

/// One upstream as the supervisor needs it.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub namespace: String,
    pub transport: UpstreamTransport,
    /// Longest wait for `initialize` and the first `tools/list`. Default 30 s.
    pub startup_timeout: Duration,
    /// First delay before a restart; doubles per failed attempt. Default 1 s.
    pub backoff_initial: Duration,
    /// Longest delay between restarts. Default 30 s.
    pub backoff_cap: Duration,
    /// Who shares one connection to the upstream. Default [`Sharing::Shared`].
    pub sharing: Sharing,
}

/// Who shares one connection to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// One connection (one process, for stdio) for every client. Requests the upstream makes
    /// back mid-call go to the one client with calls in flight, and are refused when several
    /// clients have; HTTP upstreams that answer on the call's own stream are always routed.
    #[default]
    Shared,
    /// A connection of its own for each client session, started on the session's first use
    /// and stopped when the session ends: routing is always certain, at the cost of a
    /// process (or HTTP session) per client session.
    Session,
}

#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    Stdio(StdioSpec),
    Http(HttpSpec),
}

impl UpstreamSpec {
    pub fn new(namespace: impl Into<String>, transport: UpstreamTransport) -> Self {
        Self {
            namespace: namespace.into(),
            transport,
            startup_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(30),
            sharing: Sharing::Shared,
        }
    }
}

/// A connection that stayed up this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long a stopping child gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often an idle HTTP upstream is pinged: it has no process whose exit would tell us
/// that it is gone.
const HTTP_HEALTH_INTERVAL: Duration = Duration::from_secs(15);
/// Longest wait for the answer to a health `ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts supervising `spec`; the task ends (with every child stopped) when `shutdown` fires.
pub fn start_upstream(
    spec: UpstreamSpec,
    provider: Arc<McpProvider>,
    handle: NamespaceHandle,
    secrets: Option<Arc<dyn ActorSecrets>>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let keying = if depends_on_actor(&spec.transport) {
        Some(Keying::Actor(secrets))
    } else if spec.sharing == Sharing::Session {
        Some(Keying::Session)
    } else {
        None
    };
    if let Some(keying) = keying {
        provider.serve_sessions(SessionConnections::new(
            &spec,
            keying,
            handle.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(async move {
        supervise(spec, provider.clone(), handle, shutdown).await;
        provider.sessions_stopped().await;
    })
}

async fn supervise(
    spec: UpstreamSpec,
    provider: Arc<McpProvider>,
    handle: NamespaceHandle,
    shutdown: CancellationToken,
) {
    let namespace: Arc<str> = spec.namespace.as_str().into();
    let mut backoff = Backoff::new(spec.backoff_initial, spec.backoff_cap);
    let mut ever_ready = false;
    // Only the first attempt is `starting`. A retry keeps the `failed` or `restarting` state,
    // and the detail saying why, that the last attempt left, so `/readyz`, `list` and `check`
    // never show a failing upstream as merely starting.
    handle.set_state(UpstreamState::Starting, None);
    loop {
        let client = UpstreamClient::new(&handle);
        let started = Instant::now();
        let attempt = tokio::select! {
            r = tokio::time::timeout(spec.startup_timeout, connect(&spec.transport, client.clone())) => match r {
                Ok(r) => r,
                Err(_) => Err(format!("no answer to initialize within {:?}", spec.startup_timeout)),
            },
            _ = shutdown.cancelled() => {
                handle.set_state(UpstreamState::Stopped, None);
                return;
            }
        };
        let detail = match attempt {
            Ok(live) => {
                let outcome =
                    serve(&spec, &provider, &handle, &client, live, started, &shutdown).await;
                match outcome {
                    Served::Shutdown => {
                        handle.set_state(UpstreamState::Stopped, None);
                        return;
                    }
                    Served::Ended {
                        was_ready,
                        healthy_for,
                        why,
                    } => {
                        ever_ready |= was_ready;
                        if healthy_for >= HEALTHY_AFTER {
                            backoff.reset();
                        }
                        why
                    }
                }
            }
            Err(why) => why,
        };
        let delay = backoff.next_delay();
        tracing::warn!(upstream = %namespace, reason = %detail, retry_in = ?delay, "upstream is down");
        handle.set_state(
            if ever_ready {
                UpstreamState::Restarting
            } else {
                UpstreamState::Failed
            },
            Some(detail),
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {
                handle.set_state(UpstreamState::Stopped, None);
                return;
            }
        }
    }
}

pub(crate) enum Live {
    Stdio(stdio::StdioConnection),
    Http(rmcp::service::RunningService<RoleClient, UpstreamClient>),
}

impl Live {
    /// The running service, the process group of a stdio child, and its lane.
    pub(crate) fn into_parts(
        self,
    ) -> (
        rmcp::service::RunningService<RoleClient, UpstreamClient>,
        Option<i32>,
        Option<Arc<Lane>>,
    ) {
        match self {
            Live::Stdio(c) => (c.service, c.pgid, Some(c.lane)),
            Live::Http(s) => (s, None, None),
        }
    }
}

pub(crate) async fn connect(
    transport: &UpstreamTransport,
    client: UpstreamClient,
) -> Result<Live, String> {
    // The shared connection has no caller: values that depend on one are left empty.
    let filled;
    let transport = if depends_on_actor(transport) {
        filled = fill(transport, None, None).await?;
        &filled
    } else {
        transport
    };
    match transport {
        UpstreamTransport::Stdio(s) => stdio::connect(s, client).await.map(Live::Stdio),
        UpstreamTransport::Http(h) => http::connect(h, client).await.map(Live::Http),
    }
}

enum Served {
    Shutdown,
    Ended {
        was_ready: bool,
        healthy_for: Duration,
        why: String,
    },
}

async fn serve(
    spec: &UpstreamSpec,
    provider: &McpProvider,
    handle: &NamespaceHandle,
    client: &UpstreamClient,
    live: Live,
    started: Instant,
    shutdown: &CancellationToken,
) -> Served {
    let (service, pgid, lane) = live.into_parts();
    let peer = service.peer().clone();
    // The registry keeps the last known catalog; rmcp's response cache would hold a second
    // copy of it (tens of MiB for a large catalog).
    peer.set_response_cache_config(rmcp::ClientCacheConfig::disabled())
        .await;
    let service_ct = service.cancellation_token();
    let mut waiting = Box::pin(service.waiting());

    let first = tokio::select! {
        r = tokio::time::timeout(spec.startup_timeout, publish_catalog(&peer, handle)) => {
            r.unwrap_or_else(|_| Err("tools/list timed out".into()))
        }
        _ = &mut waiting => Err("the upstream closed the connection during start-up".into()),
        _ = shutdown.cancelled() => {
            stop(service_ct, waiting, pgid).await;
            return Served::Shutdown;
        }
    };
    if let Err(why) = first {
        stop(service_ct, waiting, pgid).await;
        return Served::Ended {
            was_ready: false,
            healthy_for: Duration::ZERO,
            why,
        };
    }
    let lists = publish_capabilities(&peer, handle);
    tokio::select! {
        r = tokio::time::timeout(spec.startup_timeout, publish_extras(&peer, handle, lists)) => {
            if r.is_err() {
                tracing::warn!(upstream = %spec.namespace, "listing resources and prompts timed out");
            }
        }
        _ = shutdown.cancelled() => {
            stop(service_ct, waiting, pgid).await;
            return Served::Shutdown;
        }
    }
    handle.set_startup(started.elapsed());
    provider.attach(Connection::new(peer.clone(), client).with_lane(lane));
    handle.set_state(UpstreamState::Ready, None);
    let ready_at = Instant::now();
    tracing::info!(upstream = %spec.namespace, took = ?started.elapsed(), "upstream ready");
    let periodic = matches!(spec.transport, UpstreamTransport::Http(_));
    let mut health = Box::pin(watch_health(&peer, &client.suspect, periodic));

    let why = loop {
        tokio::select! {
            quit = &mut waiting => {
                break match quit {
                    Ok(reason) => format!("connection ended ({reason:?})"),
                    Err(e) => format!("connection task failed: {e}"),
                };
            }
            why = &mut health => {
                // The connection object may still be open (rmcp's HTTP client retries its
                // streams forever), so close it before reconnecting.
                provider.detach();
                stop(service_ct, waiting, pgid).await;
                return Served::Ended { was_ready: true, healthy_for: ready_at.elapsed(), why };
            }
            _ = client.tools_changed.notified() => {
                if let Err(why) = publish_catalog(&peer, handle).await {
                    tracing::warn!(upstream = %spec.namespace, error = %why, "re-listing tools failed");
                }
            }
            _ = client.resources_changed.notified() => {
                publish_extras(&peer, handle, Lists { resources: true, prompts: false }).await;
            }
            _ = client.prompts_changed.notified() => {
                publish_extras(&peer, handle, Lists { resources: false, prompts: true }).await;
            }
            _ = shutdown.cancelled() => {
                provider.detach();
                stop(service_ct, waiting, pgid).await;
                return Served::Shutdown;
            }
        }
    };
    // In-flight calls already failed: their response channels closed with the connection.
    provider.detach();
    kill_group(pgid, libc::SIGKILL);
    Served::Ended {
        was_ready: true,
        healthy_for: ready_at.elapsed(),
        why,
    }
}

/// Resolves, with the reason, once the upstream stops answering. It is asked with a `ping`
/// whenever a call fails at the transport level and, if `periodic`, every
/// `HTTP_HEALTH_INTERVAL`.
pub(crate) async fn watch_health(
    peer: &Peer<RoleClient>,
    suspect: &Notify,
    periodic: bool,
) -> String {
    loop {
        tokio::select! {
            _ = suspect.notified() => {}
            _ = tokio::time::sleep(HTTP_HEALTH_INTERVAL), if periodic => {}
        }
        let ping = peer.send_request(ClientRequest::PingRequest(PingRequest::default()));
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            // An error answer (say, a server without `ping`) still proves it is there.
            Ok(Ok(_)) | Ok(Err(ServiceError::McpError(_))) => {}
            Ok(Err(ServiceError::TransportSend(e))) => {
                return format!("the upstream stopped answering: {}", e.error);
            }
            Ok(Err(e)) => return format!("the upstream stopped answering: {e}"),
            Err(_) => return format!("no answer to ping within {PING_TIMEOUT:?}"),
        }
    }
}

pub(crate) async fn publish_catalog(
    peer: &Peer<RoleClient>,
    handle: &NamespaceHandle,
) -> Result<(), String> {
    let tools = peer
        .list_all_tools()
        .await
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let outcome = handle.set_catalog(tools);
    release_freed_memory();
    match outcome {
        Ok(n) => {
            tracing::debug!(
                upstream = handle.namespace(),
                operations = n,
                "catalog published"
            );
            Ok(())
        }
        Err(RegistryError::Collision(names)) => {
            // Not fatal: the rest of the catalog is served; the clash is reported loudly.
            tracing::error!(upstream = handle.namespace(), names = ?names, "operation names collide with another upstream; those tools are left out");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Which lists besides tools to fetch from an upstream.
#[derive(Clone, Copy)]
pub(crate) struct Lists {
    pub(crate) resources: bool,
    pub(crate) prompts: bool,
}

/// Records what the upstream declared in its `initialize` answer, and returns the lists
/// besides tools it declared.
pub(crate) fn publish_capabilities(peer: &Peer<RoleClient>, handle: &NamespaceHandle) -> Lists {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let lists = Lists {
        resources: capabilities.resources.is_some(),
        prompts: capabilities.prompts.is_some(),
    };
    handle.set_capabilities(capabilities);
    lists
}

/// Fetches resources, resource templates and prompts into the registry. A failure leaves that
/// list empty and is logged: the upstream's tools still serve.
pub(crate) async fn publish_extras(
    peer: &Peer<RoleClient>,
    handle: &NamespaceHandle,
    lists: Lists,
) {
    let ns = handle.namespace();
    if lists.resources {
        let resources = peer.list_all_resources().await.unwrap_or_else(|e| {
            tracing::warn!(upstream = ns, error = %e, "resources/list failed");
            Vec::new()
        });
        let templates = peer
            .list_all_resource_templates()
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(upstream = ns, error = %e, "resources/templates/list failed");
                Vec::new()
            });
        handle.set_resources(resources, templates);
    }
    if lists.prompts {
        let prompts = peer.list_all_prompts().await.unwrap_or_else(|e| {
            tracing::warn!(upstream = ns, error = %e, "prompts/list failed");
            Vec::new()
        });
        handle.set_prompts(prompts);
    }
}

/// Hands memory freed after a catalog load back to the system. Listing a large upstream parses
/// megabytes of JSON that are dropped at once; glibc keeps such memory in its per-thread arenas
/// unless asked, which for a 10,000-tool catalog is tens of MiB of resident memory.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Stops a connection: SIGTERM to the process group, close the transport, SIGKILL what is left.
pub(crate) async fn stop<F>(
    service_ct: rmcp::service::RunningServiceCancellationToken,
    waiting: std::pin::Pin<Box<F>>,
    pgid: Option<i32>,
) where
    F: std::future::Future,
{
    kill_group(pgid, libc::SIGTERM);
    service_ct.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, waiting).await;
    kill_group(pgid, libc::SIGKILL);
}
