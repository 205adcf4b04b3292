//! Patchbay's core: operations, the registry and its search index, policy, the call tree and
//! the dispatcher that runs calls. No network code lives here; providers plug in through
//! [`provider::Provider`].

pub mod audit;
pub mod backoff;
pub mod calltree;
mod deadline;
pub mod dispatch;
pub mod error;
pub mod extras;
pub mod name;
pub mod operation;
pub mod policy;
pub mod provider;
pub mod registry;

pub use audit::{AuditSink, CallRecord};
pub use backoff::Backoff;
pub use calltree::{CallId, CallNode};
pub use dispatch::{CallOutcome, CallRequest, Caller, DispatchSettings, Dispatcher};
pub use error::{CallError, ErrorCode};
pub use operation::Operation;
pub use policy::{ActorPolicy, Admission, AllowAll, Policy, RuleSet, Rules, Subject};
pub use provider::{
    BoxFuture, CallContext, ClientChannel, ForwardError, Progress, ProgressSink, Provider,
};
pub use registry::{
    HubEvent, NamespaceHandle, NamespaceSettings, NamespaceStatus, Offered, Registry,
    RegistryError, Route, UpstreamState,
};
