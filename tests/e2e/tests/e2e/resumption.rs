//! Streamable HTTP resumption: a client whose response stream breaks mid-call reconnects with
//! `Last-Event-ID` on a GET and receives what it missed, the call's result included.

use std::time::Duration;

use patchbay_e2e::{Hub, Workspace, fixture_upstream};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const VERSION: &str = "2025-11-25";

/// POSTs one JSON-RPC message on `session` and returns the response.
async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, ACCEPT_BOTH)
        .header("mcp-protocol-version", VERSION)
        .json(&body);
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    request.send().await.expect("POST /mcp")
}

/// Reads SSE events (`(id, data)`) from `response` until `stop` says so or the stream ends.
async fn read_events(
    mut response: reqwest::Response,
    mut stop: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let (id, data) = (field("id:"), field("data:"));
            let done = stop(&id, &data);
            events.push((id, data));
            if done {
                return events;
            }
        }
    }
    events
}

#[tokio::test]
async fn a_broken_stream_is_resumed_with_last_event_id() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", &fixture_upstream("demo", &[], ""))).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    let http = reqwest::Client::new();

    let init = post(
        &http,
        &hub.url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {},
            "clientInfo": {"name": "resume-test", "version": "1"}}}),
    )
    .await;
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(init);
    post(
        &http,
        &hub.url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    // A progress token sends the call down the streaming path; the client reads the first
    // event (the priming event with an id) and then drops the connection.
    let call = post(
        &http,
        &hub.url,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "call", "_meta": {"progressToken": "resume-1"},
            "arguments": {"calls": [{"tool": "demo.sleep", "input": {"ms": 800}}]}}}),
    )
    .await;
    assert!(
        call.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = read_events(call, |id, _| !id.is_empty()).await;
    let last_id = first
        .last()
        .map(|(id, _)| id.clone())
        .expect("a first event with an id");
    assert!(
        !first.iter().any(|(_, data)| data.contains("\"id\":2")),
        "the result came before the stream was broken: {first:?}"
    );

    let resumed = http
        .get(&hub.url)
        .header(ACCEPT, "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", VERSION)
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("GET with Last-Event-ID");
    assert!(
        resumed.status().is_success(),
        "resume answered {}",
        resumed.status()
    );
    let events = tokio::time::timeout(
        Duration::from_secs(10),
        read_events(resumed, |_, data| data.contains("\"id\":2")),
    )
    .await
    .expect("the result arrived on the resumed stream");
    let result: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(result["id"], 2);
    let item = &result["result"]["structuredContent"]["results"][0];
    assert_eq!(item["success"], true, "{result}");
    assert_eq!(
        item["result"]["content"][0]["text"], "slept 800",
        "{result}"
    );
}
