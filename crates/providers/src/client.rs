//! The client side of one upstream connection: routes progress and the upstream's requests
//! back (sampling, elicitation, roots) and log messages to the client whose call caused them,
//! and wakes the supervisor when the upstream's lists change.

// Sampling, roots and logging are deprecated by SEP-2577 (2026-07-28), but every earlier
// protocol version has them, and so do most upstreams and clients.
#![allow(deprecated)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use patchbay_core::{NamespaceHandle, Progress, ProgressSink};
use rmcp::{
    ClientHandler, ErrorData,
    model::{
        ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
        ElicitResult, Implementation, ListRootsRequest, ListRootsResult,
        LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, RequestId,
        ResourceUpdatedNotificationParam, ServerRequest,
    },
    service::{InboundStreamOrigin, NotificationContext, RequestContext, RoleClient},
};
use tokio::sync::Notify;

use crate::routing::{CallerRoutes, LogTarget};

/// Progress tokens of in-flight upstream requests, mapped to their callers' sinks.
///
/// A request's token is chosen by rmcp as the request is sent, so the route is added only after
/// the upstream may already have answered with progress (a server commonly reports step 1 at
/// once). Progress for a token with no route yet is kept, boundedly, and replayed when the route
/// is added; `remove` drops whatever is left for the token.
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    inner: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    sinks: HashMap<ProgressToken, ProgressSink>,
    early: VecDeque<(ProgressToken, Progress)>,
}

/// Most early progress notifications kept across all of a connection's tokens.
const MAX_EARLY: usize = 256;

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, token: ProgressToken, sink: ProgressSink) {
        let early: Vec<Progress> = {
            let mut routes = self.lock();
            let mut mine = Vec::new();
            routes.early.retain(|(t, p)| {
                if *t == token {
                    mine.push(p.clone());
                    false
                } else {
                    true
                }
            });
            routes.sinks.insert(token, sink.clone());
            mine
        };
        for p in early {
            sink(p);
        }
    }

    pub(crate) fn remove(&self, token: &ProgressToken) {
        let mut routes = self.lock();
        routes.sinks.remove(token);
        routes.early.retain(|(t, _)| t != token);
    }

    /// Hands `progress` to the token's sink, or keeps it until the route is added.
    fn route(&self, token: ProgressToken, progress: Progress) {
        let sink = {
            let mut routes = self.lock();
            match routes.sinks.get(&token) {
                Some(sink) => sink.clone(),
                None => {
                    if routes.early.len() >= MAX_EARLY {
                        routes.early.pop_front();
                    }
                    routes.early.push_back((token, progress));
                    return;
                }
            }
        };
        sink(progress);
    }
}

/// The outbound request an inbound request arrived in answer to, when the transport knows.
fn origin_of(context: &RequestContext<RoleClient>) -> Option<RequestId> {
    match context.extensions.get::<InboundStreamOrigin>() {
        Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
        _ => None,
    }
}

#[derive(Clone)]
pub(crate) struct UpstreamClient {
    pub(crate) namespace: Arc<str>,
    pub(crate) handle: NamespaceHandle,
    pub(crate) progress: Arc<ProgressRoutes>,
    pub(crate) callers: Arc<CallerRoutes>,
    pub(crate) tools_changed: Arc<Notify>,
    pub(crate) resources_changed: Arc<Notify>,
    pub(crate) prompts_changed: Arc<Notify>,
    /// Woken when a call fails at the transport level, so the supervisor checks whether the
    /// connection is still alive. An HTTP upstream that goes away does not end rmcp's client
    /// service (its SSE stream retries forever), so without this the namespace would stay
    /// `ready` while every call fails.
    pub(crate) suspect: Arc<Notify>,
}

#[allow(deprecated)] // logging is deprecated in the newest spec, but older upstreams still send it
impl UpstreamClient {
    /// The client side of a new connection for `handle`'s namespace.
    pub(crate) fn new(handle: &NamespaceHandle) -> Self {
        Self {
            namespace: handle.namespace().into(),
            handle: handle.clone(),
            progress: Arc::default(),
            callers: Arc::default(),
            tools_changed: Arc::default(),
            resources_changed: Arc::default(),
            prompts_changed: Arc::default(),
            suspect: Arc::default(),
        }
    }

    /// Relays the upstream's request to the client whose call caused it; the client's answer
    /// (or error) goes back to the upstream.
    async fn relay(
        &self,
        request: ServerRequest,
        what: &str,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let origin = origin_of(context);
        let (client, call_ct) = self.callers.route(origin.as_ref()).await.map_err(|why| {
            tracing::warn!(upstream = %self.namespace, what, ?why, "request from upstream not routed");
            why.error(what)
        })?;
        // Withdrawn when the call ends or the upstream cancels its own request.
        let ct = call_ct.child_token();
        let upstream_ct = context.ct.clone();
        let link = ct.clone();
        let linker = tokio::spawn(async move {
            tokio::select! {
                _ = upstream_ct.cancelled() => link.cancel(),
                _ = link.cancelled() => {}
            }
        });
        let answer = client.request(request, ct.clone()).await;
        ct.cancel();
        let _ = linker.await;
        answer
    }
}

/// The answer had the wrong shape for the request it answers.
fn mismatched(what: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("patchbay: the client's answer to {what} had the wrong shape"),
        None,
    )
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        // The hub can relay all three to its clients; one that lacks a capability makes the
        // relay fail at once with an error the upstream sees.
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        capabilities.roots = Some(Default::default());
        info.capabilities = capabilities;
        info.client_info = Implementation::new("patchbay", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self
            .relay(request, "sampling/createMessage", &context)
            .await?
        {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(mismatched("sampling/createMessage")),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.relay(request, "elicitation/create", &context).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(mismatched("elicitation/create")),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        // Upstreams often ask for roots right after start-up, outside any call: they get none.
        if self.callers.is_idle() && origin_of(&context).is_none() {
            return Ok(ListRootsResult::default());
        }
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.relay(request, "roots/list", &context).await? {
            ClientResult::ListRootsResult(r) => Ok(r),
            // An empty result parses as the untagged union's first empty-compatible variant.
            ClientResult::EmptyResult(_) => Ok(ListRootsResult::default()),
            _ => Err(mismatched("roots/list")),
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.handle.resource_updated(params.uri);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.resources_changed.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.prompts_changed.notify_one();
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let progress = Progress {
            progress: params.progress,
            total: params.total,
            message: params.message,
        };
        self.progress.route(params.progress_token, progress);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(upstream = %self.namespace, "tools/list_changed");
        self.tools_changed.notify_one();
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        context: NotificationContext<RoleClient>,
    ) {
        match context.extensions.get::<LogTarget>() {
            Some(LogTarget(Ok(client))) => client.log(params).await,
            Some(LogTarget(Err(why))) => {
                tracing::info!(upstream = %self.namespace, level = ?params.level, data = %params.data, not_passed_on = %why, "upstream log")
            }
            None => {
                tracing::info!(upstream = %self.namespace, level = ?params.level, data = %params.data, "upstream log")
            }
        }
    }
}
