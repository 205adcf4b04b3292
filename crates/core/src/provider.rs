//! The small trait through which the registry reaches the code that talks to one source.

use std::{future::Future, pin::Pin, sync::Arc};

#[allow(deprecated)] // logging is deprecated in the newest spec; older peers still use it
use rmcp::model::LoggingMessageNotificationParam;
use rmcp::{
    ErrorData,
    model::{CallToolResult, ClientRequest, ClientResult, JsonObject, ServerRequest, ServerResult},
};
use tokio_util::sync::CancellationToken;

use crate::{calltree::CallId, error::CallError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One progress report from an upstream, to be passed to the caller's progress token.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// Where a call's progress reports go.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The way back to the client whose call this is: requests an upstream makes in the middle of
/// a call (sampling, elicitation, roots) and its log messages go to that client and no other.
/// Implemented by the session that made the call; providers see only this trait.
pub trait ClientChannel: Send + Sync {
    /// Asks the client `request` and returns its answer. Fails at once, without asking, when
    /// the client did not declare the capability the request needs. `ct` withdraws the
    /// request (the client is told) when the upstream or the call gives up on it.
    fn request(
        &self,
        request: ServerRequest,
        ct: CancellationToken,
    ) -> BoxFuture<'static, Result<ClientResult, ErrorData>>;

    /// Passes on an upstream's log message if the client's logging level admits it.
    #[allow(deprecated)]
    fn log(&self, message: LoggingMessageNotificationParam) -> BoxFuture<'static, ()>;

    /// Identifies the client session: two channels with the same id reach the same client.
    fn client_id(&self) -> u64;

    /// Cancelled when the client session ends (what a provider keeps for it can go then).
    fn session_end(&self) -> CancellationToken;
}

/// What a provider gets with each call.
#[derive(Clone)]
pub struct CallContext {
    pub call_id: CallId,
    /// Cancelled when the caller cancels or the deadline passes. A provider must then tell its
    /// upstream (for MCP, `notifications/cancelled`) and return promptly.
    pub ct: CancellationToken,
    pub progress: Option<ProgressSink>,
    /// The client that made the call, for the upstream's requests back to it; `None` when the
    /// caller cannot be asked anything (the upstream then gets an error at once).
    pub client: Option<Arc<dyn ClientChannel>>,
    /// The authenticated actor making the call, for upstreams whose settings depend on it.
    pub actor: Option<Arc<str>>,
}

/// Talks to one source of operations.
pub trait Provider: Send + Sync + 'static {
    /// Calls `tool` (the upstream's own name for it). An upstream tool error (`isError`) is an
    /// `Ok` result; `Err` is for what the hub itself reports (unavailable, protocol error, cancelled).
    fn call(
        &self,
        tool: &str,
        input: Option<JsonObject>,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<CallToolResult, CallError>>;

    /// Forwards any other MCP request (resources, prompts, completion, logging, subscriptions)
    /// to the upstream unchanged, under the same cancellation and routing as a call. An error
    /// the upstream answered with is `Err(ForwardError::Upstream)`, passed on as it is.
    fn forward(
        &self,
        request: ClientRequest,
        ctx: CallContext,
    ) -> BoxFuture<'static, Result<ServerResult, ForwardError>> {
        let _ = (request, ctx);
        Box::pin(async {
            Err(ForwardError::Hub(CallError::new(
                crate::error::ErrorCode::NotFound,
                "this provider serves tools only",
            )))
        })
    }
}

/// Why a forwarded request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// The upstream's own JSON-RPC error, for the client to see unchanged.
    #[error("upstream error {}: {}", .0.code.0, .0.message)]
    Upstream(ErrorData),
    /// What the hub itself reports (unavailable, cancelled, timeout).
    #[error(transparent)]
    Hub(CallError),
}

impl From<CallError> for ForwardError {
    fn from(e: CallError) -> Self {
        ForwardError::Hub(e)
    }
}
