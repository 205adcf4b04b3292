//! The small trait through which the registry reaches the code that talks to one source.

use std::{future::Future, pin::Pin, sync::Arc};

use rmcp::model::{CallToolResult, JsonObject};
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

/// What a provider gets with each call.
#[derive(Clone)]
pub struct CallContext {
    pub call_id: CallId,
    /// Cancelled when the caller cancels or the deadline passes. A provider must then tell its
    /// upstream (for MCP, `notifications/cancelled`) and return promptly.
    pub ct: CancellationToken,
    pub progress: Option<ProgressSink>,
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
}
