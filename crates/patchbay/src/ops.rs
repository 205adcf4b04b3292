//! `patchbay ops`: the four tools from a terminal, against the configuration (start the
//! upstreams, answer, stop them) or against a running hub (`--url`).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use patchbay_core::{AllowAll, CallNode};
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, CallToolResult, ContentBlock, JsonObject},
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{ConfigArg, hub::Hub, load_config};

#[derive(Args)]
pub struct OpsArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Ask a running hub at this MCP URL (e.g. http://127.0.0.1:7420/mcp) instead of starting
    /// the configured upstreams.
    #[arg(long, value_name = "URL", global = true)]
    url: Option<String>,
    /// Print the tool's structured JSON instead of a human-readable view.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand)]
enum Op {
    /// List operations (name, namespace, summary).
    List {
        /// Only this namespace's operations (an upstream's table name, e.g. `github`).
        #[arg(long)]
        namespace: Option<String>,
        /// Continue where a previous page ended (its `… more: --cursor C` line, or `nextCursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Operations per page (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Rank operations by how well they match QUERY.
    Search {
        /// Words describing what you want to do; none browses (with --namespace, that namespace).
        query: Vec<String>,
        /// Only this namespace's operations.
        #[arg(long)]
        namespace: Option<String>,
        /// At most this many results (default 20, at most 100).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show an operation's input schema.
    Schema {
        /// The operation's name, `namespace.tool` (e.g. `demo.echo`).
        tool: String,
    },
    /// Call an operation with INPUT (a JSON object; default `{}`).
    Call {
        /// The operation's name, `namespace.tool` (e.g. `demo.echo`).
        tool: String,
        /// The operation's input as a JSON object, e.g. '{"text": "hi"}'.
        input: Option<String>,
    },
}

impl Op {
    fn meta_call(&self) -> anyhow::Result<(&'static str, JsonObject)> {
        let mut args = JsonObject::new();
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                args.insert(k.to_owned(), v);
            }
        };
        let name = match self {
            Op::List {
                namespace,
                cursor,
                limit,
            } => {
                put("namespace", json!(namespace));
                put("cursor", json!(cursor));
                put("limit", json!(limit));
                "list"
            }
            Op::Search {
                query,
                namespace,
                limit,
            } => {
                put("q", json!(query.join(" ")));
                put("namespace", json!(namespace));
                put("limit", json!(limit));
                "search"
            }
            Op::Schema { tool } => {
                put("tool", json!(tool));
                "schema"
            }
            Op::Call { tool, input } => {
                let input: Value = match input {
                    Some(text) => {
                        serde_json::from_str(text).context("INPUT must be a JSON object")?
                    }
                    None => json!({}),
                };
                if !input.is_object() {
                    bail!("INPUT must be a JSON object, like '{{\"text\": \"hi\"}}'");
                }
                put("calls", json!([{ "tool": tool, "input": input }]));
                "call"
            }
        };
        Ok((name, args))
    }
}

pub async fn run(args: OpsArgs) -> anyhow::Result<i32> {
    let (tool, input) = args.op.meta_call()?;
    let result = match &args.url {
        Some(url) => remote(url, tool, input).await?,
        None => local(&args.config, tool, input).await?,
    };
    let structured = result.structured_content.clone().unwrap_or(Value::Null);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&structured)?);
    } else {
        print_human(tool, &structured, &result);
    }
    let failed = result.is_error == Some(true) || (tool == "call" && call_failed(&structured));
    Ok(if failed { 1 } else { 0 })
}

/// Whether a `call` result holds a failed call, including one whose tool reported an error
/// (`isError`), which the batch counts as a successful call but a shell script should not.
fn call_failed(structured: &Value) -> bool {
    structured["results"].as_array().is_some_and(|results| {
        results
            .iter()
            .any(|r| r["success"] != true || r["result"]["isError"] == true)
    })
}

async fn local(
    config: &ConfigArg,
    tool: &str,
    input: JsonObject,
) -> anyhow::Result<CallToolResult> {
    let config = load_config(config)?;
    let hub = Hub::start_settled(&config).await?;
    let d = &hub.state.dispatcher;
    let args = Some(input);
    let result = match tool {
        "list" => patchbay_server::surface::list(d, &AllowAll, args),
        "search" => patchbay_server::surface::search(d, &AllowAll, args),
        "schema" => patchbay_server::surface::schema_of(d, &AllowAll, args),
        _ => {
            let root = CallNode::root(CancellationToken::new());
            patchbay_server::surface::call(d, &AllowAll, args, &root, Default::default()).await
        }
    };
    hub.stop().await;
    Ok(result)
}

async fn remote(url: &str, tool: &str, input: JsonObject) -> anyhow::Result<CallToolResult> {
    let transport = StreamableHttpClientTransport::from_uri(url);
    let client = ().serve(transport).await.with_context(|| format!("cannot connect to {url}"))?;
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = Some(input);
    let result = client
        .call_tool(params)
        .await
        .with_context(|| format!("`{tool}` failed at {url}"));
    let _ = client.cancel().await;
    result
}

fn print_human(tool: &str, v: &Value, result: &CallToolResult) {
    if let Some(err) = v.get("error") {
        println!(
            "error {}: {}",
            err["code"].as_str().unwrap_or("?"),
            err["message"].as_str().unwrap_or("")
        );
        return;
    }
    match tool {
        "list" => {
            let ops = v["operations"].as_array().cloned().unwrap_or_default();
            let width = ops
                .iter()
                .filter_map(|o| o["tool"].as_str())
                .map(str::len)
                .max()
                .unwrap_or(4)
                .max(4);
            println!("{:<width$}  DESCRIPTION", "TOOL");
            for o in &ops {
                println!(
                    "{:<width$}  {}",
                    o["tool"].as_str().unwrap_or(""),
                    o["description"].as_str().unwrap_or("")
                );
            }
            for ns in v["namespaces"].as_array().into_iter().flatten() {
                if ns["state"] != "ready" {
                    println!(
                        "({}: {}{})",
                        ns["namespace"].as_str().unwrap_or(""),
                        ns["state"].as_str().unwrap_or(""),
                        ns["detail"]
                            .as_str()
                            .map(|d| format!(" — {d}"))
                            .unwrap_or_default()
                    );
                }
            }
            if let Some(c) = v["nextCursor"].as_str() {
                println!("… more: --cursor {c}");
            }
        }
        "search" => {
            for r in v["results"].as_array().into_iter().flatten() {
                println!(
                    "{:>7.3}  {}  {}",
                    r["score"].as_f64().unwrap_or(0.0),
                    r["tool"].as_str().unwrap_or(""),
                    r["description"].as_str().unwrap_or("")
                );
            }
        }
        "schema" => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        _ => {
            for block in &result.content {
                match block {
                    ContentBlock::Text(t) => println!("{}", t.text),
                    ContentBlock::Image(i) => {
                        println!("(image, {}, {} base64 bytes)", i.mime_type, i.data.len())
                    }
                    ContentBlock::Audio(a) => {
                        println!("(audio, {}, {} base64 bytes)", a.mime_type, a.data.len())
                    }
                    ContentBlock::ResourceLink(r) => println!("(resource link {})", r.uri),
                    ContentBlock::Resource(_) => println!("(embedded resource)"),
                    _ => println!("(content)"),
                }
            }
        }
    }
}
