//! The hub surface: the four meta tools (`list`, `search`, `schema`, `call`) and the `direct`
//! view of operations as plain MCP tools. Arguments in, JSON out; no transport here.

use std::sync::{Arc, Mutex};

use patchbay_core::{
    CallError, CallNode, CallOutcome, CallRequest, Caller, Dispatcher, ErrorCode, NamespaceStatus,
    Operation, Policy, Progress, ProgressSink,
};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

/// Which tools a listener shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expose {
    /// The four meta tools only (the default).
    #[default]
    Meta,
    /// Every operation as its own MCP tool, like a classic gateway.
    Direct,
    /// The four meta tools and every operation.
    Both,
}

pub const META_TOOLS: [&str; 4] = ["list", "search", "schema", "call"];
/// Default and largest `limit` of `list`.
pub const LIST_LIMIT: (usize, usize) = (100, 1000);
/// Default and largest `limit` of `search`.
pub const SEARCH_LIMIT: (usize, usize) = (20, 100);
/// Most calls in one `call` batch.
pub const MAX_BATCH: usize = 64;
/// Summaries keep descriptions short; `schema` has the full text.
const SUMMARY_CHARS: usize = 240;

fn schema(value: Value) -> Arc<JsonObject> {
    Arc::new(value.as_object().cloned().unwrap_or_default())
}

