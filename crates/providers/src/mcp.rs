//! A provider backed by an MCP connection: forwards calls to the current connection, tells
//! the upstream when a call is cancelled, and fails at once when there is no connection.

use std::sync::{Arc, OnceLock, RwLock};

use patchbay_core::{BoxFuture, CallContext, CallError, ErrorCode, ForwardError, Provider};
use rmcp::{
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, ErrorData,
        JsonObject, NumberOrString, ProgressToken, RequestId, ServerResult,
    },
    service::{Peer, PeerRequestOptions, RoleClient, ServiceError},
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    client::{ProgressRoutes, UpstreamClient},
    lane::{Lane, without_bom},
    routing::{CallerGuard, CallerRoutes},
    sessions::SessionConnections,
};

/// The live half of a connection, swapped in and out by the supervisor.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) progress: Arc<ProgressRoutes>,
    pub(crate) callers: Arc<CallerRoutes>,
    /// Told when a call fails at the transport level (see `UpstreamClient::suspect`).
    pub(crate) suspect: Arc<Notify>,
    /// The lean path for `tools/call`, on stdio connections whose protocol version has a
    /// handshake (later versions carry per-request metadata rmcp adds).
    pub(crate) lane: Option<Arc<Lane>>,
}

pub struct McpProvider {
    namespace: Arc<str>,
    connection: RwLock<Option<Connection>>,
    /// With `sharing = "session"`: each client session's own connection.
    sessions: OnceLock<Arc<SessionConnections>>,
}

impl McpProvider {
    pub fn new(namespace: &str) -> Arc<Self> {
        Arc::new(Self {
            namespace: namespace.into(),
            connection: RwLock::new(None),
            sessions: OnceLock::new(),
        })
    }

    pub(crate) fn serve_sessions(&self, sessions: Arc<SessionConnections>) {
        let _ = self.sessions.set(sessions);
    }

    /// Waits for the per-session connections to stop, if there are any.
    pub(crate) async fn sessions_stopped(&self) {
        if let Some(sessions) = self.sessions.get() {
            sessions.stopped().await;
        }
    }

    /// What a call's connection is chosen from, taken when the call starts.
    fn connections(&self) -> Connections {
        Connections {
            shared: self.current(),
            sessions: self.sessions.get().cloned(),
        }
    }

    pub(crate) fn attach(&self, connection: Connection) {
        *self.connection.write().unwrap_or_else(|p| p.into_inner()) = Some(connection);
    }

