//! Runs calls: name -> policy -> schema -> provider, under the call tree's cancellation and
//! deadline. Knows nothing of MCP framing or transports.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::Value;

use crate::{
    calltree::CallNode,
    error::CallError,
    policy::Policy,
    provider::{CallContext, ProgressSink},
    registry::{Registry, UpstreamState},
};

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Per-call timeout when the namespace sets none. Default 60 s.
    pub call_timeout: Duration,
    /// How many calls of one batch run at once. Default 8.
    pub batch_concurrency: usize,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            batch_concurrency: 8,
        }
    }
}

/// One item of a batch.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub operation: String,
    pub input: Option<Value>,
}

/// One call's outcome, in the caller's terms.
pub type CallOutcome = Result<CallToolResult, CallError>;

pub struct Dispatcher {
    registry: Arc<Registry>,
    settings: DispatchSettings,
}

impl Dispatcher {
    pub fn new(registry: Arc<Registry>, settings: DispatchSettings) -> Self {
        Self { registry, settings }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn settings(&self) -> &DispatchSettings {
        &self.settings
    }

    /// Runs a batch concurrently (bounded); outcomes come back in input order, each independent.
    /// `progress_for(i)` gives the progress sink of the batch's `i`th call.
    pub async fn call_batch(
        &self,
        policy: &dyn Policy,
        calls: Vec<CallRequest>,
        parent: &CallNode,
        progress_for: impl Fn(usize) -> Option<ProgressSink>,
    ) -> Vec<CallOutcome> {
        let concurrency = self.settings.batch_concurrency.max(1);
        stream::iter(calls.into_iter().enumerate())
            .map(|(i, req)| self.call(policy, req.operation, req.input, parent, progress_for(i)))
            .buffered(concurrency)
            .collect()
            .await
    }

    /// Runs one call as a child of `parent`.
    pub async fn call(
        &self,
        policy: &dyn Policy,
        operation: String,
        input: Option<Value>,
        parent: &CallNode,
        progress: Option<ProgressSink>,
    ) -> CallOutcome {
        if !policy.allows(&operation) {
            return Err(CallError::not_found(&operation));
        }
        let resolved = self
            .registry
            .resolve(&operation)
            .ok_or_else(|| CallError::not_found(&operation))?;
        let input = match input {
            None | Some(Value::Null) => Value::Object(JsonObject::new()),
            Some(v) => v,
        };
        resolved.operation.validate(&input)?;
        let Value::Object(input) = input else {
            // Unreachable for object schemas; keeps non-object schemas honest.
            return Err(CallError::new(
                crate::error::ErrorCode::InvalidInput,
                "input must be a JSON object",
            ));
        };
        if resolved.state != UpstreamState::Ready {
            let why = resolved
                .detail
                .unwrap_or_else(|| resolved.state.as_str().to_owned());
            return Err(CallError::unavailable(&resolved.operation.namespace, why));
        }
        if parent.is_cancelled() {
            return Err(CallError::cancelled());
        }
        let timeout = resolved.call_timeout.unwrap_or(self.settings.call_timeout);
        let node = parent.child(Some(timeout));
        let ctx = CallContext {
            call_id: node.id,
            ct: node.ct.clone(),
            progress,
        };
        let call = resolved
            .provider
            .call(&resolved.operation.upstream_name, Some(input), ctx);
        tokio::pin!(call);
        let deadline = node
            .deadline
            .expect("a child with a timeout has a deadline");
        tokio::select! {
            outcome = &mut call => outcome,
            _ = tokio::time::sleep_until(deadline) => {
                // Cancel, then let the provider tell the upstream before we answer.
                node.ct.cancel();
                let _ = call.await;
                Err(CallError::timeout(timeout))
            }
        }
    }
}
