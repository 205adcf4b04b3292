//! Bad input at the front doors gets a proper error and the session carries on: raw JSON-RPC
//! lines on `patchbay stdio`, raw HTTP requests on `/mcp`.

use patchbay_e2e::*;
use serde_json::{Value, json};

const MAX_MESSAGE: usize = 2048;

fn error_code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not a JSON-RPC error: {v}"))
}

#[tokio::test]
async fn stdio_answers_bad_lines_and_carries_on() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[server]\nmax_message_bytes = {MAX_MESSAGE}\n"),
    );
    let mut s = RawStdio::start(&config).await.checking_jsonrpc();

    let init = s
        .request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}),
        )
        .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "patchbay", "{init}");
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;

    // Not JSON: parse error, id null.
    s.send_bytes(b"this is not json at all\n").await;
    let e = s.answer().await;
    assert_eq!(error_code(&e), -32700, "{e}");
    assert_eq!(e["id"], Value::Null, "{e}");
    let tools = s.request(2, "tools/list", json!({})).await;
    assert_eq!(
        tools["result"]["tools"].as_array().map(Vec::len),
        Some(4),
        "{tools}"
    );

    // Truncated JSON.
    s.send_bytes(b"{\"jsonrpc\": \"2.0\", \"id\": 3, \"method\": \n")
        .await;
    assert_eq!(error_code(&s.answer().await), -32700);
    s.alive(4).await;

    // Not UTF-8.
    s.send_bytes(b"{\"jsonrpc\": \"2.0\", \"id\": 5, \"method\": \"\xff\xfe\"}\n")
        .await;
    let e = s.answer().await;
    assert_eq!(error_code(&e), -32700, "{e}");
    s.alive(6).await;

    // Over server.max_message_bytes: invalid request, and the rest of the line is skipped.
    let big = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "search", "arguments": {"q": "x".repeat(MAX_MESSAGE * 3)}}});
    s.send(big).await;
    let e = s.answer().await;
    assert_eq!(error_code(&e), -32600, "{e}");
    s.alive(8).await;
    // Just under the limit is fine.
    let fits = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "search", "arguments": {"q": "y".repeat(MAX_MESSAGE - 200)}}});
    assert!(serde_json::to_vec(&fits).unwrap().len() < MAX_MESSAGE);
    s.send(fits).await;
    let a = s.answer().await;
    assert_eq!(a["id"], 9);
    assert!(a.get("result").is_some(), "{a}");

    // Unknown method: method not found, with the request's id.
    let e = s.request(10, "no/such/method", json!({})).await;
    assert_eq!(error_code(&e), -32601, "{e}");

    // Not a JSON-RPC message at all, and a wrong jsonrpc version.
    s.send(json!({"hello": "world"})).await;
    assert_eq!(error_code(&s.answer().await), -32600);
    s.send(json!({"jsonrpc": "1.0", "id": 11, "method": "ping"}))
        .await;
    let e = s.answer().await;
    assert_eq!(error_code(&e), -32600, "{e}");
    assert_eq!(e["id"], 11, "{e}");
    s.alive(12).await;

    // Malformed params of a known method: an error for that id.
    s.send(json!({"jsonrpc": "2.0", "id": 13, "method": "tools/call", "params": "garbage"}))
        .await;
    let e = s.answer().await;
    assert_eq!(e["id"], 13, "{e}");
    assert!(e.get("error").is_some(), "{e}");
    s.alive(14).await;

    // Wrong argument types for a meta tool: a structured invalid_input tool error.
    for (id, tool, arguments) in [
        (15, "list", json!({"limit": "many"})),
        (16, "call", json!({"calls": "fx.echo"})),
        (17, "search", json!({"q": 42})),
        (18, "schema", json!({})),
        (19, "list", json!({"unknown_field": true})),
    ] {
        let a = s
            .request(
                id,
                "tools/call",
                json!({"name": tool, "arguments": arguments}),
            )
            .await;
        let result = &a["result"];
        assert_eq!(result["isError"], true, "{tool} {arguments}: {a}");
        assert_eq!(
            result["structuredContent"]["error"]["code"], "invalid_input",
            "{tool} {arguments}: {a}"
        );
    }
    s.alive(20).await;

    // Blank lines and CRLF endings are tolerated.
    s.send_bytes(b"\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 21, \"method\": \"ping\"}\r\n")
        .await;
    assert_eq!(s.answer().await["id"], 21);

    // Closing stdin ends the process cleanly.
    let (status, log) = s.close().await;
    assert!(status.success(), "{status}; log:\n{}", log.text());
    assert!(!log.text().contains("panicked"), "{}", log.text());
}

const ACCEPT: &str = "application/json, text/event-stream";

fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    session: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2025-06-18")
        .body(body);
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    req.send().await.expect("POST /mcp")
}

/// Proves the hub still serves: a full MCP client session works.
async fn still_serves(hub: &Hub) {
    let client = hub.client().await;
    let r = call(&client, "list", json!({})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn http_rejects_bad_requests_and_keeps_serving() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[server]\nmax_message_bytes = {MAX_MESSAGE}\n"),
    );
    let hub = Hub::serve(&config).await;
    let http = reqwest::Client::new();

    // A body over the limit.
    let mut big = initialize_body();
    big["params"]["clientInfo"]["name"] = json!("x".repeat(MAX_MESSAGE * 4));
    let r = post(&http, &hub.url, serde_json::to_vec(&big).unwrap(), None).await;
    assert!(
        r.status().is_client_error(),
        "oversized body: {}",
        r.status()
    );
    assert_eq!(r.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    still_serves(&hub).await;

    // Malformed JSON: a 4xx with a JSON-RPC error body.
    for body in [
        &b"{not json"[..],
        b"",
        b"\xff\xfe",
        b"[1, 2",
        b"{\"jsonrpc\": \"2.0\", \"id\": 1}",
    ] {
        let r = post(&http, &hub.url, body.to_vec(), None).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_client_error(), "{body:?}: {status} {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{body:?}: body is not a JSON-RPC error ({e}): {status} {text}")
        });
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        let code = error_code(&v);
        assert!(code == -32700 || code == -32600, "{body:?}: {v}");
    }
    still_serves(&hub).await;

    // An unknown session id: 404, so the client knows to start a new session.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let r = post(
        &http,
        &hub.url,
        serde_json::to_vec(&list).unwrap(),
        Some("no-such-session"),
    )
    .await;
    assert_eq!(
        r.status(),
        reqwest::StatusCode::NOT_FOUND,
        "{}",
        r.text().await.unwrap_or_default()
    );
    still_serves(&hub).await;

    // Unknown paths are 404; health stays up.
    let r = http.get(format!("{}/nope", hub.base)).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(!hub.log.text().contains("panicked"), "{}", hub.log.text());
    assert!(hub.stop().await.success());
}
