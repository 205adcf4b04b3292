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
    extract::{
        State, WebSocketUpgrade,
        ws::{WebSocket, close_code},
    },
    http::{HeaderMap, Uri},
    response::Response,
    routing::get,
};
use patchbay_providers::DialIns;
use rmcp::RoleClient;

use crate::{
    access::http_credential,
    websocket::{SocketLimits, SocketTransport, refuse},
    ws_door::refuse_origin,
};

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
    if let Some(refused) = refuse_origin(&headers, door.allowed_origins.as_deref(), "dial-in") {
        return refused;
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
            .serve(transport, move |reason| {
                closer.close(close_code::NORMAL, reason)
            })
            .await;
        tracing::debug!(provider = %name, ?ended, "dial-in: connection over");
    }
}
