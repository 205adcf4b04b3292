//! The client side of one upstream connection: routes progress to the call that asked for
//! it and wakes the supervisor when the upstream's tool list changes.

use std::{
    collections::HashMap,
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
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    routes: Mutex<HashMap<ProgressToken, ProgressSink>>,
}

impl ProgressRoutes {
    pub(crate) fn insert(&self, token: ProgressToken, sink: ProgressSink) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).insert(token, sink);
    }

    pub(crate) fn remove(&self, token: &ProgressToken) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }

    fn get(&self, token: &ProgressToken) -> Option<ProgressSink> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).get(token).cloned()
    }
}

#[derive(Clone)]
pub(crate) struct UpstreamClient {
    pub(crate) namespace: Arc<str>,
    pub(crate) progress: Arc<ProgressRoutes>,
    pub(crate) tools_changed: Arc<Notify>,
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
        if let Some(sink) = self.progress.get(&params.progress_token) {
            sink(Progress { progress: params.progress, total: params.total, message: params.message });
        }
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
