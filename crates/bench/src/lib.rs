//! Lean JSON-RPC clients for the benchmarks: raw newline-delimited JSON over a child's stdio,
//! and Streamable HTTP POSTs, either through reqwest or written by hand on one keep-alive
//! connection. Lean on purpose, so the figures measure the hub, not a client library.

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
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
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

/// A Streamable HTTP session on one keep-alive HTTP/1.1 connection, with requests written and
/// answers read by hand: no connection pool, no background connection task, no header map.
/// reqwest (`HttpSession`) sets the session up; only calls answered with a `Content-Length`
/// body (the hub's `application/json` answers) go this way.
pub struct RawHttpSession {
    connection: AsyncMutex<BufReader<TcpStream>>,
    /// `host:port`, for the `Host` header.
    authority: String,
    /// Everything of a POST up to its `content-length` value.
    head: String,
    next: AtomicU64,
}

impl RawHttpSession {
    /// Opens a session at `url` (`http://host:port/path`).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let setup = HttpSession::open(url).await?;
        let session = setup.session.context("the hub gave no mcp-session-id")?;
        let rest = url.strip_prefix("http://").context("only http:// URLs")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json, text/event-stream\r\n\
             content-type: application/json\r\nmcp-protocol-version: 2025-06-18\r\n\
             mcp-session-id: {session}\r\ncontent-length: "
        );
        Ok(Self {
            connection: AsyncMutex::new(BufReader::new(stream)),
            authority: authority.to_owned(),
            head,
            next: AtomicU64::new(1),
        })
    }

    pub async fn request(&self, mut request: Value) -> anyhow::Result<Value> {
        request["id"] = json!(self.next.fetch_add(1, Ordering::Relaxed));
        let body = serde_json::to_vec(&request)?;
        let mut message = Vec::with_capacity(self.head.len() + 24 + body.len());
        message.extend_from_slice(self.head.as_bytes());
        message.extend_from_slice(format!("{}\r\n\r\n", body.len()).as_bytes());
        message.extend_from_slice(&body);
        let answer = self.exchange(&message).await?;
        Ok(serde_json::from_slice(&answer)?)
    }

    /// `GET path` on this connection; returns the body's length.
    pub async fn get(&self, path: &str) -> anyhow::Result<usize> {
        let message = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.authority);
        Ok(self.exchange(message.as_bytes()).await?.len())
    }

    /// Writes one request and reads its answer's body; an error unless the status is 200.
    async fn exchange(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut connection = self.connection.lock().await;
        connection.get_mut().write_all(message).await?;
        let (status, length) = read_head(&mut connection).await?;
        let mut answer = vec![0; length];
        connection.read_exact(&mut answer).await?;
        if status != 200 {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&answer));
        }
        Ok(answer)
    }
}

/// Reads a response's status line and headers; returns the status and the body's length.
async fn read_head(connection: &mut BufReader<TcpStream>) -> anyhow::Result<(u16, usize)> {
    let mut line = String::new();
    connection.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        if connection.read_line(&mut line).await? == 0 {
            bail!("the hub closed the connection");
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked answer; this client reads Content-Length bodies only");
            }
        }
    }
    Ok((status, length.context("an answer without Content-Length")?))
}

/// Latency figures of one run.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
}

/// A measurement's time window: a warm-up, then `duration` in which latencies count.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Self {
            measure_from,
            end: measure_from + duration,
        }
    }

    /// The start of the next call, or `None` once the window is over.
    fn next_call(&self) -> Option<Instant> {
        let t0 = Instant::now();
        (t0 < self.end).then_some(t0)
    }

    /// Whether a call started at `t0` counts (it started after the warm-up).
    fn counts(&self, t0: Instant) -> bool {
        t0 >= self.measure_from
    }
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
    let window = Window::starting_now(warmup, duration);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(16_384);
            while let Some(t0) = window.next_call() {
                call(c).await.expect("benchmark call failed");
                if window.counts(t0) {
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
    summarise(all, duration)
}

/// One client alternating `a` and `b` call by call for `duration` after `warmup`, so both are
/// measured under the same machine load (on a shared VM the load changes from second to
/// second, which skews two measurements taken one after the other).
pub async fn measure_alternating<A, FA, B, FB, T, U>(
    warmup: Duration,
    duration: Duration,
    a: A,
    b: B,
) -> (Figures, Figures)
where
    A: Fn() -> FA,
    FA: std::future::Future<Output = anyhow::Result<T>>,
    B: Fn() -> FB,
    FB: std::future::Future<Output = anyhow::Result<U>>,
{
    let window = Window::starting_now(warmup, duration);
    let (mut la, mut lb) = (Vec::with_capacity(16_384), Vec::with_capacity(16_384));
    while let Some(t0) = window.next_call() {
        a().await.expect("benchmark call failed");
        let t1 = Instant::now();
        b().await.expect("benchmark call failed");
        if window.counts(t0) {
            la.push(t1 - t0);
            lb.push(t1.elapsed());
        }
    }
    (summarise(la, duration), summarise(lb, duration))
}

fn summarise(mut all: Vec<Duration>, duration: Duration) -> Figures {
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

/// The machine's floor for one extra hop: one-byte round trips over loopback TCP between this
/// process and a child (`current_exe()` run with `child_args` and the address, expected to call
/// [`serve_tcp_echo`]), with blocking I/O, `TCP_NODELAY`, no HTTP and no async runtime. Any
/// proxy in front of an upstream adds at least this to a call.
pub fn tcp_round_trip_floor(
    child_args: &[&str],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Figures> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(child_args)
        .arg(&addr)
        .spawn()?;
    let result = (|| {
        let mut stream = accept_from(&listener, &mut child)?;
        stream.set_nodelay(true)?;
        let window = Window::starting_now(warmup, duration);
        let mut lat = Vec::with_capacity(65_536);
        let mut byte = [0u8; 1];
        while let Some(t0) = window.next_call() {
            stream.write_all(b"x")?;
            stream.read_exact(&mut byte)?;
            if window.counts(t0) {
                lat.push(t0.elapsed());
            }
        }
        Ok(summarise(lat, duration))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The child's connection, or an error if the child exits or has not connected within 10 s.
fn accept_from(
    listener: &std::net::TcpListener,
    child: &mut std::process::Child,
) -> anyhow::Result<std::net::TcpStream> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.try_wait()? {
                    bail!("the TCP echo child exited before connecting ({status})");
                }
                if Instant::now() >= deadline {
                    bail!("the TCP echo child did not connect within 10 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The child side of [`tcp_round_trip_floor`]: connects to `addr` and echoes every byte until
/// the connection closes.
pub fn serve_tcp_echo(addr: &str) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => stream.write_all(&buf[..n])?,
        }
    }
}
