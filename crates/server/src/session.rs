//! One client session: the MCP server handler every front door serves. It turns MCP requests
//! into hub-surface calls under the session's actor policy, passes resources, prompts,
//! completion and logging through to the upstreams (see `passthrough`), and keeps its client
//! told of list changes and of updates to resources it subscribed to.

// Logging is deprecated by SEP-2577 (2026-07-28); earlier protocol versions all have it.
#![allow(deprecated)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use patchbay_core::{
    AllowAll, AuditSink, CallNode, CallRecord, Caller, Dispatcher, HubEvent, Operation, Policy,
    Progress, ProgressSink,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, GetPromptRequestParams, GetPromptResponse, Implementation, JsonObject,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
        ReadResourceResponse, ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig,
        SetLevelRequestParams, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
    },
    service::{NotificationContext, Peer, RequestContext},
};
use tokio_util::sync::CancellationToken;

use patchbay_identity::Identity;

use crate::{
    access::{Access, Authenticated},
    client_link::ClientLink,
    passthrough::Subscriptions,
    session_end::SessionEnd,
    summary::Presentation,
    surface::{self, Expose, META_TOOLS},
};

/// What every session of a hub shares.
pub struct HubState {
    pub dispatcher: Dispatcher,
    pub expose: Expose,
    /// Authentication, policy rules and audit.
    pub access: Access,
    /// How many sessions are subscribed to each resource URI, so the upstream is subscribed
    /// once and unsubscribed when the last session leaves.
    pub(crate) subscriptions: Subscriptions,
    /// The state of each outbound endpoint connection (`dialer`), for `/readyz`.
    pub endpoints: crate::dialer::EndpointStates,
}

impl HubState {
    pub fn new(dispatcher: Dispatcher, expose: Expose) -> Self {
        Self::with_access(dispatcher, expose, Access::open())
    }

    pub fn with_access(dispatcher: Dispatcher, expose: Expose, access: Access) -> Self {
        Self {
            dispatcher,
            expose,
            access,
            subscriptions: Subscriptions::default(),
            endpoints: Default::default(),
        }
    }
}

/// The MCP server handler for one session.
#[derive(Clone)]
pub struct Session {
    pub(crate) hub: Arc<HubState>,
    pub(crate) state: Arc<SessionState>,
    acting: Acting,
    front_door: &'static str,
    /// How tool results are shaped for this front door's clients.
    presentation: Presentation,
    /// This session's surface, when it differs from the hub's (`[[endpoints]] expose`).
    expose: Option<Expose>,
}

/// The caller's policy and audit sink, fixed for the session by its first authenticated
/// request: a session never changes hands.
#[derive(Clone)]
pub(crate) struct Who {
    /// The front door's id of the session, once known (for the audit).
    pub(crate) session_id: Arc<OnceLock<String>>,
    pub(crate) key: Option<Identity>,
    /// The actor's name, for upstreams whose settings depend on the caller.
    pub(crate) actor: Option<Arc<str>>,
    pub(crate) policy: Arc<dyn Policy>,
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
}

/// Where a session's identity comes from.
#[derive(Clone)]
enum Acting {
    /// Each request's, as its front door authenticated it (HTTP); or nobody's, on a hub
    /// without authentication.
    PerRequest,
    /// For front doors without per-request credentials (stdio, WebSocket): the credential the
    /// session was opened with, checked again on each request (at most every `RECHECK`), so a
    /// revoked token or disabled actor stops working on an open session too.
    Credential(Arc<StdioCredential>),
    /// For connections the hub opens itself (the endpoint dialer): the identity its
    /// configuration names, which no credential proves.
    Configured(Arc<Identity>),
}

struct StdioCredential {
    token: String,
    checked: Mutex<Option<Instant>>,
}

/// How often a stdio session's credential is checked again.
const RECHECK: Duration = Duration::from_secs(1);

/// What one session keeps between requests.
pub(crate) struct SessionState {
    hub: Arc<HubState>,
    /// Cancelled when the session's handler goes away; sessions whose transport reports its
    /// own end (HTTP) use that instead.
    end: CancellationToken,
    pub(crate) link: OnceLock<Arc<ClientLink>>,
    pub(crate) who: OnceLock<Who>,
    /// Resource URIs this session is subscribed to.
    pub(crate) subscribed: Mutex<HashSet<String>>,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        self.end.cancel();
        let uris: Vec<String> = self
            .subscribed
            .get_mut()
            .map(|s| s.drain().collect())
            .unwrap_or_default();
        Subscriptions::release_all(&self.hub, uris);
    }
}

