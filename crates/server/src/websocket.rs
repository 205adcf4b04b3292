//! MCP over WebSocket: one JSON-RPC message per text frame, no envelope.
//!
//! rmcp has no WebSocket transport, so this is one: a reader task turns frames into JSON-RPC
//! messages for the session (answering bad input itself, like the stdio transport), and a
//! writer task sends the session's messages and the keepalive pings. They are separate tasks
//! so that a session that is busy writing can never stall reading, and the other way round.
//!
//! What the peer sees:
//! - a binary frame gets `-32700` (JSON-RPC travels in text frames), text that is not JSON
//!   `-32700`, JSON that is not a JSON-RPC message `-32600`, a text frame over
//!   `max_message_bytes` `-32600`; the socket stays open in every case;
//! - a frame over twice that limit is not read at all: the socket is closed with 1009;
//! - a ping every `ping` interval; a peer silent (no pong, no frame) for two intervals is
//!   closed with 1001;
//! - the hub shutting down, or the session ending, closes with 1001 or 1000.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{Sink, SinkExt, Stream, StreamExt};
use rmcp::{
    RoleServer,
    service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::open_requests::OpenRequests;

/// Limits of one WebSocket connection.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// Largest text frame accepted as a message, in bytes. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Interval between the server's pings. Default 20 s.
    pub ping: Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            ping: Duration::from_secs(20),
        }
    }
}

impl SocketLimits {
    /// The largest frame read at all. Frames between the message limit and this get a
    /// JSON-RPC error and the socket stays usable; the slack keeps that courtesy bounded.
    pub fn read_limit(&self) -> usize {
        self.max_message_bytes.saturating_mul(2)
    }
}

/// 1009 (message too big): RFC 6455 §7.4.1.
const CLOSE_TOO_BIG: u16 = 1009;

/// Close reasons must fit a control frame (123 bytes of UTF-8 after the code).
pub(crate) fn close_frame(code: u16, reason: &str) -> Message {
    let mut reason = reason.to_owned();
    if reason.len() > 123 {
        let mut cut = 120;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Closes a socket just accepted with 1008 (policy violation) and `reason`, before anything
/// is served, then waits a moment for the peer's close so the frame is not lost to a reset.
/// How every WebSocket door turns away a refused credential.
pub(crate) async fn refuse(mut socket: WebSocket, reason: &str) {
    if socket
        .send(close_frame(close_code::POLICY, reason))
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// Messages queued towards the peer before the session waits for the socket.
const QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("the WebSocket connection is closed")]
pub struct SocketClosed;

/// An MCP transport over one WebSocket: the hub's side, as server (`RoleServer`, the default)
/// or, when an MCP server dialled in (a dial-in provider), as client (`RoleClient`).
pub struct SocketTransport<R: ServiceRole = RoleServer> {
    incoming: mpsc::Receiver<RxJsonRpcMessage<R>>,
    outgoing: mpsc::Sender<Message>,
    open: OpenRequests,
    /// Cancelled to close the socket (and stop both tasks).
    done: CancellationToken,
}

impl<R: ServiceRole> SocketTransport<R> {
    pub fn new(socket: WebSocket, limits: SocketLimits) -> Self {
        let (sink, stream) = socket.split();
        Self::over(sink, stream, limits)
    }

    /// The transport over any socket's two halves (an outbound client connection's, see
    /// `ws_client`), with frames as axum's `Message`.
    pub fn over<Si, St>(sink: Si, stream: St, limits: SocketLimits) -> Self
    where
        Si: Sink<Message> + Unpin + Send + 'static,
        St: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(QUEUE);
        let (in_tx, in_rx) = mpsc::channel(QUEUE);
        let open = OpenRequests::default();
        let done = CancellationToken::new();
        let heard = Arc::new(Heard::new());
        tokio::spawn(write_frames(
            sink,
            out_rx,
            limits.ping,
            heard.clone(),
            done.clone(),
        ));
        tokio::spawn(read_frames::<R>(
            stream,
            limits,
            in_tx,
            out_tx.clone(),
            open.clone(),
            heard,
            done.clone(),
        ));
        Self {
            incoming: in_rx,
            outgoing: out_tx,
            open,
            done,
        }
    }
}

/// Closes a [`SocketTransport`]'s socket with a code of its choosing, ahead of anything the
/// transport does when it closes itself (which says 1001).
#[derive(Clone)]
pub struct SocketCloser(mpsc::Sender<Message>);

impl SocketCloser {
    /// Queues a close frame with `code` and `reason`; the socket closes once it is sent.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.0.try_send(close_frame(code, reason));
    }
}

impl<R: ServiceRole> SocketTransport<R> {
    /// A handle that closes the socket with a chosen code (a replaced dial-in provider's
    /// connection gets 1000).
    pub fn closer(&self) -> SocketCloser {
        SocketCloser(self.outgoing.clone())
    }
}

impl<R: ServiceRole> Drop for SocketTransport<R> {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// When the peer was last heard from, as milliseconds since `start`.
struct Heard {
    start: Instant,
    at: AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.at.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let ms = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(ms.saturating_sub(self.at.load(Ordering::Relaxed)))
    }
}

