//! The endpoint dialer: an outbound front door. For each `[[endpoints]]` entry the hub opens a
//! WebSocket to a vendor's endpoint (the xiaozhi cloud hands each user such a URL) and then
//! serves MCP on it as the server: the vendor's cloud is the client, sending `initialize`,
//! `tools/list`, `tools/call` and `ping`. Calls run as the entry's actor and vendor, with
//! results shaped for clients that read only `content[0].text`.
//!
//! The connection is kept forever: when it cannot be opened or it ends, the dialer waits
//! (exponential backoff with jitter from 1 s up to `backoff_cap`, reset once a connection
//! stayed up for `healthy_after`) and dials again. Its state is in `/readyz` under
//! `endpoints`, with the URL's query values redacted.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use patchbay_core::Backoff;
use patchbay_identity::{Credential, Identity};
use rmcp::ServiceExt;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    session::{HubState, Session},
    session_end::EndingTransport,
    summary::Presentation,
    surface::Expose,
    websocket::{SocketLimits, SocketTransport},
    ws_client::{self, redact},
};

/// One endpoint to keep a connection to.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// `ws://` or `wss://` URL, secrets and all (never logged: see [`redact`]).
    pub url: String,
    /// Who the calls on the connection run as; `None` on a hub without authentication.
    pub actor: Option<String>,
    pub vendor: Option<String>,
    pub roles: Vec<String>,
    /// The surface served on the connection. Default `meta`.
    pub expose: Expose,
    /// Longest wait between attempts. Default 60 s.
    pub backoff_cap: Duration,
    /// A connection up this long resets the backoff. Default 60 s.
    pub healthy_after: Duration,
    /// Ping interval and frame limit (a peer silent for two intervals is dropped).
    pub limits: SocketLimits,
    /// How long the TCP, TLS and WebSocket handshakes may take together. Default 10 s.
    pub connect_timeout: Duration,
    /// The first wait after a failure. 1 s; tests make it smaller.
    pub initial_backoff: Duration,
}

impl EndpointSpec {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            actor: None,
            vendor: None,
            roles: Vec::new(),
            expose: Expose::Meta,
            backoff_cap: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            limits: SocketLimits::default(),
            connect_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
        }
    }
}

/// Where one endpoint's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    Connecting,
    Connected,
    Retrying,
    Stopped,
}

/// One endpoint as `/readyz` and `patchbay check` show it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// The URL with query values and user information redacted.
    pub url: String,
    pub actor: Option<String>,
    pub vendor: Option<String>,
    pub state: EndpointState,
    /// Why the last attempt failed or the last connection ended.
    pub last_error: Option<String>,
    /// Whether that was the endpoint refusing the credential (HTTP 401/403 at the upgrade).
    pub auth_failure: bool,
    /// Connections opened so far.
    pub connections: u64,
    /// Attempts failed since the last connection that stayed healthy.
    pub failures: u64,
    /// While retrying: the wait before the next attempt, in milliseconds.
    pub retry_in_ms: Option<u64>,
}

/// The status of every endpoint of a hub.
#[derive(Clone, Default)]
pub struct EndpointStates(Arc<Mutex<Vec<EndpointStatus>>>);

impl EndpointStates {
    pub fn statuses(&self) -> Vec<EndpointStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn add(&self, status: EndpointStatus) -> usize {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.push(status);
        all.len() - 1
    }

    fn update(&self, slot: usize, f: impl FnOnce(&mut EndpointStatus)) {
        if let Some(s) = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(slot)
        {
            f(s);
        }
    }
}

/// Starts keeping `spec`'s connection; the task ends when `shutdown` is cancelled.
pub fn start(
    hub: Arc<HubState>,
    spec: EndpointSpec,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    // The status is there from the start, so `/readyz` and `check` see every endpoint.
    let slot = hub.endpoints.add(EndpointStatus {
        url: redact(&spec.url),
        actor: spec.actor.clone(),
        vendor: spec.vendor.clone(),
        state: EndpointState::Connecting,
        last_error: None,
        auth_failure: false,
        connections: 0,
        failures: 0,
        retry_in_ms: None,
    });
    tokio::spawn(run(hub, spec, slot, shutdown))
}

