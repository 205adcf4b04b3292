//! The registry: every namespace, its provider, its last known catalog and its state.
//!
//! The lock is a plain `std::sync::RwLock` held only for map work, never across an await, so a
//! slow upstream can never stall a lookup for another.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, SystemTime},
};

use patchbay_search::{Document, SearchIndex, params_from_object};
use rmcp::model::Tool;
use serde::Serialize;
use tokio::sync::watch;

use crate::{
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
    pub provider: Arc<dyn Provider>,
    pub state: UpstreamState,
    pub detail: Option<String>,
    pub call_timeout: Option<Duration>,
}

pub struct Registry {
    inner: RwLock<Inner>,
    /// Bumped whenever any catalog changes; `direct` listeners turn it into `list_changed`.
    version: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            version: watch::channel(0).0,
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
            provider: entry.provider.clone(),
            state: entry.status.state,
            detail: entry.status.detail.clone(),
            call_timeout: entry.settings.call_timeout,
        })
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
        out.retain(|op| policy.allows(&op.name));
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
        let allow = |name: &str| policy.allows(name);
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

        let mut ops: Vec<Arc<Operation>> = Vec::with_capacity(tools.len());
        let mut seen = HashMap::with_capacity(tools.len());
        let mut collisions = Vec::new();
        for tool in tools {
            let name = operation_name(namespace, &tool.name, prefix);
            let clash_elsewhere = inner
                .operations
                .get(&name)
                .is_some_and(|other| other.namespace != namespace);
            if clash_elsewhere || seen.contains_key(&name) {
                collisions.push(name);
                continue;
            }
            seen.insert(name.clone(), ());
            ops.push(Arc::new(Operation::new(name, namespace.to_owned(), tool)));
        }
        ops.sort_by(|a, b| a.name.cmp(&b.name));

        let entry = inner.namespaces.get_mut(namespace).expect("checked above");
        for old in entry.ops.drain(..) {
            inner.operations.remove(&old.name);
        }
        for op in &ops {
            inner.operations.insert(op.name.clone(), op.clone());
        }
        let docs = ops.iter().map(|op| document(op)).collect();
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
        let mut inner = self.write();
        if let Some(entry) = inner.namespaces.get_mut(namespace) {
            entry.status.state = state;
            entry.status.detail = detail;
            entry.status.since = SystemTime::now();
        }
    }

    fn set_startup(&self, namespace: &str, took: Duration) {
        let mut inner = self.write();
        if let Some(entry) = inner.namespaces.get_mut(namespace) {
            entry.status.startup_ms = Some(took.as_millis() as u64);
        }
    }
}

fn document(op: &Operation) -> Document {
    Document {
        name: op.name.clone(),
        namespace: op.namespace.clone(),
        tool: op.upstream_name.clone(),
        description: op.description().to_owned(),
        params: params_from_object(&op.definition.input_schema),
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
}
