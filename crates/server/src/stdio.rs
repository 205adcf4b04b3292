//! The stdio front door: newline-delimited JSON-RPC on stdin/stdout.
//!
//! A transport of our own rather than rmcp's, because bad input must get an answer: a line
//! that is not JSON, not UTF-8, or over the size limit gets a JSON-RPC error on stdout and a
//! log line on stderr, and the session carries on.

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    RoleServer, ServiceExt,
    service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::{
    open_requests::OpenRequests,
    session::{HubState, Session},
};

/// Serves one session over the process's stdin/stdout until stdin closes or `shutdown` fires,
/// acting with `token` when the hub requires authentication.
pub async fn serve(
    hub: Arc<HubState>,
    token: Option<String>,
    max_message_bytes: usize,
    shutdown: CancellationToken,
) {
    let transport = LineTransport::new(
        BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
        max_message_bytes,
    );
    serve_on(hub, token, transport, shutdown).await;
}

pub async fn serve_on(
    hub: Arc<HubState>,
    token: Option<String>,
    transport: LineTransport,
    shutdown: CancellationToken,
) {
    let service = match Session::for_socket(hub, token, "stdio")
        .serve_with_ct(transport, shutdown.child_token())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "stdio session ended before initialize");
            return;
        }
    };
    let _ = service.waiting().await;
}

/// A JSON-RPC transport over any line-oriented byte pipe.
pub struct LineTransport {
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    open: OpenRequests,
}

#[derive(Debug, thiserror::Error)]
#[error("the output stream is closed")]
pub struct OutputClosed;

impl LineTransport {
    pub fn new<R, W>(read: R, write: W, max_message_bytes: usize) -> Self
    where
        R: AsyncBufRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(256);
        let (in_tx, in_rx) = mpsc::channel(256);
        let open = OpenRequests::default();
        tokio::spawn(write_lines(write, out_rx));
        tokio::spawn(read_lines(
            read,
            max_message_bytes,
            in_tx,
            out_tx.clone(),
            open.clone(),
        ));
        Self {
            incoming: in_rx,
            outgoing: out_tx,
            open,
        }
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(mut write: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = rx.recv().await {
        if write.write_all(&line).await.is_err() {
            break;
        }
        // Flush only when nothing else is queued: batches writes under load.
        if rx.is_empty() && write.flush().await.is_err() {
            break;
        }
    }
}

async fn read_lines<R: AsyncBufRead + Unpin>(
    mut read: R,
    max: usize,
    incoming: mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    outgoing: mpsc::Sender<Vec<u8>>,
    open: OpenRequests,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_bounded_line(&mut read, &mut line, max).await {
            Ok(LineStatus::Eof) => break,
            Ok(LineStatus::TooLong(len)) => {
                tracing::warn!(
                    bytes = len,
                    limit = max,
                    "stdio: message over the size limit, dropped"
                );
                let _ = outgoing
                    .send(error_line(
                        Value::Null,
                        -32600,
                        &format!("message of {len}+ bytes exceeds the {max}-byte limit"),
                    ))
                    .await;
            }
            Ok(LineStatus::Line) => {
                let text = trim_line(&line);
                if text.is_empty() {
                    continue;
                }
                let parsed = parse::<RoleServer>(text).and_then(|m| open.admit(m));
                match parsed {
                    Ok(msg) => {
                        if incoming.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err((id, code, message)) => {
                        tracing::warn!(code, "stdio: {message}");
                        if outgoing.send(error_line(id, code, &message)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stdio: read failed");
                break;
            }
        }
    }
}

enum LineStatus {
    Line,
    Eof,
    TooLong(usize),
}

/// Reads one line into `buf` without ever holding more than `max` bytes of it.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    read: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineStatus> {
    let mut discarded = 0usize;
    loop {
        let available = read.fill_buf().await?;
        if available.is_empty() {
            return Ok(if discarded > 0 {
                LineStatus::TooLong(discarded)
            } else if buf.is_empty() {
                LineStatus::Eof
            } else {
                LineStatus::Line
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        if discarded > 0 || buf.len() + take > max + 1 {
            discarded += buf.len() + take;
            buf.clear();
        } else {
            buf.extend_from_slice(&available[..take]);
        }
        read.consume(take);
        if newline.is_some() {
            return Ok(if discarded > 0 {
                LineStatus::TooLong(discarded)
            } else {
                LineStatus::Line
            });
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    line.trim_ascii()
}

type Rejection = (Value, i32, String);

/// Also used by the WebSocket transport: both answer bad input the same way.
pub(crate) fn parse<R: ServiceRole>(line: &[u8]) -> Result<RxJsonRpcMessage<R>, Rejection> {
    let text = std::str::from_utf8(line).map_err(|e| {
        (
            Value::Null,
            -32700,
            format!("parse error: input is not UTF-8 ({e})"),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| (Value::Null, -32700, format!("parse error: {e}")))?;
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id,
            -32600,
            "invalid request: `jsonrpc` must be \"2.0\"".into(),
        ));
    }
    if value.is_array() {
        return Err((
            Value::Null,
            -32600,
            "invalid request: batches are not supported".into(),
        ));
    }
    let has_method = value.get("method").is_some_and(Value::is_string);
    match serde_json::from_value::<RxJsonRpcMessage<R>>(value) {
        Ok(msg) => Ok(msg),
        // A request with a method we do not know is answered by the service as
        // "method not found"; what is left here is a malformed message.
        Err(e) if has_method => Err((id, -32602, format!("invalid params: {e}"))),
        Err(e) => Err((id, -32600, format!("invalid request: {e}"))),
    }
}

/// A JSON-RPC error response: how every front door (stdio, WebSocket, HTTP) answers input
/// it could not take.
pub(crate) fn error_response(id: Value, code: i32, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn error_line(id: Value, code: i32, message: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&error_response(id, code, message)).unwrap_or_default();
    line.push(b'\n');
    line
}

impl Transport<RoleServer> for LineTransport {
    type Error = OutputClosed;

    fn name() -> Cow<'static, str> {
        "stdio".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outgoing = self.outgoing.clone();
        self.open.end(&item);
        async move {
            let mut line = serde_json::to_vec(&item).map_err(|_| OutputClosed)?;
            line.push(b'\n');
            outgoing.send(line).await.map_err(|_| OutputClosed)
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}
