//! The HTTP fast path for the hot request: `tools/call` on an established session, answered
//! with one `application/json` body (which Streamable HTTP allows when the client accepts it).
//!
//! Everything else — initialize, notifications, progress-carrying calls, GET streams,
//! DELETE, unknown sessions — goes to rmcp's Streamable HTTP service unchanged. The fast path
//! exists because that service's per-request session machinery costs a few hundred
//! microseconds and most of a core under load (see docs/benchmarks.md); a plain call needs
//! none of it. It keeps the same guarantees: Host validation, the session must be live, the
//! call tree hangs from the session's end token, `notifications/cancelled` for a fast-path
//! request cancels it, and a client that disconnects cancels its call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use patchbay_core::{CallNode, Caller};
use patchbay_identity::Identity;
use rmcp::{
    model::{ClientJsonRpcMessage, JsonObject},
    transport::streamable_http_server::{
        SessionId, SessionManager, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    session::{HubState, Session},
    session_end::EndingSessions,
};

/// Sessions kept alive by fast-path traffic are touched this often at most, so rmcp's idle
/// timer (which only sees its own traffic) does not expire them.
const TOUCH_EVERY: Duration = Duration::from_secs(30);

pub(crate) struct FastPath {
    /// Runs the calls: an HTTP session's surface (the hub's `expose`, results as they are),
    /// shared by every call, since each brings its caller's policy and audit along. Saves
    /// building a session per call.
    tools: Session,
    pub(crate) sessions: Arc<EndingSessions<LocalSessionManager>>,
    /// Accepted `Host` values; empty accepts any.
    pub(crate) allowed_hosts: Vec<String>,
    inflight: Mutex<HashMap<(SessionId, String), CancellationToken>>,
    touched: Mutex<HashMap<SessionId, Instant>>,
}

/// What the fast path made of a request.
pub(crate) enum Outcome {
    /// Answered here.
    Answered(Response),
    /// Not for the fast path: hand it to rmcp.
    Pass,
}

impl FastPath {
    pub(crate) fn new(
        hub: Arc<HubState>,
        sessions: Arc<EndingSessions<LocalSessionManager>>,
        allowed_hosts: Vec<String>,
    ) -> Self {
        Self {
            tools: Session::new(hub),
            sessions,
            allowed_hosts,
            inflight: Mutex::default(),
            touched: Mutex::default(),
        }
    }

    /// Tries to answer a POST to `/mcp` whose body is `body`, from `identity` (already
    /// authenticated by the front door, when the hub requires it).
    pub(crate) async fn handle(
        self: &Arc<Self>,
        headers: &HeaderMap,
        body: &Bytes,
        identity: Option<&Identity>,
    ) -> Outcome {
        let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
            return Outcome::Pass;
        };
        // A browser request (with `Origin`) is left to rmcp, which validates the origin.
        if !accepts_json(headers)
            || !self.host_allowed(headers)
            || headers.contains_key(header::ORIGIN)
            || is_stateless_version(headers)
        {
            return Outcome::Pass;
        }
        let Ok(message) = serde_json::from_slice::<Value>(body) else {
            return Outcome::Pass;
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Outcome::Pass;
        }
        match message.get("method").and_then(Value::as_str) {
            Some("tools/call") => self.call(session, message, identity).await,
            Some("notifications/cancelled") => self.cancel(session, &message),
            _ => Outcome::Pass,
        }
    }

    async fn call(
        self: &Arc<Self>,
        session: &str,
        message: Value,
        identity: Option<&Identity>,
    ) -> Outcome {
        let Some(id) = message
            .get("id")
            .filter(|id| id.is_string() || id.is_u64() || id.is_i64())
            .cloned()
        else {
            return Outcome::Pass;
        };
        let Some(params) = message.get("params").and_then(Value::as_object) else {
            return Outcome::Pass;
        };
        // A caller that wants progress needs a stream; rmcp's path provides it.
        if params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .is_some()
        {
            return Outcome::Pass;
        }
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Outcome::Pass;
        };
        let args: Option<JsonObject> = match params.get("arguments") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o.clone()),
            Some(_) => return Outcome::Pass,
        };
        let Some(shared) = self.sessions.shared_of(session) else {
            return Outcome::Pass;
        };
        // A client that may be asked something mid-call (sampling, elicitation, roots) needs
        // the call on a stream; so does one whose session is not yet set up.
        let Some(link) = shared.link.get().filter(|l| !l.can_be_asked()).cloned() else {
            return Outcome::Pass;
        };
        // The session must be this caller's: anything else is for rmcp's path to refuse.
        let Some(who) = shared.who.get() else {
            return Outcome::Pass;
        };
        if who.key.as_ref() != identity {
            return Outcome::Pass;
        }
        // Only what the call needs, not the whole `Who` (its identity is strings to copy).
        let (policy, audit, actor) = (who.policy.clone(), who.audit.clone(), who.actor.clone());
        let end = shared.end.clone();
        let session: SessionId = session.into();
        self.touch(&session).await;

        let token = end.child_token();
        let key = (session.clone(), id.to_string());
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), token.clone());
        // Dropped when the client goes away mid-call too: the call is then cancelled, and
        // the upstream told, rather than left running for nobody.
        let _guard = InFlight {
            fast: self.clone(),
            key,
            token: token.clone(),
        };

        let tools = self.tools.clone();
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let root = CallNode::root(token);
            let caller = Caller {
                progress: None,
                client: Some(link.channel(None)),
                audit,
                actor,
            };
            tools
                .run_tool(policy.as_ref(), name, args, &root, caller)
                .await
        });
        let body = match task.await {
            Ok(Ok(mut result)) => {
                // Sessions negotiate versions before 2026-07-28, which have no `resultType`.
                result.result_type = None;
                json!({"jsonrpc": "2.0", "id": id, "result": result})
            }
            Ok(Err(error)) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
            Err(_) => crate::stdio::error_response(id, -32603, "internal error"),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Outcome::Answered(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    }

    /// Cancels a fast-path request; a cancellation for anything else goes on to rmcp.
    fn cancel(&self, session: &str, message: &Value) -> Outcome {
        let Some(request) = message.get("params").and_then(|p| p.get("requestId")) else {
            return Outcome::Pass;
        };
        let key = (SessionId::from(session), request.to_string());
        let token = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        match token {
            Some(token) => {
                token.cancel();
                Outcome::Answered(StatusCode::ACCEPTED.into_response())
            }
            None => Outcome::Pass,
        }
    }

    /// Tells rmcp's session worker the session is in use, at most every `TOUCH_EVERY`.
    async fn touch(&self, session: &SessionId) {
        let now = Instant::now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(session)
                .is_some_and(|t| now.duration_since(*t) < TOUCH_EVERY)
            {
                return;
            }
            touched.retain(|_, t| now.duration_since(*t) < TOUCH_EVERY * 4);
            touched.insert(session.clone(), now);
        }
        let keepalive: ClientJsonRpcMessage = match serde_json::from_value(
            json!({"jsonrpc": "2.0", "method": "notifications/patchbay/keepalive"}),
        ) {
            Ok(m) => m,
            Err(_) => return,
        };
        let _ = self.sessions.accept_message(session, keepalive).await;
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Ok(authority) = axum::http::uri::Authority::try_from(host) else {
            return false;
        };
        let (h, port) = (normalize(authority.host()), authority.port_u16());
        self.allowed_hosts.iter().any(|allowed| {
            match axum::http::uri::Authority::try_from(allowed.as_str()) {
                Ok(a) => normalize(a.host()) == h && a.port_u16().is_none_or(|p| Some(p) == port),
                Err(_) => normalize(allowed) == h,
            }
        })
    }
}

struct InFlight {
    fast: Arc<FastPath>,
    key: (SessionId, String),
    token: CancellationToken,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.token.cancel();
        self.fast
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn normalize(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let m = m.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case("application/json")
                || m == "*/*"
                || m.eq_ignore_ascii_case("application/*")
        })
}

/// 2026-07-28 requests are stateless and carry per-request metadata rmcp checks; leave them to it.
fn is_stateless_version(headers: &HeaderMap) -> bool {
    headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28")
}
