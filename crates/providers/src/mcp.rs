//! A provider backed by an MCP connection: forwards calls to the current connection, tells
//! the upstream when a call is cancelled, and fails at once when there is no connection.

use std::sync::{Arc, RwLock};

use patchbay_core::{BoxFuture, CallContext, CallError, ErrorCode, Provider};
use rmcp::{
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject,
        ServerResult,
    },
    service::{Peer, PeerRequestOptions, RoleClient, ServiceError},
};

use crate::client::ProgressRoutes;

/// The live half of a connection, swapped in and out by the supervisor.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) progress: Arc<ProgressRoutes>,
}

pub struct McpProvider {
    namespace: Arc<str>,
    connection: RwLock<Option<Connection>>,
}

impl McpProvider {
    pub fn new(namespace: &str) -> Arc<Self> {
        Arc::new(Self { namespace: namespace.into(), connection: RwLock::new(None) })
    }

    pub(crate) fn attach(&self, connection: Connection) {
        *self.connection.write().unwrap_or_else(|p| p.into_inner()) = Some(connection);
    }

    pub(crate) fn detach(&self) {
        *self.connection.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn current(&self) -> Option<Connection> {
        self.connection.read().unwrap_or_else(|p| p.into_inner()).clone()
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
        let connection = self.current();
        let tool = tool.to_owned();
        Box::pin(async move {
            let Some(conn) = connection else {
                return Err(CallError::unavailable(&namespace, "not connected"));
            };
            let mut params = CallToolRequestParams::new(tool);
            params.arguments = input;
            let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
            let mut handle = conn
                .peer
                .send_cancellable_request(request, PeerRequestOptions::no_options())
                .await
                .map_err(|e| service_error(&namespace, e))?;
            let token = handle.progress_token.clone();
            if let Some(sink) = ctx.progress.clone() {
                conn.progress.insert(token.clone(), sink);
            }
            let outcome = tokio::select! {
                response = &mut handle.rx => match response {
                    Ok(Ok(result)) => into_call_result(&namespace, result),
                    Ok(Err(e)) => Err(service_error(&namespace, e)),
                    Err(_) => Err(CallError::unavailable(&namespace, "the connection closed during the call")),
                },
                _ = ctx.ct.cancelled() => {
                    // The hub stops waiting only after the upstream has been told.
                    let _ = handle.cancel(Some("cancelled by the caller".into())).await;
                    Err(CallError::cancelled())
                }
            };
            conn.progress.remove(&token);
            outcome
        })
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

fn service_error(namespace: &str, e: ServiceError) -> CallError {
    match e {
        ServiceError::McpError(err) => CallError::new(
            ErrorCode::UpstreamError,
            format!("upstream `{namespace}` returned error {}: {}", err.code.0, err.message),
        )
        .with_data(serde_json::json!({ "upstreamCode": err.code.0, "upstreamData": err.data })),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
            CallError::unavailable(namespace, "the connection is closed")
        }
        ServiceError::Cancelled { .. } => CallError::cancelled(),
        other => CallError::new(ErrorCode::UpstreamError, format!("upstream `{namespace}`: {other}")),
    }
}