    pub(crate) fn detach(&self) {
        *self.connection.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn current(&self) -> Option<Connection> {
        self.connection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Provider for McpProvider {
    fn call(
        &self,
        tool: &str,
        input: Option<JsonObject>,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<CallToolResult, CallError>> {
        let namespace = self.namespace.clone();
        let connections = self.connections();
        let tool = tool.to_owned();
        Box::pin(async move {
            let hub_error = |e: ForwardError| match e {
                ForwardError::Hub(e) => e,
                ForwardError::Upstream(err) => upstream_error(&namespace, err),
            };
            let connection = connections.pick(&ctx).await.map_err(hub_error)?;
            if let Some(conn) = &connection
                && let Some(lane) = &conn.lane
            {
                return lane_call(&namespace, conn, lane, &tool, input, ctx).await;
            }
            let mut params = CallToolRequestParams::new(tool);
            params.arguments = input;
            let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            let result = send(&namespace, connection, request, ctx)
                .await
                .map_err(hub_error)?;
            into_call_result(&namespace, result)
        })
    }

    fn forward(
        &self,
        request: ClientRequest,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<ServerResult, ForwardError>> {
        let namespace = self.namespace.clone();
        let connections = self.connections();
        Box::pin(async move {
            let connection = connections.pick(&ctx).await?;
            send(&namespace, connection, request, ctx).await
        })
    }
}

/// The connections a call may go to: the shared one and, when connections are per client
/// session or per actor, those.
struct Connections {
    shared: Option<Connection>,
    sessions: Option<Arc<SessionConnections>>,
}

impl Connections {
    /// The connection a call from `ctx`'s client goes to: the client session's (or actor's)
    /// own when there are such, else the shared one (also for calls without a client).
    async fn pick(self, ctx: &CallContext) -> Result<Option<Connection>, ForwardError> {
        match self.sessions {
            // Boxed: the future may start a whole connection, and kept inline it would make
            // every call's future that large (and copied so) even when there are no sessions.
            Some(sessions) => Ok(Box::pin(sessions.connection(ctx)).await?.or(self.shared)),
            None => Ok(self.shared),
        }
    }
}

/// Sends one request on the connection and waits for its answer, routing the upstream's
/// progress and requests back to the caller meanwhile, and telling the upstream if the call
/// is cancelled first.
async fn send(
    namespace: &str,
    connection: Option<Connection>,
    request: ClientRequest,
    ctx: CallContext,
) -> Result<ServerResult, ForwardError> {
    let Some(conn) = connection else {
        return Err(CallError::unavailable(namespace, "not connected").into());
    };
    let caller = conn.register_caller(&ctx);
    let mut handle = conn
        .peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .map_err(|e| conn.failed(namespace, e))?;
    if let Some(caller) = &caller {
        caller.sent_as(handle.id.clone());
    }
    let token = handle.progress_token.clone();
    if let Some(sink) = ctx.progress.clone() {
        conn.progress.insert(token.clone(), sink);
    }
    let outcome = tokio::select! {
        response = &mut handle.rx => match response {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(conn.failed(namespace, e)),
            Err(_) => {
                conn.suspect.notify_one();
                Err(CallError::unavailable(namespace, "the connection closed during the call").into())
            }
        },
        _ = ctx.ct.cancelled() => {
            // The hub stops waiting only after the upstream has been told.
            let _ = handle.cancel(Some("cancelled by the caller".into())).await;
            Err(CallError::cancelled().into())
        }
    };
    if ctx.progress.is_some() {
        conn.stop_progress(&token).await;
    }
    outcome
}

/// Calls `tool` on the connection's lane: the request is written as one line and its answer
/// taken by id (see `lane`), with the same routing of requests back and progress, the same
/// cancellation and the same errors as a call through rmcp's client.
async fn lane_call(
    namespace: &str,
    conn: &Connection,
    lane: &Arc<Lane>,
    tool: &str,
    input: Option<JsonObject>,
    ctx: CallContext,
) -> Result<CallToolResult, CallError> {
    let closed = || {
        conn.suspect.notify_one();
        CallError::unavailable(namespace, "the connection is closed")
    };
    let id = lane.next_id();
    let caller = conn.register_caller(&ctx);
    let token = ctx.progress.as_ref().map(|sink| {
        let token = ProgressToken(NumberOrString::Number(id as i64));
        conn.progress.insert(token.clone(), sink.clone());
        token
    });
    let outcome = async {
        let mut answer = lane.expect(id).map_err(|_| closed())?;
        let line = request_line(id, tool, input.as_ref(), token.is_some());
        lane.write(&line).await.map_err(|_| closed())?;
        if let Some(caller) = &caller {
            caller.sent_as(RequestId::Number(id as i64));
        }
        tokio::select! {
            line = answer.line() => match line {
                Ok(line) => read_answer(namespace, &line),
                Err(_) => {
                    conn.suspect.notify_one();
                    Err(CallError::unavailable(namespace, "the connection closed during the call"))
                }
            },
            _ = ctx.ct.cancelled() => {
                drop(answer);
                // The hub stops waiting only after the upstream has been told.
                let _ = lane.write(&cancel_line(id)).await;
                Err(CallError::cancelled())
            }
        }
    }
    .await;
    if let Some(token) = token {
        conn.stop_progress(&token).await;
    }
    outcome
}

/// `tools/call` as one JSON-RPC line.
fn request_line(id: u64, tool: &str, arguments: Option<&JsonObject>, progress: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Request<'a> {
        jsonrpc: &'static str,
        id: u64,
        method: &'static str,
        params: Params<'a>,
    }
    #[derive(Serialize)]
    struct Params<'a> {
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<&'a JsonObject>,
        #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
    }
    #[derive(Serialize)]
    struct Meta {
        #[serde(rename = "progressToken")]
        progress_token: u64,
    }
    let request = Request {
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: Params {
            name: tool,
            arguments,
            meta: progress.then_some(Meta { progress_token: id }),
        },
    };
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    line
}

/// `notifications/cancelled` for lane request `id`, as one line.
fn cancel_line(id: u64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": id, "reason": "cancelled by the caller"},
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// The upstream's answer line to a lane `tools/call`.
fn read_answer(namespace: &str, line: &[u8]) -> Result<CallToolResult, CallError> {
    #[derive(Deserialize)]
    struct Answer {
        result: Option<CallToolResult>,
        error: Option<ErrorData>,
    }
    match serde_json::from_slice::<Answer>(without_bom(line)) {
        Ok(Answer {
            result: Some(result),
            error: None,
        }) => Ok(result),
        Ok(Answer {
            error: Some(err), ..
        }) => Err(upstream_error(namespace, err)),
        _ => Err(CallError::new(
            ErrorCode::UpstreamError,
            format!("upstream `{namespace}` answered tools/call with something else"),
        )),
    }
}

impl Connection {
    /// The live half of `client`'s connection, whose requests go out through `peer`.
    pub(crate) fn new(peer: Peer<RoleClient>, client: &UpstreamClient) -> Self {
        Self {
            peer,
            progress: client.progress.clone(),
            callers: client.callers.clone(),
            suspect: client.suspect.clone(),
            lane: None,
        }
    }

    /// Routes the upstream's requests back during the call to the call's client, if it has
    /// one. Registered before sending, so nothing the upstream sends during the call precedes
    /// it.
    fn register_caller(&self, ctx: &CallContext) -> Option<CallerGuard> {
        ctx.client
            .clone()
            .map(|client| self.callers.register(client, ctx.ct.clone()))
    }

    /// Stops routing the progress of `token`, once the call has its answer. rmcp hands each
    /// notification to its own task, so progress the upstream sent just before its result
    /// may not have been routed yet: those tasks run first.
    async fn stop_progress(&self, token: &ProgressToken) {
        tokio::task::yield_now().await;
        self.progress.remove(token);
    }

    /// Calls go out on `lane` when the negotiated protocol version allows it.
    pub(crate) fn with_lane(mut self, lane: Option<Arc<Lane>>) -> Self {
        let handshake = self
            .peer
            .peer_info()
            .is_some_and(|info| info.protocol_version.has_initialize());
        self.lane = lane.filter(|_| handshake);
        self
    }

    /// Maps a failed request to the caller's error, and asks the supervisor to check the
    /// connection when the failure was the transport's rather than the upstream's answer.
    fn failed(&self, namespace: &str, e: ServiceError) -> ForwardError {
        if matches!(
            e,
            ServiceError::TransportClosed | ServiceError::TransportSend(_)
        ) {
            self.suspect.notify_one();
        }
        match e {
            ServiceError::McpError(err) => ForwardError::Upstream(err),
            other => ForwardError::Hub(service_error(namespace, other)),
        }
    }
}

fn into_call_result(namespace: &str, result: ServerResult) -> Result<CallToolResult, CallError> {
    match result {
        ServerResult::CallToolResult(r) => Ok(r),
        // The result union is untagged; a result that parsed as another shape is re-read.
        other => serde_json::to_value(&other)
            .ok()
            .and_then(|v| serde_json::from_value::<CallToolResult>(v).ok())
            .ok_or_else(|| {
                CallError::new(
                    ErrorCode::UpstreamError,
                    format!("upstream `{namespace}` answered tools/call with something else"),
                )
            }),
    }
}

/// An upstream's JSON-RPC error answer to `tools/call`, as the caller of `call` sees it.
fn upstream_error(namespace: &str, err: rmcp::ErrorData) -> CallError {
    CallError::new(
        ErrorCode::UpstreamError,
        format!(
            "upstream `{namespace}` returned error {}: {}",
            err.code.0, err.message
        ),
    )
    .with_data(serde_json::json!({ "upstreamCode": err.code.0, "upstreamData": err.data }))
}

fn service_error(namespace: &str, e: ServiceError) -> CallError {
    match e {
        ServiceError::McpError(err) => upstream_error(namespace, err),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
            CallError::unavailable(namespace, "the connection is closed")
        }
        ServiceError::Cancelled { .. } => CallError::cancelled(),
        other => CallError::new(
            ErrorCode::UpstreamError,
            format!("upstream `{namespace}`: {other}"),
        ),
    }
}
