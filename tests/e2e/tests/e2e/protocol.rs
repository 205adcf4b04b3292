//! The MCP protocol beyond tools, through the hub: requests an upstream sends back during a
//! call (sampling, elicitation, roots) reaching the client that caused them and no other;
//! resources, templates, prompts and completion passed through; log messages and resource
//! updates routed per session; protocol versions negotiated; bad sessions, origins and stray
//! messages refused without harm, over HTTP and over stdio.

// Sampling, roots, logging and resource subscriptions are deprecated by SEP-2577 (2026-07-28),
// but every earlier protocol version has them and the hub passes them through.
#![allow(deprecated)]

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use rmcp::{
    ClientHandler, ErrorData as McpError, ServiceExt,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, GetPromptRequestParams, Implementation, ListRootsResult,
        LoggingLevel, LoggingMessageNotificationParam, ReadResourceRequestParams,
        ResourceUpdatedNotificationParam, SetLevelRequestParams, SubscribeRequestParams,
        UnsubscribeRequestParams,
    },
    service::{
        NotificationContext, Peer, RequestContext, RoleClient, RunningService, ServiceError,
    },
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio::process::Command;

const READY: Duration = Duration::from_secs(30);
/// How long a test waits to be sure something does *not* arrive.
const QUIET: Duration = Duration::from_millis(600);
const WATCHED: &str = "test://watched-resource";

fn conformance_fixture() -> PathBuf {
    bin("patchbay-conformance-fixture")
}

/// TOML for the conformance fixture as stdio upstream `conf` (prefixed: `conf.test_*`).
fn conf_upstream() -> String {
    format!(
        "[upstreams.conf]\ncommand = {:?}\n",
        conformance_fixture().display().to_string()
    )
}

/// The installed server-everything entry point, or `None` (after failing under CI).
fn everything() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../.tools/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    );
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if path.is_file() && node {
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

// ---- A client that can be asked things ----

/// What a test client was asked and told.
#[derive(Default)]
struct Seen {
    /// The text of every `sampling/createMessage` request's messages.
    sampled: Mutex<Vec<String>>,
    /// The message of every `elicitation/create` request.
    elicited: Mutex<Vec<String>>,
    roots_asked: AtomicUsize,
    /// Every `notifications/message`, as JSON.
    logs: Mutex<Vec<Value>>,
    /// The URI of every `notifications/resources/updated`.
    updated: Mutex<Vec<String>>,
}

/// A client handler that declares the capabilities it is given, answers sampling, elicitation
/// and roots with values carrying its name, and records everything it is asked or told.
#[derive(Clone)]
struct Asker {
    name: String,
    capabilities: Vec<&'static str>,
    /// How long it takes to answer a sampling request.
    sampling_delay: Duration,
    seen: Arc<Seen>,
}

impl Asker {
    fn new(name: &str, capabilities: &[&'static str]) -> Self {
        Self {
            name: name.to_owned(),
            capabilities: capabilities.to_vec(),
            sampling_delay: Duration::ZERO,
            seen: Arc::default(),
        }
    }

    fn slow(mut self, delay: Duration) -> Self {
        self.sampling_delay = delay;
        self
    }

    /// The text this client answers every sampling request with.
    fn sampling_answer(&self) -> String {
        format!("answer-from-{}", self.name)
    }

    /// The content this client accepts every elicitation with: fits the fixture's form
    /// (`username`, `email`) and server-everything's (`name`, `check`, `integer`, ...).
    fn elicitation_content(&self) -> Value {
        json!({
            "username": format!("user-{}", self.name),
            "email": format!("{}@example.com", self.name),
            "name": format!("Ada {}", self.name),
            "check": true,
            "integer": 7,
        })
    }

    fn root_uri(&self) -> String {
        format!("file:///tmp/protocol-root-{}", self.name)
    }

    fn sampled(&self) -> Vec<String> {
        self.seen.sampled.lock().unwrap().clone()
    }

    fn elicited(&self) -> Vec<String> {
        self.seen.elicited.lock().unwrap().clone()
    }

    fn roots_asked(&self) -> usize {
        self.seen.roots_asked.load(Ordering::SeqCst)
    }

    fn logs(&self) -> Vec<Value> {
        self.seen.logs.lock().unwrap().clone()
    }

    fn updated(&self) -> Vec<String> {
        self.seen.updated.lock().unwrap().clone()
    }
}

/// Every `text` string anywhere in `v`, in order.
fn texts_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("text", Value::String(s)) => out.push(s.clone()),
                    _ => texts_in(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| texts_in(x, out)),
        _ => {}
    }
}

