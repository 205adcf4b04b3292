//! Interop with real MCP clients: the official Python SDK (PyPI `mcp`), the official TypeScript
//! SDK (npm `@modelcontextprotocol/sdk`) and the MCP Inspector CLI (npm
//! `@modelcontextprotocol/inspector`, `--cli`), each over stdio (the client spawns
//! `patchbay stdio`) and over Streamable HTTP (against `patchbay serve`). The client programs
//! are in tests/interop; `scripts/test-deps` installs the clients, pinned, into .tools.
//!
//! The hub fronts the conformance fixture (`conf`) and the fixture (`demo`). Every client does
//! the same steps — connect (initialize), tools/list, `list` (until both upstreams are ready),
//! `search` "echo", `schema` demo.echo, `call` demo.echo, resources/read test://static-text,
//! prompts/get conf.test_simple_prompt — and yields one JSON summary (see tests/interop/README.md)
//! that [`check`] asserts on, naming the client, the transport and the failing step.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::Duration,
};

use patchbay_e2e::*;
use serde_json::{Value, json};
use tokio::process::Command;

const ECHO: &str = "demo.echo";
const RESOURCE: &str = "test://static-text";
const RESOURCE_TEXT: &str = "This is the content of the static text resource.";
const PROMPT: &str = "conf.test_simple_prompt";
const PROMPT_TEXT: &str = "This is a simple prompt for testing.";
/// The newest protocol version of the handshake (`initialize`) era.
const HANDSHAKE: &str = "2025-11-25";
/// The first protocol version of the modern (`server/discover`, stateless) era.
const MODERN: &str = "2026-07-28";
const CLIENT_LIMIT: Duration = Duration::from_secs(90);

/// Steps known to fail on modern-era (2026-07-28) runs, with the message they fail with: none
/// now. (resources/read and prompts/get results relayed from an older upstream used to lack
/// the `resultType` that revision requires; the hub now adds it.) A listed step that passes
/// fails the test, so the list cannot go stale.
const MODERN_MISSING_RESULT_TYPE: &[&str] = &[];

/// PATCHBAY ISSUE, reported: `patchbay stdio` answers from its first moment, before its
/// upstreams are ready, so a request right after connecting finds no operations (`search`
/// returns `{"results":[]}`, `call` fails with `not_found`, prompts are unknown). The SDK clients
/// wait with `list`; the Inspector CLI starts a fresh hub for every method, so over stdio each of
/// its runs that shows that symptom is repeated, up to this many runs in all.
const INSPECTOR_STDIO_RUNS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Stdio,
    Http,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
        }
    }
}

/// A hub configuration in a scratch directory. Every process of a test (the hub, its
/// upstreams) mentions the directory in its command line or environment, so a test can assert
/// that none is left behind, and dropping the setup kills any that is.
struct Setup {
    ws: Workspace,
    config: PathBuf,
    marker: String,
}

impl Setup {
    fn new() -> Self {
        let ws = Workspace::new();
        let marker = format!("{}/", ws.dir.path().display());
        let upstream = |name: &str, program: PathBuf| {
            format!(
                "[upstreams.{name}]\ncommand = {:?}\nenv = {{ PATCHBAY_INTEROP_MARK = {marker:?} }}\n",
                program.display().to_string()
            )
        };
        let config = ws.write(
            "patchbay.toml",
            &(upstream("conf", bin("patchbay-conformance-fixture")) + &upstream("demo", fixture())),
        );
        Self { ws, config, marker }
    }

    async fn assert_nothing_left(&self, context: &str) {
        let gone = eventually(Duration::from_secs(10), || {
            processes_mentioning(&self.marker).is_empty()
        })
        .await;
        assert!(
            gone,
            "{context}: processes left behind: {:?}",
            processes_mentioning(&self.marker)
        );
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for (pid, _) in processes_mentioning(&self.marker) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// What a run must show.
struct Expect<'a> {
    client: &'a str,
    transport: Transport,
    protocol: &'a str,
    /// Steps that must fail, with a message containing the `.1` text (known hub bugs).
    known_failures: (&'a [&'a str], &'a str),
}

impl Expect<'_> {
    fn known(&self, step: &str) -> bool {
        self.known_failures.0.contains(&step)
    }
}

