//! What the dispatcher reports of each call it ran, for the audit log. The session adds who
//! called and through which front door; the store writes it off the request path.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::calltree::CallId;

/// One finished call.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub operation: String,
    pub call_id: CallId,
    pub parent: Option<CallId>,
    pub started: SystemTime,
    pub duration: Duration,
    /// `ok`, `tool_error` (the upstream's `isError`), or a hub error code (`not_found`, ...).
    pub outcome: String,
    /// Size of the input, in bytes of JSON.
    pub bytes_in: u64,
    /// Size of the result (or error), in bytes of JSON.
    pub bytes_out: u64,
    /// The input and the result themselves, when the audit keeps payloads.
    pub input: Option<Value>,
    pub output: Option<Value>,
}

/// Where a caller's call records go.
pub trait AuditSink: Send + Sync {
    /// Whether records should carry payloads (off by default: they may hold personal data).
    fn wants_payloads(&self) -> bool {
        false
    }

    /// Takes one record. Must not block: called on the request path.
    fn record(&self, record: CallRecord);
}
