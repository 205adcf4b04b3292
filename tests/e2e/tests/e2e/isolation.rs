//! Actors never see each other's operations. An isolation matrix of six identities (five
//! actors, one of them also through a vendor) over four upstreams, checked through every
//! surface (`list`, `search`, `schema`, `call`, the `direct` tool list, prompts, completion,
//! resources) over HTTP and over stdio; authentication failures at both front doors and
//! sessions that belong to their first caller; per-actor rate and concurrency limits; and the
//! refusal to serve a non-loopback address without authentication.
//!
//! What each identity should see is computed here, from the catalog and the rules below, with
//! a glob matcher of the test's own: never by asking the hub.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams},
    service::{Peer, RoleClient, ServiceError},
    transport::{
        StreamableHttpClientTransport, TokioChildProcess,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::{Value, json};
use tokio::process::Command;

const READY: Duration = Duration::from_secs(30);

// ---- The catalog, as the upstreams themselves list it ----

/// The meta tools every listener that is not `direct` shows.
const META_TOOLS: [&str; 4] = ["list", "search", "schema", "call"];

/// One upstream's contribution to the catalog.
#[derive(Debug, Clone)]
struct Upstream {
    namespace: &'static str,
    /// Tool name (without the namespace) and whether it is annotated `readOnlyHint: true`.
    tools: Vec<(String, bool)>,
    prompts: Vec<String>,
    resources: Vec<String>,
    templates: Vec<String>,
}

impl Upstream {
    /// Operation names (`namespace.tool`) and whether each is read-only.
    fn operations(&self) -> Vec<(String, bool)> {
        self.tools
            .iter()
            .map(|(t, ro)| (format!("{}.{t}", self.namespace), *ro))
            .collect()
    }
}

type Catalog = Arc<Vec<Upstream>>;

/// The matrix's upstreams: namespace, program, arguments. `alpha` and `beta` are fixtures,
/// `conf` the conformance fixture (prompts, resources, a template), and `inner` a Patchbay
/// hub with no upstreams of its own, whose `list`, `search` and `schema` are the catalog's
/// read-only operations (no fixture tool carries `readOnlyHint`).
fn upstreams(ws: &Workspace) -> Vec<(&'static str, PathBuf, Vec<String>)> {
    let mut inner = ws.path("inner.toml");
    if !inner.exists() {
        inner = ws.write("inner.toml", "");
    }
    let inner_args = vec![
        "stdio".to_owned(),
        "--config".to_owned(),
        inner.display().to_string(),
    ];
    vec![
        ("alpha", fixture(), vec![]),
        ("beta", fixture(), vec![]),
        ("conf", bin("patchbay-conformance-fixture"), vec![]),
        ("inner", patchbay(), inner_args),
    ]
}

/// What one upstream offers, asked directly (not through a hub).
async fn ask_upstream(namespace: &'static str, program: PathBuf, argv: Vec<String>) -> Upstream {
    let mut cmd = Command::new(&program);
    cmd.args(&argv).env("RUST_LOG", "warn");
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
    let client = ().serve(transport).await.expect("connect to the upstream");
    let caps = client
        .peer_info()
        .expect("server info")
        .capabilities
        .clone();
    let tools = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .iter()
        .map(|t| {
            let read_only = t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true);
            (t.name.to_string(), read_only)
        })
        .collect();
    let mut up = Upstream {
        namespace,
        tools,
        prompts: vec![],
        resources: vec![],
        templates: vec![],
    };
    if caps.prompts.is_some() {
        let prompts = client.list_all_prompts().await.expect("prompts/list");
        up.prompts = prompts.iter().map(|p| p.name.to_string()).collect();
    }
    if caps.resources.is_some() {
        let resources = client.list_all_resources().await.expect("resources/list");
        up.resources = resources.iter().map(|r| r.uri.clone()).collect();
        let templates = client
            .list_all_resource_templates()
            .await
            .expect("resources/templates/list");
        up.templates = templates.iter().map(|t| t.uri_template.clone()).collect();
    }
    client.cancel().await.unwrap();
    up
}

/// The whole catalog of the matrix, from each upstream.
async fn read_catalog(ws: &Workspace) -> Catalog {
    let ups = each(upstreams(ws), |(namespace, program, argv)| {
        ask_upstream(namespace, program, argv)
    })
    .await;
    Arc::new(ups)
}

/// Whether operation `name` is annotated read-only.
fn is_read_only(catalog: &[Upstream], name: &str) -> bool {
    catalog
        .iter()
        .flat_map(|u| u.operations())
        .any(|(n, ro)| n == name && ro)
}

// ---- Who is calling, and the rules ----

/// One `[[policy]]` rule set.
struct Rule {
    actors: &'static [&'static str],
    roles: &'static [&'static str],
    vendors: &'static [&'static str],
    allow: &'static [&'static str],
    deny: &'static [&'static str],
    read_only: bool,
}

const NONE: &[&str] = &[];

const RULES: &[Rule] = &[
    // alice, by name: one fixture without two of its tools, and a corner of conf.
    Rule {
        actors: &["alice"],
        roles: NONE,
        vendors: NONE,
        allow: &[
            "alpha.*",
            "conf.test_simple_*",
            "conf.test_prompt_with_arguments",
        ],
        deny: &["alpha.crash", "alpha.env"],
        read_only: false,
    },
    // The role `dev`: the other fixture and the inner hub, without what is dangerous.
    Rule {
        actors: NONE,
        roles: &["dev"],
        vendors: NONE,
        allow: &["beta.*", "inner.*"],
        deny: &["beta.crash", "*.add_tool", "inner.call"],
        read_only: false,
    },
    // carol, by name: everything...
    Rule {
        actors: &["carol"],
        roles: NONE,
        vendors: NONE,
        allow: &["*"],
        deny: NONE,
        read_only: false,
    },
    // ...but through the `speaker` vendor only two fixture tools and conf, less what would
    // ask the person something.
    Rule {
        actors: NONE,
        roles: NONE,
        vendors: &["speaker"],
        allow: &["alpha.echo", "alpha.a?d", "conf.*"],
        deny: &["conf.test_sampling", "conf.test_elicitation*"],
        read_only: false,
    },
    // dave: read-only over three namespaces.
    Rule {
        actors: &["dave"],
        roles: NONE,
        vendors: NONE,
        allow: &["alpha.*", "conf.*", "inner.*"],
        deny: NONE,
        read_only: true,
    },
    // A role nobody holds.
    Rule {
        actors: NONE,
        roles: &["auditor"],
        vendors: NONE,
        allow: &["*"],
        deny: NONE,
        read_only: false,
    },
];

/// One credential: a static token, the actor it authenticates, its roles and vendor.
struct Person {
    /// How the test names it (`carol@speaker`).
    label: &'static str,
    actor: &'static str,
    token: &'static str,
    roles: &'static [&'static str],
    vendor: Option<&'static str>,
}

