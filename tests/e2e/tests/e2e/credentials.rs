//! Credentials end to end, through the command line and real hubs sharing one database: stored
//! `pb_` tokens issued, listed, revoked and expiring, and actors disabled, taking effect on
//! sessions already open (HTTP and stdio); vendor bindings narrowed by policy; the audit log
//! surviving a restart with the tree of a batched `call`; and no secret value or token secret
//! in logs, command output or the database files.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use reqwest::{
    StatusCode,
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
};
use rmcp::{model::CallToolRequestParams, service::ServiceError};
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, process::Command};

const READY: Duration = Duration::from_secs(30);
/// One administrative `patchbay` command.
const CLI: Duration = Duration::from_secs(30);
/// How long a stdio session may keep working after its token is revoked (the credential is
/// checked again at most every second; the rest is slack for a loaded machine).
const STDIO_RECHECK_LIMIT: Duration = Duration::from_millis(2500);
/// 32 bytes as 64 hex digits: the key that encrypts secrets at rest.
const SECRET_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const SECRET_VALUE: &str = "s3cr3t-VALUE-xyz";
/// Lifetime of the token that expires on an open session.
const SHORT_TTL: Duration = Duration::from_secs(3);
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const VERSION: &str = "2025-06-18";

// ---- A hub's configuration and database, and the command line against them ----

/// A scratch directory with a configuration that turns authentication on, keeps its database
/// in the directory (never the user's data directory) and mounts fixture upstream `fx`.
struct Setup {
    ws: Workspace,
    config: PathBuf,
    /// stdout and stderr of every command run, to search for leaks.
    outputs: Mutex<Vec<String>>,
}

impl Setup {
    /// `policy`: the `[[policy]]` rule sets.
    fn new(policy: &str) -> Self {
        let ws = Workspace::new();
        let db = ws.path("data").join("patchbay.db");
        let text = format!(
            "[auth]\n\n[store]\npath = {:?}\n\n{}\n{policy}\n",
            db.display().to_string(),
            fixture_upstream("fx", &[], "")
        );
        let config = ws.write("patchbay.toml", &text);
        Self {
            ws,
            config,
            outputs: Mutex::default(),
        }
    }

    fn db(&self) -> PathBuf {
        self.ws.path("data").join("patchbay.db")
    }

    /// Environment for every process of the test: the secret key, and a data directory inside
    /// the scratch directory should anything fall back to the default.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PATCHBAY_SECRET_KEY", SECRET_KEY.to_owned()),
            ("XDG_DATA_HOME", self.ws.path("xdg").display().to_string()),
        ]
    }

    /// Runs `patchbay ARGS --config CONFIG` with `stdin`; returns (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
        let mut cmd = Command::new(patchbay());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.ws.dir.path())
            .env_remove("PATCHBAY_CONFIG")
            .env_remove("PATCHBAY_TOKEN")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start patchbay");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(CLI, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("patchbay {args:?} did not finish within {CLI:?}"))
            .expect("run patchbay");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.outputs
            .lock()
            .unwrap()
            .push(format!("$ patchbay {args:?}\n{stdout}\n{stderr}"));
        (out.status.code(), stdout, stderr)
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn pb(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args, None).await;
        assert_eq!(
            code,
            Some(0),
            "patchbay {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    }

    /// `token issue ACTOR EXTRA...`: the token (stdout) and its id (from the stderr notice).
    async fn issue(&self, actor: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["token", "issue", actor];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.run(&args, None).await;
        assert_eq!(code, Some(0), "token issue failed: {stdout}\n{stderr}");
        let token = stdout.trim().to_owned();
        assert!(
            token.starts_with("pb_") && !token.contains(char::is_whitespace),
            "token issue prints the token alone on stdout: {stdout:?}"
        );
        assert!(
            !stderr.contains(&token),
            "token issue's notice repeats the token: {stderr}"
        );
        let id = stderr
            .split_whitespace()
            .skip_while(|w| *w != "issued")
            .nth(1)
            .unwrap_or_else(|| panic!("no `issued ID` notice on stderr: {stderr}"))
            .to_owned();
        assert!(id.starts_with("tok_"), "token id {id:?} in {stderr}");
        (token, id)
    }

    async fn serve(&self) -> Hub {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let hub = Hub::serve_with(&self.config, &env).await;
        hub.wait_all_ready(READY).await;
        hub
    }

    /// A `patchbay stdio` process acting with `token` (`--token`, or `PATCHBAY_TOKEN` when
    /// `by_env`), with an MCP client on it.
    async fn stdio(&self, token: &str, by_env: bool) -> (Client, Log) {
        let mut cmd = stdio_command_as(&self.config, token, by_env);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        stdio_client_on(cmd).await
    }

    /// Asserts that no process of this test outlives it: the hubs, and the upstreams they
    /// started (which inherit the scratch directory in `XDG_DATA_HOME`).
    async fn assert_no_processes_left(&self) {
        let marker = self.ws.dir.path().display().to_string();
        let gone = eventually(Duration::from_secs(5), || {
            processes_mentioning(&marker).is_empty()
        })
        .await;
        assert!(gone, "left behind: {:?}", processes_mentioning(&marker));
    }

    /// Every command's output so far.
    fn all_outputs(&self) -> String {
        self.outputs.lock().unwrap().join("\n")
    }

    /// `audit ... --json` as records.
    async fn audit_json(&self, args: &[&str]) -> Vec<Value> {
        let out = self.pb(args).await;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }
}