/// Asserts a client's summary: every step passed (or failed as a known hub bug says) and
/// returned the real values.
fn check(summary: &Value, diagnostics: &str, e: &Expect) {
    let who = format!("{} over {}", e.client, e.transport.name());
    let ctx = || format!("{who}\nsummary: {summary:#}\n{diagnostics}");
    let errors = summary["errors"].as_object().cloned().unwrap_or_default();
    let unexpected: Vec<_> = errors
        .iter()
        .filter(|(step, msg)| {
            !(e.known(step) && msg.as_str().unwrap_or("").contains(e.known_failures.1))
        })
        .map(|(step, msg)| format!("step {step} failed: {}", msg.as_str().unwrap_or("")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{who}: {}\n{}",
        unexpected.join("\n"),
        ctx()
    );
    for step in e.known_failures.0 {
        assert!(
            errors.contains_key(*step),
            "{who}: step {step} now passes; the known hub bug it stood for is fixed, so remove \
             it from the test's known failures\n{}",
            ctx()
        );
    }

    let eq = |step: &str, key: &str, want: Value| {
        if !e.known(step) {
            assert_eq!(summary[key], want, "{who}: step {step}, {key}\n{}", ctx());
        }
    };
    eq("initialize", "server_name", json!("patchbay"));
    eq("initialize", "protocol_version", json!(e.protocol));
    eq(
        "tools/list",
        "tools",
        json!(["call", "list", "schema", "search"]),
    );
    eq(
        "list",
        "namespaces",
        json!({"conf": "ready", "demo": "ready"}),
    );
    let found = summary["search"].as_array().cloned().unwrap_or_default();
    assert!(
        found.contains(&json!(ECHO)),
        "{who}: step search: {ECHO} not found\n{}",
        ctx()
    );
    eq("schema", "schema_tool", json!(ECHO));
    eq("schema", "schema_required", json!(["text"]));
    eq(
        "call",
        "echo",
        json!(format!(
            "hello from {} over {}",
            e.client,
            e.transport.name()
        )),
    );
    eq("resources/read", "resource", json!([RESOURCE_TEXT]));
    eq("prompts/get", "prompt", json!([PROMPT_TEXT]));
}

/// The summary an SDK client program prints as its last stdout line.
fn summary_of(out: &Finished, diagnostics: &str) -> Value {
    out.stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "the client printed no JSON summary (exit {:?})\nstdout:\n{}\n{diagnostics}",
                out.code, out.stdout
            )
        })
}

/// Runs an SDK client program (`program`: interpreter, script and options) against a new hub
/// over `expect.transport`, checks its summary and that no process is left behind.
async fn run_sdk(program: &[OsString], expect: Expect<'_>) {
    let transport = expect.transport;
    let setup = Setup::new();
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..]);
    let who = format!("{} over {}", expect.client, transport.name());
    let (out, hub_log) = match transport {
        Transport::Stdio => {
            cmd.arg("stdio").arg(patchbay()).arg(&setup.config);
            (run_to_end(cmd, CLIENT_LIMIT).await, String::new())
        }
        Transport::Http => {
            let hub = Hub::serve(&setup.config).await;
            hub.wait_all_ready(Duration::from_secs(20)).await;
            cmd.arg("http").arg(&hub.url);
            let out = run_to_end(cmd, CLIENT_LIMIT).await;
            let log = hub.log.text();
            hub.stop().await;
            (out, log)
        }
    };
    let diagnostics = format!(
        "client exit {:?} after {:?}\nclient stderr (with the stdio hub's log):\n{}\nhub log:\n{hub_log}",
        out.code, out.took, out.stderr
    );
    let summary = summary_of(&out, &diagnostics);
    check(&summary, &diagnostics, &expect);
    let clean = summary["errors"].as_object().is_none_or(|e| e.is_empty());
    assert_eq!(
        out.code,
        Some(if clean { 0 } else { 1 }),
        "{who}: exit code\n{diagnostics}"
    );
    setup.assert_nothing_left(&who).await;
    eprintln!("{who}: passed in {:?}", out.took);
}

