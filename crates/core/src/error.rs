//! The errors a caller of an operation can see. Codes are stable and documented in `docs/errors.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A stable, documented error code for one failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The operation does not exist, or the actor may not see it (the two look the same).
    NotFound,
    /// The input failed the operation's input schema; `data.errors` lists the failing paths.
    InvalidInput,
    /// The upstream is not connected (starting, restarting, crashed, or gone).
    UpstreamUnavailable,
    /// The upstream answered with a protocol error.
    UpstreamError,
    /// The call's deadline passed; the upstream was told to cancel.
    Timeout,
    /// The caller (or its session) cancelled the call; the upstream was told to cancel.
    Cancelled,
    /// The actor exceeded a rate or concurrency limit.
    RateLimited,
    /// The caller's credentials were missing, invalid or expired.
    Unauthorized,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call as the caller sees it: `{code, message, data?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn not_found(operation: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("no operation named `{operation}`"),
        )
    }

    pub fn unavailable(namespace: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::UpstreamUnavailable,
            format!("upstream `{namespace}` is unavailable: {why}"),
        )
    }

    pub fn timeout(after: std::time::Duration) -> Self {
        Self::new(
            ErrorCode::Timeout,
            format!("no answer within {}", humanize(after)),
        )
    }

    pub fn cancelled() -> Self {
        Self::new(ErrorCode::Cancelled, "the call was cancelled")
    }
}

fn humanize(d: std::time::Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
