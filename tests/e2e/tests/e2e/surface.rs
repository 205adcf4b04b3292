//! The hub surface as a client sees it: the four meta tools (list, search, schema, call), the
//! `direct` and `both` expose modes, progress, content fidelity, large catalogs and odd names.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use rmcp::{ServiceExt, model::CallToolRequestParams, transport::TokioChildProcess};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(30);
/// Tools every fixture has (echo, add, sleep, crash, large, image, mixed, progress, fail, env,
/// add_tool, pid).
const FIXTURE_BUILTINS: usize = 13;

/// Pages through `list` with `limit` and returns every operation name, in order.
async fn list_all(client: &Client, namespace: Option<&str>, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut args = json!({"limit": limit});
        if let Some(ns) = namespace {
            args["namespace"] = json!(ns);
        }
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page = meta(client, "list", args).await;
        let ops = page["operations"].as_array().expect("operations array");
        assert!(
            ops.len() <= limit,
            "page of {} over limit {limit}",
            ops.len()
        );
        names.extend(
            ops.iter()
                .map(|o| o["tool"].as_str().expect("tool name").to_owned()),
        );
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => {
                assert_eq!(ops.len(), limit, "a page with a nextCursor is full");
                cursor = Some(c.to_owned());
            }
            None => return names,
        }
    }
    panic!("list never ended");
}

/// A config with upstream `fx` (plain fixture) and anything else.
fn fx_config(ws: &Workspace, extra: &str) -> std::path::PathBuf {
    ws.write(
        "patchbay.toml",
        &format!("{extra}\n{}", fixture_upstream("fx", &[], "")),
    )
}

