//! Cancellation and timeouts reach the upstream, not only stop the hub waiting for it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use rmcp::{
    model::{CallToolRequest, CallToolRequestParams, ClientRequest},
    service::{PeerRequestOptions, RequestHandle, RoleClient},
};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(20);
/// The spec's bound from the client's `notifications/cancelled` to the upstream seeing it.
const CANCEL_BOUND_MS: u128 = 100;
/// Long enough for a `call` to have reached the fixture on a loaded machine.
const SETTLE: Duration = Duration::from_millis(500);

/// A stdio fixture `fx` that logs cancellations to `cancel.log`, with extra table lines;
/// `server` is put in a `[server]` table when not empty.
fn config_with_cancel_log(
    ws: &Workspace,
    server: &str,
    upstream_extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = ws.path("cancel.log");
    let env = format!(
        "env = {{ FIXTURE_CANCEL_LOG = {:?} }}\n{upstream_extra}",
        log.display().to_string()
    );
    let server = if server.is_empty() {
        String::new()
    } else {
        format!("[server]\n{server}\n")
    };
    let config = ws.write(
        "patchbay.toml",
        &format!("{server}{}", fixture_upstream("fx", &[], &env)),
    );
    (config, log)
}

/// Sends the meta tool `call` with `calls` as a cancellable request.
async fn start_call(client: &Client, calls: Value) -> RequestHandle<RoleClient> {
    let mut params = CallToolRequestParams::new("call");
    params.arguments = Some(args(json!({ "calls": calls })));
    client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("send the call request")
}

/// Cancels a `call` of `calls` (each a forever-sleep) and asserts each sleep is cancelled
/// upstream within the bound.
async fn assert_cancel_reaches_upstream(client: &Client, log: &Path, calls: Value) {
    let n = calls.as_array().unwrap().len();
    let handle = start_call(client, calls).await;
    tokio::time::sleep(SETTLE).await;
    assert!(
        cancel_log(log).is_empty(),
        "cancelled before the client asked: {:?}",
        cancel_log(log)
    );
    let sent = unix_millis();
    handle
        .cancel(Some("test cancels".into()))
        .await
        .expect("send notifications/cancelled");
    let lines = wait_cancel_log(log, n, Duration::from_secs(5)).await;
    assert_eq!(
        lines.len(),
        n,
        "the upstream saw {} of {n} cancellations: {lines:?}",
        lines.len()
    );
    for (id, at) in &lines {
        let after = at.saturating_sub(sent);
        eprintln!("upstream request {id} cancelled {after} ms after the client cancelled");
        assert!(
            after <= CANCEL_BOUND_MS,
            "upstream request {id} was cancelled {after} ms after the client cancelled (bound {CANCEL_BOUND_MS} ms)"
        );
    }
    let ids: std::collections::HashSet<&String> = lines.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        n,
        "the same upstream request was cancelled twice: {lines:?}"
    );
}

