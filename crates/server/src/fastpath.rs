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
    borrow::Cow,
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
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
use serde::{Deserialize, Serialize};
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
    /// Accepted `Host` values, as (host, port if any), read once; empty accepts any.
    allowed_hosts: Vec<(String, Option<u16>)>,
    inflight: Mutex<HashMap<(SessionId, String), CancellationToken>>,
    touched: Mutex<HashMap<SessionId, Instant>>,
}

/// The parts of a JSON-RPC message the fast path reads.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    /// Absent for a notification (a `null` id reads as absent too: not a request to answer here).
    id: Option<Value>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    params: Option<Params>,
}

/// The parameters of `tools/call` and of `notifications/cancelled`.
#[derive(Deserialize)]
struct Params {
    name: Option<String>,
    arguments: Option<Value>,
    #[serde(rename = "_meta")]
    meta: Option<Meta>,
    #[serde(rename = "requestId")]
    request_id: Option<Value>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "progressToken")]
    progress_token: Option<serde::de::IgnoredAny>,
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
            allowed_hosts: allowed_hosts
                .iter()
                .map(
                    |allowed| match axum::http::uri::Authority::try_from(allowed.as_str()) {
                        Ok(a) => (normalize(a.host()), a.port_u16()),
                        Err(_) => (normalize(allowed), None),
                    },
                )
                .collect(),
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
        // Read into the few fields the fast path looks at; anything that does not fit them is
        // rmcp's to read (and answer).
        let Ok(message) = serde_json::from_slice::<Message>(body) else {
            return Outcome::Pass;
        };
        if message.jsonrpc.as_deref() != Some("2.0") {
            return Outcome::Pass;
        }
        let Some(params) = message.params else {
            return Outcome::Pass;
        };
        match message.method.as_deref() {
            Some("tools/call") => match message.id {
                Some(id) => self.call(session, id, params, identity).await,
                None => Outcome::Pass,
            },
            Some("notifications/cancelled") if message.id.is_none() => {
                self.cancel(session, params.request_id.as_ref())
            }
            _ => Outcome::Pass,
        }
    }

    async fn call(
        self: &Arc<Self>,
        session: &str,
        id: Value,
        params: Params,
        identity: Option<&Identity>,
    ) -> Outcome {
        if !(id.is_string() || id.is_u64() || id.is_i64()) {
            return Outcome::Pass;
        }
        // A caller that wants progress needs a stream; rmcp's path provides it.
        if params.meta.is_some_and(|m| m.progress_token.is_some()) {
            return Outcome::Pass;
        }
        let Some(name) = params.name else {
            return Outcome::Pass;
        };
        let args: Option<JsonObject> = match params.arguments {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o),
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
        // Run here rather than as a task of its own (one task switch less each way); should
        // the client go away first, what is left of the call runs on as a task (`Finish`).
        let outcome = Finish::new(async move {
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
        })
        .await;
        let bytes = match outcome {
            Ok(mut result) => {
                // Sessions negotiate versions before 2026-07-28, which have no `resultType`.
                result.result_type = None;
                reply(&id, "result", &result)
            }
            Err(error) => reply(&id, "error", &error),
        };
        Outcome::Answered(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    }

    /// Cancels a fast-path request; a cancellation for anything else goes on to rmcp.
    fn cancel(&self, session: &str, request: Option<&Value>) -> Outcome {
        let Some(request) = request else {
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
        let (h, port) = (bare(authority.host()), authority.port_u16());
        self.allowed_hosts.iter().any(|(allowed, allowed_port)| {
            allowed.eq_ignore_ascii_case(h) && allowed_port.is_none_or(|p| Some(p) == port)
        })
    }
}

/// A JSON-RPC answer with `id` whose `field` (`result` or `error`) is `value`, written
/// straight to bytes.
fn reply(id: &Value, field: &str, value: &impl Serialize) -> Vec<u8> {
    use serde::{Serializer, ser::SerializeMap};
    let mut bytes = Vec::with_capacity(256);
    let mut writer = serde_json::Serializer::new(&mut bytes);
    let written = (&mut writer).serialize_map(Some(3)).and_then(|mut map| {
        map.serialize_entry("jsonrpc", "2.0")?;
        map.serialize_entry("id", id)?;
        map.serialize_entry(field, value)?;
        map.end()
    });
    match written {
        Ok(()) => bytes,
        Err(_) => serde_json::to_vec(&crate::stdio::error_response(
            id.clone(),
            -32603,
            "internal error",
        ))
        .unwrap_or_default(),
    }
}

/// A call run in its request's own task. Dropped before it is done (the client went away),
/// it goes on as a task of its own, so that it ends as a cancelled call does, the upstream
/// told, rather than being cut off half-way.
struct Finish<T: Send + 'static> {
    call: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> Finish<T> {
    fn new(call: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            call: Some(Box::pin(call)),
        }
    }
}

impl<T: Send + 'static> Future for Finish<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(call) = self.call.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(call.as_mut().poll(cx));
        self.call = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for Finish<T> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            tokio::spawn(call);
        }
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
    bare(host).to_ascii_lowercase()
}

/// A host without the brackets of an IPv6 literal.
fn bare(host: &str) -> &str {
    host.trim_matches(['[', ']'])
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
