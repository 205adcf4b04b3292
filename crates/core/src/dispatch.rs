//! Runs calls: name -> policy -> schema -> provider, under the call tree's cancellation and
//! deadline. Knows nothing of MCP framing or transports.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{StreamExt, stream};
use rmcp::model::{CallToolResult, ClientRequest, JsonObject, ServerResult};
use serde_json::Value;

use crate::{
    audit::{AuditSink, CallRecord},
    calltree::{CallId, CallNode},
    deadline::Deadlines,
    error::{CallError, ErrorCode},
    policy::Policy,
    provider::{CallContext, ClientChannel, ForwardError, ProgressSink, Provider},
    registry::{Registry, Route, UpstreamState},
};

/// Where a call's progress, the upstream's requests back to the client, and the call's audit
/// record go.
#[derive(Clone, Default)]
pub struct Caller {
    pub progress: Option<ProgressSink>,
    pub client: Option<Arc<dyn ClientChannel>>,
    pub audit: Option<Arc<dyn AuditSink>>,
    /// The authenticated actor, if any.
    pub actor: Option<Arc<str>>,
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// Per-call timeout when the namespace sets none. Default 60 s.
    pub call_timeout: Duration,
    /// How many calls of one batch run at once. Default 8.
    pub batch_concurrency: usize,
    /// Longest a call to an operation not (yet) in the registry waits for its namespace's
    /// upstream to finish its first start. Default 10 s.
    pub startup_grace: Duration,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            batch_concurrency: 8,
            startup_grace: Duration::from_secs(10),
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
    deadlines: Deadlines,
}

impl Dispatcher {
    pub fn new(registry: Arc<Registry>, settings: DispatchSettings) -> Self {
        Self {
            registry,
            settings,
            deadlines: Deadlines::new(),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Runs a batch concurrently (bounded); outcomes come back in input order, each independent.
    /// Every call goes to `caller`'s client, audit and actor; `progress_for(i)` gives the
    /// progress sink of the batch's `i`th call.
    pub async fn call_batch(
        &self,
        policy: &dyn Policy,
        calls: Vec<CallRequest>,
        parent: &CallNode,
        caller: Caller,
        progress_for: impl Fn(usize) -> Option<ProgressSink>,
    ) -> Vec<CallOutcome> {
        let concurrency = self.settings.batch_concurrency.max(1);
        stream::iter(calls.into_iter().enumerate())
            .map(|(i, req)| {
                let caller = Caller {
                    progress: progress_for(i),
                    ..caller.clone()
                };
                self.call(policy, req.operation, req.input, parent, caller)
            })
            .buffered(concurrency)
            .collect()
            .await
    }

    /// Runs one call as a child of `parent`, and reports it to the caller's audit sink.
    pub async fn call(
        &self,
        policy: &dyn Policy,
        operation: String,
        input: Option<Value>,
        parent: &CallNode,
        caller: Caller,
    ) -> CallOutcome {
        let Some(audit) = caller.audit.clone() else {
            return self
                .call_with_id(policy, operation, input, parent, caller, CallId::next())
                .await;
        };
        let started = SystemTime::now();
        let clock = std::time::Instant::now();
        let payloads = audit.wants_payloads();
        let bytes_in = input.as_ref().map_or(0, json_len);
        let kept_input = payloads.then(|| input.clone()).flatten();
        let call_id = CallId::next();
        let name = operation.clone();
        let outcome = self
            .call_with_id(policy, operation, input, parent, caller, call_id)
            .await;
        let code = match &outcome {
            Ok(r) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        // The result is built as a JSON value only when the record keeps it; otherwise it is
        // only measured.
        let (bytes_out, output) = if payloads {
            let output = match &outcome {
                Ok(r) => serde_json::to_value(r),
                Err(e) => serde_json::to_value(e),
            }
            .unwrap_or(Value::Null);
            (json_len(&output), Some(output))
        } else {
            let bytes_out = match &outcome {
                Ok(r) => json_len(r),
                Err(e) => json_len(e),
            };
            (bytes_out, None)
        };
        audit.record(CallRecord {
            operation: name,
            call_id,
            parent: Some(parent.id),
            started,
            duration: clock.elapsed(),
            outcome: code.to_owned(),
            bytes_in,
            bytes_out,
            input: kept_input,
            output,
        });
        outcome
    }

    async fn call_with_id(
        &self,
        policy: &dyn Policy,
        operation: String,
        input: Option<Value>,
        parent: &CallNode,
        caller: Caller,
        id: CallId,
    ) -> CallOutcome {
        let resolve = || {
            self.registry
                .resolve(&operation)
                .filter(|r| policy.allows(&operation, r.operation.is_read_only()))
        };
        let resolved = match resolve() {
            Some(r) => r,
            None => {
                // An operation of an upstream still starting may be a moment away.
                if let Some((ns, _)) = operation.split_once('.') {
                    self.registry.settle(ns, self.settings.startup_grace).await;
                }
                resolve().ok_or_else(|| self.missing(policy, &operation))?
            }
        };
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
        self.run(&resolved.route, parent, id, caller, |provider, ctx| {
            provider.call(&upstream_name, Some(input), ctx)
        })
        .await
        .map_err(|e| match e {
            ForwardError::Hub(e) => e,
            ForwardError::Upstream(e) => CallError::new(ErrorCode::UpstreamError, e.message),
        })
    }

    /// Why `operation` cannot be found: its namespace's upstream is not up (so its catalog is
    /// not known yet), or there is no such operation.
    fn missing(&self, policy: &dyn Policy, operation: &str) -> CallError {
        let namespace = operation.split_once('.').map(|(ns, _)| ns);
        match namespace.and_then(|ns| Some((ns, self.registry.state_of(ns)?))) {
            Some((ns, (state, detail)))
                if state != UpstreamState::Ready && policy.sees_namespace(ns) =>
            {
                CallError::unavailable(ns, detail.unwrap_or_else(|| state.as_str().to_owned()))
            }
            _ => CallError::not_found(operation),
        }
    }

    /// Waits, bounded by `startup_grace`, until no upstream is on its first start.
    pub async fn settle_all(&self) {
        self.registry.settle_all(self.settings.startup_grace).await;
    }

    /// Forwards a non-tool request (resources, prompts, completion, logging) along `route`,
    /// under the same state check, deadline and cancellation as a call.
    pub async fn forward(
        &self,
        route: &Route,
        request: ClientRequest,
        parent: &CallNode,
        client: Option<Arc<dyn ClientChannel>>,
        actor: Option<Arc<str>>,
    ) -> Result<ServerResult, ForwardError> {
        let caller = Caller {
            progress: None,
            client,
            audit: None,
            actor,
        };
        self.run(route, parent, CallId::next(), caller, |provider, ctx| {
            provider.forward(request, ctx)
        })
        .await
    }

    async fn run<T, E, F>(
        &self,
        route: &Route,
        parent: &CallNode,
        id: CallId,
        caller: Caller,
        start: impl FnOnce(&dyn Provider, CallContext) -> F,
    ) -> Result<T, ForwardError>
    where
        F: std::future::Future<Output = Result<T, E>>,
        E: Into<ForwardError>,
    {
        if route.state != UpstreamState::Ready {
            // An upstream on its first start may be ready a moment from now (its catalog can
            // even be published just before its state turns ready): wait for it, bounded.
            let (state, detail) = if route.state == UpstreamState::Starting {
                self.registry
                    .settle(&route.namespace, self.settings.startup_grace)
                    .await;
                self.registry
                    .state_of(&route.namespace)
                    .unwrap_or((route.state, route.detail.clone()))
            } else {
                (route.state, route.detail.clone())
            };
            if state != UpstreamState::Ready {
                let why = detail.unwrap_or_else(|| state.as_str().to_owned());
                return Err(CallError::unavailable(&route.namespace, why).into());
            }
        }
        if parent.is_cancelled() {
            return Err(CallError::cancelled().into());
        }
        let timeout = route.call_timeout.unwrap_or(self.settings.call_timeout);
        let node = parent.child_with_id(id, Some(timeout));
        let ctx = CallContext {
            call_id: node.id,
            ct: node.ct.clone(),
            progress: caller.progress,
            client: caller.client,
            actor: caller.actor,
        };
        let work = start(route.provider.as_ref(), ctx);
        tokio::pin!(work);
        let deadline = self.deadlines.watch(
            node.deadline
                .expect("a child with a timeout has a deadline"),
        );
        tokio::select! {
            outcome = &mut work => outcome.map_err(Into::into),
            _ = deadline.passed() => {
                // Cancel, then let the provider tell the upstream before we answer.
                node.ct.cancel();
                let _ = work.await;
                Err(CallError::timeout(timeout).into())
            }
        }
    }
}

/// Length of `value` as compact JSON, without building the string.
fn json_len(value: &(impl serde::Serialize + ?Sized)) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rmcp::model::{CallToolResult, ContentBlock, Tool};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        BoxFuture, NamespaceSettings,
        audit::{AuditSink, CallRecord},
        policy::AllowAll,
    };

    struct Echo;

    impl Provider for Echo {
        fn call(
            &self,
            tool: &str,
            _input: Option<JsonObject>,
            _ctx: CallContext,
        ) -> BoxFuture<'static, Result<CallToolResult, CallError>> {
            let text = tool.to_owned();
            Box::pin(async move { Ok(CallToolResult::success(vec![ContentBlock::text(text)])) })
        }
    }

