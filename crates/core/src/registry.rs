//! The registry: every namespace, its provider, its last known catalog and its state.
//!
//! The lock is a plain `std::sync::RwLock` held only for map work, never across an await, so a
//! slow upstream can never stall a lookup for another.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, SystemTime},
};

use patchbay_search::{Document, Param, SearchIndex, params_from_object};
use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities, Tool};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::{
    extras::Extras,
    name::{is_valid_namespace, operation_name},
    operation::Operation,
    policy::Policy,
    provider::Provider,
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("namespace `{0}` is already registered")]
    DuplicateNamespace(String),
    #[error("namespace `{0}` is not a valid name (letters, digits, `_` and `-`, at most 64)")]
    InvalidNamespace(String),
    #[error("operation names collide: {}", .0.join(", "))]
    Collision(Vec<String>),
}

/// The life-cycle state of one upstream, as `/readyz`, `list` and `check` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    Starting,
    Ready,
    Restarting,
    Failed,
    Stopped,
}

impl UpstreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Starting => "starting",
            UpstreamState::Ready => "ready",
            UpstreamState::Restarting => "restarting",
            UpstreamState::Failed => "failed",
            UpstreamState::Stopped => "stopped",
        }
    }
}

/// How the registry treats one namespace.
#[derive(Debug, Clone, Default)]
pub struct NamespaceSettings {
    /// Whether operation names carry the `namespace.` prefix.
    pub prefix: bool,
    /// Per-call timeout for this namespace; `None` uses the hub's default.
    pub call_timeout: Option<Duration>,
}

/// A namespace's state as reported to people.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStatus {
    pub namespace: String,
    pub state: UpstreamState,
    pub operations: usize,
    /// Why the upstream is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How long the last successful start took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<u64>,
    /// Operation names left out because another namespace already has them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
    #[serde(skip)]
    pub since: SystemTime,
}

struct NamespaceEntry {
    settings: NamespaceSettings,
    provider: Arc<dyn Provider>,
    status: NamespaceStatus,
    ops: Vec<Arc<Operation>>,
    extras: Extras,
}

/// Something an upstream reported that sessions may need to pass on to their clients.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// The merged resource or resource-template list changed.
    ResourcesChanged,
    /// The merged prompt list changed.
    PromptsChanged,
    /// An upstream says the resource at `uri` changed (`notifications/resources/updated`).
    ResourceUpdated { namespace: String, uri: String },
}

/// Events kept for a slow session before it starts missing them.
const EVENT_QUEUE: usize = 256;

/// What the capabilities of all ready upstreams add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Offered {
    pub resources: bool,
    pub subscribe: bool,
    pub prompts: bool,
    pub completions: bool,
    pub logging: bool,
}

#[derive(Default)]
struct Inner {
    namespaces: BTreeMap<String, NamespaceEntry>,
    operations: HashMap<String, Arc<Operation>>,
    index: SearchIndex,
}

/// What `resolve` hands the dispatcher for one operation.
#[derive(Clone)]
pub struct Resolved {
    pub operation: Arc<Operation>,
    pub route: Route,
}

/// The provider that serves a namespace, and whether it can be used now.
#[derive(Clone)]
pub struct Route {
    pub namespace: String,
    pub provider: Arc<dyn Provider>,
    pub state: UpstreamState,
    pub detail: Option<String>,
    pub call_timeout: Option<Duration>,
}

impl NamespaceEntry {
    fn is_starting(&self) -> bool {
        self.status.state == UpstreamState::Starting
    }

    fn route(&self) -> Route {
        Route {
            namespace: self.status.namespace.clone(),
            provider: self.provider.clone(),
            state: self.status.state,
            detail: self.status.detail.clone(),
            call_timeout: self.settings.call_timeout,
        }
    }
}

