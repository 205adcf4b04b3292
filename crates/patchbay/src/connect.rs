//! `patchbay connect`: bridges local stdio MCP servers to remote WebSocket endpoints (a
//! Patchbay hub's `/providers/ws?token=...`, or the xiaozhi cloud's `wss://.../mcp/?token=...`).
//! The remote side is the MCP client; the child is the server. Each text frame is written to
//! the child's stdin as one line; each line the child prints on stdout is sent as one text
//! frame.
//!
//! A bridge is a pair (socket, child) with one MCP session between them, so the two live and
//! die together: when the socket drops the child is stopped, when the child exits the socket is
//! closed, and both are started again after a pause (exponential backoff with jitter from 1 s
//! up to `--backoff-cap`, reset once a pair stayed up for a minute). The child runs in its own
//! process group, which is killed on SIGINT/SIGTERM, so nothing is left behind.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use patchbay_core::Backoff;
use patchbay_providers::GroupGuard;
use patchbay_server::ws_client::{self, Frame, redact};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::config::McpServersFile;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
patchbay connect 'wss://hub.example/providers/ws?token=pbp_...' -- npx -y @modelcontextprotocol/server-filesystem ~/notes\n  \
patchbay connect 'wss://api.xiaozhi.me/mcp/?token=...' -- python3 weather_server.py\n  \
patchbay connect --config servers.json            # each server's \"endpoint\" field\n  \
patchbay connect --config servers.json 'wss://...' # one URL for every server without one")]
pub struct ConnectArgs {
    /// Bridges the servers of this `{"mcpServers": {...}}` JSON file, one socket each. A
    /// server's URL is its `"endpoint"` field, else URL. Servers with `"url"` (HTTP) or
    /// `"disabled": true` are skipped.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Longest pause between restarts (humantime, e.g. 30s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    backoff_cap: Duration,
    /// The WebSocket endpoint (ws:// or wss://); query values are never logged.
    #[arg(value_name = "URL")]
    url: Option<String>,
    /// The stdio MCP server to run, after `--`.
    #[arg(last = true, value_name = "COMMAND [ARGS...]")]
    command: Vec<String>,
}

