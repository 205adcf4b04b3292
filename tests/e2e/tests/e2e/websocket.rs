//! The WebSocket front door: `/mcp/ws` (the TypeScript SDK's WebSocket client, the full
//! surface), the xiaozhi relay's `/mcp_endpoint/call/` and `/mcp_endpoint/health`, auth
//! (close 1008), bad input (JSON-RPC errors, not dropped sockets), ping floods, a thousand idle
//! connections, and sessions that end with their socket.

use std::{path::PathBuf, time::Duration};

use futures::{SinkExt, StreamExt};
use patchbay_e2e::*;
use serde_json::{Value, json};
use tokio::process::Command;

const TOKEN: &str = "ws-token-0123456789abcdef";
const T: Duration = Duration::from_secs(10);

/// A hub with fixture `fx`; `server` lines go in `[server]`, `auth` adds static-token auth.
fn config(ws: &Workspace, server: &str, auth: bool, fx_extra: &str) -> PathBuf {
    let mut toml = format!(
        "[server]\n{server}\n{}",
        fixture_upstream("fx", &[], fx_extra)
    );
    if auth {
        toml.push_str(&format!(
            "\n[store]\npath = {:?}\n\n[auth]\n[[auth.tokens]]\nactor = \"device\"\ntoken = {TOKEN:?}\n\n\
             [[policy]]\nallow = [\"fx.*\"]\n",
            ws.path("hub.db").display().to_string()
        ));
    }
    ws.write("patchbay.toml", &toml)
}

fn request(id: i64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn call_request(id: i64, calls: Value) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "call", "arguments": {"calls": calls}}),
    )
}