/// `tools/list` page size for `direct` listeners.
const DIRECT_PAGE: usize = 1000;

impl Session {
    /// A session of a front door that authenticates each request itself (HTTP), or of a hub
    /// without authentication.
    pub fn new(hub: Arc<HubState>) -> Self {
        Self::opened(hub, Acting::PerRequest, "http")
    }

    fn opened(hub: Arc<HubState>, acting: Acting, front_door: &'static str) -> Self {
        let state = Arc::new(SessionState {
            hub: hub.clone(),
            end: CancellationToken::new(),
            link: OnceLock::new(),
            who: OnceLock::new(),
            subscribed: Mutex::default(),
        });
        Self {
            hub,
            state,
            acting,
            front_door,
            presentation: Presentation::AsIs,
            expose: None,
        }
    }

    /// A session of a connection authenticated once when it opened (stdio, WebSocket): it acts
    /// with `token`, checked again on each request (at most every `RECHECK`), or without one
    /// on a hub without authentication. `front_door` names it in the audit.
    pub fn for_socket(hub: Arc<HubState>, token: Option<String>, front_door: &'static str) -> Self {
        let acting = match token {
            Some(token) => Acting::Credential(Arc::new(StdioCredential {
                token,
                checked: Mutex::new(None),
            })),
            None => Acting::PerRequest,
        };
        Self::opened(hub, acting, front_door)
    }

    /// A session of a connection the hub opened itself, acting as `identity` as configured
    /// (an `[[endpoints]]` entry): no credential is presented or checked, the configuration
    /// is the authority. On a hub without authentication it is served like every caller
    /// there: everything, no actor.
    pub fn for_identity(hub: Arc<HubState>, identity: Identity, front_door: &'static str) -> Self {
        Self::opened(hub, Acting::Configured(Arc::new(identity)), front_door)
    }

    /// Serves `expose` on this session instead of the hub's `server.expose`.
    pub fn with_expose(mut self, expose: Expose) -> Self {
        self.expose = Some(expose);
        self
    }

    /// Shapes this session's tool results for its clients (see `summary`).
    pub fn with_presentation(mut self, presentation: Presentation) -> Self {
        self.presentation = presentation;
        self
    }

    fn who_for(&self, identity: Option<&Identity>, session: Option<String>) -> Who {
        let access = &self.hub.access;
        let session_id = Arc::new(OnceLock::new());
        if let Some(s) = session {
            let _ = session_id.set(s);
        }
        let audit = identity.and_then(|id| {
            access.audit_for(&Authenticated {
                identity: id.clone(),
                front_door: self.front_door,
                session: session_id.clone(),
            })
        });
        Who {
            session_id,
            key: identity.cloned(),
            actor: identity.map(|i| Arc::from(i.actor.as_str())),
            policy: access.policy_for(identity),
            audit,
        }
    }

    /// Establishes who is calling for this request, and refuses what may not go on: an
    /// unauthenticated request on a hub that requires it, a revoked stdio credential, or a
    /// request of another identity on a session that belongs to someone.
    pub(crate) async fn admit(
        &self,
        extensions: &rmcp::model::Extensions,
    ) -> Result<Who, ErrorData> {
        let who = self.establish(extensions).await?;
        if let Some(SessionEnd(shared)) = extensions.get::<SessionEnd>() {
            let _ = shared.who.set(who.clone());
        }
        Ok(who)
    }