impl ClientHandler for Asker {
    fn get_info(&self) -> ClientConfig {
        let declared: serde_json::Map<String, Value> = self
            .capabilities
            .iter()
            .map(|c| ((*c).to_owned(), json!({})))
            .collect();
        let capabilities: ClientCapabilities =
            serde_json::from_value(Value::Object(declared)).expect("client capabilities");
        let mut config = ClientConfig::default();
        config.capabilities = capabilities;
        config.client_info = Implementation::new(format!("protocol-test-{}", self.name), "1.0");
        config
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let mut texts = Vec::new();
        texts_in(&json!(params.messages), &mut texts);
        self.seen.sampled.lock().unwrap().push(texts.join("\n"));
        tokio::time::sleep(self.sampling_delay).await;
        let answer = json!({
            "model": format!("model-{}", self.name),
            "role": "assistant",
            "content": {"type": "text", "text": self.sampling_answer()},
            "stopReason": "endTurn",
        });
        Ok(serde_json::from_value(answer).expect("a sampling result"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let message = json!(request)["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.seen.elicited.lock().unwrap().push(message);
        let answer = json!({"action": "accept", "content": self.elicitation_content()});
        Ok(serde_json::from_value(answer).expect("an elicitation result"))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        self.seen.roots_asked.fetch_add(1, Ordering::SeqCst);
        let roots =
            json!({"roots": [{"uri": self.root_uri(), "name": format!("root-{}", self.name)}]});
        Ok(serde_json::from_value(roots).expect("a roots list"))
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.logs.lock().unwrap().push(json!(params));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen.updated.lock().unwrap().push(params.uri);
    }
}

type AskerClient = RunningService<RoleClient, Asker>;

/// An HTTP MCP session of `asker` on `url`.
async fn connect(url: &str, asker: &Asker) -> AskerClient {
    asker
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(url))
        .await
        .expect("MCP client connects over HTTP")
}

// ---- Meta tools ----

/// The texts of a `call` item's result content, joined by newlines.
fn item_text(item: &Value) -> String {
    item["result"]["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Whether a `call` item failed: a hub error, or the upstream's own tool error.
fn item_failed(item: &Value) -> bool {
    item["success"] == false || item["result"]["isError"] == true
}

/// Searches until `q`'s best hit is `expected` (conditional tools appear shortly after the
/// upstream learns the hub's capabilities), and returns the hits.
async fn search_until_top(peer: &Peer<RoleClient>, q: &str, expected: &str) -> Value {
    let deadline = Instant::now() + READY;
    loop {
        let r = meta(peer, "search", json!({"q": q, "limit": 5})).await;
        if r["results"][0]["tool"] == expected {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "searching {q:?} never ranked {expected} first: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- 1. Requests back through the meta tools ----

#[tokio::test]
async fn meta_tools_relay_sampling_elicitation_and_roots_to_the_caller() {
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
    hub.wait_all_ready(READY).await;
    let asker = Asker::new("meta", &["sampling", "elicitation", "roots"]);
    let client = connect(&hub.url, &asker).await;
    let names = tool_names(&client).await;
    assert_eq!(names, ["list", "search", "schema", "call"], "meta mode");

    // Sampling: found by what it does, its schema read, called.
    let sampling = "everything.trigger-sampling-request";
    search_until_top(&client, "sample a completion from the LLM", sampling).await;
    let s = meta(&client, "schema", json!({"tool": sampling})).await;
    assert_eq!(
        s["inputSchema"]["properties"]["prompt"]["type"], "string",
        "{s}"
    );
    assert!(
        s["inputSchema"]["properties"]["maxTokens"].is_object(),
        "{s}"
    );
    let item = call_one(
        &client,
        sampling,
        json!({"prompt": "marker-7f3 write a haiku", "maxTokens": 20}),
    )
    .await;
    assert_eq!(item["success"], true, "{item}");
    assert_ne!(item["result"]["isError"], true, "{item}");
    let text = item_text(&item);
    assert!(
        text.contains("answer-from-meta") && text.contains("model-meta"),
        "the client's answer is in the upstream's result: {text}"
    );
    let sampled = asker.sampled();
    assert_eq!(sampled.len(), 1, "asked once: {sampled:?}");
    assert!(
        sampled[0].contains("marker-7f3 write a haiku"),
        "the upstream's prompt reached the client: {sampled:?}"
    );

    // Elicitation: accepted with content, which the upstream reports back.
    let elicitation = "everything.trigger-elicitation-request";
    search_until_top(&client, "ask the user to fill in a form", elicitation).await;
    let s = meta(&client, "schema", json!({"tool": elicitation})).await;
    assert_eq!(s["tool"], elicitation, "{s}");
    let item = call_one(&client, elicitation, json!({})).await;
    assert_eq!(item["success"], true, "{item}");
    let text = item_text(&item);
    assert!(
        text.contains("User provided the requested information")
            && text.contains("- Name: Ada meta")
            && text.contains("- Agreed to terms: true")
            && text.contains("- Favorite Integer: 7")
            && text.contains("\"action\": \"accept\""),
        "the upstream saw the accepted content: {text}"
    );
    let elicited = asker.elicited();
    assert_eq!(elicited.len(), 1, "{elicited:?}");
    assert!(
        elicited[0].contains("Please provide inputs"),
        "{elicited:?}"
    );

    // Roots. server-everything asks for roots once, 350 ms after it starts, and caches the
    // answer. Outside any call the hub answers that itself with no roots; if a call of this
    // client's is in flight then, the request goes to this client (the one client with calls
    // on the upstream). Either way the tool reports exactly what this client was asked.
    let roots = "everything.get-roots-list";
    search_until_top(&client, "list the client's root directories", roots).await;
    let item = call_one(&client, roots, json!({})).await;
    assert_eq!(item["success"], true, "{item}");
    let text = item_text(&item);
    if asker.roots_asked() > 0 {
        assert!(
            text.contains("root-meta") && text.contains(&asker.root_uri()),
            "the client was asked for roots, but the upstream has others: {text}"
        );
    } else {
        assert!(
            text.contains("no roots are currently configured"),
            "roots the client never gave: {text}"
        );
        assert!(
            hub.log.text().contains("Roots updated: 0 root(s)"),
            "the upstream was answered with no roots; log:\n{}",
            hub.log.text()
        );
    }

    // A client without the sampling capability gets an error at once, not a hang.
    let plain = hub.client().await;
    let started = Instant::now();
    let item = call_one(&plain, sampling, json!({"prompt": "no sampling here"})).await;
    let took = started.elapsed();
    assert!(item_failed(&item), "{item}");
    assert!(!item_text(&item).contains("answer-from"), "{item}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(asker.sampled().len(), 1, "the other client was not asked");

    plain.cancel().await.unwrap();
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

// ---- 2. A client that cannot sample ----

#[tokio::test]
async fn sampling_without_the_capability_fails_promptly() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[server]\ncall_timeout = \"30s\"\n\n{}", conf_upstream()),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;

    // No capabilities at all, and elicitation only: neither may be asked to sample.
    for capabilities in [&[][..], &["elicitation"][..]] {
        let asker = Asker::new("nosampling", capabilities);
        let client = connect(&hub.url, &asker).await;
        let started = Instant::now();
        let item = call_one(
            &client,
            "conf.test_sampling",
            json!({"prompt": "marker-nosampling"}),
        )
        .await;
        let took = started.elapsed();
        assert!(item_failed(&item), "{capabilities:?}: {item}");
        let text = item_text(&item);
        // The fixture's own words: the upstream was answered with an error, not left waiting.
        assert!(
            text.starts_with("sampling failed:") && text.contains("sampling` capability"),
            "{capabilities:?}: {item}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{capabilities:?}: took {took:?} (call timeout 30 s)"
        );
        assert!(asker.sampled().is_empty(), "{:?}", asker.sampled());

        // The session carries on.
        let item = call_one(&client, "conf.test_simple_text", json!({})).await;
        assert_eq!(
            item_text(&item),
            "This is a simple text response for testing."
        );
        client.cancel().await.unwrap();
    }
    assert!(hub.stop().await.success());
}

// ---- 3. Isolation between clients of one stdio upstream ----

#[tokio::test]
async fn sampling_requests_never_reach_another_client() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", &conf_upstream())).await;
    hub.wait_all_ready(READY).await;
    let a = Asker::new("A", &["sampling"]).slow(Duration::from_secs(1));
    let b = Asker::new("B", &["sampling"]);
    let ca = connect(&hub.url, &a).await;
    let cb = connect(&hub.url, &b).await;

    // A's call first; while A's client is still answering, B calls the same upstream.
    let a_call = {
        let peer = ca.peer().clone();
        tokio::spawn(async move {
            call_one(
                &peer,
                "conf.test_sampling",
                json!({"prompt": "prompt-of-A"}),
            )
            .await
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || !a.sampled().is_empty()).await,
        "A was never asked; log:\n{}",
        hub.log.text()
    );
    let b_item = call_one(&cb, "conf.test_sampling", json!({"prompt": "prompt-of-B"})).await;
    let a_item = a_call.await.unwrap();

    // Nobody was asked about the other's call.
    for prompt in a.sampled() {
        assert!(
            prompt.contains("prompt-of-A") && !prompt.contains("prompt-of-B"),
            "A asked: {:?}",
            a.sampled()
        );
    }
    for prompt in b.sampled() {
        assert!(
            prompt.contains("prompt-of-B") && !prompt.contains("prompt-of-A"),
            "B asked: {:?}",
            b.sampled()
        );
    }
    assert_eq!(a.sampled().len(), 1, "{:?}", a.sampled());
    // A gets A's answer.
    assert_eq!(a_item["success"], true, "{a_item}");
    assert_eq!(
        item_text(&a_item),
        "LLM response: answer-from-A",
        "{a_item}"
    );
    // B gets B's answer or an error, never A's.
    let b_text = item_text(&b_item);
    assert!(
        !b_text.contains("answer-from-A"),
        "B got A's answer: {b_item}"
    );
    assert!(
        b_text == "LLM response: answer-from-B" || item_failed(&b_item),
        "{b_item}"
    );
    eprintln!(
        "while A's call was in flight, B's sampling call gave: {}",
        b_item
    );

    // Alone again, B is asked and answered.
    let b_item = call_one(
        &cb,
        "conf.test_sampling",
        json!({"prompt": "prompt-of-B-2"}),
    )
    .await;
    assert_eq!(
        item_text(&b_item),
        "LLM response: answer-from-B",
        "{b_item}"
    );
    assert!(
        b.sampled().iter().any(|p| p.contains("prompt-of-B-2")),
        "{:?}",
        b.sampled()
    );
    assert_eq!(
        a.sampled().len(),
        1,
        "A was asked about B's call: {:?}",
        a.sampled()
    );

    ca.cancel().await.unwrap();
    cb.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

// ---- 4. Resources, templates, prompts and completion ----

fn mcp_code(e: &ServiceError) -> Option<i32> {
    match e {
        ServiceError::McpError(e) => Some(e.code.0),
        _ => None,
    }
}

/// Waits until the hub lists the fixture's resources (its upstream starts in the background).
async fn wait_resources(peer: &Peer<RoleClient>) -> Vec<Value> {
    let deadline = Instant::now() + READY;
    loop {
        let resources: Vec<Value> = peer
            .list_all_resources()
            .await
            .expect("resources/list")
            .iter()
            .map(|r| json!(r))
            .collect();
        if resources.iter().any(|r| r["uri"] == "test://static-text") {
            return resources;
        }
        assert!(
            Instant::now() < deadline,
            "test://static-text never listed: {resources:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole passthrough surface of the conformance fixture under namespace `conf`.
async fn check_passthrough(peer: &Peer<RoleClient>, door: &str) {
    let resources = wait_resources(peer).await;
    let uris: Vec<&str> = resources.iter().filter_map(|r| r["uri"].as_str()).collect();
    for uri in ["test://static-text", "test://static-binary", WATCHED] {
        assert!(uris.contains(&uri), "{door}: {uris:?}");
    }
    let templates: Vec<Value> = peer
        .list_all_resource_templates()
        .await
        .unwrap()
        .iter()
        .map(|t| json!(t))
        .collect();
    assert!(
        templates
            .iter()
            .any(|t| t["uriTemplate"] == "test://template/{id}/data"),
        "{door}: {templates:?}"
    );

    let read = json!(
        peer.read_resource(ReadResourceRequestParams::new("test://static-text"))
            .await
            .unwrap()
    );
    assert_eq!(
        read["contents"][0]["text"], "This is the content of the static text resource.",
        "{door}: {read}"
    );
    assert_eq!(read["contents"][0]["uri"], "test://static-text", "{door}");
    let read = json!(
        peer.read_resource(ReadResourceRequestParams::new("test://template/42/data"))
            .await
            .unwrap()
    );
    let text = read["contents"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("Data for ID: 42"), "{door}: {read}");
    assert_eq!(read["contents"][0]["uri"], "test://template/42/data");

    let prompts: Vec<String> = peer
        .list_all_prompts()
        .await
        .unwrap()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    for name in [
        "conf.test_simple_prompt",
        "conf.test_prompt_with_arguments",
        "conf.test_prompt_with_embedded_resource",
        "conf.test_prompt_with_image",
    ] {
        assert!(prompts.contains(&name.to_owned()), "{door}: {prompts:?}");
    }
    assert!(
        !prompts.contains(&"test_simple_prompt".to_owned()),
        "{door}: prefixed names only: {prompts:?}"
    );
    let got = json!(
        peer.get_prompt(GetPromptRequestParams::new("conf.test_simple_prompt"))
            .await
            .unwrap()
    );
    assert_eq!(
        got["messages"][0]["content"]["text"], "This is a simple prompt for testing.",
        "{door}: {got}"
    );
    let got = json!(
        peer.get_prompt(
            GetPromptRequestParams::new("conf.test_prompt_with_arguments")
                .with_arguments(args(json!({"arg1": "alpha", "arg2": "beta"})))
        )
        .await
        .unwrap()
    );
    assert_eq!(
        got["messages"][0]["content"]["text"], "Prompt with arguments: arg1='alpha', arg2='beta'",
        "{door}: {got}"
    );

    let values = peer
        .complete_prompt_simple("conf.test_prompt_with_arguments", "arg1", "pa")
        .await
        .unwrap();
    assert_eq!(values, ["paris", "park", "party"], "{door}");
    let values = peer
        .complete_resource_simple("test://template/{id}/data", "id", "1")
        .await
        .unwrap();
    assert_eq!(values, ["1", "123"], "{door}");

    // Nobody serves this URI: resource not found.
    let e = peer
        .read_resource(ReadResourceRequestParams::new("test://nobody/serves-this"))
        .await
        .expect_err("an unserved URI is an error");
    assert_eq!(mcp_code(&e), Some(-32002), "{door}: {e:?}");
    // No such prompt, and a bare (unprefixed) name: errors.
    for name in ["conf.no_such_prompt", "test_simple_prompt", "nope"] {
        let e = peer
            .get_prompt(GetPromptRequestParams::new(name))
            .await
            .expect_err("an unknown prompt is an error");
        assert!(mcp_code(&e).is_some(), "{door}: {name}: {e:?}");
    }
    // Completion for an unknown prompt: an error too.
    let e = peer
        .complete_prompt_simple("conf.no_such_prompt", "arg1", "pa")
        .await
        .expect_err("completing an unknown prompt is an error");
    assert!(mcp_code(&e).is_some(), "{door}: {e:?}");
    // ... and the session still answers.
    let again = peer
        .read_resource(ReadResourceRequestParams::new("test://static-text"))
        .await
        .unwrap();
    assert_eq!(again.contents.len(), 1, "{door}");
}

#[tokio::test]
async fn resources_prompts_and_completion_pass_through_stdio_and_http() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &conf_upstream());

    let (client, log) = stdio_client(&config).await;
    let caps = json!(client.peer_info().expect("server info").capabilities);
    for cap in ["resources", "prompts", "completions", "logging"] {
        assert!(caps[cap].is_object(), "stdio: {cap} not advertised: {caps}");
    }
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    check_passthrough(&client, "stdio").await;
    client.cancel().await.unwrap();
    assert!(!log.text().contains("panicked"), "{}", log.text());

    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    let client = hub.client().await;
    check_passthrough(&client, "http").await;
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

// ---- 5. Log messages per session ----

fn log_texts(logs: &[Value]) -> Vec<String> {
    logs.iter()
        .map(|l| l["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn log_messages_reach_only_the_caller_at_its_level() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", &conf_upstream())).await;
    hub.wait_all_ready(READY).await;
    let one = Asker::new("one", &[]);
    let two = Asker::new("two", &[]);
    let three = Asker::new("three", &[]);
    let c1 = connect(&hub.url, &one).await;
    let c2 = connect(&hub.url, &two).await;
    let c3 = connect(&hub.url, &three).await;

    // Two asks for errors only; one (last, so the upstream now sends everything) for debug.
    c2.set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    c1.set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();

    let item = call_one(&c1, "conf.test_tool_with_logging", json!({})).await;
    assert_eq!(
        item_text(&item),
        "Tool with logging executed successfully",
        "{item}"
    );
    assert!(
        eventually(Duration::from_secs(5), || one.logs().len() >= 3).await,
        "session one got {:?}",
        one.logs()
    );
    tokio::time::sleep(QUIET).await;
    let logs = one.logs();
    assert_eq!(
        log_texts(&logs),
        [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed"
        ],
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .all(|l| l["level"] == "info" && l["logger"] == "conformance-fixture"),
        "{logs:?}"
    );
    assert!(two.logs().is_empty(), "session two got {:?}", two.logs());
    assert!(
        three.logs().is_empty(),
        "session three got {:?}",
        three.logs()
    );

    // Two makes the same call: the upstream logs at info, two's level (error) filters it.
    let item = call_one(&c2, "conf.test_tool_with_logging", json!({})).await;
    assert_eq!(
        item_text(&item),
        "Tool with logging executed successfully",
        "{item}"
    );
    tokio::time::sleep(QUIET).await;
    assert!(two.logs().is_empty(), "session two got {:?}", two.logs());
    assert_eq!(one.logs().len(), 3, "one got two's: {:?}", one.logs());
    assert!(
        three.logs().is_empty(),
        "session three got {:?}",
        three.logs()
    );

    // One, calling again, gets its three again.
    call_one(&c1, "conf.test_tool_with_logging", json!({})).await;
    assert!(
        eventually(Duration::from_secs(5), || one.logs().len() >= 6).await,
        "{:?}",
        one.logs()
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(one.logs().len(), 6, "{:?}", one.logs());
    assert!(two.logs().is_empty() && three.logs().is_empty());

    for c in [c1, c2, c3] {
        c.cancel().await.unwrap();
    }
    assert!(hub.stop().await.success());
}

// ---- 6. Resource subscriptions per session ----

#[tokio::test]
async fn resource_updates_reach_only_subscribed_sessions() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", &conf_upstream())).await;
    hub.wait_all_ready(READY).await;
    let a = Asker::new("A", &[]);
    let b = Asker::new("B", &[]);
    let ca = connect(&hub.url, &a).await;
    let cb = connect(&hub.url, &b).await;

    ca.subscribe(SubscribeRequestParams::new(WATCHED))
        .await
        .unwrap();
    // B (not subscribed) triggers the update: it goes by subscription, not by caller.
    let item = call_one(&cb, "conf.test_notify_resource_updated", json!({})).await;
    assert_eq!(
        item_text(&item),
        format!("sent notifications/resources/updated for {WATCHED}"),
        "the hub subscribed upstream: {item}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !a.updated().is_empty()).await,
        "A got no resources/updated; log:\n{}",
        hub.log.text()
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(a.updated(), [WATCHED]);
    assert!(b.updated().is_empty(), "B got {:?}", b.updated());
    let read = json!(
        ca.read_resource(ReadResourceRequestParams::new(WATCHED))
            .await
            .unwrap()
    );
    assert_eq!(
        read["contents"][0]["text"], "Watched resource content (revision 1)",
        "{read}"
    );

    // A triggers it too.
    let item = call_one(&ca, "conf.test_notify_resource_updated", json!({})).await;
    assert!(item_text(&item).starts_with("sent"), "{item}");
    assert!(eventually(Duration::from_secs(5), || a.updated().len() >= 2).await);

    // After A unsubscribes (the last one), the hub unsubscribes upstream: nobody is told.
    ca.unsubscribe(UnsubscribeRequestParams::new(WATCHED))
        .await
        .unwrap();
    let item = call_one(&cb, "conf.test_notify_resource_updated", json!({})).await;
    assert_eq!(
        item_text(&item),
        format!("not subscribed to {WATCHED}; nothing sent"),
        "{item}"
    );
    tokio::time::sleep(QUIET).await;
    assert_eq!(a.updated().len(), 2, "{:?}", a.updated());
    assert!(b.updated().is_empty(), "B got {:?}", b.updated());

    ca.cancel().await.unwrap();
    cb.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

// ---- Raw HTTP ----

const ACCEPT: &str = "application/json, text/event-stream";

/// The JSON-RPC messages of a response body: plain JSON, or the `data:` lines of SSE.
fn messages_of(body: &str) -> Vec<Value> {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        return vec![v];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad SSE data ({e}): {d}")))
        .collect()
}

struct Reply {
    status: reqwest::StatusCode,
    session: Option<String>,
    body: String,
}

impl Reply {
    /// The JSON-RPC answer to request `id` in this reply.
    fn answer(&self, id: u64) -> Value {
        messages_of(&self.body)
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {} {}", self.status, self.body))
    }
}

async fn post(url: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("the hub answered within 10 s")
        .expect("POST /mcp");
    let status = r.status();
    let session = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("the body ended within 10 s")
        .unwrap_or_default();
    Reply {
        status,
        session,
        body,
    }
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
}

/// A raw initialized session: its id.
async fn raw_session(url: &str, version: &str) -> String {
    let r = post(url, initialize(version), &[]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let id = r.session.clone().expect("an Mcp-Session-Id");
    let a = r.answer(1);
    assert_eq!(a["result"]["protocolVersion"], version, "{a}");
    let n = post(
        url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &[("mcp-session-id", &id), ("mcp-protocol-version", version)],
    )
    .await;
    assert_eq!(n.status, reqwest::StatusCode::ACCEPTED, "{}", n.body);
    id
}

async fn raw_request(url: &str, session: &str, id: u64, method: &str) -> Reply {
    post(
        url,
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}}),
        &[
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await
}

// ---- 7. Protocol versions ----

#[tokio::test]
async fn protocol_versions_negotiate_and_discover_lists_them() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", &conf_upstream())).await;
    hub.wait_all_ready(READY).await;
    let versions = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

    for version in versions {
        let r = post(&hub.url, initialize(version), &[]).await;
        assert_eq!(r.status, reqwest::StatusCode::OK, "{version}: {}", r.body);
        assert!(r.session.is_some(), "{version}: no session id");
        let a = r.answer(1);
        assert_eq!(a["result"]["protocolVersion"], version, "{a}");
        assert_eq!(a["result"]["serverInfo"]["name"], "patchbay", "{a}");
        let caps = &a["result"]["capabilities"];
        for cap in ["tools", "resources", "prompts", "completions", "logging"] {
            assert!(caps[cap].is_object(), "{version}: {cap} missing: {a}");
        }
    }

    let discover = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "x", "version": "1"}}}});
    let r = post(
        &hub.url,
        discover,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let a = r.answer(1);
    let supported: Vec<&str> = a["result"]["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("no supportedVersions: {a}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for version in versions {
        assert!(supported.contains(&version), "{version}: {a}");
    }
    assert!(a["result"]["capabilities"]["tools"].is_object(), "{a}");
    assert!(hub.stop().await.success());
}

/// The SSE response of one POST, read message by message as it arrives.
struct SseStream {
    response: reqwest::Response,
    buffer: String,
    pending: std::collections::VecDeque<Value>,
}

impl SseStream {
    /// POSTs `body` into `session` and keeps the response open.
    async fn open(url: &str, session: &str, body: Value) -> Self {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
            .await
            .expect("POST /mcp");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        Self {
            response,
            buffer: String::new(),
            pending: Default::default(),
        }
    }

    /// The next JSON-RPC message on the stream, or `None` if none came within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("read the response stream")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                self.pending.extend(messages_of(&event));
            }
        }
    }
}

// ---- Requests back ride the call's own response stream ----

#[tokio::test]
async fn sampling_request_rides_the_calls_own_response_stream() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[server]\ncall_timeout = \"10s\"\n\n{}", conf_upstream()),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;

    // A raw session that can sample and, like many clients, opens no standalone GET stream:
    // what the server asks during a call must come on that call's own response stream.
    let mut init = initialize("2025-06-18");
    init["params"]["capabilities"] = json!({"sampling": {}});
    let r = post(&hub.url, init, &[]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let session = r.session.clone().expect("session id");
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let n = post(
        &hub.url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &headers,
    )
    .await;
    assert_eq!(n.status, reqwest::StatusCode::ACCEPTED);

    let mut stream = SseStream::open(
        &hub.url,
        &session,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "call",
            "arguments": {"calls": [{"tool": "conf.test_sampling", "input": {"prompt": "raw-marker"}}]}}}),
    )
    .await;
    let asked =
        loop {
            let m = stream.next(Duration::from_secs(3)).await.unwrap_or_else(|| {
            panic!(
                "no sampling/createMessage on the call's response stream within 3 s; log:\n{}",
                hub.log.text()
            )
        });
            assert_ne!(m["id"], 2, "the call ended before asking: {m}");
            if m["method"] == "sampling/createMessage" {
                break m;
            }
        };
    assert!(asked.to_string().contains("raw-marker"), "{asked}");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "model": "raw", "role": "assistant", "content": {"type": "text", "text": "raw-answer"}}});
    let r = post(&hub.url, answer, &headers).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{}", r.body);
    let result = loop {
        let m = stream
            .next(Duration::from_secs(5))
            .await
            .expect("the call's result");
        if m["id"] == 2 {
            break m;
        }
    };
    let item = &result["result"]["structuredContent"]["results"][0];
    assert_eq!(
        item["result"]["content"][0]["text"], "LLM response: raw-answer",
        "{result}"
    );
    assert!(hub.stop().await.success());
}

