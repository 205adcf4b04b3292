//! Stdio upstreams: a child process in its own process group, so that on shutdown the whole
//! tree (an `npx` wrapper and the server it starts) is stopped and nothing is left behind.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio, sync::Arc};

use rmcp::{ServiceExt, service::RoleClient, service::RunningService};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    client::UpstreamClient,
    lane::{ChildTransport, Lane},
    routing::RoutingTransport,
};

/// How to start a stdio upstream.
#[derive(Debug, Clone)]
pub struct StdioSpec {
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment for the child, on top of the hub's own.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

pub(crate) struct StdioConnection {
    pub(crate) service: RunningService<RoleClient, UpstreamClient>,
    pub(crate) pgid: Option<i32>,
    /// The lean path for `tools/call` on the same pipes (see `lane`).
    pub(crate) lane: Arc<Lane>,
}

pub(crate) async fn connect(
    spec: &StdioSpec,
    client: UpstreamClient,
) -> Result<StdioConnection, String> {
    let mut cmd = tokio::process::Command::new(&spec.command);
    cmd.args(&spec.args)
        .envs(&spec.env)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", spec.command))?;
    let pgid = child.id().map(|p| p as i32);
    if let Some(stderr) = child.stderr.take() {
        let namespace = client.namespace.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "patchbay::upstream", upstream = %namespace, "{line}");
            }
        });
    }
    let guard = GroupGuard::new(pgid);
    let (transport, lane) = ChildTransport::new(child).map_err(|e| e.to_string())?;
    let transport = RoutingTransport::new(transport, client.callers.clone());
    let service = client
        .serve(transport)
        .await
        .map_err(|e| format!("initialize failed: {e}"))?;
    std::mem::forget(guard);
    Ok(StdioConnection {
        service,
        pgid,
        lane,
    })
}

/// Kills a process group with SIGKILL when dropped (here: if the handshake is abandoned
/// half-way; `std::mem::forget` it once the group may live).
pub struct GroupGuard(Option<i32>);

impl GroupGuard {
    /// Guards the process group `pgid` (a child started with `process_group(0)`).
    pub fn new(pgid: Option<i32>) -> Self {
        Self(pgid)
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.0, libc::SIGKILL);
    }
}

/// Signals every process of the group led by `pgid`.
pub(crate) fn kill_group(pgid: Option<i32>, signal: i32) {
    if let Some(pgid) = pgid.filter(|p| *p > 0) {
        // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}