/// A policy that grants every actor everything.
const ALLOW_ALL: &str = "[[policy]]\nallow = [\"*\"]\n";

// ---- Raw Streamable HTTP, to see every status code ----

/// What the hub answered to one POST.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    www_authenticate: Option<String>,
    session: Option<String>,
    /// The JSON-RPC answer (from a JSON body or the SSE stream), or `Null` if none.
    body: Value,
}

impl Reply {
    /// `result.structuredContent` of a `tools/call` answer (a batch whose items all failed is
    /// `isError`, so that is not checked here), failing on anything but a 200.
    fn structured(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        self.body["result"]["structuredContent"].clone()
    }

    /// Asserts a 401 with an RFC 6750 challenge naming an invalid token.
    fn assert_unauthorized(&self, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::UNAUTHORIZED,
            "{what}: expected 401, got {self:?}"
        );
        let challenge = self
            .www_authenticate
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate: {self:?}"));
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{what}: challenge {challenge:?}"
        );
        assert_eq!(self.body["error"]["code"], -32001, "{what}: {self:?}");
    }
}

/// POSTs one JSON-RPC message; `url` may carry `?token=`.
async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> Reply {
    let mut request = http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, ACCEPT_BOTH)
        .header("mcp-protocol-version", VERSION)
        .json(body);
    if let Some(t) = bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    let response = tokio::time::timeout(Duration::from_secs(20), request.send())
        .await
        .expect("POST /mcp answered within 20 s")
        .expect("POST /mcp");
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, www_authenticate, session) = (
        response.status(),
        header(WWW_AUTHENTICATE),
        header(reqwest::header::HeaderName::from_static("mcp-session-id")),
    );
    let sse = header(CONTENT_TYPE).is_some_and(|c| c.starts_with("text/event-stream"));
    let body = if sse {
        tokio::time::timeout(Duration::from_secs(20), first_answer(response))
            .await
            .expect("an answer on the SSE stream within 20 s")
    } else {
        let bytes = response.bytes().await.unwrap_or_default();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Reply {
        status,
        www_authenticate,
        session,
        body,
    }
}

/// The first JSON-RPC response (a message with `result` or `error`) on an SSE stream.
async fn first_answer(mut response: reqwest::Response) -> Value {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n"))
                && (v.get("result").is_some() || v.get("error").is_some())
            {
                return v;
            }
        }
    }
    Value::Null
}

/// An MCP session over raw HTTP, acting with a bearer token or a `?token=` URL.
struct Session {
    http: reqwest::Client,
    url: String,
    bearer: Option<String>,
    id: String,
    next: u64,
}

