//! Dial-in tool providers: an MCP server (the fixture, its stdio bridged to a WebSocket in the
//! test) connects to `/providers/ws` with the token `patchbay provider add` printed; its tools
//! join the registry under the provider's namespace for another actor's client; a disconnect
//! fails the call in flight at once with `upstream_unavailable`; a reconnection restores it; a
//! second connection replaces the first (close 1000); a bad token gets close 1008.

use std::{path::PathBuf, process::Stdio, time::Duration};

use futures::{SinkExt, StreamExt};
use patchbay_e2e::*;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
    task::JoinHandle,
};

const ALICE: &str = "alice-token-0123456789abcdef";
const T: Duration = Duration::from_secs(15);

fn config(ws: &Workspace) -> PathBuf {
    let toml = format!(
        "[store]\npath = {:?}\n\n[auth]\n[[auth.tokens]]\nactor = \"alice\"\ntoken = {ALICE:?}\n\n\
         [[policy]]\nallow = [\"tools.*\"]\n",
        ws.path("hub.db").display().to_string()
    );
    ws.write("patchbay.toml", &toml)
}

/// `patchbay provider add NAME`: the printed token.
async fn add_provider(ws: &Workspace, config: &std::path::Path, name: &str) -> String {
    let config = config.display().to_string();
    let (code, out, err) = run_patchbay(
        &["provider", "add", name, "--config", &config],
        ws.dir.path(),
        &[],
        T,
    )
    .await;
    assert_eq!(code, Some(0), "provider add failed: {err}");
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no token in {out}"))
}

/// A provider connected to the hub: the fixture's stdio bridged to a WebSocket. The task ends
/// with the close frame the hub sent (code, reason), or `None` if the socket just ended.
struct Provider {
    task: JoinHandle<Option<(u16, String)>>,
}

async fn dial_in(url: &str) -> Provider {
    let ws = ws_connect(url).await;
    let mut child = Command::new(fixture())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the fixture");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let task = tokio::spawn(async move {
        let _child = child;
        let (mut tx, mut rx) = ws.split();
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if tx.send(WsMessage::text(line)).await.is_err() {
                            return None;
                        }
                    }
                    _ => return None,
                },
                frame = rx.next() => match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        let mut line = text.as_str().as_bytes().to_vec();
                        line.push(b'\n');
                        if stdin.write_all(&line).await.is_err() {
                            return None;
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    }
                    Some(Ok(_)) => {}
                    _ => return None,
                },
            }
        }
    });
    Provider { task }
}

/// The state of namespace `ns` in `/readyz` (asked with alice's token, for the details).
async fn state_of(hub: &Hub, ns: &str) -> Value {
    let r: Value = reqwest::get(format!("{}/readyz?token={ALICE}", hub.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["namespace"] == ns).cloned())
        .unwrap_or(Value::Null)
}

async fn wait_state(hub: &Hub, ns: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let s = state_of(hub, ns).await;
        if s["state"] == state {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ns} is {s}, not {state}; log:\n{}",
            hub.log.text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn echo(client: &Client, text: &str) -> Value {
    call_one(client, "tools.echo", json!({"text": text})).await
}

#[tokio::test]
async fn a_provider_dials_in_serves_disconnects_reconnects_and_is_replaced() {
    let ws = Workspace::new();
    let config = config(&ws);
    let token = add_provider(&ws, &config, "tools").await;
    assert!(token.starts_with("pbp_"), "{token}");
    let hub = Hub::serve(&config).await;

    // Registered from the store, waiting for its provider.
    let s = wait_state(&hub, "tools", "starting").await;
    assert!(
        s["detail"].as_str().unwrap_or("").contains("dial-in"),
        "{s}"
    );

    let url = hub.ws_url(&format!("/providers/ws?token={token}"));
    let first = dial_in(&url).await;
    wait_state(&hub, "tools", "ready").await;

    // Another actor's client finds and calls its operations.
    let client = http_client(&format!("{}?token={ALICE}", hub.url)).await;
    let found = text_of(&call(&client, "search", json!({"q": "sleep milliseconds"})).await);
    assert!(found.contains("tools.sleep"), "{found}");
    let r = echo(&client, "over the dial-in socket").await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["text"], "over the dial-in socket",
        "{r}"
    );

    // The provider disconnects mid-call: the call fails at once.
    let sleeping = {
        let client = http_client(&format!("{}?token={ALICE}", hub.url)).await;
        tokio::spawn(async move {
            let r = call_one(&client, "tools.sleep", json!({"ms": 20_000})).await;
            (r, tokio::time::Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dropped_at = tokio::time::Instant::now();
    first.task.abort();
    let (r, at) = tokio::time::timeout(Duration::from_secs(5), sleeping)
        .await
        .expect("the call in flight did not fail at once")
        .unwrap();
    let took = at - dropped_at;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["error"]["code"], "upstream_unavailable", "{r}");
    assert!(took < Duration::from_secs(2), "failed after {took:?}");
    eprintln!("call in flight failed {took:?} after the provider disconnected");

    // Unavailable, catalog kept.
    let s = wait_state(&hub, "tools", "restarting").await;
    assert!(s["operations"].as_u64().unwrap() > 0, "{s}");
    let r = echo(&client, "nobody there").await;
    assert_eq!(r["error"]["code"], "upstream_unavailable", "{r}");

    // It reconnects: calls work again.
    let second = dial_in(&url).await;
    wait_state(&hub, "tools", "ready").await;
    let r = echo(&client, "back").await;
    assert_eq!(r["success"], true, "{r}");

    // A third connection (on the relay's path) replaces the second, which is closed normally.
    let relay = hub.ws_url(&format!("/mcp_endpoint/mcp/?token={token}"));
    let third = dial_in(&relay).await;
    let closed = tokio::time::timeout(T, second.task)
        .await
        .expect("the replaced connection was not closed")
        .unwrap();
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1000, "{reason}");
    assert!(reason.contains("replaced"), "{reason}");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let r = echo(&client, "third").await;
        if r["success"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!third.task.is_finished());
    third.task.abort();
    hub.stop().await;
}

#[tokio::test]
async fn a_bad_provider_token_is_closed_with_1008() {
    let ws = Workspace::new();
    let config = config(&ws);
    add_provider(&ws, &config, "tools").await;
    let hub = Hub::serve(&config).await;
    for url in [
        hub.ws_url("/providers/ws?token=pbp_not-a-real-token"),
        hub.ws_url("/mcp_endpoint/mcp/?token=pbp_not-a-real-token"),
        hub.ws_url("/providers/ws"),
        // An actor's token is not a provider's.
        hub.ws_url(&format!("/providers/ws?token={ALICE}")),
    ] {
        let mut socket = ws_connect(&url).await;
        match ws_next(&mut socket, T).await {
            Some(WsMessage::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1008, "{url}: {frame:?}");
                assert!(frame.reason.contains("unauthorized"), "{frame:?}");
            }
            other => panic!("{url}: expected close 1008, got {other:?}"),
        }
    }
    assert_eq!(state_of(&hub, "tools").await["state"], "starting");
    hub.stop().await;
}