pub struct Registry {
    inner: RwLock<Inner>,
    /// Bumped whenever any catalog changes; `direct` listeners turn it into `list_changed`.
    version: watch::Sender<u64>,
    /// Bumped whenever a namespace's state changes.
    states: watch::Sender<u64>,
    events: broadcast::Sender<HubEvent>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            version: watch::channel(0).0,
            states: watch::channel(0).0,
            events: broadcast::channel(EVENT_QUEUE).0,
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a namespace served by `provider`, in state `starting` with an empty catalog.
    pub fn register(
        self: &Arc<Self>,
        namespace: &str,
        settings: NamespaceSettings,
        provider: Arc<dyn Provider>,
    ) -> Result<NamespaceHandle, RegistryError> {
        if !is_valid_namespace(namespace) {
            return Err(RegistryError::InvalidNamespace(namespace.to_owned()));
        }
        let mut inner = self.write();
        if inner.namespaces.contains_key(namespace) {
            return Err(RegistryError::DuplicateNamespace(namespace.to_owned()));
        }
        inner.namespaces.insert(
            namespace.to_owned(),
            NamespaceEntry {
                settings,
                provider,
                status: NamespaceStatus {
                    namespace: namespace.to_owned(),
                    state: UpstreamState::Starting,
                    operations: 0,
                    detail: None,
                    startup_ms: None,
                    conflicts: Vec::new(),
                    since: SystemTime::now(),
                },
                ops: Vec::new(),
                extras: Extras::default(),
            },
        );
        Ok(NamespaceHandle {
            registry: self.clone(),
            namespace: namespace.to_owned(),
        })
    }

    /// Looks up an operation by name, with its provider and its namespace's state.
    pub fn resolve(&self, name: &str) -> Option<Resolved> {
        let inner = self.read();
        let operation = inner.operations.get(name)?.clone();
        let entry = inner.namespaces.get(&operation.namespace)?;
        Some(Resolved {
            operation,
            route: entry.route(),
        })
    }

    /// The route to the upstream serving resource `uri`: the one that listed it, else the
    /// first whose template matches it, else the only upstream that offers resources at all.
    pub fn route_resource(&self, uri: &str, policy: &dyn Policy) -> Option<Route> {
        let inner = self.read();
        let visible = || {
            inner
                .namespaces
                .values()
                .filter(|e| policy.sees_namespace(&e.status.namespace))
        };
        let listed = visible().find(|e| e.extras.resources.iter().any(|r| r.uri == uri));
        let entry = listed
            .or_else(|| visible().find(|e| e.extras.serves_uri(uri)))
            .or_else(|| {
                let mut offering = visible().filter(|e| e.extras.offers_resources());
                match (offering.next(), offering.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            })?;
        Some(entry.route())
    }

    /// The route to the upstream with the resource template `uri_template`.
    pub fn route_template(&self, uri_template: &str, policy: &dyn Policy) -> Option<Route> {
        let inner = self.read();
        inner
            .namespaces
            .values()
            .filter(|e| policy.sees_namespace(&e.status.namespace))
            .find(|e| e.extras.has_template(uri_template))
            .map(NamespaceEntry::route)
    }

    /// The route to the prompt clients call `name`, and the upstream's own name for it.
    pub fn route_prompt(&self, name: &str, policy: &dyn Policy) -> Option<(Route, String)> {
        if !policy.allows(name, true) {
            return None;
        }
        let inner = self.read();
        inner.namespaces.values().find_map(|e| {
            let upstream = e.extras.upstream_prompt(name)?;
            Some((e.route(), upstream.to_owned()))
        })
    }

    /// Every visible upstream's resources, in namespace order.
    pub fn resources(&self, policy: &dyn Policy) -> Vec<Resource> {
        self.gather(policy, |e| e.resources.clone())
    }

    /// Every visible upstream's resource templates, in namespace order.
    pub fn resource_templates(&self, policy: &dyn Policy) -> Vec<ResourceTemplate> {
        self.gather(policy, |e| e.templates.clone())
    }

    /// Every prompt `policy` allows, in namespace order.
    pub fn prompts(&self, policy: &dyn Policy) -> Vec<Prompt> {
        let mut prompts = self.gather(policy, |e| e.prompts.clone());
        prompts.retain(|p| policy.allows(&p.name, true));
        prompts
    }

    fn gather<T>(&self, policy: &dyn Policy, take: impl Fn(&Extras) -> Vec<T>) -> Vec<T> {
        let inner = self.read();
        inner
            .namespaces
            .values()
            .filter(|e| policy.sees_namespace(&e.status.namespace))
            .flat_map(|e| take(&e.extras))
            .collect()
    }

    /// What the hub can offer its clients besides tools, given its upstreams. An upstream that
    /// has not answered yet counts as offering everything, so a client that connects early
    /// still learns of features that arrive a moment later.
    pub fn offered(&self) -> Offered {
        let inner = self.read();
        let mut offered = Offered::default();
        for entry in inner.namespaces.values() {
            let Some(caps) = &entry.extras.capabilities else {
                return Offered {
                    resources: true,
                    subscribe: true,
                    prompts: true,
                    completions: true,
                    logging: true,
                };
            };
            if let Some(r) = &caps.resources {
                offered.resources = true;
                offered.subscribe |= r.subscribe == Some(true);
            }
            offered.prompts |= caps.prompts.is_some();
            offered.completions |= caps.completions.is_some();
            offered.logging |= caps.logging.is_some();
        }
        offered
    }

    /// Routes to every ready upstream that declared `logging`.
    pub fn logging_routes(&self) -> Vec<Route> {
        let inner = self.read();
        inner
            .namespaces
            .values()
            .filter(|e| {
                e.status.state == UpstreamState::Ready
                    && e.extras
                        .capabilities
                        .as_ref()
                        .is_some_and(|c| c.logging.is_some())
            })
            .map(NamespaceEntry::route)
            .collect()
    }

    /// Events for sessions to pass on: list changes and resource updates.
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: HubEvent) {
        // No receiver (no session yet) is not an error.
        let _ = self.events.send(event);
    }