    #[derive(Default)]
    struct Kept(Mutex<Vec<CallRecord>>);

    impl AuditSink for Kept {
        fn record(&self, record: CallRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    #[tokio::test]
    async fn every_call_of_a_batch_is_recorded_under_its_parent() {
        let registry = Registry::new();
        let handle = registry
            .register(
                "ns",
                NamespaceSettings {
                    prefix: true,
                    call_timeout: None,
                },
                Arc::new(Echo),
            )
            .unwrap();
        let schema = Arc::new(
            serde_json::json!({"type": "object"})
                .as_object()
                .unwrap()
                .clone(),
        );
        handle
            .set_catalog(vec![Tool::new("echo", "", schema)])
            .unwrap();
        handle.set_state(UpstreamState::Ready, None);
        let dispatcher = Dispatcher::new(registry, DispatchSettings::default());
        let kept = Arc::new(Kept::default());
        let root = CallNode::root(CancellationToken::new());
        let calls = vec![
            CallRequest {
                operation: "ns.echo".into(),
                input: Some(serde_json::json!({"a": 1})),
            },
            CallRequest {
                operation: "ns.missing".into(),
                input: None,
            },
        ];
        let outcomes = dispatcher
            .call_batch(
                &AllowAll,
                calls,
                &root,
                Caller {
                    audit: Some(kept.clone()),
                    ..Caller::default()
                },
                |_| None,
            )
            .await;
        assert!(outcomes[0].is_ok() && outcomes[1].is_err());
        let records = kept.0.lock().unwrap();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.parent == Some(root.id)));
        assert_eq!(
            (records[0].operation.as_str(), records[0].outcome.as_str()),
            ("ns.echo", "ok")
        );
        assert_eq!(records[0].bytes_in, 7);
        assert!(records[0].bytes_out > 0 && records[0].input.is_none());
        assert_eq!(records[1].outcome, "not_found");
        assert_ne!(records[0].call_id, records[1].call_id);
    }
}
