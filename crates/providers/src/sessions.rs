//! Connections of their own, besides an upstream's shared one:
//!
//! - `sharing = "session"`: one per client session, so that every request the upstream makes
//!   back, and every log line, has exactly one client it can belong to. Stopped when the
//!   session ends.
//! - An upstream whose `env` or `headers` use `${actor.…}`: one per actor, started with that
//!   actor's values filled in, stopped after `ACTOR_IDLE` without calls.
//!
//! Each is started on first use; one that dies is started afresh by the next call; all stop
//! with the hub. The shared connection still publishes the catalog and serves calls that come
//! with no client session (`patchbay ops`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use patchbay_core::{CallContext, CallError, ForwardError, NamespaceHandle};
use tokio::sync::OnceCell;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    actor_values::{ActorSecrets, fill},
    client::UpstreamClient,
    mcp::Connection,
    supervisor::{UpstreamSpec, UpstreamTransport, connect, stop},
};

/// An actor's connection stops after this long without calls.
const ACTOR_IDLE: Duration = Duration::from_secs(10 * 60);

/// What a connection of its own is for.
pub(crate) enum Keying {
    /// One per client session.
    Session,
    /// One per actor, with its values filled in from `secrets`.
    Actor(Option<Arc<dyn ActorSecrets>>),
}

/// Whose connection: a client session's, or an actor's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(u64),
    Actor(Arc<str>),
}

struct Entry {
    connection: Arc<OnceCell<Connection>>,
    /// Last use, for stopping idle actor connections.
    used: Arc<Mutex<Instant>>,
}

pub(crate) struct SessionConnections {
    transport: UpstreamTransport,
    keying: Keying,
    startup_timeout: Duration,
    handle: NamespaceHandle,
    shutdown: CancellationToken,
    live: Mutex<HashMap<Key, Entry>>,
    /// The tasks that stop each connection, so a hub shutdown can wait for them.
    stoppers: TaskTracker,
}

impl SessionConnections {
    pub(crate) fn new(
        spec: &UpstreamSpec,
        keying: Keying,
        handle: NamespaceHandle,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            transport: spec.transport.clone(),
            keying,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection of the call's client session or actor, started if there is none;
    /// `None` when the call has neither (it then uses the shared connection).
    pub(crate) async fn connection(
        self: &Arc<Self>,
        ctx: &CallContext,
    ) -> Result<Option<Connection>, ForwardError> {
        let namespace = self.handle.namespace().to_owned();
        let (key, end) = match (&self.keying, &ctx.client, &ctx.actor) {
            (Keying::Session, Some(client), _) => {
                (Key::Client(client.client_id()), client.session_end())
            }
            (Keying::Session, None, _) => return Ok(None),
            (Keying::Actor(_), _, Some(actor)) => {
                (Key::Actor(actor.clone()), CancellationToken::new())
            }
            (Keying::Actor(_), _, None) => {
                return Err(ForwardError::Hub(CallError::unavailable(
                    &namespace,
                    "its settings depend on the caller (${actor.…}), and this call has no authenticated actor",
                )));
            }
        };
        let (cell, used) = {
            let mut live = self.lock();
            let entry = live.entry(key.clone()).or_insert_with(|| Entry {
                connection: Arc::default(),
                used: Arc::new(Mutex::new(Instant::now())),
            });
            *entry.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            (entry.connection.clone(), entry.used.clone())
        };
        let connection = cell.get_or_try_init(|| self.start(key, end, used)).await?;
        Ok(Some(connection.clone()))
    }

    async fn start(
        self: &Arc<Self>,
        key: Key,
        session_end: CancellationToken,
        used: Arc<Mutex<Instant>>,
    ) -> Result<Connection, ForwardError> {
        let namespace = self.handle.namespace().to_owned();
        let unavailable = |why: String| ForwardError::Hub(CallError::unavailable(&namespace, why));
        if session_end.is_cancelled() {
            return Err(unavailable("the client session has ended".into()));
        }
        let transport = match (&self.keying, &key) {
            (Keying::Actor(secrets), Key::Actor(actor)) => {
                fill(&self.transport, Some(actor), secrets.as_deref())
                    .await
                    .map_err(|why| unavailable(format!("cannot start it for `{actor}`: {why}")))?
            }
            _ => self.transport.clone(),
        };
        let idle = matches!(key, Key::Actor(_)).then_some(ACTOR_IDLE);
        let client = UpstreamClient::new(&self.handle);
        let live = tokio::time::timeout(self.startup_timeout, connect(&transport, client.clone()))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "no answer to initialize within {:?}",
                    self.startup_timeout
                ))
            })?
            .map_err(unavailable)?;
        let (service, pgid, lane) = live.into_parts();
        let connection = Connection::new(service.peer().clone(), &client).with_lane(lane);
        tracing::info!(upstream = %namespace, for_ = ?key, "started a connection of its own");
        let this = self.clone();
        self.stoppers.spawn(async move {
            let service_ct = service.cancellation_token();
            let mut waiting = Box::pin(service.waiting());
            let idled = async {
                let Some(idle) = idle else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(idle / 4).await;
                    let last = *used.lock().unwrap_or_else(|p| p.into_inner());
                    if last.elapsed() >= idle {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = session_end.cancelled() => {}
                _ = this.shutdown.cancelled() => {}
                _ = &mut waiting => {}
                _ = idled => {}
            }
            this.lock().remove(&key);
            stop(service_ct, waiting, pgid).await;
            tracing::info!(upstream = %namespace, for_ = ?key, "stopped a connection of its own");
        });
        Ok(connection)
    }
}