#[tokio::test]
async fn client_cancellation_reaches_the_upstream_over_http() {
    let ws = Workspace::new();
    let (config, log) = config_with_cancel_log(&ws, "", "");
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    assert_cancel_reaches_upstream(&client, &log, json!([{"tool": "fx.sleep"}])).await;
    // The session is still usable afterwards.
    assert_eq!(
        call_one(&client, "fx.echo", json!({"text": "x"})).await["success"],
        true
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn client_cancellation_of_a_batch_cancels_every_item_over_http() {
    let ws = Workspace::new();
    let (config, log) = config_with_cancel_log(&ws, "", "");
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    assert_cancel_reaches_upstream(
        &client,
        &log,
        json!([{"tool": "fx.sleep"}, {"tool": "fx.sleep", "input": {}}]),
    )
    .await;
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn client_cancellation_reaches_the_upstream_over_stdio() {
    let ws = Workspace::new();
    let (config, log) = config_with_cancel_log(&ws, "", "");
    let (client, hub_log) = stdio_client(&config).await;
    // Wait until the upstream is callable.
    let ready = async {
        while call_one(&client, "fx.echo", json!({"text": "x"})).await["success"] != true {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(LONG, ready)
        .await
        .unwrap_or_else(|_| panic!("fx never ready; log:\n{}", hub_log.text()));
    assert_cancel_reaches_upstream(&client, &log, json!([{"tool": "fx.sleep"}])).await;
    std::fs::remove_file(&log).unwrap();
    assert_cancel_reaches_upstream(
        &client,
        &log,
        json!([{"tool": "fx.sleep"}, {"tool": "fx.sleep"}]),
    )
    .await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_upstream_timeout_answers_timeout_and_cancels_upstream() {
    let ws = Workspace::new();
    let (config, log) = config_with_cancel_log(&ws, "", "call_timeout = \"300ms\"");
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    let t = Instant::now();
    let r = call_one(&client, "fx.sleep", json!({})).await;
    let took = t.elapsed();
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    assert!(
        took >= Duration::from_millis(300),
        "timed out after only {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "timed out after {took:?}, not ~300 ms"
    );
    let lines = wait_cancel_log(&log, 1, Duration::from_secs(2)).await;
    assert_eq!(
        lines.len(),
        1,
        "the upstream was not told of the timeout: {lines:?}"
    );
    // A call that finishes in time is unaffected.
    let r = call_one(&client, "fx.sleep", json!({"ms": 50})).await;
    assert_eq!(r["success"], true, "{r}");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn ending_an_http_session_cancels_its_calls_upstream() {
    let ws = Workspace::new();
    let (config, log) = config_with_cancel_log(&ws, "", "");
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    let handle = start_call(&client, json!([{"tool": "fx.sleep"}])).await;
    tokio::time::sleep(SETTLE).await;
    assert!(cancel_log(&log).is_empty());
    let closed = Instant::now();
    client.cancel().await.unwrap();
    drop(handle);
    let lines = wait_cancel_log(&log, 1, Duration::from_secs(10)).await;
    assert_eq!(
        lines.len(),
        1,
        "the upstream call outlived the session; log:\n{}",
        hub.log.text()
    );
    let took = closed.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the upstream call was cancelled {took:?} after the session ended"
    );
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn the_server_default_timeout_applies_unless_the_upstream_sets_one() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[server]\ncall_timeout = \"200ms\"\n{}{}",
            fixture_upstream("fx", &[], ""),
            fixture_upstream("patient", &[], "call_timeout = \"2s\"")
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    // Without the 200 ms default this would succeed (the built-in default is 60 s).
    let r = call_one(&client, "fx.sleep", json!({"ms": 500})).await;
    assert_eq!(
        r["error"]["code"], "timeout",
        "the 200 ms default did not apply: {r}"
    );
    assert_eq!(r["error"]["message"], "no answer within 200ms", "{r}");
    let r = call_one(&client, "patient.sleep", json!({"ms": 500})).await;
    assert_eq!(
        r["success"], true,
        "the upstream's 2 s did not override the default: {r}"
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn ending_a_stdio_session_mid_call_stops_the_upstream() {
    let ws = Workspace::new();
    let pid_file = ws.path("fx.pid");
    let (_, log) = config_with_cancel_log(&ws, "", "");
    let env = format!(
        "env = {{ FIXTURE_CANCEL_LOG = {:?} }}\n",
        log.display().to_string()
    );
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream("fx", &["--pid-file", pid_file.to_str().unwrap()], &env),
    );
    let mut hub = tokio::process::Command::new(patchbay())
        .arg("stdio")
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (stdin, stdout) = (hub.stdin.take().unwrap(), hub.stdout.take().unwrap());
    let client: Client = rmcp::ServiceExt::serve((), (stdout, stdin))
        .await
        .expect("MCP over the hub's stdio");
    let ready = async {
        while call_one(&client, "fx.echo", json!({"text": "x"})).await["success"] != true {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(LONG, ready).await.expect("fx ready");
    let fixture_pid = wait_pid_file(&pid_file, LONG).await;
    let _handle = start_call(&client, json!([{"tool": "fx.sleep"}])).await;
    tokio::time::sleep(SETTLE).await;
    // Closing the client closes the hub's stdin while the call is in flight.
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), hub.wait())
        .await
        .expect("the hub exits after stdin closes, in-flight call or not")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(fixture_pid)).await,
        "fixture {fixture_pid} left behind"
    );
}
