//! How tool results are presented to clients that read only the first content block.
//!
//! The xiaozhi relay client (and devices like it) reads `content[0].text` of a tool result and
//! nothing else. The `call` meta tool's first block is a bare header (`[1] name: ok`) with the
//! results in the blocks after it, which such a client would lose. For front doors that serve
//! these clients, the session puts a self-contained summary of every result first.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

/// How a session presents tool results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presentation {
    /// As the surface makes them.
    #[default]
    AsIs,
    /// `content[0]` stands on its own: for `call`, a readable summary of every result.
    SummaryFirst,
}

/// Longest text kept of one batch item in a summary, in characters.
const ITEM_CHARS: usize = 2000;
/// Longest summary, in characters: a voice assistant's model reads all of it.
const SUMMARY_CHARS: usize = 8000;

impl Presentation {
    /// Applies the presentation to the result of meta tool or operation `tool`.
    pub fn present(self, tool: &str, result: &mut CallToolResult) {
        if self == Presentation::SummaryFirst && tool == "call" {
            let text = summarise_batch(result);
            result.content.insert(0, ContentBlock::text(text));
        }
    }
}

/// One line per batch item: `[n] tool: ok: <its text>` or `[n] tool: <code>: <message>`.
fn summarise_batch(result: &CallToolResult) -> String {
    let items = result
        .structured_content
        .as_ref()
        .and_then(|s| s.get("results"))
        .and_then(Value::as_array);
    let Some(items) = items else {
        // Arguments the surface refused: its first block already says why.
        return first_text(&result.content).unwrap_or_default();
    };
    let failed = items.iter().filter(|i| i["success"] != true).count();
    let mut lines = vec![format!(
        "{} call{}: {} ok, {failed} failed.",
        items.len(),
        if items.len() == 1 { "" } else { "s" },
        items.len() - failed
    )];
    for (n, item) in items.iter().enumerate() {
        let tool = item["tool"].as_str().unwrap_or("?");
        let line = if item["success"] == true {
            let result = &item["result"];
            let head = if result["isError"] == true {
                "tool reported an error"
            } else {
                "ok"
            };
            format!("[{}] {tool}: {head}: {}", n + 1, result_text(result))
        } else {
            let error = &item["error"];
            format!(
                "[{}] {tool}: {}: {}",
                n + 1,
                error["code"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or("")
            )
        };
        lines.push(truncate(&line, ITEM_CHARS));
    }
    truncate(&lines.join("\n"), SUMMARY_CHARS)
}

/// The text blocks of an upstream result, else its structured content as JSON.
fn result_text(result: &Value) -> String {
    let texts: Vec<&str> = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"].as_str())
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    match result.get("structuredContent") {
        Some(s) if !s.is_null() => s.to_string(),
        _ => "(no text)".into(),
    }
}

fn first_text(content: &[ContentBlock]) -> Option<String> {
    content
        .iter()
        .find_map(|c| c.as_text().map(|t| t.text.clone()))
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}… (truncated)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_summary_names_every_result() {
        let mut r = CallToolResult::success(vec![ContentBlock::text("[1] a.b: ok")]);
        r.structured_content = Some(json!({"results": [
            {"tool": "a.b", "success": true, "result": {"content": [{"type": "text", "text": "hello"}]}},
            {"tool": "a.c", "success": false, "error": {"code": "not_found", "message": "no such operation"}},
        ]}));
        Presentation::SummaryFirst.present("call", &mut r);
        let first = first_text(&r.content).unwrap();
        assert_eq!(
            first,
            "2 calls: 1 ok, 1 failed.\n[1] a.b: ok: hello\n[2] a.c: not_found: no such operation"
        );
        assert_eq!(r.content.len(), 2);
    }

    #[test]
    fn long_results_are_truncated() {
        let long = "x".repeat(10 * ITEM_CHARS);
        assert!(truncate(&long, ITEM_CHARS).chars().count() < ITEM_CHARS + 20);
    }
}