const PEOPLE: &[Person] = &[
    Person {
        label: "alice",
        actor: "alice",
        token: "alice-token-0123456789abcdef",
        roles: NONE,
        vendor: None,
    },
    Person {
        label: "bob",
        actor: "bob",
        token: "bob-token-0123456789abcdef",
        roles: &["dev"],
        vendor: None,
    },
    Person {
        label: "carol@speaker",
        actor: "carol",
        token: "carol-speaker-token-0123456789",
        roles: NONE,
        vendor: Some("speaker"),
    },
    Person {
        label: "carol",
        actor: "carol",
        token: "carol-laptop-token-0123456789",
        roles: NONE,
        vendor: None,
    },
    Person {
        label: "dave",
        actor: "dave",
        token: "dave-token-0123456789abcdef",
        roles: NONE,
        vendor: None,
    },
    Person {
        label: "erin",
        actor: "erin",
        token: "erin-token-0123456789abcdef",
        roles: &["guest"],
        vendor: None,
    },
];

/// `*` matches any run of characters (dots included), `?` exactly one.
fn glob(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some('?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

/// Whether `pattern` could match some name in `namespace`: its literal head (up to the first
/// wildcard) and `namespace.` agree as far as both go.
fn could_match_namespace(pattern: &str, namespace: &str) -> bool {
    let head: String = pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?'))
        .collect();
    let prefix = format!("{namespace}.");
    head.starts_with(&prefix) || prefix.starts_with(&head)
}

impl Person {
    /// Rule sets that apply to the actor itself: by name, by role, or to everyone.
    fn own_rules(&self) -> Vec<&'static Rule> {
        RULES
            .iter()
            .filter(|r| {
                let general = r.actors.is_empty() && r.roles.is_empty() && r.vendors.is_empty();
                general
                    || r.actors.contains(&self.actor)
                    || r.roles.iter().any(|role| self.roles.contains(role))
            })
            .collect()
    }

    /// Rule sets of the vendor it calls through.
    fn vendor_rules(&self) -> Vec<&'static Rule> {
        RULES
            .iter()
            .filter(|r| self.vendor.is_some_and(|v| r.vendors.contains(&v)))
            .collect()
    }

    /// Granted by its own rules, narrowed by its vendor's allow lists, minus any deny, and
    /// only read-only operations if any rule says so.
    fn may_use(&self, name: &str, read_only: bool) -> bool {
        let own = self.own_rules();
        let vendor = self.vendor_rules();
        let all = || own.iter().chain(vendor.iter());
        let granted = own.iter().any(|r| r.allow.iter().any(|p| matches(p, name)));
        let vendor_allows = vendor.iter().all(|r| r.allow.is_empty())
            || vendor
                .iter()
                .any(|r| r.allow.iter().any(|p| matches(p, name)));
        let denied = all().any(|r| r.deny.iter().any(|p| matches(p, name)));
        let read_only_ok = read_only || !all().any(|r| r.read_only);
        granted && vendor_allows && !denied && read_only_ok
    }

    /// Whether its resources (and templates) of `namespace` are visible: some allow pattern,
    /// of its own and of its vendor's, could match an operation there.
    fn sees_namespace(&self, namespace: &str) -> bool {
        let any = |rules: &[&Rule]| {
            rules
                .iter()
                .any(|r| r.allow.iter().any(|p| could_match_namespace(p, namespace)))
        };
        let vendor: Vec<&Rule> = self
            .vendor_rules()
            .into_iter()
            .filter(|r| !r.allow.is_empty())
            .collect();
        any(&self.own_rules()) && (vendor.is_empty() || any(&vendor))
    }
}

/// What one identity should see, and what it should not.
#[derive(Debug, Default)]
struct View {
    tools: BTreeSet<String>,
    forbidden: BTreeSet<String>,
    /// Namespaces with at least one visible operation.
    namespaces: BTreeSet<String>,
    prompts: BTreeSet<String>,
    hidden_prompts: BTreeSet<String>,
    /// Resource URIs, sorted, once per upstream that lists them.
    resources: Vec<String>,
    /// URIs only upstreams it does not see serve.
    hidden_resources: BTreeSet<String>,
    templates: Vec<String>,
    /// The whole catalog it was computed from.
    catalog: Catalog,
}

fn view_of(person: &Person, catalog: &Catalog) -> View {
    let mut v = View {
        catalog: catalog.clone(),
        ..View::default()
    };
    for up in catalog.iter() {
        for (name, read_only) in up.operations() {
            if person.may_use(&name, read_only) {
                v.namespaces.insert(up.namespace.to_owned());
                v.tools.insert(name);
            } else {
                v.forbidden.insert(name);
            }
        }
        for p in &up.prompts {
            let name = format!("{}.{p}", up.namespace);
            if person.may_use(&name, true) {
                v.prompts.insert(name);
            } else {
                v.hidden_prompts.insert(name);
            }
        }
        if person.sees_namespace(up.namespace) {
            v.resources
                .extend(up.resources.iter().map(|r| r.to_string()));
            v.templates
                .extend(up.templates.iter().map(|t| t.to_string()));
        }
    }
    for up in catalog.iter() {
        for r in &up.resources {
            if !v.resources.iter().any(|x| x == r) {
                v.hidden_resources.insert(r.to_string());
            }
        }
    }
    v.resources.sort();
    v.templates.sort();
    v
}

// ---- The hub's configuration ----

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The [`upstreams`], `expose = "both"`, and `[auth]` and `[[policy]]` from [`PEOPLE`] and
/// [`RULES`].
fn matrix_config(ws: &Workspace) -> PathBuf {
    let mut toml = String::from("[server]\nexpose = \"both\"\ncall_timeout = \"5s\"\n\n");
    for (namespace, program, argv) in upstreams(ws) {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        toml += &format!(
            "[upstreams.{namespace}]\ncommand = {:?}\nargs = {}\n\n",
            program.display().to_string(),
            toml_list(&argv)
        );
    }
    toml += "[auth]\n";
    for p in PEOPLE {
        toml += &format!(
            "[[auth.tokens]]\nactor = {:?}\ntoken = {:?}\nroles = {}\n",
            p.actor,
            p.token,
            toml_list(p.roles)
        );
        if let Some(v) = p.vendor {
            toml += &format!("vendor = {v:?}\n");
        }
        toml += "\n";
    }
    for r in RULES {
        toml += "[[policy]]\n";
        for (key, list) in [
            ("actors", r.actors),
            ("roles", r.roles),
            ("vendors", r.vendors),
            ("allow", r.allow),
            ("deny", r.deny),
        ] {
            if !list.is_empty() {
                toml += &format!("{key} = {}\n", toml_list(list));
            }
        }
        if r.read_only {
            toml += "read_only = true\n";
        }
        toml += "\n";
    }
    ws.write("patchbay.toml", &toml)
}

// ---- Clients that present a credential ----

/// An HTTP MCP session presenting `token` as `Authorization: Bearer`.
async fn http_as(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("MCP client connects over HTTP with a token")
}

/// `patchbay stdio` acting with `token`, given by `--token` or by `PATCHBAY_TOKEN`.
async fn stdio_as(config: &Path, token: &str, by_env: bool) -> (Client, Log) {
    stdio_client_on(stdio_command_as(config, token, by_env)).await
}