impl Session {
    /// Initializes a session; the failed reply if the hub refuses.
    async fn open(url: &str, bearer: Option<&str>) -> Result<Self, Reply> {
        let http = reqwest::Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {},
            "clientInfo": {"name": "credentials-test", "version": "0"}}});
        let reply = post(&http, url, bearer, None, &init).await;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
        let id = reply
            .session
            .clone()
            .unwrap_or_else(|| panic!("initialize without a session id: {reply:?}"));
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = post(&http, url, bearer, Some(&id), &initialized).await;
        assert!(r.status.is_success(), "notifications/initialized: {r:?}");
        Ok(Self {
            http,
            url: url.to_owned(),
            bearer: bearer.map(str::to_owned),
            id,
            next: 1,
        })
    }

    async fn must_open(url: &str, bearer: Option<&str>) -> Self {
        Self::open(url, bearer)
            .await
            .unwrap_or_else(|r| panic!("initialize refused: {r:?}"))
    }

    /// `tools/call` on this session.
    async fn call(&mut self, tool: &str, arguments: Value) -> Reply {
        self.next += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}});
        post(
            &self.http,
            &self.url,
            self.bearer.as_deref(),
            Some(&self.id),
            &body,
        )
        .await
    }

    /// Runs `fx.echo` through the meta tool `call` and checks the echo came back.
    async fn echo_works(&mut self, text: &str) {
        let r = self
            .call(
                "call",
                json!({"calls": [{"tool": "fx.echo", "input": {"text": text}}]}),
            )
            .await;
        let item = &r.structured()["results"][0];
        assert_eq!(item["success"], true, "{r:?}");
        assert_eq!(item["result"]["content"][0]["text"], text, "{r:?}");
    }

    /// The operations `list` shows this caller.
    async fn visible(&mut self) -> BTreeSet<String> {
        let r = self.call("list", json!({"limit": 1000})).await;
        r.structured()["operations"]
            .as_array()
            .unwrap_or_else(|| panic!("list without operations: {r:?}"))
            .iter()
            .map(|o| o["tool"].as_str().expect("tool name").to_owned())
            .collect()
    }

    async fn end(self) {
        let mut request = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", &self.id);
        if let Some(t) = &self.bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let r = request.send().await.expect("DELETE /mcp");
        assert!(
            r.status().is_success(),
            "ending the session: {}",
            r.status()
        );
    }
}

// ---- 1. Stored tokens over HTTP ----