/// Calls `fx.echo` over `ws` (request `id`) and returns the echoed text.
async fn echo_over(ws: &mut WsStream, id: i64, text: &str) -> String {
    ws_send(
        ws,
        &call_request(id, json!([{"tool": "fx.echo", "input": {"text": text}}])),
    )
    .await;
    let (reply, _) = ws_response(ws, &json!(id), T).await;
    reply["result"]["structuredContent"]["results"][0]["result"]["structuredContent"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no echo in {reply}"))
        .to_owned()
}

#[tokio::test]
async fn the_typescript_sdk_websocket_client_uses_the_whole_surface() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "", false, "")).await;
    hub.wait_all_ready(T).await;
    let script = repo_root().join("tests/interop/ts_ws_client.mjs");
    let mut cmd = Command::new(node22());
    cmd.arg(&script).arg(hub.ws_url("/mcp/ws"));
    let run = run_to_end(cmd, Duration::from_secs(60)).await;
    eprintln!("ts_ws_client took {:?}", run.took);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let summary: Value = serde_json::from_str(run.stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("summary line: {e}\n{}", run.stdout));
    assert_eq!(summary["errors"], json!({}), "{summary}");
    assert_eq!(
        summary["tools"],
        json!(["call", "list", "schema", "search"])
    );
    assert!(
        summary["search"]
            .as_array()
            .unwrap()
            .contains(&json!("fx.echo")),
        "{summary}"
    );
    assert_eq!(summary["schema_tool"], "fx.echo");
    assert_eq!(summary["echo"], "hello over websocket");
    assert!(
        summary["progress"].as_u64().unwrap_or(0) >= 1,
        "no progress reached the client: {summary}"
    );
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_xiaozhi_relay_client_gets_a_summary_first() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "", true, "")).await;
    hub.wait_all_ready(T).await;
    let mut socket = ws_connect(&hub.ws_url(&format!("/mcp_endpoint/call/?token={TOKEN}"))).await;
    // Exactly as xiaozhi-esp32-server does: three messages back to back, integer ids from 1.
    ws_send(
        &mut socket,
        &request(
            1,
            "initialize",
            json!({"protocolVersion": "2024-11-05", "capabilities": {},
                   "clientInfo": {"name": "XiaozhiClient", "version": "1.0.0"}}),
        ),
    )
    .await;
    ws_send(
        &mut socket,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws_send(&mut socket, &request(2, "tools/list", json!({}))).await;
    let (init, _) = ws_response(&mut socket, &json!(1), T).await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    let (tools, _) = ws_response(&mut socket, &json!(2), T).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list", "search", "schema", "call"]);
    for t in tools["result"]["tools"].as_array().unwrap() {
        assert!(t["description"].as_str().unwrap().len() < 100, "{t}");
    }
    ws_send(
        &mut socket,
        &call_request(
            3,
            json!([
                {"tool": "fx.echo", "input": {"text": "lights on"}},
                {"tool": "fx.nope"},
            ]),
        ),
    )
    .await;
    let (reply, _) = ws_response(&mut socket, &json!(3), T).await;
    let result = &reply["result"];
    assert_ne!(result["isError"], true, "{reply}");
    let first = result["content"][0]["text"].as_str().unwrap();
    assert!(
        first.starts_with(
            "2 calls: 1 ok, 1 failed.\n[1] fx.echo: ok: lights on\n[2] fx.nope: not_found: "
        ),
        "{first}"
    );
    // A failing call alone is a failure the client can see.
    ws_send(&mut socket, &call_request(4, json!([{"tool": "fx.fail"}]))).await;
    let (reply, _) = ws_response(&mut socket, &json!(4), T).await;
    let first = reply["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        first.starts_with("1 call: 1 ok, 0 failed.\n[1] fx.fail: tool reported an error"),
        "{first}"
    );
    // /mcp/ws keeps the surface's own first block.
    let mut plain = ws_connect(&hub.ws_url(&format!("/mcp/ws?token={TOKEN}"))).await;
    ws_send(&mut plain, &request(1, "initialize", json!({"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}))).await;
    ws_response(&mut plain, &json!(1), T).await;
    ws_send(
        &mut plain,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    ws_send(
        &mut plain,
        &call_request(2, json!([{"tool": "fx.echo", "input": {"text": "a"}}])),
    )
    .await;
    let (reply, _) = ws_response(&mut plain, &json!(2), T).await;
    assert_eq!(reply["result"]["content"][0]["text"], "[1] fx.echo: ok");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_bad_token_closes_with_policy_violation_before_anything_is_served() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "", true, "")).await;
    for url in [
        hub.ws_url("/mcp/ws?token=wrong-token-0123456789"),
        hub.ws_url("/mcp/ws"),
        hub.ws_url("/mcp_endpoint/call/?token=nope"),
    ] {
        let mut socket = ws_connect(&url).await;
        // Sent before the close is read: it must not be answered.
        let _ = socket
            .send(WsMessage::text(
                request(1, "initialize", json!({})).to_string(),
            ))
            .await;
        match ws_next(&mut socket, T).await {
            Some(WsMessage::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1008, "{url}");
                assert!(
                    frame.reason.as_str().starts_with("unauthorized"),
                    "{frame:?}"
                );
            }
            other => panic!("{url}: expected close 1008 first, got {other:?}"),
        }
    }
    // The right token by header works.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        hub.ws_url("/mcp/ws"),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws_send(&mut socket, &request(1, "initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}))).await;
    let (init, _) = ws_response(&mut socket, &json!(1), T).await;
    assert!(init["result"].is_object(), "{init}");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn bad_input_gets_jsonrpc_errors_and_the_socket_stays_usable() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "ws_max_message_bytes = 4096", false, "")).await;
    hub.wait_all_ready(T).await;
    let url = hub.ws_url("/mcp/ws");
    let mut socket = ws_session(&url).await;
    let mut other = ws_session(&url).await;

    socket
        .send(WsMessage::binary(b"\x00\x01binary".to_vec()))
        .await
        .unwrap();
    let reply = ws_next_json(&mut socket, T).await;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");

    socket.send(WsMessage::text("{not json")).await.unwrap();
    let reply = ws_next_json(&mut socket, T).await;
    assert_eq!(reply["error"]["code"], -32700, "{reply}");
    assert_eq!(reply["id"], Value::Null);

    socket
        .send(WsMessage::text(r#"{"hello": 1}"#))
        .await
        .unwrap();
    let reply = ws_next_json(&mut socket, T).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");

    socket
        .send(WsMessage::text(r#"{"jsonrpc": "2.0", "id": 9}"#))
        .await
        .unwrap();
    let reply = ws_next_json(&mut socket, T).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert_eq!(reply["id"], 9);

    // Over the limit (but within twice it): a JSON-RPC error, and the socket carries on.
    let big = call_request(
        50,
        json!([{"tool": "fx.echo", "input": {"text": "x".repeat(6000)}}]),
    );
    ws_send(&mut socket, &big).await;
    let reply = ws_next_json(&mut socket, T).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("4096"),
        "{reply}"
    );
    assert_eq!(echo_over(&mut socket, 51, "still here").await, "still here");

    // Far over it: the frame is not read; the socket closes with 1009; others are unaffected.
    let huge = call_request(
        52,
        json!([{"tool": "fx.echo", "input": {"text": "x".repeat(100_000)}}]),
    );
    let _ = socket.send(WsMessage::text(huge.to_string())).await;
    match ws_next(&mut socket, T).await {
        Some(WsMessage::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1009, "{frame:?}"),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(echo_over(&mut other, 1, "unaffected").await, "unaffected");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_ping_flood_does_not_stop_the_hub_answering() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "", false, "")).await;
    hub.wait_all_ready(T).await;
    let mut socket = ws_session(&hub.ws_url("/mcp/ws")).await;
    let started = std::time::Instant::now();
    for i in 0..1000u32 {
        socket
            .feed(WsMessage::Ping(i.to_be_bytes().to_vec().into()))
            .await
            .unwrap();
    }
    socket.flush().await.unwrap();
    assert_eq!(
        echo_over(&mut socket, 1, "after the flood").await,
        "after the flood"
    );
    eprintln!("1000 pings then a call: {:?}", started.elapsed());
    // A second client is not held up either.
    let mut other = ws_session(&hub.ws_url("/mcp/ws")).await;
    assert_eq!(echo_over(&mut other, 1, "other").await, "other");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_thousand_idle_connections_keep_the_hub_responsive_and_bounded() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "", false, "")).await;
    hub.wait_all_ready(T).await;
    // Warm up the paths a connection takes, so the figure is of connections, not first use.
    let mut warm = ws_session(&hub.ws_url("/mcp/ws")).await;
    echo_over(&mut warm, 1, "warm").await;
    let before = hub.rss_kib();
    let url = hub.ws_url("/mcp/ws");
    let mut idle = Vec::with_capacity(1000);
    let opening = std::time::Instant::now();
    for chunk in 0..10 {
        let batch = futures::future::join_all((0..100).map(|_| ws_connect(&url))).await;
        idle.extend(batch);
        let _ = chunk;
    }
    let opened = opening.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = hub.rss_kib();
    let health: Value = reqwest::get(format!("{}/mcp_endpoint/health", hub.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["websocket"]["connections"].as_u64().unwrap() >= 1000,
        "{health}"
    );
    let asked = std::time::Instant::now();
    let mut fresh = ws_session(&url).await;
    assert_eq!(echo_over(&mut fresh, 1, "prompt").await, "prompt");
    let answered = asked.elapsed();
    eprintln!(
        "1000 idle WebSocket connections: opened in {opened:?}; hub RSS {before} KiB before, \
         {held} KiB with them open (+{} KiB, {} bytes each); a new client's connect + \
         initialize + call took {answered:?}",
        held.saturating_sub(before),
        held.saturating_sub(before) * 1024 / 1000
    );
    assert!(answered < Duration::from_secs(2), "took {answered:?}");
    assert!(
        held.saturating_sub(before) < 200 * 1024,
        "RSS grew from {before} KiB to {held} KiB"
    );
    drop(idle);
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn closing_the_socket_mid_call_cancels_the_upstream_call() {
    let ws = Workspace::new();
    let log = ws.path("cancel.log");
    let extra = format!(
        "env = {{ FIXTURE_CANCEL_LOG = {:?} }}",
        log.display().to_string()
    );
    let hub = Hub::serve(&config(&ws, "", false, &extra)).await;
    hub.wait_all_ready(T).await;
    let mut socket = ws_session(&hub.ws_url("/mcp/ws")).await;
    ws_send(&mut socket, &call_request(1, json!([{"tool": "fx.sleep"}]))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cancel_log(&log).is_empty(), "cancelled too early");
    let closed = unix_millis();
    socket.close(None).await.unwrap();
    drop(socket);
    let lines = wait_cancel_log(&log, 1, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 1, "the upstream was not told: {lines:?}");
    let after = lines[0].1.saturating_sub(closed);
    eprintln!("socket closed -> upstream cancelled in {after} ms");
    assert!(after < 1000, "took {after} ms");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_silent_peer_is_closed_after_two_ping_intervals() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "ws_ping = \"1s\"", false, "")).await;
    let mut socket = ws_connect(&hub.ws_url("/mcp/ws")).await;
    // Not reading means not answering pings (the client answers them as it reads).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut pings = 0;
    let close = loop {
        match tokio::time::timeout(T, socket.next())
            .await
            .expect("a frame")
        {
            Some(Ok(WsMessage::Ping(_))) => pings += 1,
            Some(Ok(WsMessage::Close(frame))) => break frame,
            other => panic!("expected pings then a close, got {other:?}"),
        }
    };
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
    assert!(pings >= 1, "no ping before the close");
    // A peer that answers stays open.
    let mut alive = ws_session(&hub.ws_url("/mcp/ws")).await;
    for i in 0..4 {
        // Reading (ws_next) answers the hub's pings.
        let _ = tokio::time::timeout(Duration::from_millis(900), alive.next()).await;
        let _ = i;
    }
    assert_eq!(echo_over(&mut alive, 1, "alive").await, "alive");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn health_needs_the_configured_key() {
    let ws = Workspace::new();
    let hub = Hub::serve(&config(&ws, "health_key = \"k-123\"", false, "")).await;
    hub.wait_all_ready(T).await;
    let _socket = ws_session(&hub.ws_url("/mcp/ws")).await;
    let get = |q: &str| reqwest::get(format!("{}/mcp_endpoint/health{q}", hub.base));
    assert_eq!(get("").await.unwrap().status(), 403);
    assert_eq!(get("?key=wrong").await.unwrap().status(), 403);
    let ok = get("?key=k-123").await.unwrap();
    assert_eq!(ok.status(), 200);
    let stats: Value = ok.json().await.unwrap();
    assert_eq!(stats["websocket"]["connections"], 1, "{stats}");
    assert_eq!(stats["websocket"]["sessions"], 1, "{stats}");
    assert_eq!(
        stats["upstreams"],
        json!({"ready": 1, "total": 1}),
        "{stats}"
    );
    assert!(stats["operations"].as_u64().unwrap() > 5, "{stats}");
    assert!(hub.stop().await.success());
}
