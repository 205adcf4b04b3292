//! The client side of one upstream connection: routes progress to the call that asked for
//! it and wakes the supervisor when the upstream's tool list changes.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use patchbay_core::{Progress, ProgressSink};
#[allow(deprecated)]
use rmcp::{
    ClientHandler,
    model::{
        ClientCapabilities, ClientConfig, Implementation, LoggingMessageNotificationParam,
        ProgressNotificationParam, ProgressToken,
    },
    service::{NotificationContext, RoleClient},
};
use tokio::sync::Notify;

/// Progress tokens of in-flight upstream requests, mapped to their callers' sinks.
///
/// A request's token is chosen by rmcp as the request is sent, so the route is added only after
/// the upstream may already have answered with progress (a server commonly reports step 1 at
/// once). Progress for a token with no route yet is kept, boundedly, and replayed when the route
/// is added; `remove` drops whatever is left for the token.
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    inner: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    sinks: HashMap<ProgressToken, ProgressSink>,
    early: VecDeque<(ProgressToken, Progress)>,
}

/// Most early progress notifications kept across all of a connection's tokens.
const MAX_EARLY: usize = 256;

impl ProgressRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, token: ProgressToken, sink: ProgressSink) {
        let early: Vec<Progress> = {
            let mut routes = self.lock();
            let mut mine = Vec::new();
            routes.early.retain(|(t, p)| {
                if *t == token {
                    mine.push(p.clone());
                    false
                } else {
                    true
                }
            });
            routes.sinks.insert(token, sink.clone());
            mine
        };
        for p in early {
            sink(p);
        }
    }

    pub(crate) fn remove(&self, token: &ProgressToken) {
        let mut routes = self.lock();
        routes.sinks.remove(token);
        routes.early.retain(|(t, _)| t != token);
    }

    /// Hands `progress` to the token's sink, or keeps it until the route is added.
    fn route(&self, token: ProgressToken, progress: Progress) {
        let sink = {
            let mut routes = self.lock();
            match routes.sinks.get(&token) {
                Some(sink) => sink.clone(),
                None => {
                    if routes.early.len() >= MAX_EARLY {
                        routes.early.pop_front();
                    }
                    routes.early.push_back((token, progress));
                    return;
                }
            }
        };
        sink(progress);
    }
}

#[derive(Clone)]
pub(crate) struct UpstreamClient {
    pub(crate) namespace: Arc<str>,
    pub(crate) progress: Arc<ProgressRoutes>,
    pub(crate) tools_changed: Arc<Notify>,
    /// Woken when a call fails at the transport level, so the supervisor checks whether the
    /// connection is still alive. An HTTP upstream that goes away does not end rmcp's client
    /// service (its SSE stream retries forever), so without this the namespace would stay
    /// `ready` while every call fails.
    pub(crate) suspect: Arc<Notify>,
}

#[allow(deprecated)] // logging is deprecated in the newest spec, but older upstreams still send it
impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::default();
        info.client_info = Implementation::new("patchbay", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let progress = Progress {
            progress: params.progress,
            total: params.total,
            message: params.message,
        };
        self.progress.route(params.progress_token, progress);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::debug!(upstream = %self.namespace, "tools/list_changed");
        self.tools_changed.notify_one();
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        tracing::info!(upstream = %self.namespace, level = ?params.level, data = %params.data, "upstream log");
    }
}