    async fn establish(&self, extensions: &rmcp::model::Extensions) -> Result<Who, ErrorData> {
        let access = &self.hub.access;
        if !access.requires_auth() {
            return Ok(self
                .state
                .who
                .get_or_init(|| self.who_for(None, None))
                .clone());
        }
        let identity = match &self.acting {
            Acting::Credential(credential) => Some(self.recheck(credential).await?),
            Acting::Configured(configured) => Some(Identity::clone(configured)),
            Acting::PerRequest => extensions
                .get::<axum::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Identity>().cloned()),
        };
        let session = extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let who = match (identity, self.state.who.get()) {
            (Some(id), Some(who)) if who.key.as_ref() == Some(&id) => {
                if let Some(s) = session {
                    let _ = who.session_id.set(s);
                }
                who.clone()
            }
            (Some(_), Some(_)) => {
                return Err(ErrorData::invalid_request(
                    "this session belongs to another caller; initialize a session of your own",
                    None,
                ));
            }
            (Some(id), None) => self
                .state
                .who
                .get_or_init(|| self.who_for(Some(&id), session))
                .clone(),
            (None, _) => {
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode(-32001),
                    "unauthorized: no valid credential",
                    None,
                ));
            }
        };
        Ok(who)
    }

    async fn recheck(&self, credential: &StdioCredential) -> Result<Identity, ErrorData> {
        let due = credential
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= RECHECK);
        if !due
            && let Some(who) = self.state.who.get()
            && let Some(id) = &who.key
        {
            return Ok(id.clone());
        }
        match self.hub.access.authenticate(&credential.token).await {
            Ok(id) => {
                *credential.checked.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now());
                Ok(id)
            }
            Err(e) => Err(ErrorData::new(
                rmcp::model::ErrorCode(-32001),
                format!("unauthorized: {e}"),
                None,
            )),
        }
    }

    /// The session's client link, made from `peer` on first use and shared with the
    /// transport's [`SessionEnd`] so the HTTP fast path can reach it too.
    pub(crate) fn link(
        &self,
        peer: &Peer<RoleServer>,
        extensions: &rmcp::model::Extensions,
    ) -> Arc<ClientLink> {
        let shared = extensions
            .get::<SessionEnd>()
            .map(|SessionEnd(s)| s.clone());
        let link = self
            .state
            .link
            .get_or_init(|| {
                let end = match &shared {
                    Some(s) => s.end.clone(),
                    None => self.state.end.clone(),
                };
                ClientLink::new(peer.clone(), end)
            })
            .clone();
        if let Some(shared) = shared {
            let _ = shared.link.set(link.clone());
        }
        link
    }

    /// The actor established by `admit`, if the hub authenticates.
    pub(crate) fn actor(&self) -> Option<Arc<str>> {
        self.state.who.get().and_then(|w| w.actor.clone())
    }

    /// The policy established by `admit` (everything, before it or without authentication:
    /// `admit` refuses requests before they get here when authentication is required).
    pub(crate) fn policy(&self) -> Arc<dyn Policy> {
        match self.state.who.get() {
            Some(who) => who.policy.clone(),
            None => Arc::new(AllowAll),
        }
    }

    /// The caller of one request: its progress token, its client (for requests back) and its
    /// audit sink.
    fn caller(
        &self,
        context: &RequestContext<RoleServer>,
        who: &Who,
        progress: Option<ProgressSink>,
    ) -> Caller {
        let link = self.link(&context.peer, &context.extensions);
        Caller {
            progress,
            client: Some(link.channel(Some(context.id.clone()))),
            audit: who.audit.clone(),
            actor: who.actor.clone(),
        }
    }

    fn shows_meta(&self) -> bool {
        matches!(
            self.expose.unwrap_or(self.hub.expose),
            Expose::Meta | Expose::Both
        )
    }

    fn shows_direct(&self) -> bool {
        matches!(
            self.expose.unwrap_or(self.hub.expose),
            Expose::Direct | Expose::Both
        )
    }

    /// Runs tool `name` of this session's surface under `root` with `policy` (the caller's,
    /// as `admit` established it), and records it (as the root of the calls it makes) when the
    /// caller is audited.
    pub(crate) async fn run_tool(
        &self,
        policy: &dyn Policy,
        name: String,
        args: Option<JsonObject>,
        root: &CallNode,
        caller: Caller,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(audit) = caller.audit.clone() else {
            return self
                .run_surface_tool(policy, name, args, root, caller)
                .await;
        };
        let started = std::time::SystemTime::now();
        let clock = Instant::now();
        let bytes_in = args
            .as_ref()
            .map_or(0, |a| serde_json::to_vec(a).map_or(0, |v| v.len() as u64));
        let input = audit
            .wants_payloads()
            .then(|| args.clone().map(serde_json::Value::Object))
            .flatten();
        let operation = name.clone();
        let outcome = self
            .run_surface_tool(policy, name, args, root, caller)
            .await;
        let (code, output) = match &outcome {
            Ok(r) if r.is_error == Some(true) => ("tool_error", serde_json::to_value(r).ok()),
            Ok(r) => ("ok", serde_json::to_value(r).ok()),
            Err(e) => ("invalid_input", serde_json::to_value(e).ok()),
        };
        audit.record(CallRecord {
            operation,
            call_id: root.id,
            parent: root.parent,
            started,
            duration: clock.elapsed(),
            outcome: code.to_owned(),
            bytes_in,
            bytes_out: output
                .as_ref()
                .map_or(0, |o| serde_json::to_vec(o).map_or(0, |v| v.len() as u64)),
            input,
            output: output.filter(|_| audit.wants_payloads()),
        });
        outcome
    }

    async fn run_surface_tool(
        &self,
        policy: &dyn Policy,
        name: String,
        args: Option<JsonObject>,
        root: &CallNode,
        caller: Caller,
    ) -> Result<CallToolResult, ErrorData> {
        let dispatcher = &self.hub.dispatcher;
        Ok(match name.as_str() {
            "list" if self.shows_meta() => surface::list(dispatcher, policy, args),
            "search" if self.shows_meta() => surface::search(dispatcher, policy, args),
            "schema" if self.shows_meta() => surface::schema_of(dispatcher, policy, args),
            "call" if self.shows_meta() => {
                surface::call(dispatcher, policy, args, root, caller).await
            }
            _ if self.shows_direct() => {
                surface::call_direct(dispatcher, policy, name, args, root, caller).await
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool `{name}`; this hub offers list, search, schema and call"),
                    None,
                ));
            }
        })
    }

    /// Everything this session's `tools/list` shows, in order; operations are read into tool
    /// definitions only for the page asked for.
    fn all_tools(&self, policy: &dyn Policy) -> Vec<Listed> {
        let mut tools = Vec::new();
        if self.shows_meta() {
            tools.extend(
                surface::meta_tools()
                    .into_iter()
                    .map(|tool| Listed::Meta(Box::new(tool))),
            );
        }
        if self.shows_direct() {
            tools.extend(
                surface::direct_operations(&self.hub.dispatcher, policy)
                    .into_iter()
                    .map(Listed::Operation),
            );
        }
        tools
    }
}

