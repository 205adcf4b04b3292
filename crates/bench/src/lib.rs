//! Lean JSON-RPC clients for the benchmarks: raw newline-delimited JSON over a child's stdio,
//! and raw Streamable HTTP POSTs. Lean on purpose, so the figures measure the hub, not a client
//! library.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{Mutex as AsyncMutex, oneshot},
};

/// The workspace's target directory for this binary's profile.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

pub fn initialize_request(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "patchbay-bench", "version": "0"}}})
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// An MCP client speaking raw JSON-RPC lines to a child process.
pub struct StdioPeer {
    pub child: Child,
    stdin: AsyncMutex<ChildStdin>,
    pending: Pending,
    next: AtomicU64,
}

impl StdioPeer {
    pub async fn start(program: &Path, args: &[&str]) -> anyhow::Result<Arc<Self>> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let pending: Pending = Arc::default();
        let p = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64)
                    && let Some(tx) = p.lock().unwrap().remove(&id)
                {
                    let _ = tx.send(v);
                }
            }
        });
        let peer = Arc::new(Self {
            child,
            stdin: AsyncMutex::new(stdin),
            pending,
            next: AtomicU64::new(1),
        });
        peer.request(initialize_request(0)).await?;
        peer.notify(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(peer)
    }

    async fn write(&self, v: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(&line).await?;
        stdin.flush().await?;
        Ok(())
    }

    pub async fn notify(&self, v: Value) -> anyhow::Result<()> {
        self.write(&v).await
    }

    /// Sends `request` with a fresh id and waits for its response.
    pub async fn request(&self, mut request: Value) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.write(&request).await?;
        rx.await.context("the server closed before answering")
    }
}

/// An MCP client session over Streamable HTTP, with raw POSTs.
pub struct HttpSession {
    client: reqwest::Client,
    url: String,
    session: Option<String>,
    next: AtomicU64,
}

impl HttpSession {
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let mut s = Self {
            client,
            url: url.to_owned(),
            session: None,
            next: AtomicU64::new(1),
        };
        let resp = s.post(&initialize_request(0)).await?;
        s.session = resp.0;
        s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(s)
    }

    async fn post(&self, body: &Value) -> anyhow::Result<(Option<String>, Option<Value>)> {
        let mut req = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-06-18")
            .body(serde_json::to_vec(body)?);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        if text.is_empty() {
            return Ok((session, None));
        }
        let message = if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|v| v.get("id").is_some())
        } else {
            serde_json::from_str(&text).ok()
        };
        Ok((session, message))
    }

    pub async fn request(&self, mut request: Value) -> anyhow::Result<Value> {
        request["id"] = json!(self.next.fetch_add(1, Ordering::Relaxed));
        self.post(&request)
            .await?
            .1
            .context("no JSON-RPC response in the HTTP answer")
    }
}

/// Latency figures of one run.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
}

/// Runs `clients` concurrent loops of `call` for `duration` after `warmup`, and summarises.
pub async fn measure<F, Fut>(
    clients: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16_384);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                call(c).await.expect("benchmark call failed");
                if t0 >= measure_from {
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        p50: pick(0.50),
        p99: pick(0.99),
        per_second: all.len() as f64 / duration.as_secs_f64(),
    }
}