// ---- Reading answers ----

/// Runs a batch through the meta tool `call` and returns its `results`.
async fn batch(peer: &Peer<RoleClient>, calls: Vec<Value>) -> Vec<Value> {
    let r = call_peer(peer, "call", json!({ "calls": calls })).await;
    structured(&r)["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {r:?}"))
        .clone()
}

/// `value` as text with every occurrence of `name` replaced: what is left is the shape a
/// caller could tell two answers apart by.
fn shape(value: &Value, name: &str) -> String {
    value.to_string().replace(name, "<NAME>")
}

/// A JSON-RPC error as JSON (code, message, data).
fn error_json(e: &ServiceError) -> Value {
    match e {
        ServiceError::McpError(data) => json!(data),
        other => panic!("not a JSON-RPC error: {other:?}"),
    }
}

// ---- One identity, every surface ----

/// Runs `f` on every item at once (an MCP client keeps several requests in flight) and
/// returns the answers in the items' order. A panic in one is this function's panic.
async fn each<I, T, F, Fut>(items: impl IntoIterator<Item = I>, f: F) -> Vec<T>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let work = f(item);
        tasks.spawn(async move { (i, work.await) });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(x) => out.push(x),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{e}"),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, x)| x).collect()
}

fn namespace_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(ns, _)| ns)
}

/// Operations probed with a real call when visible: name, input, a text the result contains.
fn probes() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("alpha.echo", json!({"text": "probe-alpha"}), "probe-alpha"),
        ("alpha.add", json!({"a": 2, "b": 3}), "5"),
        ("beta.echo", json!({"text": "probe-beta"}), "probe-beta"),
        (
            "conf.test_simple_text",
            json!({}),
            "This is a simple text response for testing.",
        ),
        ("inner.list", json!({}), "operations"),
    ]
}

/// Every prompt argument any prompt of the catalog needs.
fn prompt_arguments() -> serde_json::Map<String, Value> {
    args(json!({"name": "Ada", "arg1": "a", "arg2": "b", "resourceUri": "test://static-text"}))
}

fn tool_names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|o| o["tool"].as_str().unwrap().to_owned())
        .collect()
}

