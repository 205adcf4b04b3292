//! A real third-party upstream: the reference `@modelcontextprotocol/server-everything`
//! (installed by `scripts/test-deps` into `.tools/npm`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use patchbay_e2e::*;
use serde_json::json;

/// The installed server-everything entry point, or `None` (after failing under CI).
fn everything() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../.tools/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    );
    if path.is_file() && which_node() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "server-everything is not installed at {} (or node is missing); run scripts/test-deps",
            path.display()
        );
    }
    eprintln!(
        "skipping: server-everything is not installed at {} (run scripts/test-deps)",
        path.display()
    );
    None
}

fn which_node() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn server_everything_through_the_hub() {
    let Some(entry) = everything() else { return };
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[upstreams.everything]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
            entry.display().to_string()
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(30)).await;
    let (client, recorder) = recording_client(&hub.url).await;

    // Its catalog, as the hub lists it.
    let list = structured(
        &call_peer(
            &client,
            "list",
            json!({"namespace": "everything", "limit": 1000}),
        )
        .await,
    );
    let tools: BTreeMap<String, String> = list["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["tool"].as_str().unwrap().to_owned(),
                o["description"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(tools.contains_key("everything.echo"), "{tools:?}");
    let n = tools.len();
    assert_eq!(hub.readyz().await["operations"], n);

    // search finds its echo tool.
    let r = structured(&call_peer(&client, "search", json!({"q": "echo back a message"})).await);
    let hits: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|h| h["tool"].as_str().unwrap())
        .collect();
    assert!(hits.contains(&"everything.echo"), "{r}");

    // schema gives its real input schema.
    let s = structured(&call_peer(&client, "schema", json!({"tool": "everything.echo"})).await);
    assert_eq!(
        s["inputSchema"]["properties"]["message"]["type"], "string",
        "{s}"
    );
    assert_eq!(s["inputSchema"]["required"], json!(["message"]), "{s}");

    // Annotations and output schemas come through `schema` as the upstream declares them.
    assert_eq!(s["annotations"]["readOnlyHint"], true, "{s}");
    assert_eq!(s["annotations"]["openWorldHint"], false, "{s}");
    if tools.contains_key("everything.gzip-file-as-resource") {
        let g = structured(
            &call_peer(
                &client,
                "schema",
                json!({"tool": "everything.gzip-file-as-resource"}),
            )
            .await,
        );
        assert_eq!(g["annotations"]["readOnlyHint"], false, "{g}");
        assert_eq!(g["annotations"]["openWorldHint"], true, "{g}");
    }
    if tools.contains_key("everything.get-structured-content") {
        let g = structured(
            &call_peer(
                &client,
                "schema",
                json!({"tool": "everything.get-structured-content"}),
            )
            .await,
        );
        assert_eq!(g["outputSchema"]["type"], "object", "{g}");
        let r = call_peer(
            &client,
            "call",
            json!({"calls": [{"tool": "everything.get-structured-content", "input": {"location": "Chicago"}}]}),
        )
        .await;
        let item = &structured(&r)["results"][0];
        assert_eq!(item["success"], true, "{item}");
        assert!(
            item["result"]["structuredContent"].is_object(),
            "structured content passes through: {item}"
        );
    }

    // call echo.
    let r = call_peer(
        &client,
        "call",
        json!({"calls": [{"tool": "everything.echo", "input": {"message": "hi there"}}]}),
    )
    .await;
    let item = &structured(&r)["results"][0];
    assert_eq!(item["success"], true, "{item}");
    let text = item["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("hi there"), "{text}");
    // The hub validates against its schema before the upstream sees the call.
    let r = call_peer(
        &client,
        "call",
        json!({"calls": [{"tool": "everything.echo", "input": {"message": 5}}]}),
    )
    .await;
    assert_eq!(
        structured(&r)["results"][0]["error"]["code"],
        "invalid_input",
        "{r:?}"
    );

    // Its adder (named `get-sum` today, `add` in older releases).
    let adder = ["everything.get-sum", "everything.add"]
        .into_iter()
        .find(|t| tools.contains_key(*t))
        .unwrap_or_else(|| panic!("no adder among {tools:?}"));
    let r = call_peer(
        &client,
        "call",
        json!({"calls": [{"tool": adder, "input": {"a": 19, "b": 23.5}}]}),
    )
    .await;
    let item = &structured(&r)["results"][0];
    assert_eq!(item["success"], true, "{item}");
    let text = item["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("42.5"), "19 + 23.5: {text}");

    // Its long-running tool forwards progress to our token.
    if let Some(long) = tools.keys().find(|t| t.contains("long-running")).cloned() {
        let before = recorder.progress().len();
        let r = call_peer(
            &client,
            "call",
            json!({"calls": [{"tool": long, "input": {"duration": 1, "steps": 4}}]}),
        )
        .await;
        let item = &structured(&r)["results"][0];
        assert_eq!(item["success"], true, "{item}");
        assert!(
            eventually(Duration::from_secs(5), || recorder.progress().len()
                >= before + 4)
            .await,
            "{long}: progress {:?}",
            recorder.progress()
        );
        let values: Vec<f64> = recorder.progress()[before..]
            .iter()
            .map(|p| p.progress)
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "monotonic: {values:?}"
        );
    }

    // Every listed operation has a schema the hub can serve.
    for tool in tools.keys() {
        let r = call_peer(&client, "schema", json!({"tool": tool})).await;
        assert_ne!(r.is_error, Some(true), "{tool}: {r:?}");
        assert_eq!(structured(&r)["inputSchema"]["type"], "object", "{tool}");
    }

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

/// An HTTP upstream that only speaks the legacy HTTP+SSE transport (server-everything's `sse`
/// mode): the hub's Streamable HTTP attempt fails, and it falls back to SSE.
#[tokio::test]
async fn legacy_sse_upstream_is_reached_by_fallback() {
    let Some(entry) = everything() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new("node")
        .arg(&entry)
        .arg("sse")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything in sse mode");
    let log = Log::default();
    log.collect(server.stdout.take().unwrap());
    log.collect(server.stderr.take().unwrap());
    assert!(
        log.wait_for("running on port", Duration::from_secs(20))
            .await,
        "sse server did not start: {}",
        log.text()
    );

    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[upstreams.old]\nurl = \"http://127.0.0.1:{port}/sse\"\n"),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(30)).await;
    assert!(
        hub.log.text().contains("legacy HTTP+SSE"),
        "{}",
        hub.log.text()
    );
    let client = hub.client().await;
    let r = call_one(&client, "old.echo", json!({"message": "over sse"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("over sse"),
        "{r}"
    );

    // The upstream goes away: calls fail as unavailable rather than hang.
    server.kill().await.unwrap();
    let started = std::time::Instant::now();
    let r = call_one(&client, "old.echo", json!({"message": "gone"})).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["error"]["code"], "upstream_unavailable", "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}