// ---- 8. Bad input ----

#[tokio::test]
async fn http_refuses_unknown_and_expired_sessions_and_foreign_origins() {
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", "")).await;
    let port = hub.base.rsplit(':').next().unwrap().to_owned();

    // An unknown session: 404.
    let r = raw_request(&hub.url, "no-such-session", 2, "tools/list").await;
    assert_eq!(r.status, reqwest::StatusCode::NOT_FOUND, "{}", r.body);

    // A foreign Origin: 403, nothing served; a loopback one: served.
    let r = post(
        &hub.url,
        initialize("2025-06-18"),
        &[("origin", "http://evil.example.com")],
    )
    .await;
    assert_eq!(r.status, reqwest::StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.session.is_none());
    let origin = format!("http://127.0.0.1:{port}");
    let r = post(&hub.url, initialize("2025-06-18"), &[("origin", &origin)]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{origin}: {}", r.body);
    assert_eq!(r.answer(1)["result"]["serverInfo"]["name"], "patchbay");
    let session = r.session.clone().expect("session id");
    let r = post(
        &hub.url,
        json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
        &[
            ("mcp-session-id", &session),
            ("origin", "http://evil.example.com"),
        ],
    )
    .await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::FORBIDDEN,
        "a live session from a foreign origin: {}",
        r.body
    );

    // Stray messages into a live session: accepted or refused, and the session carries on.
    let session = raw_session(&hub.url, "2025-06-18").await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    for stray in [
        json!({"jsonrpc": "2.0", "id": 4242, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "nobody-asked", "error": {"code": -32603, "message": "x"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"wrong": true}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99999}}),
        json!({"jsonrpc": "2.0", "method": "notifications/no-such-thing"}),
    ] {
        let r = post(&hub.url, stray.clone(), &headers).await;
        assert!(
            r.status == reqwest::StatusCode::ACCEPTED || r.status.is_client_error(),
            "{stray}: {} {}",
            r.status,
            r.body
        );
        let ping = raw_request(&hub.url, &session, 10, "ping").await;
        assert_eq!(
            ping.status,
            reqwest::StatusCode::OK,
            "after {stray}: {}",
            ping.body
        );
        assert!(ping.answer(10)["result"].is_object(), "after {stray}");
    }
    let tools = raw_request(&hub.url, &session, 11, "tools/list").await;
    let names: Vec<String> = tools.answer(11)["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["list", "search", "schema", "call"]);
    assert!(!hub.log.text().contains("panicked"), "{}", hub.log.text());
    assert!(hub.stop().await.success());

    // An expired session: 404.
    let ws = Workspace::new();
    let hub = Hub::serve(&ws.write("patchbay.toml", "[server]\nsession_idle = \"1s\"\n")).await;
    let session = raw_session(&hub.url, "2025-06-18").await;
    let r = raw_request(&hub.url, &session, 2, "ping").await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "fresh: {}", r.body);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = raw_request(&hub.url, &session, 3, "ping").await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::NOT_FOUND,
        "expired: {}",
        r.body
    );
    // A new session works.
    let session = raw_session(&hub.url, "2025-06-18").await;
    let r = raw_request(&hub.url, &session, 4, "ping").await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn stdio_survives_stray_messages_and_refuses_duplicate_ids() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let mut s = RawStdio::start(&config).await;
    let init = s
        .request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;

    // Stray messages: no answer is owed, and the session carries on.
    let mut id = 100;
    for stray in [
        json!({"jsonrpc": "2.0", "id": 4242, "result": {}}),
        json!({"jsonrpc": "2.0", "id": "nobody-asked", "error": {"code": -32603, "message": "x"}}),
        json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"wrong": true}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99999}}),
    ] {
        s.send(stray.clone()).await;
        id += 1;
        let a = s.request(id, "ping", json!({})).await;
        assert!(a["result"].is_object(), "after {stray}: {a}");
    }

    // Wait for the upstream, then a call that runs for a while.
    let deadline = Instant::now() + READY;
    loop {
        id += 1;
        let l = s
            .request(
                id,
                "tools/call",
                json!({"name": "list", "arguments": {"namespace": "fx"}}),
            )
            .await;
        if l["result"]["structuredContent"]["namespaces"][0]["state"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "fx never ready: {l}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sleep = json!({"name": "call", "arguments": {"calls": [{"tool": "fx.sleep", "input": {"ms": 700}}]}});
    let echo = json!({"name": "call", "arguments": {"calls": [{"tool": "fx.echo", "input": {"text": "duplicate"}}]}});
    s.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": sleep}))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The same id again while the first is still running.
    s.send(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": echo}))
        .await;
    let first = s.answer().await;
    let second = s.answer().await;
    let (error, result) = if first.get("error").is_some() {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(error["id"], 7, "{error}");
    assert_eq!(
        error["error"]["code"], -32600,
        "the duplicate is refused: {error}"
    );
    assert_eq!(result["id"], 7, "{result}");
    let item = &result["result"]["structuredContent"]["results"][0];
    assert_eq!(
        item["tool"], "fx.sleep",
        "the first call completed: {result}"
    );
    assert_eq!(item["success"], true, "{result}");
    assert_eq!(
        item["result"]["content"][0]["text"], "slept 700",
        "{result}"
    );
    let a = s.request(900, "ping", json!({})).await;
    assert!(a["result"].is_object(), "ping: {a}");

    // The id is free again once the first is answered.
    let again = s
        .request(
            7,
            "tools/call",
            json!({"name": "call", "arguments": {"calls": [{"tool": "fx.echo", "input": {"text": "reused"}}]}}),
        )
        .await;
    assert_eq!(
        again["result"]["structuredContent"]["results"][0]["result"]["content"][0]["text"],
        "reused",
        "{again}"
    );

    let (status, log) = s.close().await;
    assert!(status.success(), "{status}; log:\n{}", log.text());
    assert!(!log.text().contains("panicked"), "{}", log.text());
}

// ---- The stdio front door relays requests back too ----

#[tokio::test]
async fn stdio_front_door_relays_sampling_and_elicitation() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &conf_upstream());
    let asker = Asker::new("stdio", &["sampling", "elicitation"]);
    let mut cmd = Command::new(patchbay());
    cmd.arg("stdio").arg("--config").arg(&config);
    let (transport, _stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("start patchbay stdio");
    let client = asker
        .clone()
        .serve(transport)
        .await
        .expect("MCP client connects over stdio");

    let item = call_one(
        &client,
        "conf.test_sampling",
        json!({"prompt": "marker-stdio-door"}),
    )
    .await;
    assert!(!item_failed(&item), "{item}");
    assert!(item_text(&item).contains("answer-from-stdio"), "{item}");
    assert!(
        asker
            .sampled()
            .iter()
            .any(|p| p.contains("marker-stdio-door")),
        "{:?}",
        asker.sampled()
    );

    let item = call_one(
        &client,
        "conf.test_elicitation",
        json!({"message": "marker-stdio-elicit"}),
    )
    .await;
    assert!(!item_failed(&item), "{item}");
    assert!(
        asker
            .elicited()
            .iter()
            .any(|m| m.contains("marker-stdio-elicit")),
        "{:?}",
        asker.elicited()
    );
    client.cancel().await.unwrap();
}

// ---- Requests before initialize; answers that come too late ----

#[tokio::test]
async fn requests_before_initialize_get_an_error_and_the_session_carries_on() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));

    // stdio: a request before `initialize` is answered with an error for its id (a client of
    // the stateless 2026-07-28 revision must name its version per request), and the session
    // can still be initialized and used.
    let mut raw = RawStdio::start(&config).await;
    let early = raw.request(1, "tools/list", json!({})).await;
    assert!(early["error"]["code"].is_i64(), "{early}");
    let init = raw
        .request(
            2,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "early", "version": "1"}}),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let tools = raw.request(3, "tools/list", json!({})).await;
    assert_eq!(
        tools["result"]["tools"].as_array().map(Vec::len),
        Some(4),
        "{tools}"
    );
    drop(raw);

    // HTTP: a request with no session that is not `initialize` gets 400.
    let hub = Hub::serve(&config).await;
    let reply = post(
        &hub.url,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[],
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_sampling_answer_after_the_call_ended_is_ignored() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[server]\ncall_timeout = \"1s\"\n\n{}", conf_upstream()),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(READY).await;
    // Answers sampling after 2.5 s: the call times out at 1 s, the answer arrives later.
    let asker = Asker::new("late", &["sampling"]).slow(Duration::from_millis(2500));
    let client = connect(&hub.url, &asker).await;
    let item = call_one(
        &client,
        "conf.test_sampling",
        json!({"prompt": "marker-late"}),
    )
    .await;
    assert!(item_failed(&item), "{item}");
    assert_eq!(item["error"]["code"], "timeout", "{item}");
    // The late answer reaches a hub that has forgotten the request: nothing breaks.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let item = call_one(&client, "conf.test_simple_text", json!({})).await;
    assert_eq!(
        item_text(&item),
        "This is a simple text response for testing."
    );
    assert_eq!(asker.sampled().len(), 1, "{:?}", asker.sampled());
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}