/// `list`: exactly the visible set, whole, paged and per namespace.
async fn check_list(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let listed = meta(peer, "list", json!({"limit": 1000})).await;
    let names = tool_names(&listed, "operations");
    assert_eq!(
        names.len(),
        view.tools.len(),
        "{who}: list count: {names:?}"
    );
    assert_eq!(
        names.iter().cloned().collect::<BTreeSet<_>>(),
        view.tools,
        "{who}: list"
    );
    for o in listed["operations"].as_array().unwrap() {
        let tool = o["tool"].as_str().unwrap();
        assert_eq!(namespace_of(tool), o["namespace"], "{who}: {o}");
    }
    let namespaces: BTreeSet<String> = listed["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        namespaces, view.namespaces,
        "{who}: list namespaces: {listed}"
    );

    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut a = json!({"limit": 4});
        if let Some(c) = &cursor {
            a["cursor"] = json!(c);
        }
        let page = meta(peer, "list", a).await;
        paged.extend(tool_names(&page, "operations"));
        match page["nextCursor"].as_str() {
            Some(c) => {
                assert!(view.tools.contains(c), "{who}: cursor {c} is not visible");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(paged, names, "{who}: paging through list");

    let per_namespace = each(view.catalog.iter().cloned(), |up| {
        let peer = peer.clone();
        async move {
            let r = meta(&peer, "list", json!({"namespace": up.namespace})).await;
            (up.namespace, r)
        }
    })
    .await;
    for (namespace, r) in per_namespace {
        let got: BTreeSet<String> = tool_names(&r, "operations").into_iter().collect();
        let want: BTreeSet<String> = view
            .tools
            .iter()
            .filter(|t| namespace_of(t) == namespace)
            .cloned()
            .collect();
        assert_eq!(got, want, "{who}: list namespace {namespace}");
        let shown = r["namespaces"].as_array().unwrap().len();
        assert_eq!(shown, usize::from(!want.is_empty()), "{who}: {r}");
    }
}

/// `search`: only visible operations, whatever the query or namespace; each visible one
/// found by its own name.
async fn check_search(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let mut queries: Vec<(String, Option<&'static str>)> = [
        "",
        "echo the given text",
        "add two numbers",
        "sleep milliseconds until cancelled",
        "simple text response",
        "list available operations",
        "elicitation sampling user",
        "crash exit environment variable",
    ]
    .iter()
    .map(|q| (q.to_string(), None))
    .collect();
    for up in view.catalog.iter() {
        queries.extend(
            up.tools
                .iter()
                .map(|(t, _)| (t.clone(), Some(up.namespace))),
        );
    }
    let answers = each(queries, |(q, namespace)| {
        let peer = peer.clone();
        async move {
            let mut a = json!({"q": q, "limit": 100});
            if let Some(ns) = namespace {
                a["namespace"] = json!(ns);
            }
            let r = meta(&peer, "search", a).await;
            (q, namespace, r)
        }
    })
    .await;
    for (q, namespace, r) in answers {
        let hits = tool_names(&r, "results");
        for hit in &hits {
            assert!(
                view.tools.contains(hit),
                "{who}: search {q:?} in {namespace:?} found forbidden {hit}: {r}"
            );
        }
        assert!(r.get("starting").is_none(), "{who}: {r}");
        let Some(ns) = namespace else { continue };
        assert!(hits.iter().all(|h| namespace_of(h) == ns), "{who}: {r}");
        let full = format!("{ns}.{q}");
        if view.tools.contains(&full) {
            assert!(
                hits.contains(&full),
                "{who}: search {q:?} in {ns} misses {full}: {r}"
            );
        }
        if !view.namespaces.contains(ns) {
            assert!(hits.is_empty(), "{who}: {r}");
        }
    }
}

/// `schema`: every visible operation (with its annotations); every forbidden one fails
/// exactly like a missing one.
async fn check_schema(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let schemas = each(view.tools.clone(), |name| {
        let peer = peer.clone();
        async move {
            (
                name.clone(),
                meta(&peer, "schema", json!({"tool": name})).await,
            )
        }
    })
    .await;
    for (name, s) in schemas {
        assert_eq!(s["tool"], name.as_str(), "{who}: {s}");
        assert!(s["inputSchema"].is_object(), "{who}: {s}");
        let read_only = is_read_only(&view.catalog, &name);
        assert_eq!(
            s["annotations"]["readOnlyHint"] == true,
            read_only,
            "{who}: annotations of {name}: {s}"
        );
    }
    let names = missing_and_forbidden(view);
    let shapes = each(names.clone(), |name| {
        let peer = peer.clone();
        async move {
            let r = call_peer(&peer, "schema", json!({"tool": name})).await;
            assert_eq!(r.is_error, Some(true), "schema of {name}: {r:?}");
            let v = json!({"structured": r.structured_content, "text": text_of(&r)});
            assert_eq!(v["structured"]["error"]["code"], "not_found", "{v}");
            shape(&v, &name)
        }
    })
    .await;
    for (name, s) in names.iter().zip(&shapes) {
        assert_eq!(s, &shapes[0], "{who}: schema of {name}");
    }
}

/// Operations the caller must not tell apart: a namespace that does not exist, a missing
/// operation in each namespace, and every operation it is forbidden; the first is the
/// reference.
fn missing_and_forbidden(view: &View) -> Vec<String> {
    let mut names = vec!["nowhere.no_such_operation".to_owned()];
    names.extend(
        view.catalog
            .iter()
            .map(|u| format!("{}.no_such_operation", u.namespace)),
    );
    names.extend(view.forbidden.iter().cloned());
    names
}

/// `call`: visible probes succeed; every forbidden operation fails like a missing one.
async fn check_call(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let visible: Vec<_> = probes()
        .into_iter()
        .filter(|(name, _, _)| view.tools.contains(*name))
        .collect();
    if !visible.is_empty() {
        let calls = visible
            .iter()
            .map(|(name, input, _)| json!({"tool": name, "input": input}))
            .collect();
        let results = batch(peer, calls).await;
        for ((name, _, expect), item) in visible.iter().zip(&results) {
            assert_eq!(item["tool"], *name, "{who}: {item}");
            assert_eq!(item["success"], true, "{who}: {name}: {item}");
            assert_ne!(item["result"]["isError"], true, "{who}: {name}: {item}");
            assert!(
                item["result"].to_string().contains(expect),
                "{who}: {name}: {item}"
            );
        }
    }
    let names = missing_and_forbidden(view);
    assert!(names.len() <= 64, "one batch");
    let calls = names
        .iter()
        .map(|n| json!({"tool": n, "input": {}}))
        .collect();
    let results = batch(peer, calls).await;
    let missing = shape(&results[0], &names[0]);
    for (name, item) in names.iter().zip(&results) {
        assert_eq!(
            item["error"]["code"], "not_found",
            "{who}: call {name}: {item}"
        );
        assert_eq!(shape(item, name), missing, "{who}: call {name}: {item}");
    }
}

/// The tools of a `both` listener: the meta tools and exactly the visible operations; a
/// forbidden one called directly fails like a missing one.
async fn check_direct(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let tools = peer.list_all_tools().await.expect("tools/list");
    let direct: BTreeSet<String> = tools.iter().map(|t| t.name.to_string()).collect();
    let mut want: BTreeSet<String> = META_TOOLS.iter().map(|t| t.to_string()).collect();
    want.extend(view.tools.iter().cloned());
    assert_eq!(tools.len(), want.len(), "{who}: tools/list count");
    assert_eq!(direct, want, "{who}: tools/list");

    let visible = probes()
        .into_iter()
        .find(|(name, _, _)| view.tools.contains(*name));
    if let Some((name, input, expect)) = visible {
        let mut p = CallToolRequestParams::new(name);
        p.arguments = Some(args(input));
        let r = peer.call_tool(p).await.expect("direct call");
        assert_ne!(r.is_error, Some(true), "{who}: direct {name}: {r:?}");
        assert!(
            json!(r).to_string().contains(expect),
            "{who}: direct {name}: {r:?}"
        );
    }
    let mut names = vec!["alpha.no_such_operation".to_owned()];
    names.extend(view.forbidden.iter().cloned());
    let shapes = each(names.clone(), |name| {
        let peer = peer.clone();
        async move {
            let mut p = CallToolRequestParams::new(name.clone());
            p.arguments = Some(args(json!({})));
            let r = peer.call_tool(p).await.expect("direct call");
            assert_eq!(r.is_error, Some(true), "direct {name}: {r:?}");
            shape(&json!(r), &name)
        }
    })
    .await;
    assert!(shapes[0].contains("not_found"), "{}", shapes[0]);
    for (name, s) in names.iter().zip(&shapes) {
        assert_eq!(s, &shapes[0], "{who}: direct call of {name}");
    }
}

/// Prompts (and completion of their arguments): listed and got exactly as allowed; a hidden
/// one fails like a missing one.
async fn check_prompts(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let prompts: BTreeSet<String> = peer
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(prompts, view.prompts, "{who}: prompts/list");
    for name in &view.prompts {
        let got = peer
            .get_prompt(
                GetPromptRequestParams::new(name.clone()).with_arguments(prompt_arguments()),
            )
            .await
            .unwrap_or_else(|e| panic!("{who}: prompts/get {name}: {e:?}"));
        assert!(!got.messages.is_empty(), "{who}: {name}");
    }
    let mut names = vec!["conf.no_such_prompt".to_owned()];
    names.extend(view.hidden_prompts.iter().cloned());
    let shapes = each(names.clone(), |name| {
        let peer = peer.clone();
        async move {
            let request =
                GetPromptRequestParams::new(name.clone()).with_arguments(prompt_arguments());
            let e = peer
                .get_prompt(request)
                .await
                .expect_err("a hidden or missing prompt is an error");
            shape(&error_json(&e), &name)
        }
    })
    .await;
    for (name, s) in names.iter().zip(&shapes) {
        assert_eq!(s, &shapes[0], "{who}: prompts/get {name}");
    }

    let completed = "conf.test_prompt_with_arguments";
    if view.prompts.contains(completed) {
        let values = peer
            .complete_prompt_simple(completed, "arg1", "pa")
            .await
            .unwrap_or_else(|e| panic!("{who}: complete: {e:?}"));
        assert_eq!(values, ["paris", "park", "party"], "{who}");
    } else {
        let shapes = each([completed, "conf.no_such_prompt"], |name| {
            let peer = peer.clone();
            async move {
                let e = peer
                    .complete_prompt_simple(name, "arg1", "pa")
                    .await
                    .expect_err("completing a hidden or missing prompt is an error");
                shape(&error_json(&e), name)
            }
        })
        .await;
        assert_eq!(shapes[0], shapes[1], "{who}: completion of a hidden prompt");
    }
}

/// Resources and templates: listed only for namespaces it sees; a hidden one reads like a
/// missing one.
async fn check_resources(peer: &Peer<RoleClient>, who: &str, view: &View) {
    let mut resources: Vec<String> = peer
        .list_all_resources()
        .await
        .expect("resources/list")
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    resources.sort();
    assert_eq!(resources, view.resources, "{who}: resources/list");
    let mut templates: Vec<String> = peer
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list")
        .iter()
        .map(|t| t.uri_template.clone())
        .collect();
    templates.sort();
    assert_eq!(templates, view.templates, "{who}: resources/templates/list");

    let mut readable: BTreeSet<String> = view.resources.iter().cloned().collect();
    let mut hidden: Vec<String> = vec!["test://nobody/serves-this".to_owned()];
    hidden.extend(view.hidden_resources.iter().cloned());
    let instance = "test://template/7/data".to_owned();
    if view.templates.is_empty() {
        hidden.push(instance);
    } else {
        readable.insert(instance);
    }
    for (uri, read) in each(readable, |uri| {
        let peer = peer.clone();
        async move {
            let read = peer
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await;
            (uri, read)
        }
    })
    .await
    {
        let read = json!(read.unwrap_or_else(|e| panic!("{who}: read {uri}: {e:?}")));
        assert_eq!(read["contents"][0]["uri"], uri.as_str(), "{who}: {read}");
    }
    let shapes = each(hidden.clone(), |uri| {
        let peer = peer.clone();
        async move {
            let e = peer
                .read_resource(ReadResourceRequestParams::new(uri.clone()))
                .await
                .expect_err("a hidden or missing resource is an error");
            shape(&error_json(&e), &uri)
        }
    })
    .await;
    for (uri, s) in hidden.iter().zip(&shapes) {
        assert_eq!(s, &shapes[0], "{who}: read {uri}");
    }
}

/// Asserts that `person` sees exactly its view through every surface of `peer`.
async fn check_person(
    peer: Peer<RoleClient>,
    person: &'static Person,
    door: &'static str,
    catalog: Catalog,
) {
    let who = format!("{door} {}", person.label);
    let view = view_of(person, &catalog);
    let started = Instant::now();
    check_list(&peer, &who, &view).await;
    check_search(&peer, &who, &view).await;
    check_schema(&peer, &who, &view).await;
    check_call(&peer, &who, &view).await;
    check_direct(&peer, &who, &view).await;
    check_prompts(&peer, &who, &view).await;
    check_resources(&peer, &who, &view).await;
    eprintln!(
        "{who}: {} operations, {} prompts, {} resources visible; checked in {:?}",
        view.tools.len(),
        view.prompts.len(),
        view.resources.len(),
        started.elapsed()
    );
}

/// Checks every person at once, each on its own client.
async fn check_everyone(
    peers: Vec<(Peer<RoleClient>, &'static Person)>,
    door: &'static str,
    catalog: &Catalog,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for (peer, person) in peers {
        tasks.spawn(check_person(peer, person, door, catalog.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("{e}");
        }
    }
}

fn names<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The views this file computes are what the rules mean, over the catalog the upstreams
/// really have (a check of the test's own matcher); the matrix is printed.
#[tokio::test]
async fn the_matrix_is_what_the_rules_say() {
    assert!(matches("a?c", "abc") && !matches("a?c", "ac") && matches("*.x", "a.b.x"));
    assert!(!matches("alpha.*", "alphabet.x") && matches("*", ""));
    let ws = Workspace::new();
    let catalog = read_catalog(&ws).await;
    let ops: Vec<(String, bool)> = catalog.iter().flat_map(|u| u.operations()).collect();
    let all: BTreeSet<String> = ops.iter().map(|(n, _)| n.clone()).collect();
    let read_only: BTreeSet<String> = ops
        .iter()
        .filter(|(_, ro)| *ro)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(
        read_only,
        names(["inner.list", "inner.schema", "inner.search"]),
        "the catalog's read-only operations"
    );
    for name in [
        "alpha.echo",
        "alpha.add",
        "alpha.crash",
        "alpha.env",
        "beta.echo",
        "beta.crash",
        "beta.add_tool",
        "conf.test_simple_text",
        "conf.test_sampling",
        "conf.test_elicitation",
        "inner.call",
    ] {
        assert!(all.contains(name), "the rules rely on {name}: {all:?}");
    }
    let in_namespace = |ns: &str| -> BTreeSet<String> {
        all.iter()
            .filter(|n| namespace_of(n) == ns)
            .cloned()
            .collect()
    };
    let views: Vec<View> = PEOPLE.iter().map(|p| view_of(p, &catalog)).collect();

    // alice: alpha less crash and env, and conf's test_simple_* tools.
    let mut alice = in_namespace("alpha");
    alice.remove("alpha.crash");
    alice.remove("alpha.env");
    alice.extend(
        in_namespace("conf")
            .into_iter()
            .filter(|n| n.starts_with("conf.test_simple_")),
    );
    assert_eq!(views[0].tools, alice, "alice");
    assert_eq!(
        views[0].prompts,
        names([
            "alpha.greet",
            "conf.test_prompt_with_arguments",
            "conf.test_simple_prompt"
        ])
    );
    // bob (role dev): beta less crash and add_tool, inner less call; beta's resources only.
    let mut bob = in_namespace("beta");
    bob.extend(in_namespace("inner"));
    for n in ["beta.crash", "beta.add_tool", "inner.call"] {
        bob.remove(n);
    }
    assert_eq!(views[1].tools, bob, "bob");
    assert_eq!(views[1].prompts, names(["beta.greet"]));
    assert_eq!(views[1].resources, ["fixture://readme"]);
    assert!(views[1].templates.is_empty());
    // carol through the speaker: two fixture tools, conf less what asks the person.
    let mut speaker: BTreeSet<String> = in_namespace("conf")
        .into_iter()
        .filter(|n| n != "conf.test_sampling" && !n.starts_with("conf.test_elicitation"))
        .collect();
    speaker.extend(names(["alpha.echo", "alpha.add"]));
    assert_eq!(views[2].tools, speaker, "carol@speaker");
    assert!(views[2].prompts.iter().all(|p| p.starts_with("conf.")));
    assert!(!views[2].resources.is_empty() && views[2].resources.len() < views[3].resources.len());
    // carol on her own: everything.
    assert_eq!(views[3].tools, all, "carol");
    assert!(views[3].forbidden.is_empty() && views[3].hidden_prompts.is_empty());
    // dave: the read-only operations, and the prompts (read-only by nature) of his namespaces.
    assert_eq!(views[4].tools, read_only, "dave");
    assert!(views[4].prompts.contains("alpha.greet") && !views[4].prompts.contains("beta.greet"));
    // erin: nothing at all.
    let erin = &views[5];
    assert!(
        erin.tools.is_empty()
            && erin.prompts.is_empty()
            && erin.resources.is_empty()
            && erin.templates.is_empty(),
        "erin: {erin:?}"
    );

    eprintln!("identity       | operations | prompts | resources | templates");
    for (p, v) in PEOPLE.iter().zip(&views) {
        eprintln!(
            "{:<14} | {:>4} of {:<3} | {:>7} | {:>9} | {:>9}",
            p.label,
            v.tools.len(),
            all.len(),
            v.prompts.len(),
            v.resources.len(),
            v.templates.len()
        );
    }
}

#[tokio::test]
async fn isolation_matrix_over_http() {
    let ws = Workspace::new();
    let config = matrix_config(&ws);
    let (hub, catalog) = tokio::join!(Hub::serve(&config), read_catalog(&ws));
    hub.wait_all_ready(READY).await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for (i, person) in PEOPLE.iter().enumerate() {
        // One of them presents its token as `?token=`, as a device that cannot set headers.
        let client = if i == 1 {
            http_client(&format!("{}?token={}", hub.url, person.token)).await
        } else {
            http_as(&hub.url, person.token).await
        };
        clients.push((client, person));
    }
    let peers = clients
        .iter()
        .map(|(c, p)| (c.peer().clone(), *p))
        .collect();
    check_everyone(peers, "http", &catalog).await;
    eprintln!("http: every identity checked in {:?}", started.elapsed());
    for (c, _) in clients {
        c.cancel().await.unwrap();
    }
    assert!(!hub.log.text().contains("panicked"), "{}", hub.log.text());
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn isolation_matrix_over_stdio() {
    let ws = Workspace::new();
    let config = matrix_config(&ws);
    let catalog = read_catalog(&ws).await;
    let started = Instant::now();
    let mut starting = tokio::task::JoinSet::new();
    for (i, person) in PEOPLE.iter().enumerate() {
        let config = config.clone();
        // Half present the token by flag, half by environment variable.
        starting.spawn(async move { (stdio_as(&config, person.token, i % 2 == 1).await, person) });
    }
    let mut clients = Vec::new();
    while let Some(r) = starting.join_next().await {
        clients.push(r.expect("stdio client started"));
    }
    // Wait until every upstream is past its first start: a call of a missing operation in a
    // namespace waits for that namespace (startup_grace), whoever asks.
    for ((client, log), person) in &clients {
        let calls = catalog
            .iter()
            .map(|u| json!({"tool": format!("{}.settle_probe", u.namespace)}))
            .collect();
        for item in batch(client, calls).await {
            assert_eq!(
                item["error"]["code"],
                "not_found",
                "{}: {item}; log:\n{}",
                person.label,
                log.text()
            );
        }
    }
    eprintln!(
        "stdio: {} hubs ready in {:?}",
        clients.len(),
        started.elapsed()
    );
    let checking = Instant::now();
    let peers = clients
        .iter()
        .map(|((c, _), p)| (c.peer().clone(), *p))
        .collect();
    check_everyone(peers, "stdio", &catalog).await;
    eprintln!("stdio: every identity checked in {:?}", checking.elapsed());
    for ((c, log), person) in clients {
        c.cancel().await.unwrap();
        assert!(
            !log.text().contains("panicked"),
            "{}: {}",
            person.label,
            log.text()
        );
    }
}

/// `list` reports, per namespace, how many operations it holds: only the ones the caller may
/// see, or the forbidden ones could be counted.
#[tokio::test]
async fn list_counts_only_what_the_caller_may_see() {
    let ws = Workspace::new();
    let config = matrix_config(&ws);
    let (hub, catalog) = tokio::join!(Hub::serve(&config), read_catalog(&ws));
    hub.wait_all_ready(READY).await;
    for person in PEOPLE {
        let view = view_of(person, &catalog);
        let client = http_as(&hub.url, person.token).await;
        let listed = meta(&client, "list", json!({})).await;
        for n in listed["namespaces"].as_array().unwrap() {
            let namespace = n["namespace"].as_str().unwrap();
            let visible = view
                .tools
                .iter()
                .filter(|t| namespace_of(t) == namespace)
                .count();
            assert_eq!(
                n["operations"], visible,
                "{}: `list` counts {namespace}'s operations as {}, but {visible} are visible: {n}",
                person.label, n["operations"]
            );
        }
        client.cancel().await.unwrap();
    }
    assert!(hub.stop().await.success());
}

// ---- Authentication at the front doors ----

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

/// One fixture `fx`, and two actors who may use all of it (`alice`, `bob`).
fn two_actor_config(ws: &Workspace) -> PathBuf {
    let toml = format!(
        "{}\n[auth]\n[[auth.tokens]]\nactor = \"alice\"\ntoken = {ALICE:?}\n\n\
         [[auth.tokens]]\nactor = \"bob\"\ntoken = {BOB:?}\n\n[[policy]]\nallow = [\"fx.*\"]\n",
        fixture_upstream("fx", &[], "")
    );
    ws.write("patchbay.toml", &toml)
}

const ACCEPT: &str = "application/json, text/event-stream";

struct Reply {
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC messages of the body: plain JSON, or the `data:` lines of SSE.
    fn messages(&self) -> Vec<Value> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return vec![v];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    /// The JSON-RPC answer to request `id`.
    fn answer(&self, id: u64) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {} {}", self.status, self.body))
    }
}

/// Sends `body` (or nothing) to `url` with `method` and extra headers.
async fn send(
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("accept", ACCEPT);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").json(&body);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("the hub answered within 10 s")
        .expect("HTTP request");
    let status = r.status();
    let headers = r.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(10), r.text())
        .await
        .expect("the body ended within 10 s")
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

async fn post(url: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    send(reqwest::Method::POST, url, Some(body), headers).await
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "isolation", "version": "0"}}})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 401 with the bearer challenge and a JSON-RPC error body.
fn assert_unauthorized(r: &Reply, what: &str) {
    assert_eq!(
        r.status,
        reqwest::StatusCode::UNAUTHORIZED,
        "{what}: {}",
        r.body
    );
    let challenge = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer realm=\"patchbay\""),
        "{what}: {challenge}"
    );
    assert!(
        r.header("mcp-session-id").is_none(),
        "{what}: a session was opened"
    );
    let body: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {}", r.body));
    assert_eq!(body["jsonrpc"], "2.0", "{what}: {body}");
    assert!(body["error"]["code"].is_i64(), "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unauthorized")),
        "{what}: {body}"
    );
}