// ---- The Python SDK ----

fn python_sdk(mode: &str) -> Vec<OsString> {
    vec![
        test_dep(".tools/venv/bin/python").into(),
        repo_root().join("tests/interop/python_client.py").into(),
        "--mode".into(),
        mode.into(),
    ]
}

/// `mcp.Client(mode="legacy")`: the `initialize` handshake.
#[tokio::test]
async fn python_sdk_stdio() {
    let expect = Expect {
        client: "python-sdk",
        transport: Transport::Stdio,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_sdk(&python_sdk("legacy"), expect).await;
}

#[tokio::test]
async fn python_sdk_http() {
    let expect = Expect {
        client: "python-sdk",
        transport: Transport::Http,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_sdk(&python_sdk("legacy"), expect).await;
}

/// `mcp.Client()` as applications use it (mode "auto"): probes `server/discover` and, since
/// Patchbay offers it, speaks 2026-07-28.
#[tokio::test]
async fn python_sdk_stdio_2026_07_28() {
    let expect = Expect {
        client: "python-sdk",
        transport: Transport::Stdio,
        protocol: MODERN,
        known_failures: (MODERN_MISSING_RESULT_TYPE, "resultType"),
    };
    run_sdk(&python_sdk("auto"), expect).await;
}

#[tokio::test]
async fn python_sdk_http_2026_07_28() {
    let expect = Expect {
        client: "python-sdk",
        transport: Transport::Http,
        protocol: MODERN,
        known_failures: (MODERN_MISSING_RESULT_TYPE, "resultType"),
    };
    run_sdk(&python_sdk("auto"), expect).await;
}

// ---- The TypeScript SDK ----

fn ts_sdk() -> Vec<OsString> {
    test_dep(".tools/npm/node_modules/@modelcontextprotocol/sdk/package.json");
    vec![
        node22().into(),
        repo_root().join("tests/interop/ts_client.mjs").into(),
    ]
}

#[tokio::test]
async fn ts_sdk_stdio() {
    let expect = Expect {
        client: "ts-sdk",
        transport: Transport::Stdio,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_sdk(&ts_sdk(), expect).await;
}

#[tokio::test]
async fn ts_sdk_http() {
    let expect = Expect {
        client: "ts-sdk",
        transport: Transport::Http,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_sdk(&ts_sdk(), expect).await;
}

// ---- The MCP Inspector CLI ----

/// The Inspector CLI, one process (and connection, and over stdio one hub) per method.
struct Inspector<'a> {
    transport: Transport,
    /// `--protocol-era`; ad-hoc runs default to `legacy`.
    era: Option<&'a str>,
    url: String,
    config: &'a Path,
    home: PathBuf,
    log: String,
}

impl Inspector<'_> {
    /// One `--cli --method METHOD ARGS --format json` run: the result object, or a message.
    async fn run(&mut self, method: &str, args: &[&str]) -> Result<Value, String> {
        let node = node22();
        let mut cmd = Command::new(&node);
        cmd.arg(test_dep(".tools/npm/node_modules/.bin/mcp-inspector"))
            .arg("--cli");
        if self.transport == Transport::Http {
            cmd.args(["--transport", "http", "--server-url", &self.url]);
        }
        if let Some(era) = self.era {
            cmd.args(["--protocol-era", era]);
        }
        cmd.args(["--method", method])
            .args(args)
            .args(["--format", "json"]);
        if self.transport == Transport::Stdio {
            cmd.arg("--")
                .arg(patchbay())
                .args(["stdio", "--config"])
                .arg(self.config);
        }
        // Keep its catalog, client config and secrets in the scratch directory.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![node.parent().unwrap().to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths).unwrap())
            .env("HOME", &self.home)
            .env("MCP_CATALOG_PATH", self.home.join("catalog.json"))
            .env("MCP_CLIENT_CONFIG_PATH", self.home.join("client.json"));
        let out = run_to_end(cmd, Duration::from_secs(60)).await;
        self.log.push_str(&format!(
            "--- {method} {args:?}: exit {:?} after {:?}\nstdout: {}\nstderr: {}\n",
            out.code, out.took, out.stdout, out.stderr
        ));
        let parsed: Option<Value> = serde_json::from_str(out.stdout.trim()).ok();
        match parsed {
            Some(v) if v.get("result").is_some() => Ok(v["result"].clone()),
            _ => Err(format!(
                "exit {:?}: {}{}",
                out.code,
                out.stdout.trim(),
                out.stderr
                    .lines()
                    .filter(|l| l.starts_with('{'))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
    }

    /// Runs a method and reads its values with `read`; over stdio repeats a run that shows the
    /// startup race (see [`INSPECTOR_STDIO_RUNS`]).
    async fn step(
        &mut self,
        summary: &mut Value,
        step: &str,
        method: &str,
        args: &[&str],
        read: impl Fn(&Value, &mut Value) -> Result<(), String>,
    ) {
        let runs = match self.transport {
            Transport::Stdio => INSPECTOR_STDIO_RUNS,
            Transport::Http => 1,
        };
        let mut last = String::new();
        for run in 1..=runs {
            let outcome = self.run(method, args).await.and_then(|r| read(&r, summary));
            match outcome {
                Ok(()) => return,
                Err(e) => last = e,
            }
            let race = [
                "starting",
                "not found",
                "not_found",
                "no prompt named",
                "no operation",
            ];
            if !race.iter().any(|s| last.to_lowercase().contains(s)) {
                break;
            }
            if run < runs {
                eprintln!("inspector over stdio: {step} hit the startup race, run {run}: {last}");
            }
        }
        summary["errors"][step] = json!(last);
    }
}

/// `structuredContent` of a tool result that is not an error.
fn structured(r: &Value) -> Result<&Value, String> {
    if r["isError"] == true {
        return Err(format!("isError: {r}"));
    }
    r.get("structuredContent")
        .filter(|s| s.is_object())
        .ok_or_else(|| format!("no structuredContent: {r}"))
}

fn texts(items: &Value, key: &str, text: impl Fn(&Value) -> &Value) -> Value {
    items[key]
        .as_array()
        .map(|a| a.iter().filter_map(|i| text(i).as_str()).collect())
        .unwrap_or_default()
}

async fn inspector_steps(i: &mut Inspector<'_>) -> Value {
    let client = "inspector-cli";
    let mut s = json!({"client": client, "transport": i.transport.name(), "errors": {}});
    i.step(&mut s, "initialize", "initialize", &[], |r, s| {
        s["protocol_version"] = r["protocolVersion"].clone();
        s["server_name"] = r["serverInfo"]["name"].clone();
        Ok(())
    })
    .await;
    i.step(&mut s, "tools/list", "tools/list", &[], |r, s| {
        let mut names: Vec<&str> = r["tools"]
            .as_array()
            .ok_or("no tools")?
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        names.sort();
        s["tools"] = json!(names);
        Ok(())
    })
    .await;
    i.step(
        &mut s,
        "list",
        "tools/call",
        &["--tool-name", "list"],
        |r, s| {
            let namespaces: serde_json::Map<String, Value> = structured(r)?["namespaces"]
                .as_array()
                .ok_or("no namespaces")?
                .iter()
                .map(|n| {
                    (
                        n["namespace"].as_str().unwrap_or("").to_owned(),
                        n["state"].clone(),
                    )
                })
                .collect();
            s["namespaces"] = json!(namespaces);
            match namespaces.values().any(|st| st == "starting") {
                true => Err(format!("upstreams starting: {namespaces:?}")),
                false => Ok(()),
            }
        },
    )
    .await;
    i.step(
        &mut s,
        "search",
        "tools/call",
        &["--tool-name", "search", "--tool-arg", "q=echo"],
        |r, s| {
            s["search"] = texts(structured(r)?, "results", |x| &x["tool"]);
            match s["search"].as_array().unwrap().contains(&json!(ECHO)) {
                true => Ok(()),
                false => Err(format!("{ECHO} not found (upstream not found yet?): {r}")),
            }
        },
    )
    .await;
    i.step(
        &mut s,
        "schema",
        "tools/call",
        &[
            "--tool-name",
            "schema",
            "--tool-arg",
            &format!("tool={ECHO}"),
        ],
        |r, s| {
            let schema = structured(r)?;
            s["schema_tool"] = schema["tool"].clone();
            s["schema_required"] = schema["inputSchema"]["required"].clone();
            Ok(())
        },
    )
    .await;
    let text = format!("hello from {client} over {}", i.transport.name());
    let calls = json!({"calls": [{"tool": ECHO, "input": {"text": text}}]}).to_string();
    i.step(
        &mut s,
        "call",
        "tools/call",
        &["--tool-name", "call", "--tool-args-json", &calls],
        |r, s| {
            let item = &r["structuredContent"]["results"][0];
            if item["success"] != true {
                return Err(format!("call of {ECHO} failed: {r}"));
            }
            s["echo"] = item["result"]["structuredContent"]["text"].clone();
            Ok(())
        },
    )
    .await;
    i.step(
        &mut s,
        "resources/read",
        "resources/read",
        &["--uri", RESOURCE],
        |r, s| {
            s["resource"] = texts(r, "contents", |c| &c["text"]);
            Ok(())
        },
    )
    .await;
    i.step(
        &mut s,
        "prompts/get",
        "prompts/get",
        &["--prompt-name", PROMPT],
        |r, s| {
            s["prompt"] = texts(r, "messages", |m| &m["content"]["text"]);
            Ok(())
        },
    )
    .await;
    s
}

/// Runs the Inspector's steps against a new hub over `expect.transport`, checks the summary and
/// that no process is left behind.
async fn run_inspector(era: Option<&str>, expect: Expect<'_>) {
    let transport = expect.transport;
    let setup = Setup::new();
    let home = setup.ws.path("inspector-home");
    std::fs::create_dir_all(&home).unwrap();
    let hub = match transport {
        Transport::Http => {
            let hub = Hub::serve(&setup.config).await;
            hub.wait_all_ready(Duration::from_secs(20)).await;
            Some(hub)
        }
        Transport::Stdio => None,
    };
    let mut inspector = Inspector {
        transport,
        era,
        url: hub.as_ref().map(|h| h.url.clone()).unwrap_or_default(),
        config: &setup.config,
        home,
        log: String::new(),
    };
    let started = std::time::Instant::now();
    let summary = inspector_steps(&mut inspector).await;
    let took = started.elapsed();
    let mut diagnostics = format!("inspector runs:\n{}", inspector.log);
    if let Some(hub) = hub {
        diagnostics.push_str(&format!("hub log:\n{}", hub.log.text()));
        hub.stop().await;
    }
    check(&summary, &diagnostics, &expect);
    let who = format!("{} over {}", expect.client, transport.name());
    setup.assert_nothing_left(&who).await;
    eprintln!("{who}: passed in {took:?}");
}

#[tokio::test]
async fn inspector_cli_stdio() {
    let expect = Expect {
        client: "inspector-cli",
        transport: Transport::Stdio,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_inspector(None, expect).await;
}

#[tokio::test]
async fn inspector_cli_http() {
    let expect = Expect {
        client: "inspector-cli",
        transport: Transport::Http,
        protocol: HANDSHAKE,
        known_failures: (&[], ""),
    };
    run_inspector(None, expect).await;
}

/// `--protocol-era modern`: 2026-07-28 without the handshake.
#[tokio::test]
async fn inspector_cli_stdio_2026_07_28() {
    let expect = Expect {
        client: "inspector-cli",
        transport: Transport::Stdio,
        protocol: MODERN,
        known_failures: (MODERN_MISSING_RESULT_TYPE, "resultType"),
    };
    run_inspector(Some("modern"), expect).await;
}

#[tokio::test]
async fn inspector_cli_http_2026_07_28() {
    let expect = Expect {
        client: "inspector-cli",
        transport: Transport::Http,
        protocol: MODERN,
        known_failures: (MODERN_MISSING_RESULT_TYPE, "resultType"),
    };
    run_inspector(Some("modern"), expect).await;
}
