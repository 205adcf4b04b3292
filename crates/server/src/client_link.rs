//! The way back to one session's client: requests an upstream makes in the middle of a call
//! (sampling, elicitation, roots) and log messages reach the client whose call caused them.

// Sampling, roots and logging are deprecated by SEP-2577 (2026-07-28), but every earlier
// protocol version has them, and so do most clients.
#![allow(deprecated)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use patchbay_core::{BoxFuture, ClientChannel};
use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, ClientResult, GetExtensions, LoggingLevel,
        LoggingMessageNotificationParam, RequestId, ServerRequest,
    },
    service::{OriginatingRequestId, Peer, PeerRequestOptions, ServiceError},
};
use tokio_util::sync::CancellationToken;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One session's client.
pub(crate) struct ClientLink {
    id: u64,
    peer: Peer<RoleServer>,
    /// Cancelled when the session ends.
    end: CancellationToken,
    /// The level the client asked for with `logging/setLevel`; `None` passes every message.
    level: Mutex<Option<LoggingLevel>>,
}

impl ClientLink {
    pub(crate) fn new(peer: Peer<RoleServer>, end: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            end,
            level: Mutex::new(None),
        })
    }

    pub(crate) fn peer(&self) -> &Peer<RoleServer> {
        &self.peer
    }

    pub(crate) fn set_level(&self, level: LoggingLevel) {
        *self.level.lock().unwrap_or_else(|p| p.into_inner()) = Some(level);
    }

    fn capabilities(&self) -> Option<ClientCapabilities> {
        self.peer.peer_info().map(|info| info.capabilities.clone())
    }

    /// Whether the client declared any capability an upstream's request back could need. A
    /// call from a client that did may be asked something mid-call, so it needs a stream.
    pub(crate) fn can_be_asked(&self) -> bool {
        self.capabilities()
            .is_none_or(|c| c.sampling.is_some() || c.elicitation.is_some() || c.roots.is_some())
    }

    /// A channel for one call; `origin` is the id of the client's request the call serves,
    /// so that requests back travel on that request's stream.
    pub(crate) fn channel(self: &Arc<Self>, origin: Option<RequestId>) -> Arc<dyn ClientChannel> {
        Arc::new(CallChannel {
            link: self.clone(),
            origin,
        })
    }
}

/// The capability a request back needs, by name, if the client lacks it.
fn missing_capability(request: &ServerRequest, caps: &ClientCapabilities) -> Option<&'static str> {
    match request {
        ServerRequest::CreateMessageRequest(_) if caps.sampling.is_none() => Some("sampling"),
        ServerRequest::ElicitRequest(_) if caps.elicitation.is_none() => Some("elicitation"),
        ServerRequest::ListRootsRequest(_) if caps.roots.is_none() => Some("roots"),
        _ => None,
    }
}

struct CallChannel {
    link: Arc<ClientLink>,
    origin: Option<RequestId>,
}

impl ClientChannel for CallChannel {
    fn request(
        &self,
        mut request: ServerRequest,
        ct: CancellationToken,
    ) -> BoxFuture<'static, Result<ClientResult, ErrorData>> {
        let peer = self.link.peer.clone();
        let caps = self.link.capabilities().unwrap_or_default();
        if let Some(origin) = &self.origin {
            request
                .extensions_mut()
                .insert(OriginatingRequestId(origin.clone()));
        }
        // Sent from a task of its own: rmcp marks a request sent from inside a request
        // handler with that handler's request id (a task-local), which here would be the
        // upstream's id and would override `origin`; task-locals do not cross a spawn.
        let work = tokio::spawn(async move {
            if let Some(missing) = missing_capability(&request, &caps) {
                return Err(ErrorData::new(
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                    format!("the client did not declare the `{missing}` capability"),
                    None,
                ));
            }
            let mut handle = peer
                .send_cancellable_request(request, PeerRequestOptions::no_options())
                .await
                .map_err(client_error)?;
            tokio::select! {
                answer = &mut handle.rx => match answer {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(e)) => Err(client_error(e)),
                    Err(_) => Err(ErrorData::internal_error("the client went away", None)),
                },
                _ = ct.cancelled() => {
                    let _ = handle.cancel(Some("the call it belonged to has ended".into())).await;
                    Err(ErrorData::internal_error("the request was withdrawn: its call ended", None))
                }
            }
        });
        Box::pin(async move {
            work.await.unwrap_or_else(|_| {
                Err(ErrorData::internal_error("asking the client failed", None))
            })
        })
    }

    fn log(&self, message: LoggingMessageNotificationParam) -> BoxFuture<'static, ()> {
        let admitted = self
            .link
            .level
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|min| message.level as u8 >= min as u8);
        let peer = self.link.peer.clone();
        Box::pin(async move {
            if admitted {
                let _ = peer.notify_logging_message(message).await;
            }
        })
    }

    fn client_id(&self) -> u64 {
        self.link.id
    }

    fn session_end(&self) -> CancellationToken {
        self.link.end.clone()
    }
}

fn client_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("asking the client failed: {other}"), None),
    }
}