/// Opens a raw session with `token` (initialize, initialized): its id.
async fn raw_session(url: &str, token: &str) -> String {
    let auth = bearer(token);
    let r = post(url, initialize(), &[("authorization", &auth)]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let session = r.header("mcp-session-id").expect("a session id").to_owned();
    assert_eq!(r.answer(1)["result"]["serverInfo"]["name"], "patchbay");
    let n = post(
        url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &[
            ("authorization", &auth),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(n.status, reqwest::StatusCode::ACCEPTED, "{}", n.body);
    session
}

/// A request on `session` presenting `token`.
async fn on_session(
    url: &str,
    session: &str,
    token: &str,
    id: u64,
    method: &str,
    params: Value,
) -> Reply {
    let auth = bearer(token);
    post(
        url,
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        &[
            ("authorization", &auth),
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await
}

fn echo_call(text: &str) -> Value {
    json!({"name": "call", "arguments": {"calls": [{"tool": "fx.echo", "input": {"text": text}}]}})
}

/// Asserts `r` refused request `id` as a JSON-RPC error (or with a 4xx), without a result.
fn assert_refused(r: &Reply, id: u64, what: &str) {
    if r.status.is_client_error() {
        return;
    }
    assert_eq!(r.status, reqwest::StatusCode::OK, "{what}: {}", r.body);
    let a = r.answer(id);
    assert!(a.get("result").is_none(), "{what}: answered: {a}");
    let message = a["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("another caller"),
        "{what}: refused, but not as another caller's session: {a}"
    );
}

#[tokio::test]
async fn http_refuses_missing_and_wrong_tokens_and_foreign_sessions() {
    let ws = Workspace::new();
    let hub = Hub::serve(&two_actor_config(&ws)).await;
    hub.wait_all_ready(READY).await;
    let url = hub.url.clone();

    // No credential: the bare challenge.
    let r = post(&url, initialize(), &[]).await;
    assert_unauthorized(&r, "no token");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"patchbay\"")
    );
    // A wrong one, as a header or in the query, or not a bearer token at all.
    let wrong = bearer("wrong-token-0123456789abcdef");
    for (what, reply) in [
        (
            "a wrong bearer token",
            post(&url, initialize(), &[("authorization", &wrong)]).await,
        ),
        (
            "a wrong ?token=",
            post(
                &format!("{url}?token=wrong-token-0123456789abcdef"),
                initialize(),
                &[],
            )
            .await,
        ),
        (
            "basic credentials",
            post(
                &url,
                initialize(),
                &[("authorization", "Basic YWxpY2U6cHc=")],
            )
            .await,
        ),
    ] {
        assert_unauthorized(&reply, what);
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    // An empty bearer token is no credential: the bare challenge again.
    let r = post(&url, initialize(), &[("authorization", "Bearer ")]).await;
    assert_unauthorized(&r, "an empty bearer token");
    // Other methods on /mcp as well.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = send(method.clone(), &url, None, &[]).await;
        assert_unauthorized(&r, &format!("{method} without a token"));
    }
    let healthz = reqwest::get(format!("{}/healthz", hub.base)).await.unwrap();
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);

    // ?token= works for a client that cannot set headers.
    let client = http_client(&format!("{url}?token={ALICE}")).await;
    let listed = meta(&client, "list", json!({})).await;
    let ops = tool_names(&listed, "operations");
    assert!(
        ops.contains(&"fx.echo".to_owned()) && ops.iter().all(|o| o.starts_with("fx.")),
        "{listed}"
    );
    client.cancel().await.unwrap();

    // A session opened by alice is alice's.
    let session = raw_session(&url, ALICE).await;
    let r = on_session(
        &url,
        &session,
        ALICE,
        2,
        "tools/call",
        echo_call("from-alice"),
    )
    .await;
    let a = r.answer(2);
    assert_eq!(
        a["result"]["structuredContent"]["results"][0]["result"]["content"][0]["text"],
        "from-alice",
        "{a}"
    );
    // Bob's token on it: refused, on the fast path's method and on others.
    let r = on_session(&url, &session, BOB, 3, "tools/call", echo_call("from-bob")).await;
    assert_refused(&r, 3, "bob calling on alice's session");
    assert!(!r.body.contains("from-bob"), "{}", r.body);
    let r = on_session(&url, &session, BOB, 4, "tools/list", json!({})).await;
    assert_refused(&r, 4, "bob listing on alice's session");
    let r = on_session(&url, &session, BOB, 5, "resources/list", json!({})).await;
    assert_refused(&r, 5, "bob listing resources on alice's session");
    // No token on it: 401.
    let r = post(
        &url,
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {}}),
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_unauthorized(&r, "alice's session without a token");
    // Alice carries on.
    let r = on_session(
        &url,
        &session,
        ALICE,
        7,
        "tools/call",
        echo_call("alice-again"),
    )
    .await;
    assert!(r.body.contains("alice-again"), "{}", r.body);
    // Bob's own session works.
    let bobs = raw_session(&url, BOB).await;
    let r = on_session(&url, &bobs, BOB, 8, "tools/call", echo_call("bobs-own")).await;
    assert!(r.body.contains("bobs-own"), "{}", r.body);
    // ...and alice cannot use it either.
    let r = on_session(
        &url,
        &bobs,
        ALICE,
        9,
        "tools/call",
        echo_call("alice-on-bobs"),
    )
    .await;
    assert_refused(&r, 9, "alice calling on bob's session");

    assert!(!hub.log.text().contains("panicked"), "{}", hub.log.text());
    assert!(hub.stop().await.success());
}

/// The caller that opens a session owns it from its `initialize` on: another identity cannot
/// take it over by being the first to use it.
#[tokio::test]
async fn a_session_belongs_to_whoever_initialized_it() {
    let ws = Workspace::new();
    let hub = Hub::serve(&two_actor_config(&ws)).await;
    hub.wait_all_ready(READY).await;
    let url = hub.url.clone();

    // alice initializes; before alice sends anything else, bob uses the session.
    let r = post(&url, initialize(), &[("authorization", &bearer(ALICE))]).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    let session = r.header("mcp-session-id").expect("a session id").to_owned();
    let bob = bearer(BOB);
    let n = post(
        &url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &[
            ("authorization", &bob),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    let by_bob = on_session(
        &url,
        &session,
        BOB,
        2,
        "tools/call",
        echo_call("bob-took-it"),
    )
    .await;
    let by_alice = on_session(
        &url,
        &session,
        ALICE,
        3,
        "tools/call",
        echo_call("alice-owns-it"),
    )
    .await;
    let exchange = format!(
        "bob's notifications/initialized: {}\nbob's tools/call: {} {}\nalice's tools/call: {} {}",
        n.status, by_bob.status, by_bob.body, by_alice.status, by_alice.body
    );
    assert_refused(&by_bob, 2, &exchange);
    assert!(
        by_alice.body.contains("alice-owns-it"),
        "alice lost her session:\n{exchange}"
    );
    assert!(hub.stop().await.success());
}

/// Runs `patchbay stdio --config CONFIG ARGS` with stdin closed and `PATCHBAY_TOKEN` as
/// given (or unset).
async fn stdio_once(config: &Path, extra: &[&str], env_token: Option<&str>) -> Finished {
    let mut cmd = Command::new(patchbay());
    cmd.arg("stdio")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("PATCHBAY_TOKEN");
    if let Some(t) = env_token {
        cmd.env("PATCHBAY_TOKEN", t);
    }
    run_to_end(cmd, Duration::from_secs(30)).await
}

#[tokio::test]
async fn stdio_refuses_a_missing_or_wrong_token() {
    let ws = Workspace::new();
    let config = two_actor_config(&ws);

    let missing = stdio_once(&config, &[], None).await;
    assert_ne!(missing.code, Some(0), "{missing:?}");
    assert!(missing.code.is_some(), "exited, not killed: {missing:?}");
    assert!(
        missing.stderr.contains("requires authentication")
            && missing.stderr.contains("--token")
            && missing.stderr.contains("PATCHBAY_TOKEN"),
        "{missing:?}"
    );
    assert!(
        missing.stdout.is_empty(),
        "nothing on the protocol stream: {missing:?}"
    );

    let wrong = "wrong-token-0123456789abcdef";
    for (what, finished) in [
        (
            "--token",
            stdio_once(&config, &["--token", wrong], None).await,
        ),
        (
            "PATCHBAY_TOKEN",
            stdio_once(&config, &[], Some(wrong)).await,
        ),
    ] {
        assert_ne!(finished.code, Some(0), "{what}: {finished:?}");
        assert!(finished.code.is_some(), "{what}: {finished:?}");
        assert!(finished.stderr.contains("refused"), "{what}: {finished:?}");
        assert!(
            !finished.stderr.contains(wrong),
            "{what}: the token is not echoed: {finished:?}"
        );
        assert!(finished.stdout.is_empty(), "{what}: {finished:?}");
    }

    // The right token, either way, serves until stdin closes.
    for (extra, env) in [(&["--token", ALICE][..], None), (&[][..], Some(ALICE))] {
        let ok = stdio_once(&config, extra, env).await;
        assert_eq!(ok.code, Some(0), "{ok:?}");
    }
}

// ---- Rate and concurrency limits ----

#[tokio::test]
async fn rate_and_concurrency_limits_are_per_actor() {
    const LIMITED: &str = "limited-token-0123456789abcdef";
    const SINGLE: &str = "single-token-0123456789abcdef";
    const FREE: &str = "free-token-0123456789abcdef";
    let ws = Workspace::new();
    let mut toml = fixture_upstream("fx", &[], "");
    toml += "[auth]\n";
    for (actor, token) in [("limited", LIMITED), ("single", SINGLE), ("free", FREE)] {
        toml += &format!("[[auth.tokens]]\nactor = {actor:?}\ntoken = {token:?}\n\n");
    }
    toml += "[[policy]]\nallow = [\"fx.*\"]\n\n\
             [[policy]]\nactors = [\"limited\"]\nrate = 1.0\nburst = 2\n\n\
             [[policy]]\nactors = [\"single\"]\nmax_concurrent = 1\n";
    let hub = Hub::serve(&ws.write("patchbay.toml", &toml)).await;
    hub.wait_all_ready(READY).await;
    let limited = http_as(&hub.url, LIMITED).await;
    let free = http_as(&hub.url, FREE).await;
    let echo = |text: &str| vec![json!({"tool": "fx.echo", "input": {"text": text}})];

    // Four calls at once-ish: the burst of two passes, the rest wait for the bucket.
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..4 {
        outcomes.push(
            batch(&limited, echo(&format!("limited-{i}")))
                .await
                .remove(0),
        );
    }
    let took = started.elapsed();
    assert_eq!(outcomes[0]["success"], true, "{:?}", outcomes);
    assert_eq!(outcomes[1]["success"], true, "{:?}", outcomes);
    let limited_items: Vec<&Value> = outcomes[2..]
        .iter()
        .filter(|o| o["error"]["code"] == "rate_limited")
        .collect();
    assert!(
        limited_items.len() == 2
            || (took > Duration::from_millis(500) && !limited_items.is_empty()),
        "calls 3 and 4 within {took:?}: {outcomes:?}"
    );
    let mut retry_after = 0;
    for item in &limited_items {
        let ms = item["error"]["data"]["retryAfterMs"]
            .as_u64()
            .unwrap_or_else(|| panic!("no retryAfterMs: {item}"));
        assert!((1..=1000).contains(&ms), "{item}");
        assert!(
            item["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rate limited"),
            "{item}"
        );
        retry_after = retry_after.max(ms);
    }
    // Meanwhile another actor is not affected.
    for i in 0..6 {
        let item = batch(&free, echo(&format!("free-{i}"))).await.remove(0);
        assert_eq!(item["success"], true, "{item}");
    }
    // The limit is the actor's, not the session's: a new session of it is limited too.
    let again = http_as(&hub.url, LIMITED).await;
    let item = batch(&again, echo("limited-new-session")).await.remove(0);
    assert_eq!(item["error"]["code"], "rate_limited", "{item}");
    // After the hint, it may call again.
    tokio::time::sleep(Duration::from_millis(retry_after + 100)).await;
    let item = batch(&limited, echo("limited-later")).await.remove(0);
    assert_eq!(item["success"], true, "after {retry_after} ms: {item}");

    // At most one call at once: a second one while a sleep is in flight fails at once, from
    // any of the actor's sessions; another actor's calls go on.
    let single = http_as(&hub.url, SINGLE).await;
    let single2 = http_as(&hub.url, SINGLE).await;
    let sleeping = {
        let peer = single.peer().clone();
        tokio::spawn(async move {
            batch(
                &peer,
                vec![json!({"tool": "fx.sleep", "input": {"ms": 1500}})],
            )
            .await
            .remove(0)
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    for (what, peer) in [("same session", &single), ("another session", &single2)] {
        let asked = Instant::now();
        let item = batch(peer, echo("single-second")).await.remove(0);
        assert_eq!(item["error"]["code"], "rate_limited", "{what}: {item}");
        assert!(
            item["error"]["data"]["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms > 0),
            "{what}: {item}"
        );
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{what}: it waited"
        );
    }
    let item = batch(&free, echo("free-meanwhile")).await.remove(0);
    assert_eq!(item["success"], true, "{item}");
    let slept = sleeping.await.unwrap();
    assert_eq!(slept["success"], true, "{slept}");
    let item = batch(&single2, echo("single-after")).await.remove(0);
    assert_eq!(item["success"], true, "the slot is free again: {item}");

    for c in [limited, again, free, single, single2] {
        c.cancel().await.unwrap();
    }
    assert!(hub.stop().await.success());
}

// ---- Serving beyond loopback ----

#[tokio::test]
async fn a_non_loopback_address_needs_auth_or_insecure_no_auth() {
    let ws = Workspace::new();
    let open = ws.write("open.toml", "");

    // No [auth]: refused, saying how to go on.
    let mut cmd = Command::new(patchbay());
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(&open)
        .env("RUST_LOG", "warn");
    let refused = run_to_end(cmd, Duration::from_secs(30)).await;
    assert!(
        refused.code.is_some_and(|c| c != 0),
        "serving 0.0.0.0 without auth: {refused:?}"
    );
    assert!(refused.stderr.contains("--insecure-no-auth"), "{refused:?}");
    assert!(!refused.stdout.contains("listening"), "{refused:?}");

    // With --insecure-no-auth it serves, and says loudly that it does.
    let (line, stderr) = serve_until_listening(&open, &["--insecure-no-auth"]).await;
    assert!(line.starts_with("listening http://0.0.0.0:"), "{line}");
    assert!(
        stderr.contains("WARNING") && stderr.contains("NO AUTHENTICATION"),
        "{stderr}"
    );

    // With [auth] it needs no flag, and warns of nothing.
    let (line, stderr) = serve_until_listening(&two_actor_config(&ws), &[]).await;
    assert!(line.starts_with("listening http://0.0.0.0:"), "{line}");
    assert!(!stderr.contains("NO AUTHENTICATION"), "{stderr}");
}

/// Starts `patchbay serve --listen 0.0.0.0:0 --config CONFIG ARGS`, checks `/healthz` over
/// loopback, stops it with SIGTERM, and returns its first stdout line and its stderr.
async fn serve_until_listening(config: &Path, extra: &[&str]) -> (String, String) {
    let mut cmd = Command::new(patchbay());
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn");
    let (mut child, line, log) = start_listening(cmd).await;
    let port = line
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let healthz = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}; stderr:\n{}", log.text());
    tokio::time::sleep(Duration::from_millis(50)).await;
    (line, log.text())
}