/// One bridge: where to connect, and what to run.
#[derive(Debug, Clone)]
struct Bridge {
    name: String,
    url: String,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

fn bridges(args: &ConnectArgs) -> anyhow::Result<Vec<Bridge>> {
    let check_url = |url: &str| -> anyhow::Result<()> {
        if url.starts_with("ws://") || url.starts_with("wss://") {
            Ok(())
        } else {
            anyhow::bail!("`{}` is not a ws:// or wss:// URL", redact(url))
        }
    };
    if let Some(path) = &args.config {
        anyhow::ensure!(
            args.command.is_empty(),
            "give either --config or a command after --, not both"
        );
        return from_file(path, args.url.as_deref(), &check_url);
    }
    let url = args
        .url
        .clone()
        .context("give the endpoint URL (or --config FILE); see --help")?;
    check_url(&url)?;
    let (command, rest) = args.command.split_first().context(
        "give the command to run after `--`, e.g. patchbay connect URL -- npx my-server",
    )?;
    Ok(vec![Bridge {
        name: command.clone(),
        url,
        command: command.clone(),
        args: rest.to_vec(),
        env: BTreeMap::new(),
        cwd: None,
    }])
}

fn from_file(
    path: &Path,
    default_url: Option<&str>,
    check_url: &dyn Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Bridge>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: McpServersFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected {{\"mcpServers\": {{...}}}}", path.display()))?;
    let mut out = Vec::new();
    for (name, entry) in file.mcp_servers {
        if entry.disabled {
            continue;
        }
        let Some(command) = entry.command else {
            tracing::warn!(server = %name, "connect: skipped: not a stdio server (no command)");
            continue;
        };
        let url = entry
            .endpoint
            .or_else(|| default_url.map(str::to_owned))
            .with_context(|| format!("server `{name}` has no \"endpoint\" and no URL was given"))?;
        check_url(&url)?;
        out.push(Bridge {
            name,
            url,
            command,
            args: entry.args,
            env: entry.env,
            cwd: entry.cwd,
        });
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no stdio server to bridge",
        path.display()
    );
    Ok(out)
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<i32> {
    let bridges = bridges(&args)?;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for bridge in bridges {
        tasks.push(tokio::spawn(keep(bridge, args.backoff_cap, stop.clone())));
    }
    crate::shutdown_signal().await;
    tracing::info!("connect: shutting down");
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(0)
}

/// A pair that stayed up this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(60);
/// Largest frame accepted from the endpoint.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Keeps one bridge up until `stop`.
async fn keep(bridge: Bridge, cap: Duration, stop: CancellationToken) {
    let shown = redact(&bridge.url);
    let mut backoff = Backoff::new(Duration::from_secs(1).min(cap), cap);
    while !stop.is_cancelled() {
        let since = Instant::now();
        let ended = tokio::select! {
            e = once(&bridge, &stop) => e,
            _ = stop.cancelled() => break,
        };
        if stop.is_cancelled() {
            break;
        }
        if since.elapsed() >= HEALTHY {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(server = %bridge.name, endpoint = %shown, ?delay, "connect: {ended}; starting again after a pause");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
}

/// Connects, starts the child, and pumps until either side ends; says how it ended.
async fn once(bridge: &Bridge, stop: &CancellationToken) -> String {
    let shown = redact(&bridge.url);
    let socket = match ws_client::connect(&bridge.url, MAX_FRAME, Duration::from_secs(10)).await {
        Ok(s) => s,
        Err(e) => return format!("cannot connect: {e}"),
    };
    let mut cmd = tokio::process::Command::new(&bridge.command);
    cmd.args(&bridge.args)
        .envs(&bridge.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &bridge.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return format!("cannot start `{}`: {e}", bridge.command),
    };
    let _group = GroupGuard::new(child.id().map(|p| p as i32));
    tracing::info!(server = %bridge.name, endpoint = %shown, pid = ?child.id(), "connect: bridging");
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let (mut sink, mut stream) = socket.split();
    let ping_every = Duration::from_secs(20);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    let ended = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Frame::Text(text))) => {
                    heard = Instant::now();
                    // One message per line: a pretty-printed message is made compact.
                    let mut line = match text.as_str().contains('\n') {
                        true => serde_json::from_str::<serde_json::Value>(text.as_str())
                            .map(|v| v.to_string())
                            .unwrap_or_else(|_| text.as_str().replace('\n', " ")),
                        false => text.as_str().to_owned(),
                    };
                    line.push('\n');
                    if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                        break "the server's stdin closed".to_owned();
                    }
                }
                Some(Ok(Frame::Close(frame))) => break match frame {
                    Some(f) => format!("the endpoint closed the connection (close code {}: {})", u16::from(f.code), f.reason),
                    None => "the endpoint closed the connection".to_owned(),
                },
                Some(Ok(_)) => heard = Instant::now(),
                Some(Err(e)) => break format!("connection lost: {e}"),
                None => break "connection lost".to_owned(),
            },
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => {
                    if sink.send(Frame::text(line)).await.is_err() {
                        break "connection lost while sending".to_owned();
                    }
                }
                _ => break "the server exited".to_owned(),
            },
            _ = ping.tick() => {
                if heard.elapsed() >= ping_every * 2 {
                    break "the endpoint went silent (no pong within two ping intervals)".to_owned();
                }
                if sink.send(Frame::Ping(Default::default())).await.is_err() {
                    break "connection lost while pinging".to_owned();
                }
            }
            _ = stop.cancelled() => break "stopping".to_owned(),
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Frame::Close(None))).await;
    drop(stdin);
    // Give the server a moment to exit on its closed stdin; the group is killed regardless.
    let _ = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
    ended
}