/// Sends the session's messages and the pings; closes the socket when the session is gone
/// (1000), the transport is closed (1001, hub shutting down), or the peer went silent (1001).
async fn write_frames(
    mut sink: impl Sink<Message> + Unpin,
    mut outgoing: mpsc::Receiver<Message>,
    ping: Duration,
    heard: Arc<Heard>,
    done: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let farewell = loop {
        tokio::select! {
            // Queued messages go out before a close, so a session's last answers arrive.
            biased;
            message = outgoing.recv() => match message {
                Some(m @ Message::Close(_)) => break Some(m),
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        break None;
                    }
                }
                None => break Some(close_frame(close_code::NORMAL, "session ended")),
            },
            _ = ticker.tick() => {
                if heard.silent_for() >= ping * 2 {
                    tracing::info!("websocket: peer silent for two ping intervals, closing");
                    break Some(close_frame(close_code::AWAY, "no pong within two ping intervals"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = done.cancelled() => break Some(close_frame(close_code::AWAY, "server closing")),
        }
    };
    if let Some(close) = farewell {
        // A peer that does not read must not hold this task: the close is best effort.
        let _ = tokio::time::timeout(Duration::from_secs(5), sink.send(close)).await;
    }
    done.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

/// Turns frames into messages for the session, answering bad input on the socket.
async fn read_frames<R: ServiceRole>(
    mut stream: impl Stream<Item = Result<Message, axum::Error>> + Unpin,
    limits: SocketLimits,
    incoming: mpsc::Sender<RxJsonRpcMessage<R>>,
    outgoing: mpsc::Sender<Message>,
    open: OpenRequests,
    heard: Arc<Heard>,
    done: CancellationToken,
) {
    let max = limits.max_message_bytes;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = done.cancelled() => break,
        };
        let message = match frame {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let (code, reason) = read_failure(e);
                tracing::info!(code, "websocket: {reason}");
                if code != 0 {
                    let _ = outgoing.send(close_frame(code, &reason)).await;
                }
                break;
            }
        };
        heard.now();
        let reply = match message {
            Message::Text(text) if text.len() > max => {
                tracing::warn!(
                    bytes = text.len(),
                    limit = max,
                    "websocket: message over the size limit"
                );
                Some(error_frame(
                    Value::Null,
                    -32600,
                    &format!(
                        "invalid request: message of {} bytes exceeds the {max}-byte limit",
                        text.len()
                    ),
                ))
            }
            Message::Text(text) => {
                let parsed = crate::stdio::parse::<R>(text.as_str().trim().as_bytes())
                    .and_then(|m| open.admit(m));
                match parsed {
                    Ok(message) => {
                        if incoming.send(message).await.is_err() {
                            break;
                        }
                        None
                    }
                    Err((id, code, message)) => Some(error_frame(id, code, &message)),
                }
            }
            Message::Binary(_) => Some(error_frame(
                Value::Null,
                -32700,
                "parse error: binary frame; send each JSON-RPC message as a text frame",
            )),
            // The peer's close is answered by the socket itself; nothing more will come.
            Message::Close(_) => break,
            // Pings are answered by the socket (coalesced, so a flood costs little); both
            // count as signs of life.
            Message::Ping(_) | Message::Pong(_) => None,
        };
        if let Some(reply) = reply
            && outgoing.send(reply).await.is_err()
        {
            break;
        }
    }
}

/// The close code and reason for a frame that could not be read; code 0 when the connection
/// is simply gone.
fn read_failure(error: axum::Error) -> (u16, String) {
    use tungstenite::error::{CapacityError, Error};
    let inner = error.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(Error::Capacity(CapacityError::MessageTooLong { size, max_size })) => (
            CLOSE_TOO_BIG,
            format!("frame of {size} bytes exceeds the {max_size}-byte read limit"),
        ),
        Some(Error::Capacity(e)) => (CLOSE_TOO_BIG, e.to_string()),
        Some(Error::Utf8(_)) => (close_code::INVALID, "text frame is not UTF-8".into()),
        Some(Error::Protocol(e)) => (close_code::PROTOCOL, format!("protocol error: {e}")),
        _ => (0, format!("connection lost: {inner}")),
    }
}

fn error_frame(id: Value, code: i32, message: &str) -> Message {
    tracing::debug!(code, "websocket: {message}");
    let body = crate::stdio::error_response(id, code, message);
    Message::Text(body.to_string().into())
}

impl<R: ServiceRole> Transport<R> for SocketTransport<R> {
    type Error = SocketClosed;

    fn name() -> Cow<'static, str> {
        "websocket".into()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<R>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outgoing = self.outgoing.clone();
        self.open.end(&item);
        async move {
            let text = serde_json::to_string(&item).map_err(|_| SocketClosed)?;
            outgoing
                .send(Message::Text(text.into()))
                .await
                .map_err(|_| SocketClosed)
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<R>>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        self.done.cancel();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let Message::Close(Some(frame)) = close_frame(1008, &"é".repeat(200)) else {
            panic!("not a close frame");
        };
        assert!(frame.reason.len() <= 123);
        assert_eq!(frame.code, 1008);
    }
}
