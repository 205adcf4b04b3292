//! The Streamable HTTP front door: `/mcp` (MCP), `/healthz` (alive) and `/readyz` (upstream
//! states and operation counts); it also mounts the WebSocket front door's routes (`ws_door`).

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
    streamable_http_server::session::local::LocalSessionManager,
};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use patchbay_identity::AuthError;

use crate::{
    access::{Access, http_credential},
    fastpath::{FastPath, Outcome},
    session::{HubState, Session},
    session_end::EndingSessions,
    ws_door::{self, SocketSettings},
};

/// Settings of the HTTP front door.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes. Default 4 MiB.
    pub max_body_bytes: usize,
    /// A session with no traffic for this long is closed. Default 30 minutes.
    pub session_idle: Duration,
    /// Accepted `Host` header values; `None` accepts only loopback names.
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted browser `Origin` values; `None` accepts only loopback origins. A request
    /// with no `Origin` (any non-browser client) always passes.
    pub allowed_origins: Option<Vec<String>>,
    /// The WebSocket front door (`/mcp/ws`, `/mcp_endpoint/...`).
    pub websocket: SocketSettings,
}

/// Origins a browser page on this machine has; anything else is a DNS-rebinding suspect.
const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            session_idle: Duration::from_secs(30 * 60),
            allowed_hosts: None,
            allowed_origins: None,
            websocket: SocketSettings::default(),
        }
    }
}

/// The front door's routes.
pub fn router(hub: Arc<HubState>, settings: &HttpSettings, shutdown: CancellationToken) -> Router {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(settings.session_idle);
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.clone())
        .with_max_request_body_bytes(settings.max_body_bytes);
    if let Some(hosts) = &settings.allowed_hosts {
        config = config.with_allowed_hosts(hosts.clone());
    }
    config = match &settings.allowed_origins {
        Some(origins) => config.with_allowed_origins(origins.clone()),
        None => config.with_allowed_origins(LOOPBACK_ORIGINS),
    }
    .enforce_origin_validation();
    // A deleted or expired session's calls are cancelled at once (see `session_end`).
    let sessions = Arc::new(EndingSessions::new(sessions));
    let counted = sessions.clone();
    let sockets = ws_door::routes(
        hub.clone(),
        settings.websocket.clone(),
        settings.allowed_origins.clone(),
        shutdown.clone(),
        move || counted.live(),
    );
    let fast = Arc::new(FastPath::new(
        hub.clone(),
        sessions.clone(),
        config.allowed_hosts.clone(),
    ));
    let factory_hub = hub.clone();
    let mcp = Shared(Arc::new(StreamableHttpService::new(
        move || Ok(Session::new(factory_hub.clone())),
        sessions,
        config,
    )));
    let front = Front {
        access: hub.access.clone(),
        fast,
        limit: settings.max_body_bytes,
    };
    let mcp = Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(front),
            front_layer,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(hub)
        .merge(sockets)
        .merge(mcp)
}

/// rmcp's Streamable HTTP service behind an `Arc`. The router clones its services for every
/// request, several times over, and a clone of rmcp's service copies its configuration (the
/// allowed hosts and origins, as strings); this makes each clone a reference count.
#[derive(Clone)]
struct Shared<S>(Arc<S>);

type McpService = StreamableHttpService<Session, EndingSessions<LocalSessionManager>>;

impl tower_service::Service<axum::extract::Request> for Shared<McpService> {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(request).await.map(axum::body::Body::new)) })
    }
}

/// What the `/mcp` layer needs: authentication, the fast path and the body limit.
struct Front {
    access: Access,
    fast: Arc<FastPath>,
    limit: usize,
}

/// Reads a POST body once, offers it to the fast path (see `fastpath`), and otherwise hands it
/// to rmcp. Also answers a POST body that is too large or not a JSON-RPC message with a JSON-RPC error (no
/// id), as MCP clients expect, rather than rmcp's plain text: 413 over the size limit, and 400
/// with -32700 (not JSON) or -32600 (JSON, but not a JSON-RPC message) where rmcp would answer
/// 415 to a body it cannot read.
async fn front_layer(
    State(front): State<Arc<Front>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = front.limit;
    // Every request authenticates; the session then checks it is the session's own caller.
    let identity = if front.access.requires_auth() {
        let credential = http_credential(request.headers(), request.uri());
        let outcome = match credential {
            Ok(token) => front.access.authenticate(&token).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(identity) => {
                request.extensions_mut().insert(identity.clone());
                Some(identity)
            }
            Err(e) => return unauthorized(&e),
        }
    } else {
        None
    };
    let says_json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if request.method() == axum::http::Method::DELETE {
        // rmcp answers a session's DELETE with 202; some clients (the Python SDK) accept only
        // 200 or 204 as success.
        let mut response = next.run(request).await;
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::OK;
        }
        return response;
    }
    if request.method() != axum::http::Method::POST || !says_json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let message =
            format!("invalid request: the body exceeds {limit} bytes or could not be read");
        return jsonrpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32600, &message);
    };
    if let Outcome::Answered(response) = front
        .fast
        .handle(&parts.headers, &bytes, identity.as_ref())
        .await
    {
        return response;
    }
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
    let response = next.run(request).await;
    if response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        Err(e) => jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32700,
            &format!("parse error: {e}"),
        ),
        Ok(_) => jsonrpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "invalid request: the body is not a JSON-RPC message",
        ),
    }
}

