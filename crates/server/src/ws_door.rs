//! The WebSocket front door: `GET /mcp/ws`, the xiaozhi relay's `/mcp_endpoint/call/` (the
//! same, with results shaped for clients that read only `content[0].text`), and
//! `/mcp_endpoint/health` (JSON stats).
//!
//! Each connection authenticates once when it opens, like every front door (`Authorization:
//! Bearer` or `?token=`); a refused credential gets the upgrade and then, at once, close code
//! 1008 with the reason, before any message is served. The session keeps checking the
//! credential as it goes (as stdio does), so a revoked token stops working on an open socket.
//! The session ends, and its calls are cancelled, when the socket closes.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    extract::{Query, State, WebSocketUpgrade, ws::WebSocket},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use rmcp::ServiceExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    access::http_credential,
    session::{HubState, Session},
    session_end::EndingTransport,
    summary::Presentation,
    websocket::{SocketLimits, SocketTransport, refuse},
};

/// Settings of the WebSocket front door.
#[derive(Debug, Clone, Default)]
pub struct SocketSettings {
    pub limits: SocketLimits,
    /// The `key` `/mcp_endpoint/health` requires. `None`: see `health_without_key`.
    pub health_key: Option<String>,
    /// Without a `health_key`, whether health answers anyone (the hub is bound to loopback,
    /// so only this machine can ask) or nobody (`403`).
    pub health_without_key: bool,
}

/// Bytes of each connection's read buffer. Small, since most frames are small and a
/// thousand idle devices should not cost a thousand large buffers; larger frames grow it.
const READ_BUFFER: usize = 8 * 1024;

/// MCP over WebSocket: the subprotocol the TypeScript SDK asks for.
const SUBPROTOCOL: &str = "mcp";

/// Open connections and sessions, for `/mcp_endpoint/health`.
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    sessions: AtomicUsize,
}

/// Decrements its counter when dropped, however the connection ends.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every connection of the front door shares.
struct Door {
    hub: Arc<HubState>,
    settings: SocketSettings,
    /// Accepted browser `Origin` values (the HTTP front door's); `None`: loopback only.
    /// Browsers let any page open a WebSocket to anywhere, so this is what keeps a web page
    /// from using a hub on the visitor's machine.
    allowed_origins: Option<Vec<String>>,
    stats: Stats,
    shutdown: CancellationToken,
    /// Live Streamable HTTP sessions, for the stats.
    http_sessions: Box<dyn Fn() -> usize + Send + Sync>,
}

/// The WebSocket routes. `allowed_origins` as in `HttpSettings`; `http_sessions` counts the
/// HTTP front door's live sessions.
pub fn routes(
    hub: Arc<HubState>,
    settings: SocketSettings,
    allowed_origins: Option<Vec<String>>,
    shutdown: CancellationToken,
    http_sessions: impl Fn() -> usize + Send + Sync + 'static,
) -> Router {
    let door = Arc::new(Door {
        hub,
        settings,
        allowed_origins,
        stats: Stats::default(),
        shutdown,
        http_sessions: Box::new(http_sessions),
    });
    Router::new()
        .route("/mcp/ws", get(mcp_ws))
        .route("/mcp_endpoint/call/", get(relay_call))
        .route("/mcp_endpoint/call", get(relay_call))
        .route("/mcp_endpoint/health", get(health))
        .with_state(door)
}

async fn mcp_ws(
    State(door): State<Arc<Door>>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    door.accept(upgrade, &headers, &uri, Presentation::AsIs)
}

async fn relay_call(
    State(door): State<Arc<Door>>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    door.accept(upgrade, &headers, &uri, Presentation::SummaryFirst)
}

impl Door {
    fn accept(
        self: &Arc<Self>,
        upgrade: WebSocketUpgrade,
        headers: &HeaderMap,
        uri: &Uri,
        presentation: Presentation,
    ) -> Response {
        if let Some(refused) = refuse_origin(headers, self.allowed_origins.as_deref(), "websocket")
        {
            return refused;
        }
        let limit = self.settings.limits.read_limit();
        let credential = http_credential(headers, uri);
        let door = self.clone();
        upgrade
            .protocols([SUBPROTOCOL])
            .read_buffer_size(READ_BUFFER)
            .max_message_size(limit)
            .max_frame_size(limit)
            .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket: upgrade failed"))
            .on_upgrade(
                move |socket| async move { door.serve(socket, credential, presentation).await },
            )
    }

