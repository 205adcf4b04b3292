//! Dialling out: `[[endpoints]]` makes the hub connect to a vendor's WebSocket endpoint and
//! serve MCP on it (a fake xiaozhi cloud here), reconnecting with backoff when it drops, and
//! reporting an auth failure (token redacted) in `/readyz` and `patchbay check`. And
//! `patchbay connect`, which bridges a local stdio MCP server to a remote endpoint.

use std::{path::PathBuf, time::Duration};

use futures::{SinkExt, StreamExt};
use patchbay_e2e::*;
use serde_json::{Value, json};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        handshake::server::{ErrorResponse, Request, Response},
        http::StatusCode,
    },
};

const ADMIN: &str = "dialout-admin-token-0123456789";
const T: Duration = Duration::from_secs(10);

type Vendor = WebSocketStream<TcpStream>;

/// A fake vendor endpoint on 127.0.0.1: every accepted connection is handed over; with
/// `refuse`, every upgrade is answered 401 instead.
async fn vendor_endpoint(refuse: bool) -> (u16, mpsc::Receiver<Vendor>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // the handshake's own callback type
                let check = move |_: &Request, response: Response| {
                    if refuse {
                        let mut e = ErrorResponse::new(Some("bad token".into()));
                        *e.status_mut() = StatusCode::UNAUTHORIZED;
                        Err(e)
                    } else {
                        Ok(response)
                    }
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await {
                    let _ = tx.send(ws).await;
                }
            });
        }
    });
    (port, rx)
}

fn config(ws: &Workspace, url: &str) -> PathBuf {
    let toml = format!(
        "[[endpoints]]\nurl = {url:?}\nactor = \"alice\"\nvendor = \"xiaozhi\"\nbackoff_cap = \"400ms\"\n\n\
         {}\n[store]\npath = {:?}\n\n[auth]\n[[auth.tokens]]\nactor = \"admin\"\ntoken = {ADMIN:?}\n\n\
         [[policy]]\nallow = [\"fx.*\"]\n",
        fixture_upstream("fx", &[], ""),
        ws.path("hub.db").display().to_string()
    );
    ws.write("patchbay.toml", &toml)
}

async fn send(ws: &mut Vendor, value: Value) {
    ws.send(WsMessage::text(value.to_string())).await.unwrap();
}

/// The answer to request `id`, skipping notifications and requests from the hub.
async fn answer(ws: &mut Vendor, id: i64) -> Value {
    tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["id"] == json!(id) && v.get("method").is_none() {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {id}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to {id}"))
}

/// What the xiaozhi cloud does on a fresh connection, then a ping and a call of `fx.echo`.
async fn converse(ws: &mut Vendor, text: &str) {
    let (init, names) = handshake(ws, "xiaozhi-mqtt-client").await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert_eq!(
        init["result"]["capabilities"]["tools"]["listChanged"], true,
        "{init}"
    );
    assert_eq!(names, ["list", "search", "schema", "call"]);
    send(ws, json!({"jsonrpc": "2.0", "id": 3, "method": "ping"})).await;
    assert_eq!(answer(ws, 3).await["result"], json!({}));
    send(
        ws,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "call", "arguments": {"calls": [{"tool": "fx.echo", "input": {"text": text}}]}}}),
    )
    .await;
    let reply = answer(ws, 4).await;
    assert_ne!(reply["result"]["isError"], true, "{reply}");
    let first = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        first.contains("fx.echo") && first.contains(text),
        "content[0] summarises: {first}"
    );
}