/// 401 (or 503 when the credential could not be checked) with `WWW-Authenticate`, and a
/// JSON-RPC error body MCP clients can show.
fn unauthorized(e: &AuthError) -> axum::response::Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = jsonrpc_error(status, -32001, &format!("unauthorized: {e}"));
    if let Ok(value) = axum::http::HeaderValue::from_str(&e.www_authenticate()) {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, value);
    }
    response
}

fn jsonrpc_error(status: StatusCode, code: i32, message: &str) -> axum::response::Response {
    let body = crate::stdio::error_response(serde_json::Value::Null, code, message);
    (status, Json(body)).into_response()
}

/// Whether this request may see which upstreams and endpoints exist: always without
/// authentication, else with a valid credential.
async fn sees_details(
    hub: &HubState,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> bool {
    !hub.access.requires_auth() || {
        match http_credential(headers, uri) {
            Ok(token) => hub.access.authenticate(&token).await.is_ok(),
            Err(_) => false,
        }
    }
}

/// Prometheus text exposition of upstream and endpoint states (same visibility as `/readyz`'s
/// details: an authenticated request when `[auth]` is on).
async fn metrics(
    State(hub): State<Arc<HubState>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> axum::response::Response {
    if !sees_details(&hub, &headers, &uri).await {
        return (
            StatusCode::UNAUTHORIZED,
            "metrics need a valid credential\n",
        )
            .into_response();
    }
    let registry = hub.dispatcher.registry();
    let statuses = registry.statuses();
    let mut text = format!(
        "# HELP patchbay_operations Operations in the registry.\n\
         # TYPE patchbay_operations gauge\npatchbay_operations {}\n",
        registry.len()
    );
    let mut section = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in rows {
            text.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    };
    section(
        "patchbay_upstream_ready",
        "1 when the upstream is connected and its operations callable.",
        "gauge",
        statuses
            .iter()
            .map(|s| {
                let ready = u8::from(s.state == patchbay_core::UpstreamState::Ready);
                (
                    format!(
                        "namespace=\"{}\",state=\"{}\"",
                        label(&s.namespace),
                        s.state.as_str()
                    ),
                    ready.to_string(),
                )
            })
            .collect(),
    );
    section(
        "patchbay_upstream_operations",
        "Operations the upstream contributes.",
        "gauge",
        statuses
            .iter()
            .map(|s| {
                (
                    format!("namespace=\"{}\"", label(&s.namespace)),
                    s.operations.to_string(),
                )
            })
            .collect(),
    );
    let endpoints = hub.endpoints.statuses();
    let endpoint_labels = |e: &crate::dialer::EndpointStatus| {
        format!(
            "url=\"{}\",actor=\"{}\",vendor=\"{}\"",
            label(&e.url),
            label(e.actor.as_deref().unwrap_or("")),
            label(e.vendor.as_deref().unwrap_or(""))
        )
    };
    section(
        "patchbay_endpoint_connected",
        "1 while the outbound endpoint connection is up.",
        "gauge",
        endpoints
            .iter()
            .map(|e| {
                let up = u8::from(e.state == crate::dialer::EndpointState::Connected);
                (endpoint_labels(e), up.to_string())
            })
            .collect(),
    );
    section(
        "patchbay_endpoint_connections_total",
        "Connections opened to the endpoint.",
        "counter",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), e.connections.to_string()))
            .collect(),
    );
    section(
        "patchbay_endpoint_failures",
        "Failed attempts since the last healthy connection.",
        "gauge",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), e.failures.to_string()))
            .collect(),
    );
    section(
        "patchbay_endpoint_auth_failure",
        "1 when the endpoint refused the credential at the last attempt.",
        "gauge",
        endpoints
            .iter()
            .map(|e| (endpoint_labels(e), u8::from(e.auth_failure).to_string()))
            .collect(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// A Prometheus label value, escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Deserialize)]
struct ReadyQuery {
    /// With `?strict`, answer 503 unless every upstream is ready.
    strict: Option<String>,
}

async fn readyz(
    State(hub): State<Arc<HubState>>,
    Query(q): Query<ReadyQuery>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> impl IntoResponse {
    let registry = hub.dispatcher.registry();
    let upstreams = registry.statuses();
    let all_ready = upstreams
        .iter()
        .all(|s| s.state == patchbay_core::UpstreamState::Ready);
    // With authentication on, which upstreams exist is for authenticated callers only; a load
    // balancer still gets the verdict.
    let details = sees_details(&hub, &headers, &uri).await;
    let body = if details {
        let mut body = json!({
            "ready": all_ready,
            "operations": registry.len(),
            "upstreams": upstreams,
        });
        // Outbound endpoint connections (`dialer`), URLs redacted.
        let endpoints = hub.endpoints.statuses();
        if !endpoints.is_empty() {
            body["endpoints"] = json!(endpoints);
        }
        body
    } else {
        json!({ "ready": all_ready })
    };
    let status = if q.strict.is_some() && !all_ready {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}
