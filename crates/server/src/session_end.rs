//! Ends a session's calls as soon as its transport ends.
//!
//! When a transport stops delivering messages (an HTTP session is deleted or expires), rmcp
//! keeps the request handlers running for up to five seconds so their answers can still be
//! written, and only then cancels them. An HTTP session that is gone has nowhere to write
//! to, so those seconds only keep upstream work running for nobody. [`EndingTransport`] marks
//! every request with a [`SessionEnd`] token and cancels it the moment the transport ends;
//! the session handler roots its calls under that token, so the upstreams are told at once.

use std::{borrow::Cow, sync::Arc};

use futures::Stream;
use rmcp::{
    RoleServer,
    model::{ClientJsonRpcMessage, GetExtensions, JsonRpcMessage, ServerJsonRpcMessage},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{
        Transport,
        common::server_side_http::ServerSseMessage,
        streamable_http_server::{
            RestoreOutcome, SessionId, SessionManager, session::EventStore,
        },
    },
};
use tokio_util::sync::CancellationToken;

/// Cancelled when the session's transport ends. Found in a request's extensions.
#[derive(Debug, Clone)]
pub struct SessionEnd(pub CancellationToken);

/// A transport that cancels its [`SessionEnd`] when it ends (no more messages, closed, or
/// dropped).
pub struct EndingTransport<T> {
    inner: T,
    end: CancellationToken,
}

impl<T> EndingTransport<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, end: CancellationToken::new() }
    }
}

impl<T> Drop for EndingTransport<T> {
    fn drop(&mut self) {
        self.end.cancel();
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
        match &mut message {
            Some(JsonRpcMessage::Request(r)) => {
                r.request.extensions_mut().insert(SessionEnd(self.end.clone()));
            }
            Some(_) => {}
            None => self.end.cancel(),
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.end.cancel();
        self.inner.close().await
    }
}

/// A session manager whose sessions' transports are [`EndingTransport`]s.
pub struct EndingSessions<M>(pub M);

impl<M: SessionManager> SessionManager for EndingSessions<M> {
    type Error = M::Error;
    type Transport = EndingTransport<M::Transport>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.0.create_session().await?;
        Ok((id, EndingTransport::new(transport)))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.0.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.0.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.0.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.0.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.0.resume(id, last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        Ok(match self.0.restore_session(id).await? {
            RestoreOutcome::Restored(t) => RestoreOutcome::Restored(EndingTransport::new(t)),
            RestoreOutcome::AlreadyPresent => RestoreOutcome::AlreadyPresent,
            // `NotSupported`, and any outcome rmcp adds later, carries no transport.
            _ => RestoreOutcome::NotSupported,
        })
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.0.event_store()
    }
}
