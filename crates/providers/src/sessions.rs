//! `sharing = "session"`: a connection to the upstream for each client session, so that every
//! request the upstream makes back, and every log line, has exactly one client it can belong
//! to. Started on the session's first call, stopped when the session ends (or the hub stops);
//! one that dies is started afresh by the next call. The shared connection still publishes the
//! catalog and serves calls that come with no client session (`patchbay ops`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use patchbay_core::{CallError, ClientChannel, ForwardError, NamespaceHandle};
use tokio::sync::OnceCell;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    client::UpstreamClient,
    mcp::Connection,
    supervisor::{UpstreamSpec, UpstreamTransport, connect, stop},
};

pub(crate) struct SessionConnections {
    transport: UpstreamTransport,
    startup_timeout: Duration,
    handle: NamespaceHandle,
    shutdown: CancellationToken,
    /// By client id; the cell is filled once the connection is up.
    live: Mutex<HashMap<u64, Arc<OnceCell<Connection>>>>,
    /// The tasks that stop each connection, so a hub shutdown can wait for them.
    stoppers: TaskTracker,
}

impl SessionConnections {
    pub(crate) fn new(
        spec: &UpstreamSpec,
        handle: NamespaceHandle,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            transport: spec.transport.clone(),
            startup_timeout: spec.startup_timeout,
            handle,
            shutdown,
            live: Mutex::default(),
            stoppers: TaskTracker::new(),
        })
    }

    /// Waits until every session's connection has stopped (after `shutdown` fired).
    pub(crate) async fn stopped(&self) {
        self.stoppers.close();
        self.stoppers.wait().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<OnceCell<Connection>>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client session's connection, started if it has none.
    pub(crate) async fn connection(
        self: &Arc<Self>,
        client: &Arc<dyn ClientChannel>,
    ) -> Result<Connection, ForwardError> {
        let id = client.client_id();
        let cell = self.lock().entry(id).or_default().clone();
        let connection = cell
            .get_or_try_init(|| self.start(id, client.session_end()))
            .await?;
        Ok(connection.clone())
    }

    async fn start(
        self: &Arc<Self>,
        id: u64,
        session_end: CancellationToken,
    ) -> Result<Connection, ForwardError> {
        let namespace = self.handle.namespace().to_owned();
        let unavailable = |why: String| ForwardError::Hub(CallError::unavailable(&namespace, why));
        if session_end.is_cancelled() {
            return Err(unavailable("the client session has ended".into()));
        }
        let client = UpstreamClient::new(&self.handle);
        let live = tokio::time::timeout(
            self.startup_timeout,
            connect(&self.transport, client.clone()),
        )
        .await
        .map_err(|_| {
            unavailable(format!(
                "no answer to initialize within {:?}",
                self.startup_timeout
            ))
        })?
        .map_err(unavailable)?;
        let (service, pgid) = live.into_parts();
        let connection = Connection {
            peer: service.peer().clone(),
            progress: client.progress.clone(),
            callers: client.callers.clone(),
            suspect: client.suspect.clone(),
        };
        tracing::info!(upstream = %namespace, client = id, "started a connection for a client session");
        let this = self.clone();
        self.stoppers.spawn(async move {
            let service_ct = service.cancellation_token();
            let mut waiting = Box::pin(service.waiting());
            tokio::select! {
                _ = session_end.cancelled() => {}
                _ = this.shutdown.cancelled() => {}
                _ = &mut waiting => {}
            }
            this.lock().remove(&id);
            stop(service_ct, waiting, pgid).await;
            tracing::info!(upstream = %namespace, client = id, "stopped a client session's connection");
        });
        Ok(connection)
    }
}