/// The four meta tools' definitions. Kept terse: they sit in every model's context.
pub fn meta_tools() -> Vec<Tool> {
    let read_only = ToolAnnotations::new().read_only(true);
    vec![
        Tool::new(
            "list",
            "List available operations (names and summaries). Page with nextCursor.",
            schema(json!({
                "type": "object",
                "properties": {
                    "namespace": {"type": "string", "description": "Only this namespace"},
                    "cursor": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT.1}
                }
            })),
        )
        .annotate(read_only.clone()),
        Tool::new(
            "search",
            "Find operations by what they do. Then use schema and call.",
            schema(json!({
                "type": "object",
                "properties": {
                    "q": {"type": "string", "description": "What you want to do"},
                    "namespace": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT.1}
                }
            })),
        )
        .annotate(read_only.clone()),
        Tool::new(
            "schema",
            "Get an operation's input schema.",
            schema(json!({
                "type": "object",
                "properties": {"tool": {"type": "string", "description": "Operation name"}},
                "required": ["tool"]
            })),
        )
        .annotate(read_only),
        Tool::new(
            "call",
            "Run operations: one result per call, in order.",
            schema(json!({
                "type": "object",
                "properties": {
                    "calls": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_BATCH,
                        "items": {
                            "type": "object",
                            "properties": {
                                "tool": {"type": "string"},
                                "input": {"type": "object"}
                            },
                            "required": ["tool"]
                        }
                    }
                },
                "required": ["calls"]
            })),
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    namespace: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    #[serde(default)]
    q: String,
    namespace: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaArgs {
    tool: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallArgs {
    calls: Vec<CallItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallItem {
    tool: String,
    input: Option<Value>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    tool: &str,
    args: Option<JsonObject>,
) -> Result<T, CallError> {
    serde_json::from_value(Value::Object(args.unwrap_or_default())).map_err(|e| {
        CallError::new(
            ErrorCode::InvalidInput,
            format!("bad arguments for `{tool}`: {e}"),
        )
    })
}

fn summary(description: &str) -> String {
    let text = description.trim();
    if text.chars().count() <= SUMMARY_CHARS {
        return text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let cut: String = text.chars().take(SUMMARY_CHARS).collect();
    let cut = cut.rsplit_once(' ').map(|(head, _)| head).unwrap_or(&cut);
    format!("{}…", cut.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A namespace's status as a caller sees it: `visible` is how many of its operations that
/// caller may use (never the upstream's total, which would tell of hidden operations).
fn status_json(s: &NamespaceStatus, visible: usize) -> Value {
    let mut v = json!({"namespace": s.namespace, "state": s.state, "operations": visible});
    if let Some(d) = &s.detail {
        v["detail"] = json!(d);
    }
    v
}

/// A meta tool's answer: structured JSON, mirrored as text for models that only read text.
fn answer(value: Value) -> CallToolResult {
    let text = serde_json::to_string(&value).unwrap_or_default();
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(value);
    r
}

/// A hub error as a tool result (`isError: true`), readable by a model and by code.
pub fn error_result(error: &CallError) -> CallToolResult {
    let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
        "{}: {}",
        error.code, error.message
    ))]);
    r.structured_content = Some(json!({ "error": error }));
    r
}

pub fn list(
    dispatcher: &Dispatcher,
    policy: &dyn Policy,
    args: Option<JsonObject>,
) -> CallToolResult {
    let args: ListArgs = match parse("list", args) {
        Ok(a) => a,
        Err(e) => return error_result(&e),
    };
    let limit = args.limit.unwrap_or(LIST_LIMIT.0).clamp(1, LIST_LIMIT.1);
    let registry = dispatcher.registry();
    let ops = registry.list(args.namespace.as_deref(), policy);
    let start = match &args.cursor {
        Some(after) => ops.partition_point(|op| op.name.as_str() <= after.as_str()),
        None => 0,
    };
    let page = &ops[start.min(ops.len())..(start + limit).min(ops.len())];
    let mut out = json!({
        "operations": page.iter().map(|op| json!({
            "tool": op.name, "namespace": op.namespace, "description": summary(op.description()),
        })).collect::<Vec<_>>(),
    });
    if start + limit < ops.len()
        && let Some(last) = page.last()
    {
        out["nextCursor"] = json!(last.name);
    }
    // Namespaces whose upstream is not ready are shown, so an agent knows why something is missing.
    // Namespaces with nothing visible to this caller are left out, so nothing leaks.
    let mut with_ops: std::collections::HashMap<&str, usize> = Default::default();
    for op in ops.iter() {
        *with_ops.entry(op.namespace.as_str()).or_default() += 1;
    }
    let visible: Vec<Value> = registry
        .statuses()
        .iter()
        .filter(|s| {
            with_ops.contains_key(s.namespace.as_str())
                || (s.operations == 0 && policy.sees_namespace(&s.namespace))
        })
        .filter(|s| args.namespace.as_ref().is_none_or(|n| n == &s.namespace))
        .map(|s| status_json(s, with_ops.get(s.namespace.as_str()).copied().unwrap_or(0)))
        .collect();
    out["namespaces"] = json!(visible);
    answer(out)
}

pub fn search(
    dispatcher: &Dispatcher,
    policy: &dyn Policy,
    args: Option<JsonObject>,
) -> CallToolResult {
    let args: SearchArgs = match parse("search", args) {
        Ok(a) => a,
        Err(e) => return error_result(&e),
    };
    let limit = args
        .limit
        .unwrap_or(SEARCH_LIMIT.0)
        .clamp(1, SEARCH_LIMIT.1);
    let hits = dispatcher
        .registry()
        .search(&args.q, args.namespace.as_deref(), limit, policy);
    let mut out = json!({
        "results": hits.iter().map(|(op, score)| json!({
            "tool": op.name,
            "description": summary(op.description()),
            "score": (f64::from(*score) * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
    });
    // Say what the results cannot include yet, so an agent can search again.
    let starting: Vec<String> = dispatcher
        .registry()
        .starting()
        .into_iter()
        .filter(|ns| policy.sees_namespace(ns))
        .collect();
    if !starting.is_empty() {
        out["starting"] = json!(starting);
    }
    answer(out)
}

pub fn schema_of(
    dispatcher: &Dispatcher,
    policy: &dyn Policy,
    args: Option<JsonObject>,
) -> CallToolResult {
    let args: SchemaArgs = match parse("schema", args) {
        Ok(a) => a,
        Err(e) => return error_result(&e),
    };
    let found = dispatcher
        .registry()
        .resolve(&args.tool)
        .filter(|r| policy.allows(&args.tool, r.operation.is_read_only()));
    let Some(resolved) = found else {
        return error_result(&CallError::not_found(&args.tool));
    };
    answer(schema_json(&resolved.operation))
}

fn schema_json(op: &Operation) -> Value {
    let d = op.definition();
    let mut v = json!({
        "tool": op.name,
        "description": op.description(),
        "inputSchema": d.input_schema,
    });
    if let Some(out) = &d.output_schema {
        v["outputSchema"] = json!(out);
    }
    if let Some(a) = &d.annotations {
        v["annotations"] = json!(a);
    }
    if let Some(t) = &d.title {
        v["title"] = json!(t);
    }
    v
}

/// Runs a `call` batch under `root`; the caller's progress token, if any, receives the
/// batch's combined progress.
pub async fn call(
    dispatcher: &Dispatcher,
    policy: &dyn Policy,
    args: Option<JsonObject>,
    root: &CallNode,
    caller: Caller,
) -> CallToolResult {
    let args: CallArgs = match parse("call", args) {
        Ok(a) => a,
        Err(e) => return error_result(&e),
    };
    if args.calls.is_empty() || args.calls.len() > MAX_BATCH {
        return error_result(&CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "`calls` must hold 1 to {MAX_BATCH} items, not {}",
                args.calls.len()
            ),
        ));
    }
    let names: Vec<String> = args.calls.iter().map(|c| c.tool.clone()).collect();
    let batch_progress = caller
        .progress
        .clone()
        .map(|sink| BatchProgress::new(sink, names.len()));
    let requests = args
        .calls
        .into_iter()
        .map(|c| CallRequest {
            operation: c.tool,
            input: c.input,
        })
        .collect();
    let outcomes = dispatcher
        .call_batch(policy, requests, root, caller, |i| {
            batch_progress.as_ref().map(|b| b.sink_for(i))
        })
        .await;
    render_batch(&names, outcomes)
}

/// Combines the progress of a batch's calls into one monotonic stream for one token: the sum
/// of each call's latest progress over the sum of their totals.
struct BatchProgress {
    sink: ProgressSink,
    /// Each call's latest `(progress, total)`.
    latest: Arc<Mutex<Vec<Latest>>>,
}

type Latest = (f64, Option<f64>);

impl BatchProgress {
    fn new(sink: ProgressSink, calls: usize) -> Self {
        Self {
            sink,
            latest: Arc::new(Mutex::new(vec![(0.0, None); calls])),
        }
    }

    fn sink_for(&self, index: usize) -> ProgressSink {
        let sink = self.sink.clone();
        let latest = self.latest.clone();
        let single = latest.lock().map(|l| l.len() == 1).unwrap_or(false);
        if single {
            return sink;
        }
        Arc::new(move |p: Progress| {
            let combined = {
                let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
                l[index] = (p.progress.max(l[index].0), p.total);
                let progress: f64 = l.iter().map(|(p, _)| p).sum();
                let total: Option<f64> = l.iter().map(|(_, t)| *t).sum();
                Progress {
                    progress,
                    total,
                    message: p.message.map(|m| format!("[{}] {m}", index + 1)),
                }
            };
            sink(combined);
        })
    }
}

fn render_batch(names: &[String], outcomes: Vec<CallOutcome>) -> CallToolResult {
    let mut content = Vec::new();
    let mut results = Vec::with_capacity(outcomes.len());
    let mut failures = 0;
    for (i, (name, outcome)) in names.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(result) => {
                let tool_error = result.is_error == Some(true);
                let head = if tool_error {
                    "tool reported an error"
                } else {
                    "ok"
                };
                content.push(ContentBlock::text(format!("[{}] {name}: {head}", i + 1)));
                content.extend(result.content.iter().cloned());
                if result.content.is_empty()
                    && let Some(s) = &result.structured_content
                {
                    content.push(ContentBlock::text(s.to_string()));
                }
                results.push(json!({"tool": name, "success": true, "result": result}));
            }
            Err(error) => {
                failures += 1;
                content.push(ContentBlock::text(format!(
                    "[{}] {name}: {}: {}",
                    i + 1,
                    error.code,
                    error.message
                )));
                results.push(json!({"tool": name, "success": false, "error": error}));
            }
        }
    }
    let mut r = if failures == names.len() {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    r.structured_content = Some(json!({ "results": results }));
    r
}

/// A `direct` tool call: the upstream's result as it is, or the hub's error as a tool error.
pub async fn call_direct(
    dispatcher: &Dispatcher,
    policy: &dyn Policy,
    name: String,
    args: Option<JsonObject>,
    root: &CallNode,
    caller: Caller,
) -> CallToolResult {
    match dispatcher
        .call(policy, name, args.map(Value::Object), root, caller)
        .await
    {
        Ok(result) => result,
        Err(e) => error_result(&e),
    }
}

/// The operations a `direct` listener's `tools/list` shows, by name.
pub fn direct_operations(dispatcher: &Dispatcher, policy: &dyn Policy) -> Vec<Arc<Operation>> {
    dispatcher.registry().list(None, policy)
}