#[tokio::test]
async fn list_gives_summaries_pages_and_namespace_states() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "{}{}{}",
            fixture_upstream("fx", &[], ""),
            fixture_upstream("gx", &["--many", "250"], ""),
            fixture_upstream("broken", &["--fail-start"], "startup_timeout = \"5s\""),
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_state("fx", "ready", READY).await;
    hub.wait_state("gx", "ready", READY).await;
    let client = hub.client().await;

    // Default page: 100 summaries, no schemas, a cursor to go on.
    let first = meta(&client, "list", json!({})).await;
    let ops = first["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 100, "default limit is 100");
    for op in ops {
        let keys: BTreeSet<&str> = op.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["tool", "namespace", "description"]),
            "summary only: {op}"
        );
    }
    assert!(first["nextCursor"].is_string(), "{first}");

    // `limit` and cursor paging cover every operation exactly once.
    let all = list_all(&client, None, 37).await;
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "an operation appeared twice while paging"
    );
    assert_eq!(
        all.len(),
        FIXTURE_BUILTINS + 250 + FIXTURE_BUILTINS,
        "every operation of fx and gx: {}",
        all.len()
    );
    assert_eq!(hub.readyz().await["operations"], json!(all.len()));
    assert!(all.contains(&"fx.echo".to_owned()) && all.contains(&"gx.gen_00249".to_owned()));
    let big = list_all(&client, None, 1000).await;
    assert_eq!(
        big, all,
        "paging with a different limit gives the same operations in the same order"
    );

    // A namespace filter.
    let fx = meta(&client, "list", json!({"namespace": "fx"})).await;
    let fx_ops = fx["operations"].as_array().unwrap();
    assert_eq!(fx_ops.len(), FIXTURE_BUILTINS);
    assert!(
        fx_ops
            .iter()
            .all(|o| o["namespace"] == "fx" && o["tool"].as_str().unwrap().starts_with("fx."))
    );
    assert!(fx.get("nextCursor").is_none(), "{fx}");
    let fx_states = fx["namespaces"].as_array().unwrap();
    assert_eq!(fx_states.len(), 1, "only the filtered namespace: {fx}");
    assert_eq!(fx_states[0]["namespace"], "fx");

    // Namespace states: ready ones with counts, the broken one with its state and why.
    // The broken upstream cycles between starting and failed; wait until `list` shows it failed.
    let mut first = Value::Null;
    for _ in 0..400 {
        first = meta(&client, "list", json!({"limit": 1})).await;
        let failed = first["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["namespace"] == "broken" && s["state"] == "failed");
        if failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let states = first["namespaces"].as_array().unwrap();
    let state = |ns: &str| {
        states
            .iter()
            .find(|s| s["namespace"] == ns)
            .cloned()
            .unwrap_or_else(|| panic!("{ns} missing: {first}"))
    };
    assert_eq!(state("fx")["state"], "ready");
    assert_eq!(state("fx")["operations"], FIXTURE_BUILTINS);
    assert_eq!(state("gx")["operations"], 250 + FIXTURE_BUILTINS);
    let b = state("broken");
    assert_eq!(b["state"], "failed", "{b}");
    assert_eq!(b["operations"], 0, "{b}");
    assert!(b["detail"].is_string(), "a failed namespace says why: {b}");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn search_ranks_filters_and_browses() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "{}{}",
            fixture_upstream("fx", &[], ""),
            fixture_upstream("gx", &["--many", "300"], "")
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;

    let r = meta(&client, "search", json!({"q": "echo text back"})).await;
    let results = r["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{r}");
    // fx and gx both have an `echo` (the fixture's built-ins); they tie, and both must beat
    // gx's 300 generated tools, whose only echo is in their `text` parameter's description.
    let top: BTreeSet<&str> = results
        .iter()
        .take(2)
        .map(|h| h["tool"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        BTreeSet::from(["fx.echo", "gx.echo"]),
        "the echo tools rank first: {r}"
    );
    for hit in results {
        let keys: BTreeSet<&str> = hit
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["tool", "description", "score"]),
            "{hit}"
        );
        assert!(hit["score"].is_number());
    }
    let scores: Vec<f64> = results
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );

    // Default limit 20 (the generated catalog matches far more than 20).
    let r = meta(
        &client,
        "search",
        json!({"q": "fetch list create update delete records messages"}),
    )
    .await;
    assert_eq!(r["results"].as_array().unwrap().len(), 20, "{r}");
    let r = meta(
        &client,
        "search",
        json!({"q": "fetch list create update delete records messages", "limit": 3}),
    )
    .await;
    assert_eq!(r["results"].as_array().unwrap().len(), 3, "{r}");

    // Namespace filter.
    let r = meta(
        &client,
        "search",
        json!({"q": "echo text back", "namespace": "gx", "limit": 50}),
    )
    .await;
    let hits = r["results"].as_array().unwrap();
    assert!(!hits.is_empty(), "gx tools take a `text` to echo: {r}");
    assert!(
        hits.iter()
            .all(|h| h["tool"].as_str().unwrap().starts_with("gx.")),
        "{r}"
    );
    let r = meta(&client, "search", json!({"q": "echo", "namespace": "nope"})).await;
    assert_eq!(r["results"], json!([]), "{r}");

    // Empty query with a namespace browses it.
    let r = meta(&client, "search", json!({"namespace": "fx"})).await;
    let browsed: BTreeSet<String> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["tool"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(browsed.len(), FIXTURE_BUILTINS, "{r}");
    assert!(
        browsed.iter().all(|t| t.starts_with("fx.")) && browsed.contains("fx.echo"),
        "{r}"
    );
    let r = meta(
        &client,
        "search",
        json!({"q": "", "namespace": "gx", "limit": 7}),
    )
    .await;
    let hits = r["results"].as_array().unwrap();
    assert_eq!(hits.len(), 7, "{r}");
    assert!(
        hits.iter()
            .all(|h| h["tool"].as_str().unwrap().starts_with("gx.")),
        "{r}"
    );

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn schema_gives_full_definitions_and_not_found() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;

    let s = meta(&client, "schema", json!({"tool": "fx.echo"})).await;
    assert_eq!(s["tool"], "fx.echo");
    assert_eq!(
        s["description"],
        "Echo the given text back, as text and as structured content."
    );
    assert_eq!(
        s["inputSchema"],
        json!({"type": "object", "properties": {"text": {"type": "string", "description": "The text to echo back."}}, "required": ["text"]})
    );
    assert_eq!(
        s["outputSchema"],
        json!({"type": "object", "properties": {"text": {"type": "string", "description": "The echoed text."}}, "required": ["text"]})
    );
    let s = meta(&client, "schema", json!({"tool": "fx.add"})).await;
    assert_eq!(s["inputSchema"]["required"], json!(["a", "b"]));
    assert_eq!(
        s["inputSchema"]["properties"]["a"]["description"],
        "The first addend."
    );
    let s = meta(&client, "schema", json!({"tool": "fx.sleep"})).await;
    assert!(
        s.get("outputSchema").is_none(),
        "sleep has no output schema: {s}"
    );

    // `schema` answers with the same definition the upstream gives (annotations included,
    // when it has them): compare with a direct tools/list of the fixture.
    let direct = direct_fixture(&[]).await;
    for tool in direct.list_all_tools().await.unwrap() {
        let s = meta(
            &client,
            "schema",
            json!({"tool": format!("fx.{}", tool.name)}),
        )
        .await;
        assert_eq!(s["inputSchema"], json!(tool.input_schema), "{}", tool.name);
        assert_eq!(
            s.get("outputSchema").cloned(),
            tool.output_schema.as_ref().map(|o| json!(o)),
            "{}",
            tool.name
        );
        assert_eq!(
            s.get("annotations").cloned(),
            tool.annotations.as_ref().map(|a| json!(a)),
            "{}",
            tool.name
        );
    }
    direct.cancel().await.unwrap();

    let r = call(&client, "schema", json!({"tool": "fx.nope"})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(structured(&r)["error"]["code"], "not_found", "{r:?}");
    let r = call(&client, "schema", json!({"tool": "nope"})).await;
    assert_eq!(structured(&r)["error"]["code"], "not_found", "{r:?}");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

/// An MCP client straight to a fixture process, for comparing results.
async fn direct_fixture(flags: &[&str]) -> Client {
    let mut cmd = tokio::process::Command::new(fixture());
    cmd.args(flags);
    let transport = TokioChildProcess::new(cmd).expect("start fixture");
    ().serve(transport).await.expect("connect to fixture")
}

#[tokio::test]
async fn call_runs_a_batch_in_order_with_independent_results() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;

    let r = call(
        &client,
        "call",
        json!({"calls": [
            {"tool": "fx.echo", "input": {"text": "first"}},
            {"tool": "fx.add", "input": {"a": "x"}},
            {"tool": "fx.nope"},
            {"tool": "fx.fail"},
            {"tool": "fx.add", "input": {"a": 2, "b": 40}},
        ]}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "only some items failed: {r:?}");
    let results = structured(&r)["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    let tools: Vec<&str> = results
        .iter()
        .map(|x| x["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["fx.echo", "fx.add", "fx.nope", "fx.fail", "fx.add"]);

    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["result"]["content"][0]["text"], "first");
    assert_eq!(
        results[0]["result"]["structuredContent"],
        json!({"text": "first"})
    );

    // invalid_input names the failing JSON Schema paths: /a (not a number) and / (b missing).
    assert_eq!(results[1]["success"], false);
    assert_eq!(
        results[1]["error"]["code"], "invalid_input",
        "{}",
        results[1]
    );
    let paths: BTreeSet<&str> = results[1]["error"]["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("error data lists errors: {}", results[1]))
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains("/a"), "{paths:?}");
    assert!(paths.contains("/"), "{paths:?}");
    let messages = results[1]["error"]["data"].to_string();
    assert!(
        messages.contains("\\\"b\\\"") || messages.contains("b"),
        "{messages}"
    );

    assert_eq!(results[2]["success"], false);
    assert_eq!(results[2]["error"]["code"], "not_found");

    // The upstream's own tool error is its result, not a hub error.
    assert_eq!(results[3]["success"], true, "{}", results[3]);
    assert_eq!(results[3]["result"]["isError"], true, "{}", results[3]);

    assert_eq!(results[4]["success"], true);
    assert_eq!(
        results[4]["result"]["structuredContent"],
        json!({"sum": 42})
    );

    // Content blocks: a header per call, then that call's own blocks, in order.
    let texts: Vec<String> = r
        .content
        .iter()
        .map(|c| c.as_text().map(|t| t.text.clone()).unwrap_or_default())
        .collect();
    let position = |needle: &str| {
        texts
            .iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {texts:?}"))
    };
    let h1 = position("[1] fx.echo");
    assert_eq!(texts[h1 + 1], "first", "{texts:?}");
    let h2 = position("[2] fx.add");
    let h3 = position("[3] fx.nope");
    let h4 = position("[4] fx.fail");
    let h5 = position("[5] fx.add");
    assert!(h1 < h2 && h2 < h3 && h3 < h4 && h4 < h5, "{texts:?}");
    assert!(
        texts[h2].contains("invalid_input") && texts[h3].contains("not_found"),
        "{texts:?}"
    );
    assert_eq!(texts[h5 + 1], "42", "{texts:?}");

    // isError at the top only when every call failed.
    let r = call(
        &client,
        "call",
        json!({"calls": [{"tool": "fx.nope"}, {"tool": "fx.add", "input": {}}]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let r = call(&client, "call", json!({"calls": [{"tool": "fx.fail"}]})).await;
    assert_ne!(
        r.is_error,
        Some(true),
        "an upstream tool error is a successful call: {r:?}"
    );

    // A bad batch shape is a structured invalid_input error.
    let r = call(&client, "call", json!({"calls": []})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(structured(&r)["error"]["code"], "invalid_input", "{r:?}");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn call_runs_batch_items_concurrently() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    // Warm up the connection so the timing below is only the batch.
    call_one(&client, "fx.echo", json!({"text": "warm"})).await;

    let started = Instant::now();
    let r = call(
        &client,
        "call",
        json!({"calls": [
            {"tool": "fx.sleep", "input": {"ms": 300}},
            {"tool": "fx.sleep", "input": {"ms": 300}},
            {"tool": "fx.sleep", "input": {"ms": 300}},
        ]}),
    )
    .await;
    let took = started.elapsed();
    let results = structured(&r)["results"].as_array().unwrap().clone();
    assert!(results.iter().all(|x| x["success"] == true), "{results:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Run one after another they would take at least 900 ms.
    assert!(
        took < Duration::from_millis(900),
        "3 × 300 ms took {took:?}: not concurrent"
    );

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn call_passes_content_through_unchanged() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    let direct = direct_fixture(&[]).await;

    for tool in ["mixed", "image", "echo"] {
        let input = if tool == "echo" {
            json!({"text": "héllo ✓ 日本"})
        } else {
            json!({})
        };
        let mut p = CallToolRequestParams::new(tool);
        p.arguments = Some(args(input.clone()));
        let expected = direct.call_tool(p).await.unwrap();
        let expected_content = json!(expected.content);

        let r = call(
            &client,
            "call",
            json!({"calls": [{"tool": format!("fx.{tool}"), "input": input}]}),
        )
        .await;
        let item = &structured(&r)["results"][0];
        assert_eq!(item["success"], true, "{item}");
        assert_eq!(
            item["result"]["content"], expected_content,
            "{tool}: structured result differs"
        );
        assert_eq!(
            item["result"].get("structuredContent").cloned(),
            expected.structured_content.clone(),
            "{tool}"
        );
        // The MCP content: one header block, then the call's own blocks, identical.
        assert_eq!(
            json!(r.content[1..]),
            expected_content,
            "{tool}: content blocks differ"
        );
        assert_eq!(r.content.len(), expected.content.len() + 1);
    }
    let mixed = call(&client, "call", json!({"calls": [{"tool": "fx.mixed"}]})).await;
    let kinds: Vec<String> = json!(mixed.content[1..])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["text", "image", "audio", "resource_link", "resource"],
        "{kinds:?}"
    );

    direct.cancel().await.unwrap();
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn progress_reaches_the_client() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let (client, recorder) = recording_client(&hub.url).await;

    let r = call_peer(
        &client,
        "call",
        json!({"calls": [{"tool": "fx.progress", "input": {"steps": 5, "interval_ms": 20}}]}),
    )
    .await;
    assert_eq!(structured(&r)["results"][0]["success"], true, "{r:?}");
    assert!(
        eventually(Duration::from_secs(5), || recorder.progress().len() >= 5).await,
        "progress notifications: {:?}",
        recorder.progress()
    );
    let seen = recorder.progress();
    let values: Vec<f64> = seen.iter().map(|p| p.progress).collect();
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {values:?}"
    );
    assert_eq!(values.last().copied(), Some(5.0), "{values:?}");
    let token = &seen[0].progress_token;
    assert!(
        seen.iter().all(|p| &p.progress_token == token),
        "one token: {seen:?}"
    );

    // Through `call` with two items, progress is combined and still monotonic.
    let before = recorder.progress().len();
    call_peer(
        &client,
        "call",
        json!({"calls": [
            {"tool": "fx.progress", "input": {"steps": 3, "interval_ms": 15}},
            {"tool": "fx.progress", "input": {"steps": 3, "interval_ms": 15}},
        ]}),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(5), || recorder.progress().len()
            >= before + 6)
        .await,
        "{:?}",
        recorder.progress()
    );
    let combined: Vec<f64> = recorder.progress()[before..]
        .iter()
        .map(|p| p.progress)
        .collect();
    assert!(
        combined.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {combined:?}"
    );

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn expose_direct_and_both() {
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "[server]\nexpose = \"direct\"\n")).await;
    hub.wait_all_ready(READY).await;
    let (client, recorder) = recording_client(&hub.url).await;
    let names: BTreeSet<String> = tool_names(&client).await.into_iter().collect();
    assert_eq!(names.len(), FIXTURE_BUILTINS, "{names:?}");
    assert!(
        names.contains("fx.echo") && names.contains("fx.add"),
        "{names:?}"
    );
    for m in ["list", "search", "schema", "call"] {
        assert!(!names.contains(m), "direct shows no meta tool: {names:?}");
    }
    let tools = client.list_all_tools().await.unwrap();
    let echo = tools.iter().find(|t| t.name == "fx.echo").unwrap();
    assert!(
        echo.output_schema.is_some(),
        "direct tools keep their output schema"
    );

    let r = call_peer(&client, "fx.echo", json!({"text": "direct"})).await;
    assert_eq!(text_of(&r), "direct");
    assert_eq!(r.structured_content, Some(json!({"text": "direct"})));
    let r = call_peer(&client, "fx.add", json!({"a": "x", "b": 1})).await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(structured(&r)["error"]["code"], "invalid_input", "{r:?}");

    // A new upstream tool is announced to direct clients.
    let before = recorder.list_changed();
    let r = call_peer(&client, "fx.add_tool", json!({"name": "late_tool"})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(
        eventually(Duration::from_secs(10), || recorder.list_changed() > before).await,
        "no tools/list_changed reached the client"
    );
    let mut found = false;
    for _ in 0..100 {
        let names = tool_names(&client).await;
        if names.contains(&"fx.late_tool".to_owned()) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "fx.late_tool never appeared in tools/list");
    let r = call_peer(&client, "fx.late_tool", json!({"text": "late"})).await;
    assert_eq!(text_of(&r), "late");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());

    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "[server]\nexpose = \"both\"\n")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    let names = tool_names(&client).await;
    assert_eq!(names.len(), 4 + FIXTURE_BUILTINS, "{names:?}");
    assert_eq!(names[..4], ["list", "search", "schema", "call"]);
    assert!(names.contains(&"fx.echo".to_owned()));
    assert_eq!(
        text_of(&call(&client, "fx.echo", json!({"text": "both"})).await),
        "both"
    );
    assert_eq!(
        call_one(&client, "fx.echo", json!({"text": "meta"})).await["result"]["content"][0]["text"],
        "meta"
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());

    // The default (meta) refuses an operation name as a tool.
    let ws = Workspace::new();
    let hub = Hub::serve(&fx_config(&ws, "")).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    let mut p = CallToolRequestParams::new("fx.echo");
    p.arguments = Some(args(json!({"text": "x"})));
    let refused = client.call_tool(p).await;
    assert!(
        refused.is_err() || refused.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "meta mode must not run fx.echo as a tool: {refused:?}"
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_both_listing_pages_through_every_definition() {
    // 2,500 generated tools: three pages of `tools/list`, each read from the stored
    // definitions only when asked for.
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[server]\nexpose = \"both\"\n{}",
            fixture_upstream("fx", &["--many", "2500"], "")
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 4 + 2_500 + FIXTURE_BUILTINS);
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names[..4], ["list", "search", "schema", "call"]);
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        names.len(),
        "no duplicates across pages"
    );
    // Every definition reads back whole: the upstream's own, under the operation name.
    let upstream = direct_fixture(&["--many", "2500"]).await;
    let originals = upstream.list_all_tools().await.unwrap();
    for original in &originals {
        let name = format!("fx.{}", original.name);
        let listed = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"));
        let mut expected = original.clone();
        expected.name = name.into();
        assert_eq!(listed, &expected);
    }
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn ten_thousand_operations() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream("fx", &["--many", "10000"], ""),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(60)).await;
    assert_eq!(hub.readyz().await["operations"], 10_000 + FIXTURE_BUILTINS);
    let client = hub.client().await;

    let all = list_all(&client, None, 1000).await;
    assert_eq!(all.len(), 10_000 + FIXTURE_BUILTINS);
    assert_eq!(
        all.iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "no duplicates"
    );
    assert!(all.contains(&"fx.gen_00000".to_owned()) && all.contains(&"fx.gen_09999".to_owned()));
    let first = meta(&client, "list", json!({})).await;
    assert_eq!(first["operations"].as_array().unwrap().len(), 100);

    // Search finds a generated tool by the words of its description.
    let s = meta(&client, "schema", json!({"tool": "fx.gen_09999"})).await;
    let description = s["description"].as_str().unwrap().to_owned();
    let r = meta(&client, "search", json!({"q": description, "limit": 10})).await;
    let hits: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["tool"].as_str().unwrap())
        .collect();
    assert!(
        hits.contains(&"fx.gen_09999"),
        "searching {description:?} gave {hits:?}"
    );

    let r = call_one(&client, "fx.gen_09999", json!({"text": "last"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "last");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

fn is_mcp_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[tokio::test]
async fn odd_upstream_names_are_rewritten_and_callable() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream("fx", &["--odd-names"], ""),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;

    let all = list_all(&client, None, 1000).await;
    assert_eq!(all.len(), FIXTURE_BUILTINS + 2, "{all:?}");
    for name in &all {
        assert!(
            is_mcp_tool_name(name),
            "`{name}` breaks MCP's tool-name rules"
        );
    }
    let odd: Vec<&String> = all
        .iter()
        .filter(|n| n.starts_with("fx.weird") || n.starts_with("fx.a_really_long"))
        .collect();
    assert_eq!(odd.len(), 2, "{all:?}");
    for name in odd {
        let r = call_one(&client, name, json!({"text": "odd"})).await;
        assert_eq!(r["success"], true, "{name}: {r}");
        assert_eq!(r["result"]["content"][0]["text"], "odd", "{name}");
        let s = meta(&client, "schema", json!({"tool": name})).await;
        assert_eq!(&s["tool"], name.as_str());
    }

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn stdio_front_door_serves_the_core_flow() {
    let ws = Workspace::new();
    let config = fx_config(&ws, "");
    let (client, log) = stdio_client(&config).await;
    let names = tool_names(&client).await;
    assert_eq!(names, ["list", "search", "schema", "call"]);

    // The upstream starts in the background; wait until `list` shows it ready.
    let mut ready = false;
    for _ in 0..600 {
        let l = meta(&client, "list", json!({"namespace": "fx"})).await;
        if l["namespaces"][0]["state"] == "ready" {
            assert_eq!(l["operations"].as_array().unwrap().len(), FIXTURE_BUILTINS);
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "fx never became ready over stdio; log:\n{}",
        log.text()
    );

    let r = meta(&client, "search", json!({"q": "echo text back"})).await;
    assert_eq!(r["results"][0]["tool"], "fx.echo", "{r}");
    let s = meta(&client, "schema", json!({"tool": "fx.add"})).await;
    assert_eq!(s["inputSchema"]["required"], json!(["a", "b"]));
    let r = call(
        &client,
        "call",
        json!({"calls": [{"tool": "fx.add", "input": {"a": 1, "b": 2}}, {"tool": "fx.echo", "input": {"text": "hi"}}, {"tool": "fx.add", "input": {"a": "x"}}]}),
    )
    .await;
    let results = structured(&r)["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["result"]["structuredContent"], json!({"sum": 3}));
    assert_eq!(results[1]["result"]["content"][0]["text"], "hi");
    assert_eq!(results[2]["error"]["code"], "invalid_input");
    client.cancel().await.unwrap();
}