async fn readyz(hub: &Hub) -> Value {
    reqwest::Client::new()
        .get(format!("{}/readyz", hub.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_endpoint(hub: &Hub, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = readyz(hub).await;
        if pred(&r["endpoints"][0]) {
            return r;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("endpoint never got there: {r}\nlog:\n{}", hub.log.text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_hub_dials_out_serves_calls_and_reconnects_after_a_drop() {
    let ws = Workspace::new();
    let (port, mut conns) = vendor_endpoint(false).await;
    let hub = Hub::serve(&config(&ws, &format!("ws://127.0.0.1:{port}/mcp/?token=x"))).await;
    hub.wait_all_ready(T).await;
    let mut first = tokio::time::timeout(T, conns.recv())
        .await
        .expect("the hub dialled out")
        .unwrap();
    converse(&mut first, "lights on").await;
    let r = wait_endpoint(&hub, |e| e["state"] == "connected").await;
    let e = &r["endpoints"][0];
    assert_eq!(
        e["url"],
        format!("ws://127.0.0.1:{port}/mcp/?token=…"),
        "{r}"
    );
    assert_eq!(
        (e["actor"].clone(), e["vendor"].clone()),
        (json!("alice"), json!("xiaozhi"))
    );

    // The endpoint drops the connection (as the cloud does to idle sockets, with 4004).
    first
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4004u16.into(),
            reason: "idle".into(),
        }))
        .await
        .unwrap();
    drop(first);
    let dropped = tokio::time::Instant::now();
    let mut second = tokio::time::timeout(T, conns.recv())
        .await
        .expect("the hub dialled again")
        .unwrap();
    let waited = dropped.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "redialled after {waited:?}"
    );
    converse(&mut second, "lights off").await;
    let r = wait_endpoint(&hub, |e| e["state"] == "connected" && e["connections"] == 2).await;
    assert!(r["endpoints"][0]["last_error"].is_null(), "{r}");
    assert!(
        hub.log.text().contains("close code 4004"),
        "the drop is logged with its code:\n{}",
        hub.log.text()
    );

    // A hard drop (no close frame) too.
    drop(second);
    let mut third = tokio::time::timeout(T, conns.recv())
        .await
        .expect("the hub dialled a third time")
        .unwrap();
    converse(&mut third, "again").await;
    let status = hub.stop_with_signal(libc::SIGTERM).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_endpoint_refusing_the_token_shows_as_an_auth_failure_with_the_token_redacted() {
    let ws = Workspace::new();
    let (port, _conns) = vendor_endpoint(true).await;
    let secret = "s3cret-vendor-token";
    let cfg = config(&ws, &format!("ws://127.0.0.1:{port}/mcp/?token={secret}"));
    let hub = Hub::serve(&cfg).await;
    let r = wait_endpoint(&hub, |e| e["auth_failure"] == true).await;
    let e = &r["endpoints"][0];
    assert_eq!(e["state"], "retrying", "{r}");
    assert!(e["last_error"].as_str().unwrap().contains("401"), "{r}");
    assert!(!r.to_string().contains(secret), "{r}");
    // Without credentials /readyz says nothing about endpoints.
    assert!(hub.readyz().await.get("endpoints").is_none());
    // /metrics shows the endpoint's state to an authenticated caller, its token redacted.
    let metrics = |auth: bool| {
        let mut request = reqwest::Client::new().get(format!("{}/metrics", hub.base));
        if auth {
            request = request.bearer_auth(ADMIN);
        }
        request.send()
    };
    assert_eq!(metrics(false).await.unwrap().status(), 401);
    let text = metrics(true).await.unwrap().text().await.unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("patchbay_endpoint_auth_failure{").ends_with(" 1"),
        "{text}"
    );
    assert!(
        line("patchbay_endpoint_connected{").ends_with(" 0"),
        "{text}"
    );
    assert!(line("patchbay_upstream_ready{").ends_with(" 1"), "{text}");
    assert!(!text.contains(secret), "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!hub.log.text().contains(secret), "{}", hub.log.text());
    hub.stop_with_signal(libc::SIGTERM).await;

    let out = check(&cfg).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("auth_failed") && stdout.contains("401"),
        "{stdout}"
    );
    assert!(!stdout.contains(secret), "{stdout}");
}

/// Starts `patchbay connect URL -- patchbay-fixture --pid-file PIDFILE`.
fn start_connect(url: &str, pid_file: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(patchbay())
        .arg("connect")
        .arg("--backoff-cap")
        .arg("300ms")
        .arg(url)
        .arg("--")
        .arg(fixture())
        .arg("--pid-file")
        .arg(pid_file)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start patchbay connect")
}

/// As an MCP client over `ws` (requests 1 and 2): initialize, then list tools; the
/// initialize answer and the tools' names.
async fn handshake(ws: &mut Vendor, client: &str) -> (Value, Vec<String>) {
    send(
        ws,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": {"name": client, "version": "1.0.0"}}}),
    )
    .await;
    let init = answer(ws, 1).await;
    send(
        ws,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    send(
        ws,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}),
    )
    .await;
    let tools = answer(ws, 2).await;
    let names = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{tools}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    (init, names)
}

/// [`handshake`] for a cloud that only wants the tools' names.
async fn list_tools_as_client(ws: &mut Vendor) -> Vec<String> {
    let (init, names) = handshake(ws, "test-cloud").await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    names
}

#[tokio::test]
async fn connect_bridges_a_stdio_server_restarts_it_and_leaves_nothing_behind() {
    let ws = Workspace::new();
    let (port, mut conns) = vendor_endpoint(false).await;
    let pid_file = ws.path("fixture.pid");
    let mut bridge = start_connect(&format!("ws://127.0.0.1:{port}/mcp/?token=x"), &pid_file);
    let mut socket = tokio::time::timeout(T, conns.recv())
        .await
        .expect("connect dialled the endpoint")
        .unwrap();
    let tools = list_tools_as_client(&mut socket).await;
    assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": "bridged"}}}),
    )
    .await;
    let r = answer(&mut socket, 3).await;
    assert_eq!(r["result"]["structuredContent"]["text"], "bridged", "{r}");
    let first_pid = wait_pid_file(&pid_file, T).await;
    assert!(pid_alive(first_pid));

    // The endpoint drops the socket: the server is restarted with a fresh session.
    std::fs::remove_file(&pid_file).unwrap();
    drop(socket);
    let mut socket = tokio::time::timeout(T, conns.recv())
        .await
        .expect("connect dialled again")
        .unwrap();
    let tools = list_tools_as_client(&mut socket).await;
    assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
    let second_pid = wait_pid_file(&pid_file, T).await;
    assert_ne!(first_pid, second_pid);
    assert!(
        eventually(T, || !pid_alive(first_pid)).await,
        "old server left running"
    );

    // SIGTERM: the bridge exits and takes the server with it.
    unsafe { libc::kill(bridge.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(T, bridge.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        eventually(T, || !pid_alive(second_pid)).await,
        "server left running"
    );
}

#[tokio::test]
async fn connect_bridges_a_stdio_server_to_a_hub_provider_endpoint() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[store]\npath = {:?}\n\n[auth]\n[[auth.tokens]]\nactor = \"admin\"\ntoken = {ADMIN:?}\n\n\
             [[policy]]\nallow = [\"laptop.*\"]\n",
            ws.path("hub.db").display().to_string()
        ),
    );
    let (code, out, err) = run_patchbay(
        &[
            "provider",
            "add",
            "laptop",
            "--config",
            &config.display().to_string(),
        ],
        ws.dir.path(),
        &[],
        T,
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no token in {out}"));
    let hub = Hub::serve(&config).await;
    let pid_file = ws.path("fixture.pid");
    let mut bridge = start_connect(
        &hub.ws_url(&format!("/providers/ws?token={token}")),
        &pid_file,
    );
    let client = http_client(&format!("{}?token={ADMIN}", hub.url)).await;
    let mut found = String::new();
    let deadline = tokio::time::Instant::now() + T;
    while !found.contains("laptop.echo") && tokio::time::Instant::now() < deadline {
        found = text_of(&call(&client, "search", json!({"q": "echo text"})).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found.contains("laptop.echo"), "{found}\n{}", hub.log.text());
    let r = call_one(&client, "laptop.echo", json!({"text": "from the laptop"})).await;
    assert_eq!(
        r["result"]["structuredContent"]["text"], "from the laptop",
        "{r}"
    );
    let pid = wait_pid_file(&pid_file, T).await;
    unsafe { libc::kill(bridge.id().unwrap() as i32, libc::SIGINT) };
    tokio::time::timeout(T, bridge.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        eventually(T, || !pid_alive(pid)).await,
        "server left running"
    );
}
