//! Runs calls: name -> policy -> schema -> provider, under the call tree's cancellation and
//! deadline. Knows nothing of MCP framing or transports.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use rmcp::model::{CallToolResult, ClientRequest, JsonObject, ServerResult};
use serde_json::Value;

use crate::{
    calltree::CallNode,
    error::{CallError, ErrorCode},
    policy::Policy,
    provider::{CallContext, ClientChannel, ForwardError, ProgressSink, Provider},
    registry::{Registry, Route, UpstreamState},
};

/// Where a call's progress and the upstream's requests back to the client go.
#[derive(Clone, Default)]
pub struct Caller {
    pub progress: Option<ProgressSink>,
    pub client: Option<Arc<dyn ClientChannel>>,
}

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
        client: Option<Arc<dyn ClientChannel>>,
        progress_for: impl Fn(usize) -> Option<ProgressSink>,
    ) -> Vec<CallOutcome> {
        let concurrency = self.settings.batch_concurrency.max(1);
        stream::iter(calls.into_iter().enumerate())
            .map(|(i, req)| {
                let caller = Caller {
                    progress: progress_for(i),
                    client: client.clone(),
                };
                self.call(policy, req.operation, req.input, parent, caller)
            })
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
        caller: Caller,
    ) -> CallOutcome {
        let resolved = self
            .registry
            .resolve(&operation)
            .filter(|r| policy.allows(&operation, r.operation.is_read_only()))
            .ok_or_else(|| CallError::not_found(&operation))?;
        let input = match input {
            None | Some(Value::Null) => Value::Object(JsonObject::new()),
            Some(v) => v,
        };
        resolved.operation.validate(&input)?;
        let Value::Object(input) = input else {
            // Unreachable for object schemas; keeps non-object schemas honest.
            return Err(CallError::new(
                ErrorCode::InvalidInput,
                "input must be a JSON object",
            ));
        };
        // Held until the call ends: the actor's concurrency slot.
        let _admission = policy.admit()?;
        let upstream_name = resolved.operation.upstream_name.clone();
        self.run(&resolved.route, parent, caller, |provider, ctx| {
            provider.call(&upstream_name, Some(input), ctx)
        })
        .await
        .map_err(|e| match e {
            ForwardError::Hub(e) => e,
            ForwardError::Upstream(e) => CallError::new(ErrorCode::UpstreamError, e.message),
        })
    }

    /// Forwards a non-tool request (resources, prompts, completion, logging) along `route`,
    /// under the same state check, deadline and cancellation as a call.
    pub async fn forward(
        &self,
        route: &Route,
        request: ClientRequest,
        parent: &CallNode,
        client: Option<Arc<dyn ClientChannel>>,
    ) -> Result<ServerResult, ForwardError> {
        let caller = Caller {
            progress: None,
            client,
        };
        self.run(route, parent, caller, |provider, ctx| {
            provider.forward(request, ctx)
        })
        .await
    }

    async fn run<T, E, F>(
        &self,
        route: &Route,
        parent: &CallNode,
        caller: Caller,
        start: impl FnOnce(&dyn Provider, CallContext) -> F,
    ) -> Result<T, ForwardError>
    where
        F: std::future::Future<Output = Result<T, E>>,
        E: Into<ForwardError>,
    {
        if route.state != UpstreamState::Ready {
            let why = route
                .detail
                .clone()
                .unwrap_or_else(|| route.state.as_str().to_owned());
            return Err(CallError::unavailable(&route.namespace, why).into());
        }
        if parent.is_cancelled() {
            return Err(CallError::cancelled().into());
        }
        let timeout = route.call_timeout.unwrap_or(self.settings.call_timeout);
        let node = parent.child(Some(timeout));
        let ctx = CallContext {
            call_id: node.id,
            ct: node.ct.clone(),
            progress: caller.progress,
            client: caller.client,
        };
        let work = start(route.provider.as_ref(), ctx);
        tokio::pin!(work);
        let deadline = node
            .deadline
            .expect("a child with a timeout has a deadline");
        tokio::select! {
            outcome = &mut work => outcome.map_err(Into::into),
            _ = tokio::time::sleep_until(deadline) => {
                // Cancel, then let the provider tell the upstream before we answer.
                node.ct.cancel();
                let _ = work.await;
                Err(CallError::timeout(timeout).into())
            }
        }
    }
}