#[tokio::test]
async fn tokens_are_revoked_disabled_and_expire_on_open_http_sessions() {
    let s = Setup::new(ALLOW_ALL);
    s.pb(&["actor", "add", "alice", "--role", "dev"]).await;
    s.pb(&["actor", "add", "bob"]).await;
    let (alice1, alice1_id) = s.issue("alice", &["--name", "laptop"]).await;
    let (alice2, _) = s
        .issue("alice", &["--name", "desktop", "--ttl", "30d"])
        .await;
    let (bob, _) = s.issue("bob", &[]).await;
    assert_ne!(alice1, alice2);

    let listed = s.pb(&["token", "list"]).await;
    assert!(
        listed.contains(&alice1_id) && listed.contains("laptop") && listed.contains("desktop"),
        "{listed}"
    );
    for secret in [&alice1, &alice2, &bob] {
        let tail = secret.trim_start_matches("pb_");
        assert!(
            !listed.contains(tail),
            "token list shows a secret:\n{listed}"
        );
    }
    let only_bob = s.pb(&["token", "list", "--actor", "bob"]).await;
    assert!(
        only_bob.contains("bob") && !only_bob.contains("alice"),
        "{only_bob}"
    );

    let hub = s.serve().await;

    // Expiry: tokens that work until their TTL passes (checked at the end, to wait meanwhile).
    let issued = Instant::now();
    let ttl = format!("{}s", SHORT_TTL.as_secs());
    let (short, _) = s.issue("alice", &["--ttl", &ttl, "--name", "short"]).await;
    let (one_second, _) = s.issue("alice", &["--ttl", "1s"]).await;
    let mut e = Session::must_open(&hub.url, Some(&short)).await;
    e.echo_works("before expiry").await;
    assert!(
        issued.elapsed() < SHORT_TTL,
        "too slow to test expiry: {:?}",
        issued.elapsed()
    );

    // No credential, or one the hub never issued: 401 with the bare or invalid_token challenge.
    let missing = Session::open(&hub.url, None).await.err().expect("refused");
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED, "{missing:?}");
    assert_eq!(
        missing.www_authenticate.as_deref(),
        Some("Bearer realm=\"patchbay\""),
        "{missing:?}"
    );
    let forged = format!("pb_{}", "A".repeat(43));
    Session::open(&hub.url, Some(&forged))
        .await
        .err()
        .expect("refused")
        .assert_unauthorized("unknown pb_ token");

    // Revocation reaches the very next request of an open session.
    let mut a1 = Session::must_open(&hub.url, Some(&alice1)).await;
    let mut a2 = Session::must_open(&hub.url, Some(&alice2)).await;
    a1.echo_works("before revoke").await;
    a2.echo_works("before revoke").await;
    let out = s.pb(&["token", "revoke", &alice1_id]).await;
    assert!(out.contains(&alice1_id), "{out}");
    a1.call("list", json!({}))
        .await
        .assert_unauthorized("the next request of a revoked token's open session");
    Session::open(&hub.url, Some(&alice1))
        .await
        .err()
        .expect("a revoked token cannot start a session")
        .assert_unauthorized("initialize with a revoked token");
    // Only that token: alice's other one goes on working.
    a2.echo_works("after revoking the other token").await;
    let listed = s.pb(&["token", "list", "--actor", "alice"]).await;
    let line = listed
        .lines()
        .find(|l| l.contains(&alice1_id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.trim_end().ends_with("revoked"), "{line}");

    // Disabling an actor stops every token of it, on open sessions too; enabling restores it.
    let mut b = Session::must_open(&hub.url, Some(&bob)).await;
    b.echo_works("bob before disable").await;
    s.pb(&["actor", "disable", "bob"]).await;
    b.call("list", json!({}))
        .await
        .assert_unauthorized("the next request of a disabled actor's open session");
    a2.echo_works("alice is not bob").await;
    let actors = s.pb(&["actor", "list"]).await;
    let bob_line = actors.lines().find(|l| l.starts_with("bob")).unwrap();
    assert!(bob_line.contains("disabled"), "{actors}");
    s.pb(&["actor", "enable", "bob"]).await;
    b.echo_works("bob enabled again").await;

    // Expiry (the short tokens were issued at the start and have expired by now).
    tokio::time::sleep(SHORT_TTL.saturating_sub(issued.elapsed()) + Duration::from_millis(200))
        .await;
    e.call("list", json!({}))
        .await
        .assert_unauthorized("the next request after the token expired");
    Session::open(&hub.url, Some(&one_second))
        .await
        .err()
        .expect("an expired token cannot start a session")
        .assert_unauthorized("initialize with an expired --ttl 1s token");
    let listed = s.pb(&["token", "list", "--actor", "alice"]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.contains("short") && l.trim_end().ends_with("expired")),
        "{listed}"
    );

    for session in [a2, b] {
        session.end().await;
    }
    let log = hub.log.clone();
    assert!(hub.stop().await.success());
    let log = log.text();
    assert!(!log.contains("panicked"), "{log}");
    s.assert_no_processes_left().await;
}

// ---- 2. Stored tokens over stdio ----

