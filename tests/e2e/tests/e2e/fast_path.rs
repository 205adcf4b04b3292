//! The HTTP fast path (`crates/server/src/fastpath.rs`): a `tools/call` without a progress
//! token, on a live session, answered as one JSON body. rmcp's own client always sends a
//! progress token, so these tests speak raw HTTP, as lean clients (and SDKs without a progress
//! callback) do.

use std::{path::Path, time::Duration};

use patchbay_e2e::*;
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);

/// A raw Streamable HTTP session.
struct RawSession {
    http: reqwest::Client,
    url: String,
    id: String,
}

impl RawSession {
    async fn open(url: &str) -> Self {
        let http = reqwest::Client::new();
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}});
        let r = post(&http, url, None, &init).await;
        assert!(r.status().is_success(), "initialize: {}", r.status());
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.text().await;
        let s = Self {
            http,
            url: url.to_owned(),
            id,
        };
        let r = s
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        s
    }

    async fn post(&self, body: &Value) -> reqwest::Response {
        post(&self.http, &self.url, Some(&self.id), body).await
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .json(body);
    if let Some(s) = session {
        req = req
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-06-18");
    }
    req.send().await.expect("POST")
}

fn call(id: u64, tool: &str, input: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "call", "arguments": {"calls": [{"tool": tool, "input": input}]}}})
}

async fn hub_with_fixture(ws: &Workspace, cancel_log: &Path) -> Hub {
    let extra = format!(
        "env = {{ FIXTURE_CANCEL_LOG = {:?} }}",
        cancel_log.display().to_string()
    );
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], &extra));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    hub
}

#[tokio::test]
async fn a_plain_call_is_answered_as_json() {
    let ws = Workspace::new();
    let hub = hub_with_fixture(&ws, &ws.path("cancel.log")).await;
    let s = RawSession::open(&hub.url).await;
    let r = s.post(&call(7, "fx.echo", json!({"text": "fast"}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "the fast path answers JSON"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 7);
    let item = &body["result"]["structuredContent"]["results"][0];
    assert_eq!(item["success"], true, "{body}");
    assert_eq!(item["result"]["content"][0]["text"], "fast");
    // Sessions of versions before 2026-07-28 have no `resultType`.
    assert!(body["result"].get("resultType").is_none(), "{body}");

    // Hub errors keep their shape on the fast path too.
    let r: Value = s
        .post(&call(8, "fx.add", json!({"a": "x"})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["result"]["structuredContent"]["results"][0]["error"]["code"], "invalid_input",
        "{r}"
    );
    // An unknown meta tool is a JSON-RPC error for its id.
    let r: Value = s
        .post(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "nope"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(9), json!(-32602)),
        "{r}"
    );
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn sessions_are_still_checked() {
    let ws = Workspace::new();
    let hub = hub_with_fixture(&ws, &ws.path("cancel.log")).await;
    let http = reqwest::Client::new();
    // An unknown session goes to rmcp, which answers 404 so the client re-initializes.
    let r = post(
        &http,
        &hub.url,
        Some("no-such-session"),
        &call(1, "fx.echo", json!({"text": "x"})),
    )
    .await;
    assert_eq!(r.status(), 404);
    // A foreign Host is refused (DNS rebinding), fast path or not.
    let s = RawSession::open(&hub.url).await;
    let r = http
        .post(&hub.url)
        .header("host", "evil.example")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &s.id)
        .json(&call(2, "fx.echo", json!({"text": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A deleted session is gone for the fast path too.
    let r = http
        .delete(&hub.url)
        .header("mcp-session-id", &s.id)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "DELETE: {}", r.status());
    let r = s.post(&call(3, "fx.echo", json!({"text": "x"}))).await;
    assert_eq!(r.status(), 404);
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn cancellation_reaches_the_upstream() {
    let ws = Workspace::new();
    let log = ws.path("cancel.log");
    let hub = hub_with_fixture(&ws, &log).await;

    // 1. notifications/cancelled for a fast-path request.
    let s = std::sync::Arc::new(RawSession::open(&hub.url).await);
    let s2 = s.clone();
    let pending = tokio::spawn(async move {
        s2.post(&call(41, "fx.sleep", json!({})))
            .await
            .json::<Value>()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = unix_millis();
    let r = s
        .post(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41}}))
        .await;
    assert_eq!(r.status(), 202);
    let lines = wait_cancel_log(&log, 1, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 1, "the upstream heard of the cancellation");
    assert!(
        lines[0].1 <= sent + 100,
        "within 100 ms: sent {sent}, upstream {}",
        lines[0].1
    );
    let body = pending.await.unwrap().unwrap();
    assert_eq!(
        body["result"]["structuredContent"]["results"][0]["error"]["code"], "cancelled",
        "{body}"
    );

    // 2. A client that hangs up mid-call: the call is cancelled, not left running.
    let url = hub.url.clone();
    let id = s.id.clone();
    let abandoned = tokio::spawn(async move {
        let http = reqwest::Client::new();
        post(&http, &url, Some(&id), &call(42, "fx.sleep", json!({}))).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    abandoned.abort();
    let lines = wait_cancel_log(&log, 2, Duration::from_secs(5)).await;
    assert_eq!(lines.len(), 2, "a disconnect cancels the call upstream");

    // 3. DELETE of the session cancels its fast-path calls.
    let s3 = s.clone();
    let pending = tokio::spawn(async move { s3.post(&call(43, "fx.sleep", json!({}))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::Client::new()
        .delete(&hub.url)
        .header("mcp-session-id", &s.id)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let lines = wait_cancel_log(&log, 3, Duration::from_secs(5)).await;
    assert_eq!(
        lines.len(),
        3,
        "ending the session cancels the call upstream"
    );
    let _ = pending.await;
    assert!(hub.stop().await.success());
}
