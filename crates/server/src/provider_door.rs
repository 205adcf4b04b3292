//! The door of dial-in tool providers: `GET /providers/ws?token=...` (also `Authorization:
//! Bearer`) and the xiaozhi relay's tool side, `/mcp_endpoint/mcp/?token=...`.
//!
//! An MCP server connects here over WebSocket and serves MCP on it; the hub is the client (see
//! `patchbay_providers::DialIns`). The token names the provider, hence its namespace. A token
//! that names no provider gets the upgrade and then, at once, close code 1008 with the reason,
//! before anything is served. A connection replaced by a newer one of the same provider is
//! closed with 1000.

use std::sync::Arc;

use axum::{
    Router,
    extract::{State, WebSocketUpgrade, ws::WebSocket},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use patchbay_providers::DialIns;
use rmcp::RoleClient;

use crate::{
    access::http_credential,
    websocket::{SocketLimits, SocketTransport, close_frame},
    ws_door::origin_allowed,
};

/// 1008 (policy violation): RFC 6455 §7.4.1.
const POLICY_VIOLATION: u16 = 1008;
/// 1000 (normal closure).
const NORMAL: u16 = 1000;

struct Door {
    dial_ins: Arc<DialIns>,
    limits: SocketLimits,
    allowed_origins: Option<Vec<String>>,
}

/// The dial-in routes. `allowed_origins` as in `HttpSettings` (browsers must not be able to
/// make a page on another site a provider).
pub fn routes(
    dial_ins: Arc<DialIns>,
    limits: SocketLimits,
    allowed_origins: Option<Vec<String>>,
) -> Router {
    let door = Arc::new(Door {
        dial_ins,
        limits,
        allowed_origins,
    });
    Router::new()
        .route("/providers/ws", get(dial_in))
        .route("/mcp_endpoint/mcp/", get(dial_in))
        .route("/mcp_endpoint/mcp", get(dial_in))
        .with_state(door)
}

async fn dial_in(
    State(door): State<Arc<Door>>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, door.allowed_origins.as_deref()) {
        tracing::warn!(?origin, "dial-in: origin not allowed");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let credential = http_credential(&headers, &uri).map_err(|e| e.to_string());
    let limit = door.limits.read_limit();
    upgrade
        .protocols(["mcp"])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "dial-in: upgrade failed"))
        .on_upgrade(move |socket| async move { door.serve(socket, credential).await })
}

impl Door {
    async fn serve(self: Arc<Self>, socket: WebSocket, credential: Result<String, String>) {
        let admitted = match credential {
            Ok(token) => self.dial_ins.admit(&token).await,
            Err(e) => Err(e),
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(why) => {
                tracing::info!(reason = %why, "dial-in: provider refused");
                refuse(socket, &format!("unauthorized: {why}")).await;
                return;
            }
        };
        let name = admitted.name().to_owned();
        tracing::info!(provider = %name, "dial-in: provider connected");
        let transport = SocketTransport::<RoleClient>::new(socket, self.limits);
        let closer = transport.closer();
        let ended = admitted
            .serve(transport, move |reason| closer.close(NORMAL, reason))
            .await;
        tracing::debug!(provider = %name, ?ended, "dial-in: connection over");
    }
}

/// Closes with 1008 and `reason`, then waits a moment for the peer's close so the frame is
/// not lost to a reset.
async fn refuse(mut socket: WebSocket, reason: &str) {
    if socket
        .send(close_frame(POLICY_VIOLATION, reason))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}
