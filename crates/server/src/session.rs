//! One client session: the MCP server handler every front door serves. It turns MCP requests
//! into hub-surface calls under the session's actor policy, and keeps `direct` clients told
//! of catalog changes.

use std::{sync::Arc, time::Duration};

use patchbay_core::{AllowAll, CallNode, Dispatcher, Policy, Progress, ProgressSink};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
        ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::{NotificationContext, Peer, RequestContext},
};
use tokio_util::sync::CancellationToken;

use crate::{
    session_end::SessionEnd,
    surface::{self, Expose, META_TOOLS},
};

/// What every session of a hub shares.
pub struct HubState {
    pub dispatcher: Dispatcher,
    pub expose: Expose,
}

/// The MCP server handler for one session.
#[derive(Clone)]
pub struct Session {
    hub: Arc<HubState>,
    policy: Arc<dyn Policy>,
}

/// `tools/list` page size for `direct` listeners.
const DIRECT_PAGE: usize = 1000;

impl Session {
    pub fn new(hub: Arc<HubState>) -> Self {
        Self {
            hub,
            policy: Arc::new(AllowAll),
        }
    }

    fn shows_meta(&self) -> bool {
        matches!(self.hub.expose, Expose::Meta | Expose::Both)
    }

    fn shows_direct(&self) -> bool {
        matches!(self.hub.expose, Expose::Direct | Expose::Both)
    }

    /// Runs tool `name` of this session's surface under `root`.
    pub(crate) async fn run_tool(
        &self,
        name: String,
        args: Option<JsonObject>,
        root: &CallNode,
        progress: Option<ProgressSink>,
    ) -> Result<CallToolResult, ErrorData> {
        let dispatcher = &self.hub.dispatcher;
        let policy = self.policy.as_ref();
        Ok(match name.as_str() {
            "list" if self.shows_meta() => surface::list(dispatcher, policy, args),
            "search" if self.shows_meta() => surface::search(dispatcher, policy, args),
            "schema" if self.shows_meta() => surface::schema_of(dispatcher, policy, args),
            "call" if self.shows_meta() => {
                surface::call(dispatcher, policy, args, root, progress).await
            }
            _ if self.shows_direct() => {
                surface::call_direct(dispatcher, policy, name, args, root, progress).await
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{name}`; this hub offers list, search, schema and call"),
                    None,
                ));
            }
        })
    }

    fn all_tools(&self) -> Vec<Tool> {
        let mut tools = Vec::new();
        if self.shows_meta() {
            tools.extend(surface::meta_tools());
        }
        if self.shows_direct() {
            tools.extend(surface::direct_tools(
                &self.hub.dispatcher,
                self.policy.as_ref(),
            ));
        }
        tools
    }
}

/// Forwards progress to the client's token, in order, off the caller's path. The returned
/// task ends once every clone of the sink is dropped, having sent everything it was given.
fn progress_sink(
    peer: Peer<RoleServer>,
    context: &RequestContext<RoleServer>,
) -> Option<(ProgressSink, tokio::task::JoinHandle<()>)> {
    let token = context.meta.get_progress_token()?;
    // Bounded: an upstream that floods progress must not grow the hub's memory. A report that
    // finds the queue full is dropped; the next one carries the newer figure anyway.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Progress>(PROGRESS_QUEUE);
    let forwarder = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            let mut param = ProgressNotificationParam::new(token.clone(), p.progress);
            param.total = p.total;
            param.message = p.message;
            if peer.notify_progress(param).await.is_err() {
                break;
            }
        }
    });
    let sink: ProgressSink = Arc::new(move |p: Progress| {
        let _ = tx.try_send(p);
    });
    Some((sink, forwarder))
}

/// Progress reports queued per call before new ones are dropped.
const PROGRESS_QUEUE: usize = 256;

/// Longest wait, after a call ends, for its progress to reach the client before the result.
const PROGRESS_DRAIN: Duration = Duration::from_millis(500);

/// The token a request's call tree hangs from: cancelled when the client cancels the request,
/// or when the session's transport ends (see `session_end`), whichever comes first.
fn call_token(context: &RequestContext<RoleServer>) -> CancellationToken {
    let Some(SessionEnd(end)) = context.extensions.get::<SessionEnd>() else {
        return context.ct.clone();
    };
    let token = end.child_token();
    let (request, linked) = (context.ct.clone(), token.clone());
    // rmcp cancels the request's token once the response is sent, so this task never outlives
    // the request.
    tokio::spawn(async move {
        tokio::select! {
            _ = request.cancelled() => linked.cancel(),
            _ = linked.cancelled() => {}
        }
    });
    token
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("patchbay", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(if self.shows_meta() {
            "Patchbay hub. Use `search` (or `list`) to find an operation, `schema` to read its input, then `call`.".into()
        } else {
            "Patchbay hub: every upstream operation is a tool named namespace.tool.".into()
        });
        info
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.all_tools();
        let after = request.and_then(|r| r.cursor);
        let start = match &after {
            Some(c) => tools
                .iter()
                .position(|t| t.name.as_ref() == c)
                .map(|i| i + 1)
                .unwrap_or(tools.len()),
            None => 0,
        };
        let end = (start + DIRECT_PAGE).min(tools.len());
        let next_cursor = (end < tools.len()).then(|| tools[end - 1].name.to_string());
        let mut result = ListToolsResult::with_all_items(tools[start..end].to_vec());
        result.next_cursor = next_cursor;
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if self.shows_meta() && META_TOOLS.contains(&name) {
            return surface::meta_tools().into_iter().find(|t| t.name == name);
        }
        None
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let root = CallNode::root(call_token(&context));
        let (progress, forwarder) = progress_sink(context.peer.clone(), &context).unzip();
        // `run_tool` owns the sink, so it is dropped when the call ends.
        let result = self
            .run_tool(request.name.to_string(), request.arguments, &root, progress)
            .await?;
        // Progress must not arrive after the result (the client would drop it, or the stream
        // carrying it is closed by then): let the forwarder send what the call reported.
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(PROGRESS_DRAIN, forwarder).await;
        }
        Ok(result.into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if !self.shows_direct() {
            return;
        }
        // Direct clients see operations as tools, so a catalog change is a tool-list change.
        let mut changes = self.hub.dispatcher.registry().subscribe();
        let peer = context.peer.clone();
        tokio::spawn(async move {
            changes.mark_unchanged();
            while changes.changed().await.is_ok() {
                if peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        });
    }
}