/// Calls `list` on `client` every 100 ms until it fails; returns the error and how long it
/// took, or panics past `limit`.
async fn until_refused(client: &Client, limit: Duration) -> (ServiceError, Duration) {
    let started = Instant::now();
    loop {
        let mut p = CallToolRequestParams::new("list");
        p.arguments = Some(args(json!({})));
        if let Err(e) = client.call_tool(p).await {
            return (e, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "the session still works {limit:?} after its credential was withdrawn"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts `e` is the hub's unauthorized error (-32001, `unauthorized: ...`).
fn assert_unauthorized_error(e: &ServiceError, what: &str) {
    match e {
        ServiceError::McpError(data) => {
            assert_eq!(data.code.0, -32001, "{what}: {data:?}");
            assert!(data.message.starts_with("unauthorized"), "{what}: {data:?}");
        }
        other => panic!("{what}: not the hub's unauthorized error: {other:?}"),
    }
}

#[tokio::test]
async fn revocation_and_disabling_reach_open_stdio_sessions() {
    let s = Setup::new(ALLOW_ALL);
    s.pb(&["actor", "add", "alice"]).await;
    s.pb(&["actor", "add", "bob"]).await;
    let (alice, alice_id) = s.issue("alice", &[]).await;
    let (bob, _) = s.issue("bob", &[]).await;

    let (a, a_log) = s.stdio(&alice, false).await;
    let (b, b_log) = s.stdio(&bob, true).await;
    for (client, who) in [(&a, "alice"), (&b, "bob")] {
        let r = call_one(client, "fx.echo", json!({"text": who})).await;
        assert_eq!(r["result"]["content"][0]["text"], who, "{r}");
    }

    s.pb(&["token", "revoke", &alice_id]).await;
    s.pb(&["actor", "disable", "bob"]).await;
    let ((ea, ta), (eb, tb)) = tokio::join!(
        until_refused(&a, STDIO_RECHECK_LIMIT),
        until_refused(&b, STDIO_RECHECK_LIMIT)
    );
    eprintln!("stdio refused after revoke: {ta:?}, after disable: {tb:?}");
    assert_unauthorized_error(&ea, "revoked token (--token)");
    assert_unauthorized_error(&eb, "disabled actor (PATCHBAY_TOKEN)");
    // It stays refused, and a tool call is refused like `list`.
    let mut p = CallToolRequestParams::new("call");
    p.arguments = Some(args(
        json!({"calls": [{"tool": "fx.echo", "input": {"text": "x"}}]}),
    ));
    let e = a.call_tool(p).await.expect_err("still refused");
    assert_unauthorized_error(&e, "a call after revocation");

    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
    for log in [a_log, b_log] {
        let text = log.text();
        assert!(!text.contains("panicked"), "{text}");
        assert!(
            !text.contains(&alice) && !text.contains(&bob),
            "a stdio log shows a token:\n{text}"
        );
    }

    // Without a token, or with one the hub refuses, `patchbay stdio` exits at once and says why.
    let (code, stdout, stderr) = s.run(&["stdio"], None).await;
    assert_ne!(code, Some(0), "stdio without a token: {stdout}\n{stderr}");
    assert!(
        stderr.contains("--token") && stderr.contains("PATCHBAY_TOKEN"),
        "{stderr}"
    );
    let (code, _, stderr) = s.run(&["stdio", "--token", &alice], None).await;
    assert_ne!(code, Some(0), "stdio with a revoked token");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(
        !stderr.contains(&alice),
        "the refusal repeats the token: {stderr}"
    );
    s.assert_no_processes_left().await;
}

// ---- 3. Vendor bindings ----

#[tokio::test]
async fn a_binding_acts_for_its_actor_through_its_vendor() {
    let s = Setup::new(&format!(
        "{ALLOW_ALL}\n[[policy]]\nvendors = [\"xiaozhi\"]\nallow = [\"fx.echo\"]\n"
    ));
    s.pb(&["actor", "add", "alice"]).await;
    let (own, _) = s.issue("alice", &[]).await;
    let hub = s.serve().await;

    let out = s
        .pb(&[
            "bind",
            "create",
            "--actor",
            "alice",
            "--vendor",
            "xiaozhi",
            "--public-url",
            &format!("{}/", hub.base),
        ])
        .await;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no `{name}` line in {out}"))
    };
    let (token, endpoint, ws_endpoint) = (field("token:"), field("http:"), field("endpoint:"));
    assert_eq!(endpoint, format!("{}?token={token}", hub.url), "{out}");
    let ws_url = hub.url.replacen("http://", "ws://", 1);
    assert_eq!(ws_endpoint, format!("{ws_url}/ws?token={token}"), "{out}");
    let listed = s.pb(&["bind", "list"]).await;
    let binding_id = listed
        .lines()
        .find(|l| l.contains("xiaozhi"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{listed}"))
        .to_owned();
    assert!(binding_id.starts_with("bnd_"), "{listed}");
    assert!(
        !listed.contains(&token),
        "bind list shows the token:\n{listed}"
    );

    // alice's own token sees everything; through xiaozhi (the pasted endpoint, token in the
    // query) only fx.echo, and the rest is not_found.
    let mut mine = Session::must_open(&hub.url, Some(&own)).await;
    let all = mine.visible().await;
    assert!(
        all.contains("fx.echo") && all.contains("fx.add") && all.len() > 2,
        "{all:?}"
    );
    let mut device = Session::must_open(&endpoint, None).await;
    assert_eq!(
        device.visible().await,
        BTreeSet::from(["fx.echo".to_owned()])
    );
    device.echo_works("through the speaker").await;
    let r = device
        .call(
            "call",
            json!({"calls": [{"tool": "fx.add", "input": {"a": 1, "b": 2}}]}),
        )
        .await;
    let item = &r.structured()["results"][0];
    assert_eq!(item["error"]["code"], "not_found", "{r:?}");
    let r = mine
        .call(
            "call",
            json!({"calls": [{"tool": "fx.add", "input": {"a": 1, "b": 2}}]}),
        )
        .await;
    assert_eq!(r.structured()["results"][0]["success"], true, "{r:?}");
    // The bearer header works as well as the query.
    let mut header = Session::must_open(&hub.url, Some(&token)).await;
    assert_eq!(header.visible().await.len(), 1);

    // The device's calls are alice's, through xiaozhi, with the binding's id.
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records = s
            .audit_json(&["audit", "query", "--operation", "fx.*", "--json"])
            .await;
        if records.len() >= 3 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let through: Vec<&Value> = records
        .iter()
        .filter(|r| r["vendor"] == "xiaozhi")
        .collect();
    assert_eq!(through.len(), 2, "{records:#?}");
    for r in &through {
        assert_eq!(r["actor"], "alice", "{r}");
        assert_eq!(r["credential"], binding_id.as_str(), "{r}");
        assert_eq!(r["front_door"], "http", "{r}");
    }
    assert!(
        through
            .iter()
            .any(|r| r["operation"] == "fx.add" && r["outcome"] == "not_found"),
        "{through:#?}"
    );

    // Disabling alice stops her bindings too; enabling brings them back.
    s.pb(&["actor", "disable", "alice"]).await;
    device
        .call("list", json!({}))
        .await
        .assert_unauthorized("a binding of a disabled actor");
    s.pb(&["actor", "enable", "alice"]).await;
    device.echo_works("enabled again").await;

    // Revoking the binding: its token is refused on the open session and for new ones.
    let out = s.pb(&["bind", "revoke", &binding_id]).await;
    assert!(out.contains(&binding_id), "{out}");
    device
        .call("list", json!({}))
        .await
        .assert_unauthorized("the next request of a revoked binding's session");
    header
        .call("list", json!({}))
        .await
        .assert_unauthorized("a revoked binding by header");
    Session::open(&endpoint, None)
        .await
        .err()
        .expect("a revoked binding cannot start a session")
        .assert_unauthorized("initialize with a revoked binding");
    let listed = s.pb(&["bind", "list", "--actor", "alice"]).await;
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&binding_id) && l.trim_end().ends_with("revoked")),
        "{listed}"
    );
    // alice herself is unaffected.
    mine.echo_works("still me").await;

    mine.end().await;
    assert!(hub.stop().await.success());
    s.assert_no_processes_left().await;
}

// ---- 4. The audit log ----

#[tokio::test]
async fn the_audit_survives_a_restart_and_shows_the_call_tree() {
    let s = Setup::new(ALLOW_ALL);
    s.pb(&["actor", "add", "alice"]).await;
    let (token, token_id) = s.issue("alice", &[]).await;

    let hub = s.serve().await;
    // (The leftover check at the end sees the hub and its upstream while they run.)
    let running = processes_mentioning(&s.ws.dir.path().display().to_string());
    assert!(running.len() >= 2, "{running:?}");
    let mut session = Session::must_open(&hub.url, Some(&token)).await;
    let r = session
        .call(
            "call",
            json!({"calls": [
                {"tool": "fx.echo", "input": {"text": "audited"}},
                {"tool": "fx.nope", "input": {}},
            ]}),
        )
        .await;
    let results = r.structured()["results"].clone();
    assert_eq!(results[0]["success"], true, "{r:?}");
    assert_eq!(results[1]["error"]["code"], "not_found", "{r:?}");
    let session_id = session.id.clone();
    // Stopped at once: what is still queued must be written on the way out.
    assert!(hub.stop().await.success());

    let records = s.audit_json(&["audit", "tail", "--json"]).await;
    let find = |op: &str| -> Value {
        records
            .iter()
            .find(|r| r["operation"] == op)
            .cloned()
            .unwrap_or_else(|| panic!("no {op} record in {records:#?}"))
    };
    let batch = find("call");
    let echo = find("fx.echo");
    let nope = find("fx.nope");
    let batch_id = batch["call_id"].as_str().expect("call id").to_owned();
    assert_eq!(batch["parent_call_id"], Value::Null, "{batch}");
    assert_eq!(batch["outcome"], "ok", "{batch}");
    for (r, outcome) in [(&echo, "ok"), (&nope, "not_found")] {
        assert_eq!(r["outcome"], outcome, "{r}");
        assert_eq!(r["parent_call_id"], batch_id.as_str(), "{r}");
    }
    for r in [&batch, &echo, &nope] {
        assert_eq!(r["actor"], "alice", "{r}");
        assert_eq!(r["front_door"], "http", "{r}");
        assert_eq!(r["vendor"], Value::Null, "{r}");
        assert_eq!(r["credential"], token_id.as_str(), "{r}");
        assert_eq!(r["session"], session_id.as_str(), "{r}");
        assert_eq!(r["input"], Value::Null, "payloads are off by default: {r}");
        assert_eq!(r["output"], Value::Null, "payloads are off by default: {r}");
        assert!(r["time"].as_i64().is_some_and(|t| t > 0), "{r}");
    }
    assert_ne!(echo["call_id"], nope["call_id"]);
    assert!(echo["bytes_out"].as_u64().unwrap() > 0, "{echo}");

    // A second life of the hub adds to the log and keeps the first one's records.
    let hub = s.serve().await;
    let mut session = Session::must_open(&hub.url, Some(&token)).await;
    let r = session
        .call(
            "call",
            json!({"calls": [{"tool": "fx.add", "input": {"a": 2, "b": 3}}]}),
        )
        .await;
    assert_eq!(r.structured()["results"][0]["success"], true, "{r:?}");
    assert!(hub.stop().await.success());
    let after = s
        .audit_json(&["audit", "tail", "-n", "100", "--json"])
        .await;
    for op in ["fx.echo", "fx.nope", "fx.add"] {
        assert!(
            after.iter().any(|r| r["operation"] == op),
            "{op} missing after the restart: {after:#?}"
        );
    }
    let only_alice = s
        .audit_json(&["audit", "tail", "--actor", "alice", "--json"])
        .await;
    assert_eq!(only_alice.len(), after.len().min(20));
    assert!(
        s.audit_json(&["audit", "tail", "--actor", "nobody", "--json"])
            .await
            .is_empty()
    );

    // The tree of the batch: the batch, then both items under it.
    let tree = s.pb(&["audit", "tree", &batch_id]).await;
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert!(
        lines[0].contains(" call ok") && lines[0].contains(&batch_id),
        "{tree}"
    );
    for (op, outcome, record) in [("fx.echo", "ok", &echo), ("fx.nope", "not_found", &nope)] {
        let line = lines[1..]
            .iter()
            .find(|l| l.contains(op))
            .unwrap_or_else(|| panic!("{op} not in the tree:\n{tree}"));
        assert!(line.starts_with("  "), "a child is indented: {tree}");
        assert!(line.contains(&format!("{op} {outcome} ")), "{tree}");
        assert!(line.contains(record["call_id"].as_str().unwrap()), "{tree}");
    }
    let (code, _, stderr) = s.run(&["audit", "tree", "no-such-call"], None).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no call no-such-call"), "{stderr}");

    // Queries by outcome and operation.
    let failed = s
        .audit_json(&["audit", "query", "--outcome", "not_found", "--json"])
        .await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["operation"], "fx.nope");
    assert_eq!(failed[0]["call_id"], nope["call_id"]);
    let text = s
        .pb(&["audit", "query", "--since", "1h", "--outcome", "not_found"])
        .await;
    assert!(
        text.contains("fx.nope") && text.contains("alice") && text.contains(&batch_id),
        "{text}"
    );
    let fx = s
        .audit_json(&["audit", "query", "--operation", "fx.*", "--json"])
        .await;
    let ops: BTreeSet<&str> = fx.iter().filter_map(|r| r["operation"].as_str()).collect();
    assert_eq!(ops, BTreeSet::from(["fx.add", "fx.echo", "fx.nope"]));
    assert!(
        s.audit_json(&["audit", "query", "--actor", "bob", "--json"])
            .await
            .is_empty()
    );
    s.assert_no_processes_left().await;
}

// ---- 5. Secrets never leak ----

/// The raw bytes of the database and its WAL and shared-memory files, those that exist.
fn database_bytes(db: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts none of `needles` appears in the database files.
fn assert_absent_from_database(db: &Path, needles: &[&str], when: &str) {
    let files = database_bytes(db);
    assert!(
        files.iter().any(|(p, _)| p == db),
        "no database at {}",
        db.display()
    );
    for (path, bytes) in &files {
        for needle in needles {
            assert!(
                !contains(bytes, needle),
                "{when}: {} holds {needle:?}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn secret_values_and_token_secrets_never_leak() {
    let s = Setup::new(ALLOW_ALL);
    s.pb(&["actor", "add", "alice"]).await;
    let (code, stdout, stderr) = s
        .run(
            &["secret", "set", "alice", "gh_token"],
            Some(&format!("{SECRET_VALUE}\n")),
        )
        .await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let names = s.pb(&["secret", "list", "alice"]).await;
    assert_eq!(names.trim(), "gh_token", "{names}");
    let (alice, alice_id) = s.issue("alice", &[]).await;
    let (revoked, revoked_id) = s.issue("alice", &["--name", "old"]).await;
    s.pb(&["token", "revoke", &revoked_id]).await;

    // The hub at its most talkative.
    let mut env = s.env();
    env.push(("RUST_LOG", "trace".to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let hub = Hub::serve_with(&s.config, &env).await;
    hub.wait_all_ready(READY).await;

    let out = s
        .pb(&[
            "bind",
            "create",
            "--actor",
            "alice",
            "--vendor",
            "xiaozhi",
            "--public-url",
            &hub.base,
        ])
        .await;
    let binding = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("{out}"));
    let endpoint = format!("{}?token={binding}", hub.url);

    // Work with every credential, good and bad, by header and by query.
    let mut by_header = Session::must_open(&hub.url, Some(&alice)).await;
    by_header.echo_works("header").await;
    let r = by_header
        .call(
            "call",
            json!({"calls": [{"tool": "fx.nope"}, {"tool": "fx.add", "input": {"a": "x"}}]}),
        )
        .await;
    assert_eq!(r.structured()["results"][0]["error"]["code"], "not_found");
    let by_query_url = format!("{}?token={alice}", hub.url);
    let mut by_query = Session::must_open(&by_query_url, None).await;
    by_query.echo_works("query").await;
    let mut device = Session::must_open(&endpoint, None).await;
    device.echo_works("device").await;
    let altered = format!("{}x", &alice[..alice.len() - 1]);
    let refused = [
        Session::open(&hub.url, Some(&revoked)).await.err(),
        Session::open(&hub.url, Some(&altered)).await.err(),
        Session::open(&format!("{}?token={revoked}", hub.url), None)
            .await
            .err(),
    ];

    let tokens = [&alice, &revoked, &altered, &binding];
    let tails: Vec<&str> = tokens.iter().map(|t| t.trim_start_matches("pb_")).collect();
    // The secret, the key that encrypts it, and every token.
    let mut needles = vec![SECRET_VALUE, SECRET_KEY];
    needles.extend(&tails);
    for reply in refused {
        let reply = reply.expect("refused");
        reply.assert_unauthorized("a bad token");
        let shown = format!("{:?} {}", reply.www_authenticate, reply.body);
        for needle in &needles {
            assert!(
                !shown.contains(needle),
                "the refusal repeats {needle:?}: {shown}"
            );
        }
    }

    // While the hub runs (records in the WAL) and after it stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_absent_from_database(&s.db(), &needles, "while serving");
    for session in [by_header, by_query, device] {
        session.end().await;
    }
    let log = hub.log.clone();
    assert!(hub.stop().await.success());
    assert_absent_from_database(&s.db(), &needles, "after the hub stopped");
    let audit = s.pb(&["audit", "tail", "-n", "100", "--json"]).await;
    assert!(
        audit.contains("fx.echo") && audit.contains(&alice_id),
        "{audit}"
    );

    let log = log.text();
    assert!(
        log.len() > 1000,
        "the trace log is suspiciously short:\n{log}"
    );
    for needle in &needles {
        assert!(
            !log.contains(needle),
            "the hub's log holds {needle:?}:\n{}",
            log.lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Every command's output; `token issue` prints its token on stdout by design (only there).
    let outputs = s.all_outputs();
    for needle in [SECRET_VALUE, SECRET_KEY] {
        assert!(
            !outputs.contains(needle),
            "a command printed {needle:?}:\n{outputs}"
        );
    }
    for entry in s.outputs.lock().unwrap().iter() {
        let by_design =
            entry.contains("\"token\", \"issue\"") || entry.contains("\"bind\", \"create\"");
        if by_design {
            continue;
        }
        for tail in &tails {
            assert!(!entry.contains(tail), "a command printed a token:\n{entry}");
        }
    }
    s.assert_no_processes_left().await;
}
