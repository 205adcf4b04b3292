//! Ends a session's calls as soon as its transport ends.
//!
//! When a transport stops delivering messages (an HTTP session is deleted or expires), rmcp
//! keeps the request handlers running for up to five seconds so their answers can still be
//! written, and only then cancels them. An HTTP session that is gone has nowhere to write
//! to, so those seconds only keep upstream work running for nobody. [`EndingTransport`] marks
//! every request with a [`SessionEnd`] token and cancels it the moment the transport ends;
//! the session handler roots its calls under that token, so the upstreams are told at once.

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
};

use futures::Stream;
use rmcp::{
    RoleServer,
    model::{ClientJsonRpcMessage, GetExtensions, JsonRpcMessage, ServerJsonRpcMessage},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{
        Transport,
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{RestoreOutcome, SessionId, SessionManager, session::EventStore},
    },
};
use tokio_util::sync::CancellationToken;

use crate::{client_link::ClientLink, session::Who};

/// What a session's transport, its handler and the HTTP fast path share. Found in the
/// extensions of every message the session receives.
#[derive(Clone, Default)]
pub struct SessionEnd(pub(crate) Arc<SessionShared>);

#[derive(Default)]
pub(crate) struct SessionShared {
    /// Cancelled when the session's transport ends.
    pub(crate) end: CancellationToken,
    /// The session's client, set by the handler on the session's first message.
    pub(crate) link: OnceLock<Arc<ClientLink>>,
    /// Who the session belongs to, set by the handler on its first admitted request.
    pub(crate) who: OnceLock<Who>,
}

/// A transport that cancels its [`SessionEnd`] when it ends (no more messages, closed, or
/// dropped).
pub struct EndingTransport<T> {
    inner: T,
    shared: Arc<SessionShared>,
}

impl<T> EndingTransport<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            shared: Arc::default(),
        }
    }
}

impl<T> Drop for EndingTransport<T> {
    fn drop(&mut self) {
        self.shared.end.cancel();
    }
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for EndingTransport<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        let mut message = self.inner.receive().await;
        let shared = SessionEnd(self.shared.clone());
        match &mut message {
            Some(JsonRpcMessage::Request(r)) => {
                r.request.extensions_mut().insert(shared);
            }
            Some(JsonRpcMessage::Notification(n)) => {
                n.notification.extensions_mut().insert(shared);
            }
            Some(_) => {}
            None => self.shared.end.cancel(),
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.shared.end.cancel();
        self.inner.close().await
    }
}

/// A session manager whose sessions' transports are [`EndingTransport`]s, and which knows
/// each live session's end token (the HTTP fast path roots its calls under it).
pub struct EndingSessions<M> {
    inner: M,
    ends: std::sync::Mutex<std::collections::HashMap<SessionId, Arc<SessionShared>>>,
}

impl<M> EndingSessions<M> {
    pub fn new(inner: M) -> Self {
        Self {
            inner,
            ends: Default::default(),
        }
    }

    /// What a live session shares; `None` once it has ended or if it never existed.
    pub(crate) fn shared_of(&self, id: &str) -> Option<Arc<SessionShared>> {
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        ends.get(id).filter(|s| !s.end.is_cancelled()).cloned()
    }

    /// How many sessions are live.
    pub(crate) fn live(&self) -> usize {
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        ends.values().filter(|s| !s.end.is_cancelled()).count()
    }

    fn track<T>(&self, id: &SessionId, transport: &EndingTransport<T>) {
        let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        // Ended sessions are swept here rather than on every end: cheap, and bounded by the
        // number of sessions created.
        ends.retain(|_, s| !s.end.is_cancelled());
        ends.insert(id.clone(), transport.shared.clone());
    }
}

impl<M: SessionManager> SessionManager for EndingSessions<M> {
    type Error = M::Error;
    type Transport = EndingTransport<M::Transport>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.inner.create_session().await?;
        let transport = EndingTransport::new(transport);
        self.track(&id, &transport);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Some(end) = self
            .ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            end.end.cancel();
        }
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        Ok(match self.inner.restore_session(id.clone()).await? {
            RestoreOutcome::Restored(t) => {
                let transport = EndingTransport::new(t);
                self.track(&id, &transport);
                RestoreOutcome::Restored(transport)
            }
            RestoreOutcome::AlreadyPresent => RestoreOutcome::AlreadyPresent,
            // `NotSupported`, and any outcome rmcp adds later, carries no transport.
            _ => RestoreOutcome::NotSupported,
        })
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}