    async fn serve(
        self: Arc<Self>,
        socket: WebSocket,
        credential: Result<String, patchbay_identity::AuthError>,
        presentation: Presentation,
    ) {
        let _connection = Counted::new(&self.stats.connections);
        let access = &self.hub.access;
        let token = if access.requires_auth() {
            let outcome = match credential {
                Ok(token) => access.authenticate(&token).await.map(|_| token),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(token) => Some(token),
                Err(e) => {
                    tracing::info!(error = %e, "websocket: credential refused");
                    refuse(socket, &format!("unauthorized: {e}")).await;
                    return;
                }
            }
        } else {
            None
        };
        let transport = EndingTransport::new(SocketTransport::new(socket, self.settings.limits));
        let session = Session::for_socket(self.hub.clone(), token, "websocket")
            .with_presentation(presentation);
        let service = match session
            .serve_with_ct(transport, self.shutdown.child_token())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "websocket: connection ended before initialize");
                return;
            }
        };
        let _session = Counted::new(&self.stats.sessions);
        let _ = service.waiting().await;
    }
}

#[derive(Deserialize)]
struct HealthQuery {
    key: Option<String>,
}

/// JSON stats: open WebSocket connections and sessions, HTTP sessions, upstreams ready of
/// total, operations. Needs `?key=` equal to `server.health_key` when one is set; without
/// one it answers only when the hub is bound to loopback.
async fn health(State(door): State<Arc<Door>>, Query(q): Query<HealthQuery>) -> Response {
    let allowed = match (&door.settings.health_key, &q.key) {
        (Some(expected), Some(given)) => same(expected.as_bytes(), given.as_bytes()),
        (Some(_), None) => false,
        (None, _) => door.settings.health_without_key,
    };
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "forbidden: a valid `key` is required"})),
        )
            .into_response();
    }
    let registry = door.hub.dispatcher.registry();
    let statuses = registry.statuses();
    let ready = statuses
        .iter()
        .filter(|s| s.state == patchbay_core::UpstreamState::Ready)
        .count();
    Json(json!({
        "status": "ok",
        "websocket": {
            "connections": door.stats.connections.load(Ordering::Relaxed),
            "sessions": door.stats.sessions.load(Ordering::Relaxed),
        },
        "http_sessions": (door.http_sessions)(),
        "upstreams": {"ready": ready, "total": statuses.len()},
        "operations": registry.len(),
    }))
    .into_response()
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `403` for a browser page whose `Origin` may not connect (see [`origin_allowed`]); `door`
/// names the route in the log.
pub(crate) fn refuse_origin(
    headers: &HeaderMap,
    allowed: Option<&[String]>,
    door: &str,
) -> Option<Response> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin_allowed(origin, allowed) {
        return None;
    }
    tracing::warn!(?origin, "{door}: origin not allowed");
    Some((StatusCode::FORBIDDEN, "origin not allowed\n").into_response())
}

/// Origins of pages on this machine; the default when `allowed_origins` is not set.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Whether a browser `Origin` may connect. Non-browser clients send none and always pass.
/// Patterns are `scheme://host[:port]`, `:*` for any port, or `null`.
pub(crate) fn origin_allowed(origin: Option<&str>, allowed: Option<&[String]>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    let Some(allowed) = allowed else {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        let host = strip_port(rest);
        return matches!(scheme, "http" | "https") && LOOPBACK_HOSTS.contains(&host);
    };
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_suffix(":*") {
            Some(base) => origin == base || strip_port_full(&origin) == base,
            None => origin == pattern,
        }
    })
}

/// `host[:port]` without the port (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

/// `scheme://host[:port]` without the port.
fn strip_port_full(origin: &str) -> &str {
    match origin.split_once("://") {
        Some((scheme, rest)) => &origin[..scheme.len() + 3 + strip_port(rest).len()],
        None => origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_default_to_loopback() {
        assert!(origin_allowed(None, None));
        assert!(origin_allowed(Some("http://localhost:3000"), None));
        assert!(origin_allowed(Some("https://[::1]:8443"), None));
        assert!(origin_allowed(Some("http://127.0.0.1"), None));
        assert!(!origin_allowed(Some("https://evil.example"), None));
        assert!(!origin_allowed(Some("http://localhost.evil.example"), None));
        assert!(!origin_allowed(Some("null"), None));
    }

    #[test]
    fn origins_follow_the_configured_patterns() {
        let allowed = vec!["https://app.example:*".to_owned(), "null".to_owned()];
        let allowed = Some(allowed.as_slice());
        assert!(origin_allowed(Some("https://app.example:444"), allowed));
        assert!(origin_allowed(Some("https://app.example"), allowed));
        assert!(origin_allowed(Some("null"), allowed));
        assert!(!origin_allowed(Some("http://app.example"), allowed));
        assert!(!origin_allowed(Some("https://app.example.evil"), allowed));
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
