//! The Streamable HTTP front door: `/mcp` (MCP), `/healthz` (alive) and `/readyz` (upstream
//! states and operation counts).

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::{LocalSessionManager},
};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::session::{HubState, Session};

/// Settings of the HTTP front door.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes. Default 4 MiB.
    pub max_body_bytes: usize,
    /// A session with no traffic for this long is closed. Default 30 minutes.
    pub session_idle: Duration,
    /// Accepted `Host` header values; `None` accepts only loopback names.
    pub allowed_hosts: Option<Vec<String>>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            session_idle: Duration::from_secs(30 * 60),
            allowed_hosts: None,
        }
    }
}

/// The front door's routes.
pub fn router(hub: Arc<HubState>, settings: &HttpSettings, shutdown: CancellationToken) -> Router {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(settings.session_idle);
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_max_request_body_bytes(settings.max_body_bytes);
    if let Some(hosts) = &settings.allowed_hosts {
        config = config.with_allowed_hosts(hosts.clone());
    }
    let factory_hub = hub.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Session::new(factory_hub.clone())),
        Arc::new(sessions),
        config,
    );
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(hub)
        .nest_service("/mcp", mcp)
}

#[derive(Deserialize)]
struct ReadyQuery {
    /// With `?strict`, answer 503 unless every upstream is ready.
    strict: Option<String>,
}

async fn readyz(State(hub): State<Arc<HubState>>, Query(q): Query<ReadyQuery>) -> impl IntoResponse {
    let registry = hub.dispatcher.registry();
    let upstreams = registry.statuses();
    let all_ready = upstreams.iter().all(|s| s.state == patchbay_core::UpstreamState::Ready);
    let body = json!({
        "ready": all_ready,
        "operations": registry.len(),
        "upstreams": upstreams,
    });
    let status = if q.strict.is_some() && !all_ready { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body))
}
