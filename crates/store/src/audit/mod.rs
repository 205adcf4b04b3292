//! The audit log: what each call was, who made it, and how it ended. Records are written off the
//! request path by the [`AuditWriter`].

mod writer;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use writer::{AuditStats, AuditWriter, AuditWriterConfig};

/// One call, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the call started, unix milliseconds.
    pub time: i64,
    /// The actor the call was made as.
    pub actor: String,
    /// The vendor, for calls through a binding.
    pub vendor: Option<String>,
    /// The token id (`tok_...`) or binding id (`bnd_...`) presented; `None` for unauthenticated
    /// loopback use or static config tokens without an id.
    pub credential: Option<String>,
    /// The way in: `stdio`, `http`, `websocket`, `dialer`, `openai`, ...
    pub front_door: String,
    /// The client session, where the front door has one.
    pub session: Option<String>,
    /// The operation called (`namespace.tool`), or a hub tool (`call`, `search`, ...).
    pub operation: String,
    /// This call's id in the call tree.
    pub call_id: String,
    /// The id of the call that caused this one (the `call` batch of a batch item, ...).
    pub parent_call_id: Option<String>,
    /// Milliseconds from start to result.
    pub duration_ms: u64,
    /// `ok`, `tool_error` (the upstream's own `isError` result), or an error code such as
    /// `not_found`, `timeout`, `cancelled`.
    pub outcome: String,
    /// Bytes of the request's arguments.
    pub bytes_in: u64,
    /// Bytes of the result.
    pub bytes_out: u64,
    /// The arguments, only when payload recording is on (it is off by default).
    pub input: Option<Value>,
    /// The result, only when payload recording is on (it is off by default).
    pub output: Option<Value>,
}

/// Which records [`crate::Store::audit_query`] returns. All filters are optional and combine
/// with AND.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// Records with `time >= since` (unix ms).
    pub since: Option<i64>,
    /// Records with `time < until` (unix ms).
    pub until: Option<i64>,
    /// Operation name pattern; `*` matches any run of characters (`github.*`), everything else is
    /// literal and case-sensitive.
    pub operation: Option<String>,
    /// Exact outcome code (`ok`, `tool_error`, `not_found`, ...).
    pub outcome: Option<String>,
    /// Exact actor name.
    pub actor: Option<String>,
    /// At most this many records: the newest that match, returned oldest first. Default 100.
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            since: None,
            until: None,
            operation: None,
            outcome: None,
            actor: None,
            limit: 100,
        }
    }
}

/// How much audit history to keep; either bound may be off (`None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete records whose `time` is older than this. Default: off.
    pub max_age: Option<Duration>,
    /// Keep at most this many records (the newest). Default: off.
    pub max_rows: Option<u64>,
}

/// A call and the calls it caused, built from [`crate::Store::audit_tree`]'s records.
#[derive(Debug, Clone, PartialEq)]
pub struct CallNode {
    pub record: AuditRecord,
    /// Children in the order of their `time`.
    pub children: Vec<CallNode>,
}

impl CallNode {
    /// The tree rooted at `root_call_id`, or `None` if no record has that id. Records outside the
    /// root's subtree are ignored; a record appearing twice counts once.
    pub fn build(records: Vec<AuditRecord>, root_call_id: &str) -> Option<CallNode> {
        let mut by_id: HashMap<String, AuditRecord> = HashMap::new();
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        let mut order: Vec<(i64, String)> = Vec::new();
        for record in records {
            if by_id.contains_key(&record.call_id) {
                continue;
            }
            order.push((record.time, record.call_id.clone()));
            by_id.insert(record.call_id.clone(), record);
        }
        order.sort();
        for (_, id) in &order {
            if let Some(parent) = by_id[id].parent_call_id.clone() {
                children.entry(parent).or_default().push(id.clone());
            }
        }
        let mut seen = HashSet::new();
        Self::take(root_call_id, &mut by_id, &children, &mut seen)
    }

    fn take(
        id: &str,
        by_id: &mut HashMap<String, AuditRecord>,
        children: &HashMap<String, Vec<String>>,
        seen: &mut HashSet<String>,
    ) -> Option<CallNode> {
        if !seen.insert(id.to_owned()) {
            return None;
        }
        let record = by_id.remove(id)?;
        let kids = children
            .get(id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|c| Self::take(c, by_id, children, seen))
                    .collect()
            })
            .unwrap_or_default();
        Some(CallNode {
            record,
            children: kids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, parent: Option<&str>, time: i64) -> AuditRecord {
        AuditRecord {
            call_id: id.into(),
            parent_call_id: parent.map(Into::into),
            time,
            ..AuditRecord::default()
        }
    }

    #[test]
    fn builds_nested_tree_in_time_order() {
        let records = vec![
            rec("c2", Some("root"), 3),
            rec("root", None, 1),
            rec("c1", Some("root"), 2),
            rec("g1", Some("c1"), 4),
            rec("other", None, 0),
        ];
        let tree = CallNode::build(records, "root").unwrap();
        assert_eq!(tree.record.call_id, "root");
        let kids: Vec<_> = tree.children.iter().map(|c| &c.record.call_id).collect();
        assert_eq!(kids, ["c1", "c2"]);
        assert_eq!(tree.children[0].children[0].record.call_id, "g1");
        assert!(CallNode::build(vec![], "root").is_none());
    }

    #[test]
    fn cycles_do_not_loop() {
        let records = vec![rec("a", Some("b"), 1), rec("b", Some("a"), 2)];
        let tree = CallNode::build(records, "a").unwrap();
        assert_eq!(tree.children.len(), 1);
        assert!(tree.children[0].children.is_empty());
    }
}