    fn update_extras(&self, namespace: &str, update: impl FnOnce(&mut Extras, &NamespaceSettings)) {
        let mut inner = self.write();
        if let Some(entry) = inner.namespaces.get_mut(namespace) {
            update(&mut entry.extras, &entry.settings);
        }
    }

    /// Operations visible to `policy`, ordered by name, optionally in one namespace.
    pub fn list(&self, namespace: Option<&str>, policy: &dyn Policy) -> Vec<Arc<Operation>> {
        let inner = self.read();
        let mut out: Vec<Arc<Operation>> = match namespace {
            Some(ns) => inner
                .namespaces
                .get(ns)
                .map(|e| e.ops.clone())
                .unwrap_or_default(),
            None => inner
                .namespaces
                .values()
                .flat_map(|e| e.ops.iter().cloned())
                .collect(),
        };
        out.retain(|op| policy.allows(&op.name, op.is_read_only()));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Ranked operations for `query`, best first, among those `policy` allows.
    pub fn search(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
        policy: &dyn Policy,
    ) -> Vec<(Arc<Operation>, f32)> {
        let inner = self.read();
        let allow = |name: &str| {
            inner
                .operations
                .get(name)
                .is_some_and(|op| policy.allows(name, op.is_read_only()))
        };
        inner
            .index
            .search(query, namespace, limit, &allow)
            .into_iter()
            .filter_map(|hit| Some((inner.operations.get(&hit.name)?.clone(), hit.score)))
            .collect()
    }

    /// Every namespace's status, ordered by namespace.
    pub fn statuses(&self) -> Vec<NamespaceStatus> {
        self.read()
            .namespaces
            .values()
            .map(|e| e.status.clone())
            .collect()
    }

    /// The number of operations in the registry.
    pub fn len(&self) -> usize {
        self.read().operations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A receiver that changes whenever any catalog changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn set_catalog(&self, namespace: &str, tools: Vec<Tool>) -> Result<usize, RegistryError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(entry) = inner.namespaces.get(namespace) else {
            return Ok(0);
        };
        let prefix = entry.settings.prefix;

        // Each operation with its search document, whose parameters come from the parsed
        // schema at hand here (the operation keeps its definition as text).
        let mut ops: Vec<(Arc<Operation>, Document)> = Vec::with_capacity(tools.len());
        let mut seen = HashSet::with_capacity(tools.len());
        let mut collisions = Vec::new();
        for tool in tools {
            let name = operation_name(namespace, &tool.name, prefix);
            let clash_elsewhere = inner
                .operations
                .get(&name)
                .is_some_and(|other| other.namespace != namespace);
            if clash_elsewhere || !seen.insert(name.clone()) {
                collisions.push(name);
                continue;
            }
            let params = params_from_object(&tool.input_schema);
            let op = Arc::new(Operation::new(name, namespace.to_owned(), tool));
            let doc = document(&op, params);
            ops.push((op, doc));
        }
        ops.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let (ops, docs): (Vec<Arc<Operation>>, Vec<Document>) = ops.into_iter().unzip();

        let entry = inner.namespaces.get_mut(namespace).expect("checked above");
        for old in entry.ops.drain(..) {
            inner.operations.remove(&old.name);
        }
        for op in &ops {
            inner.operations.insert(op.name.clone(), op.clone());
        }
        inner.index.replace_namespace(namespace, docs);
        entry.status.operations = ops.len();
        entry.status.conflicts = collisions.clone();
        let count = ops.len();
        entry.ops = ops;
        drop(guard);
        self.bump();
        if collisions.is_empty() {
            Ok(count)
        } else {
            Err(RegistryError::Collision(collisions))
        }
    }

    fn set_state(&self, namespace: &str, state: UpstreamState, detail: Option<String>) {
        {
            let mut inner = self.write();
            if let Some(entry) = inner.namespaces.get_mut(namespace) {
                entry.status.state = state;
                entry.status.detail = detail;
                entry.status.since = SystemTime::now();
            }
        }
        self.states.send_modify(|v| *v += 1);
    }

    /// Waits, at most `limit`, while `namespace`'s upstream is on its first start-up attempt
    /// (an answer meanwhile would be a `not_found` for an operation a moment away). Upstreams
    /// that failed or are restarting are not waited for, and nothing waits for any other.
    pub async fn settle(&self, namespace: &str, limit: Duration) {
        self.settle_while(limit, |inner| {
            inner
                .namespaces
                .get(namespace)
                .is_some_and(NamespaceEntry::is_starting)
        })
        .await;
    }

    /// Waits, at most `limit`, until no upstream is on its first start-up attempt: for what
    /// cannot be routed yet (a resource URI no ready upstream serves).
    pub async fn settle_all(&self, limit: Duration) {
        self.settle_while(limit, |inner| {
            inner.namespaces.values().any(NamespaceEntry::is_starting)
        })
        .await;
    }

    /// Waits, at most `limit`, while `starting` holds, checking it again on every state change.
    async fn settle_while(&self, limit: Duration, starting: impl Fn(&Inner) -> bool) {
        let starting = || starting(&self.read());
        if !starting() {
            return;
        }
        let mut states = self.states.subscribe();
        let _ = tokio::time::timeout(limit, async {
            while starting() {
                if states.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Namespaces whose upstream is on its first start-up attempt.
    pub fn starting(&self) -> Vec<String> {
        self.read()
            .namespaces
            .values()
            .filter(|e| e.is_starting())
            .map(|e| e.status.namespace.clone())
            .collect()
    }

    /// The state of `namespace` and why, if it exists.
    pub fn state_of(&self, namespace: &str) -> Option<(UpstreamState, Option<String>)> {
        self.read()
            .namespaces
            .get(namespace)
            .map(|e| (e.status.state, e.status.detail.clone()))
    }

    fn set_startup(&self, namespace: &str, took: Duration) {
        let mut inner = self.write();
        if let Some(entry) = inner.namespaces.get_mut(namespace) {
            entry.status.startup_ms = Some(took.as_millis() as u64);
        }
    }
}

fn document(op: &Operation, params: Vec<Param>) -> Document {
    Document {
        name: op.name.clone(),
        namespace: op.namespace.clone(),
        tool: op.upstream_name.clone(),
        description: op.description().to_owned(),
        params,
    }
}

/// A provider's way to report its catalog and state for its own namespace, and nothing else.
#[derive(Clone)]
pub struct NamespaceHandle {
    registry: Arc<Registry>,
    namespace: String,
}

impl NamespaceHandle {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Replaces the namespace's catalog. Tools whose names collide with another namespace's
    /// are left out and reported in the error; the rest are registered.
    pub fn set_catalog(&self, tools: Vec<Tool>) -> Result<usize, RegistryError> {
        self.registry.set_catalog(&self.namespace, tools)
    }

    pub fn set_state(&self, state: UpstreamState, detail: Option<String>) {
        self.registry.set_state(&self.namespace, state, detail);
    }

    pub fn set_startup(&self, took: Duration) {
        self.registry.set_startup(&self.namespace, took);
    }

    /// Records what the upstream declared in its `initialize` answer.
    pub fn set_capabilities(&self, capabilities: ServerCapabilities) {
        self.registry
            .update_extras(&self.namespace, |e, _| e.capabilities = Some(capabilities));
    }

    /// Replaces the namespace's resources and resource templates.
    pub fn set_resources(&self, resources: Vec<Resource>, templates: Vec<ResourceTemplate>) {
        self.registry.update_extras(&self.namespace, |e, _| {
            e.resources = resources;
            e.templates = templates;
        });
        self.registry.emit(HubEvent::ResourcesChanged);
    }

    /// Replaces the namespace's prompts (named by the upstream; renamed here like tools).
    pub fn set_prompts(&self, prompts: Vec<Prompt>) {
        let namespace = self.namespace.clone();
        self.registry.update_extras(&self.namespace, |e, settings| {
            e.set_prompts(&namespace, settings.prefix, prompts)
        });
        self.registry.emit(HubEvent::PromptsChanged);
    }

    /// Passes on the upstream's `notifications/resources/updated` for `uri`.
    pub fn resource_updated(&self, uri: String) {
        self.registry.emit(HubEvent::ResourceUpdated {
            namespace: self.namespace.clone(),
            uri,
        });
    }
}
