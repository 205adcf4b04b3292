//! Which client an upstream's request back (sampling, elicitation, roots) or log message
//! belongs to.
//!
//! Such a message names no call. Streamable HTTP says which of our requests a request back
//! belongs to (it arrives on that request's response stream); over stdio nothing does, so it
//! goes to the one client with requests in flight on this connection. With several, the hub
//! refuses rather than guesses: answering another actor's sampling request, or showing it
//! another actor's log line, would break isolation. `sharing = "session"` gives each client
//! session its own connection, where the answer is always certain.
//!
//! Log messages are routed as they come off the wire ([`RoutingTransport`]), in order with the
//! answers around them: rmcp handles each notification in a task of its own, so by the time a
//! handler ran, the call a message was sent during could already have been answered.

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use patchbay_core::ClientChannel;
use rmcp::{
    ErrorData, RoleClient,
    model::{GetExtensions, JsonRpcMessage, RequestId, ServerNotification},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The clients of a connection's in-flight requests.
#[derive(Default)]
pub(crate) struct CallerRoutes {
    entries: Mutex<Vec<CallerEntry>>,
    changed: Notify,
    next: AtomicU64,
}

struct CallerEntry {
    seq: u64,
    /// The id the request went out with; `None` for the moment between registering and
    /// sending (registering first means nothing the upstream sends can precede it).
    request: Option<RequestId>,
    client: Arc<dyn ClientChannel>,
    /// The call's token: the client's request is withdrawn when the call ends.
    ct: CancellationToken,
}

/// How long a request back waits for the request it belongs to to be registered.
const ROUTE_GRACE: Duration = Duration::from_millis(100);

/// Why a message from the upstream could not be routed to a client.
#[derive(Debug)]
pub(crate) enum Unrouted {
    NoCall,
    Ambiguous(usize),
}

impl Unrouted {
    pub(crate) fn error(&self, what: &str) -> ErrorData {
        match self {
            Unrouted::NoCall => ErrorData::internal_error(
                format!("patchbay: no call is in progress on this connection to route {what} to"),
                None,
            ),
            Unrouted::Ambiguous(n) => ErrorData::internal_error(
                format!(
                    "patchbay: {n} clients have calls in progress on this shared connection, so \
                     {what} cannot be routed with certainty; set `sharing = \"session\"` for \
                     this upstream"
                ),
                None,
            ),
        }
    }
}

/// Registers one outgoing request's client until dropped.
pub(crate) struct CallerGuard {
    routes: Arc<CallerRoutes>,
    seq: u64,
}

impl CallerGuard {
    /// Records the id the request was sent with.
    pub(crate) fn sent_as(&self, request: RequestId) {
        if let Some(e) = self.routes.lock().iter_mut().find(|e| e.seq == self.seq) {
            e.request = Some(request);
        }
        self.routes.changed.notify_waiters();
    }
}

impl Drop for CallerGuard {
    fn drop(&mut self) {
        self.routes.lock().retain(|e| e.seq != self.seq);
    }
}

impl CallerRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallerEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request about to be sent for `client`, under the call token `ct`.
    pub(crate) fn register(
        self: &Arc<Self>,
        client: Arc<dyn ClientChannel>,
        ct: CancellationToken,
    ) -> CallerGuard {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push(CallerEntry {
            seq,
            request: None,
            client,
            ct,
        });
        CallerGuard {
            routes: self.clone(),
            seq,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    /// The client of request `origin`, or else the one client with requests in flight.
    fn pick(
        &self,
        origin: Option<&RequestId>,
    ) -> Result<(Arc<dyn ClientChannel>, CancellationToken), Unrouted> {
        let entries = self.lock();
        if let Some(origin) = origin {
            return entries
                .iter()
                .find(|e| e.request.as_ref() == Some(origin))
                .map(|e| (e.client.clone(), e.ct.clone()))
                .ok_or(Unrouted::NoCall);
        }
        let Some(last) = entries.last() else {
            return Err(Unrouted::NoCall);
        };
        let id = last.client.client_id();
        if entries.iter().all(|e| e.client.client_id() == id) {
            return Ok((last.client.clone(), last.ct.clone()));
        }
        let mut clients: Vec<u64> = entries.iter().map(|e| e.client.client_id()).collect();
        clients.sort_unstable();
        clients.dedup();
        Err(Unrouted::Ambiguous(clients.len()))
    }

    /// The client a request back belongs to, waiting briefly for the request id it names to
    /// be recorded.
    pub(crate) async fn route(
        &self,
        origin: Option<&RequestId>,
    ) -> Result<(Arc<dyn ClientChannel>, CancellationToken), Unrouted> {
        let deadline = tokio::time::Instant::now() + ROUTE_GRACE;
        loop {
            let changed = self.changed.notified();
            match self.pick(origin) {
                Err(Unrouted::NoCall) if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout_at(deadline, changed).await;
                }
                other => return other,
            }
        }
    }
}

/// Where a log message goes, decided when it came off the wire.
#[derive(Clone)]
pub(crate) struct LogTarget(pub(crate) Result<Arc<dyn ClientChannel>, Arc<str>>);

/// A client transport that marks each incoming log message with its [`LogTarget`].
pub(crate) struct RoutingTransport<T> {
    inner: T,
    routes: Arc<CallerRoutes>,
}

impl<T> RoutingTransport<T> {
    pub(crate) fn new(inner: T, routes: Arc<CallerRoutes>) -> Self {
        Self { inner, routes }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for RoutingTransport<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let mut message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(n)) = &mut message
            && matches!(
                n.notification,
                ServerNotification::LoggingMessageNotification(_)
            )
        {
            let target = match self.routes.pick(None) {
                Ok((client, _)) => Ok(client),
                Err(Unrouted::NoCall) => Err("no call in progress".into()),
                Err(Unrouted::Ambiguous(n)) => {
                    Err(format!("{n} clients have calls in progress").into())
                }
            };
            n.notification.extensions_mut().insert(LogTarget(target));
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}