/// One entry of a `tools/list`.
enum Listed {
    Meta(Box<Tool>),
    Operation(Arc<Operation>),
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Meta(tool) => &tool.name,
            Listed::Operation(op) => &op.name,
        }
    }

    fn into_tool(self) -> Tool {
        match self {
            Listed::Meta(tool) => *tool,
            Listed::Operation(op) => op.definition(),
        }
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
pub(crate) fn call_token(context: &RequestContext<RoleServer>) -> CancellationToken {
    let Some(SessionEnd(shared)) = context.extensions.get::<SessionEnd>() else {
        return context.ct.clone();
    };
    let token = shared.end.child_token();
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
        let offered = self.hub.dispatcher.registry().offered();
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if offered.resources {
            let mut resources = rmcp::model::ResourcesCapability::default();
            resources.list_changed = Some(true);
            resources.subscribe = offered.subscribe.then_some(true);
            capabilities.resources = Some(resources);
        }
        if offered.prompts {
            let mut prompts = rmcp::model::PromptsCapability::default();
            prompts.list_changed = Some(true);
            capabilities.prompts = Some(prompts);
        }
        if offered.completions {
            capabilities.completions = Some(JsonObject::new());
        }
        if offered.logging {
            capabilities.logging = Some(JsonObject::new());
        }
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("patchbay", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(if self.shows_meta() {
            "Patchbay hub. Use `search` (or `list`) to find an operation, `schema` to read its input, then `call`.".into()
        } else {
            "Patchbay hub: every upstream operation is a tool named namespace.tool.".into()
        });
        info
    }

    async fn initialize(
        &self,
        request: rmcp::model::InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::InitializeResult, ErrorData> {
        // The session belongs to whoever opens it, from this first message on.
        self.admit(&context.extensions).await?;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.admit(&context.extensions).await?;
        let mut tools = self.all_tools(who.policy.as_ref());
        let after = request.and_then(|r| r.cursor);
        let start = match &after {
            Some(c) => tools
                .iter()
                .position(|t| t.name() == c)
                .map(|i| i + 1)
                .unwrap_or(tools.len()),
            None => 0,
        };
        let end = (start + DIRECT_PAGE).min(tools.len());
        let next_cursor = (end < tools.len()).then(|| tools[end - 1].name().to_owned());
        let page = tools.drain(start..end).map(Listed::into_tool).collect();
        let mut result = ListToolsResult::with_all_items(page);
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
        let who = self.admit(&context.extensions).await?;
        let root = CallNode::root(call_token(&context));
        let (progress, forwarder) = progress_sink(context.peer.clone(), &context).unzip();
        let caller = self.caller(&context, &who, progress);
        // `run_tool` owns the sink, so it is dropped when the call ends.
        let mut result = self
            .run_tool(
                who.policy.as_ref(),
                request.name.to_string(),
                request.arguments,
                &root,
                caller,
            )
            .await?;
        self.presentation.present(&request.name, &mut result);
        // Progress must not arrive after the result (the client would drop it, or the stream
        // carrying it is closed by then): let the forwarder send what the call reported.
        if let Some(forwarder) = forwarder {
            let _ = tokio::time::timeout(PROGRESS_DRAIN, forwarder).await;
        }
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = self.admit(&context.extensions).await?;
        let resources = self
            .hub
            .dispatcher
            .registry()
            .resources(who.policy.as_ref());
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let who = self.admit(&context.extensions).await?;
        let registry = self.hub.dispatcher.registry();
        let templates = registry.resource_templates(who.policy.as_ref());
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.admit(&context.extensions).await?;
        self.read_resource_through(request, &context)
            .await
            .map(ReadResourceResponse::Complete)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.admit(&context.extensions).await?;
        self.subscribe_through(request.uri, &context).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.admit(&context.extensions).await?;
        self.unsubscribe_through(request.uri, &context).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let who = self.admit(&context.extensions).await?;
        let prompts = self.hub.dispatcher.registry().prompts(who.policy.as_ref());
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.admit(&context.extensions).await?;
        self.get_prompt_through(request, &context)
            .await
            .map(GetPromptResponse::Complete)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.admit(&context.extensions).await?;
        self.complete_through(request, &context).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.admit(&context.extensions).await?;
        self.set_level_through(request, &context).await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // Established now, so the session's first call can take the fast path.
        let _ = self.admit(&context.extensions).await;
        let link = self.link(&context.peer, &context.extensions);
        let end = match context.extensions.get::<SessionEnd>() {
            Some(SessionEnd(shared)) => shared.end.clone(),
            None => CancellationToken::new(),
        };
        tokio::spawn(pass_on_events(self.clone(), link, end));
    }
}

/// Tells the client of catalog changes (tool-list changes only to `direct` clients, since
/// the meta tools never change) and of updates to resources it subscribed to, until the
/// session ends or the client is gone.
async fn pass_on_events(session: Session, link: Arc<ClientLink>, end: CancellationToken) {
    let registry = session.hub.dispatcher.registry().clone();
    let mut tools = registry.subscribe();
    tools.mark_unchanged();
    let mut events = registry.events();
    let peer = link.peer().clone();
    let direct = session.shows_direct();
    let state = Arc::downgrade(&session.state);
    drop(session);
    loop {
        let sent = tokio::select! {
            _ = end.cancelled() => return,
            changed = tools.changed(), if direct => match changed {
                Ok(()) => peer.notify_tool_list_changed().await,
                Err(_) => return,
            },
            event = events.recv() => match event {
                Ok(HubEvent::ResourcesChanged) => peer.notify_resource_list_changed().await,
                Ok(HubEvent::PromptsChanged) => peer.notify_prompt_list_changed().await,
                Ok(HubEvent::ResourceUpdated { uri, .. }) => {
                    // The session is gone once its state is: nothing left to tell.
                    let Some(state) = state.upgrade() else { return };
                    let subscribed = state
                        .subscribed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&uri);
                    drop(state);
                    if !subscribed {
                        continue;
                    }
                    peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        if sent.is_err() {
            return;
        }
    }
}