async fn run(hub: Arc<HubState>, spec: EndpointSpec, slot: usize, shutdown: CancellationToken) {
    let shown = redact(&spec.url);
    let states = hub.endpoints.clone();
    let mut backoff = Backoff::new(spec.initial_backoff, spec.backoff_cap);
    loop {
        states.update(slot, |s| {
            s.state = EndpointState::Connecting;
            s.retry_in_ms = None;
        });
        tracing::debug!(endpoint = %shown, "dialer: connecting");
        let attempt = ws_client::connect(&spec.url, spec.limits.read_limit(), spec.connect_timeout);
        let opened = tokio::select! {
            r = attempt => r,
            _ = shutdown.cancelled() => break,
        };
        let (error, auth) = match opened {
            Ok(socket) => {
                tracing::info!(endpoint = %shown, actor = ?spec.actor, "dialer: connected; serving MCP");
                states.update(slot, |s| {
                    s.state = EndpointState::Connected;
                    s.connections += 1;
                    s.last_error = None;
                    s.auth_failure = false;
                });
                let since = Instant::now();
                let ended = serve(&hub, &spec, socket, shutdown.child_token()).await;
                if shutdown.is_cancelled() {
                    break;
                }
                if since.elapsed() >= spec.healthy_after {
                    backoff.reset();
                    states.update(slot, |s| s.failures = 0);
                }
                tracing::info!(endpoint = %shown, after = ?since.elapsed(), "dialer: connection ended: {ended}");
                (ended, false)
            }
            Err(e) => {
                tracing::warn!(endpoint = %shown, "dialer: cannot connect: {e}");
                (e.to_string(), e.is_auth())
            }
        };
        let delay = backoff.next_delay();
        states.update(slot, |s| {
            s.state = EndpointState::Retrying;
            s.last_error = Some(error);
            s.auth_failure = auth;
            s.failures += 1;
            s.retry_in_ms = Some(delay.as_millis() as u64);
        });
        tracing::info!(endpoint = %shown, ?delay, "dialer: reconnecting after a pause");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    states.update(slot, |s| {
        s.state = EndpointState::Stopped;
        s.retry_in_ms = None;
    });
    tracing::debug!(endpoint = %shown, "dialer: stopped");
}

/// Serves one connection until it ends; says how it ended.
async fn serve(
    hub: &Arc<HubState>,
    spec: &EndpointSpec,
    socket: ws_client::ClientSocket,
    stop: CancellationToken,
) -> String {
    let (sink, stream, peer_close) = ws_client::axum_halves(socket);
    let transport = EndingTransport::new(SocketTransport::over(sink, stream, spec.limits));
    let session = match (&spec.actor, hub.access.requires_auth()) {
        (Some(actor), true) => Session::for_identity(
            hub.clone(),
            Identity {
                actor: actor.clone(),
                vendor: spec.vendor.clone(),
                roles: spec.roles.clone(),
                credential: Credential::Configured {
                    label: format!("endpoint {}", redact(&spec.url)),
                },
            },
            "dialer",
        ),
        // Without authentication every caller is served alike; with it, configuration
        // validation demands an actor (and a session without one is refused).
        _ => Session::for_socket(hub.clone(), None, "dialer"),
    }
    .with_presentation(Presentation::SummaryFirst)
    .with_expose(spec.expose);
    let outcome = match session.serve_with_ct(transport, stop).await {
        Ok(service) => {
            let _ = service.waiting().await;
            "closed".to_owned()
        }
        Err(e) => format!("ended before initialize ({e})"),
    };
    match peer_close.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some((code, reason)) if reason.is_empty() => {
            format!("{outcome} by the endpoint (close code {code})")
        }
        Some((code, reason)) => format!("{outcome} by the endpoint (close code {code}: {reason})"),
        None => format!("{outcome}: connection lost or silent"),
    }
}
