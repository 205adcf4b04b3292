//! The lean lane for `tools/call` to a stdio upstream: the request is written to the child's
//! stdin as one JSON-RPC line, and its answer is taken off the child's stdout by id, without
//! going through rmcp's service loop.
//!
//! rmcp's client (which still runs the connection: initialize, lists, notifications, the
//! upstream's requests back, everything else) hands each request to its service task, spawns a
//! task to write it, and parses every answer through the untagged union of all results; for a
//! small call that was about half of the hub's work between its front door and the upstream
//! (docs/benchmarks.md). The lane shares the child's pipes with rmcp's transport:
//!
//! - [`LaneWriter`] is the write half both use. Each write is one or more whole lines, taken
//!   whole or not at all, so lines never interleave; what the pipe does not take at once is
//!   kept in order and written by a task of its own.
//! - [`LaneReader`] is the read half rmcp's transport reads through. It hands the lines that
//!   answer a lane request (ids from [`LANE_IDS`] up, which rmcp's own counter never reaches)
//!   to the waiting call and passes every other line on untouched.
//!
//! A lane call keeps what a call through rmcp has: the caller is registered for the upstream's
//! requests back before the request is written, progress is routed by the request's token,
//! cancellation sends `notifications/cancelled`, and a connection that ends fails the calls
//! waiting on it at once.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
};

use bytes::{Buf, Bytes, BytesMut};
use rmcp::{
    RoleClient,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    process::{Child, ChildStdin, ChildStdout},
    sync::oneshot,
};

/// The first id of lane requests. rmcp numbers its own requests from 0 with a 32-bit counter,
/// so the two never meet; ids stay far below 2^53, exact in every JSON implementation.
pub(crate) const LANE_IDS: u64 = 1 << 32;

/// Longest line the reader holds while looking for its end; a longer one is passed on to
/// rmcp's transport, which drops it (as it does any line over this length).
const MAX_LINE: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// Bytes kept for the pipe before writers wait.
const MAX_BACKLOG: usize = 1 << 20;

/// Requests in flight on the lane of one connection, and the write half they go out on.
pub(crate) struct Lane {
    writer: Arc<SharedWriter>,
    pending: Mutex<Pending>,
    next: AtomicU64,
}

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Bytes>>,
    /// The connection has ended: nothing more will be answered.
    closed: bool,
}

/// The connection has ended: the request will not be answered.
pub(crate) struct Closed;

impl Lane {
    fn new(writer: Arc<SharedWriter>) -> Arc<Self> {
        Arc::new(Self {
            writer,
            pending: Mutex::default(),
            next: AtomicU64::new(LANE_IDS),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh request id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for the answer to request `id`, registered before the request is written.
    pub(crate) fn expect(self: &Arc<Self>, id: u64) -> Result<Answer, Closed> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock();
        if pending.closed {
            return Err(Closed);
        }
        pending.waiting.insert(id, tx);
        Ok(Answer {
            rx,
            lane: self.clone(),
            id,
        })
    }

    /// Writes one message (a whole line, newline included).
    pub(crate) async fn write(&self, line: &[u8]) -> io::Result<()> {
        std::future::poll_fn(|cx| self.writer.poll_accept(cx, line)).await
    }

    /// The lane request `line` answers, if it answers one.
    fn answers(line: &[u8]) -> Option<u64> {
        #[derive(Deserialize)]
        struct Head {
            id: Option<u64>,
            method: Option<serde::de::IgnoredAny>,
        }
        let text = without_bom(line);
        // A lane answer has a numeric id in the lane's range and no method (a request from
        // the upstream may use any id, but always has a method).
        match serde_json::from_slice::<Head>(text) {
            Ok(Head {
                id: Some(id),
                method: None,
            }) if id >= LANE_IDS => Some(id),
            _ => None,
        }
    }

    /// Hands `line` to request `id`. A late answer to a request no longer waited for
    /// (cancelled, timed out) is dropped.
    fn deliver(&self, id: u64, line: Bytes) {
        if let Some(tx) = self.lock().waiting.remove(&id) {
            let _ = tx.send(line);
        }
    }

    /// The connection's read side has ended: fails every waiting request, and any later one.
    fn close(&self) {
        let mut pending = self.lock();
        pending.closed = true;
        pending.waiting.clear();
    }
}

/// `line` without a leading UTF-8 byte-order mark, which some servers write.
pub(crate) fn without_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// The answer to one lane request; no longer waited for once dropped.
pub(crate) struct Answer {
    rx: oneshot::Receiver<Bytes>,
    lane: Arc<Lane>,
    id: u64,
}

impl Answer {
    /// The answer's JSON-RPC line.
    pub(crate) async fn line(&mut self) -> Result<Bytes, Closed> {
        (&mut self.rx).await.map_err(|_| Closed)
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.lane.lock().waiting.remove(&self.id);
    }
}

/// The write half of a child's stdin, shared by rmcp's transport and the lane.
struct SharedWriter {
    state: Mutex<WriteState>,
}

struct WriteState {
    /// `None` once closed (or failed).
    stdin: Option<ChildStdin>,
    /// Accepted bytes the pipe has not taken yet, written in order by the drain task.
    backlog: BytesMut,
    /// Writers waiting for the backlog to shrink.
    waiters: Vec<Waker>,
}

impl SharedWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts `bytes` (whole lines) entirely, or not at all while the backlog is full.
    fn poll_accept(self: &Arc<Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<()>> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(stdin) = state.stdin.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        if !state.backlog.is_empty() {
            if state.backlog.len() >= MAX_BACKLOG {
                state.waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            // The drain task is running; it writes these after what is already queued.
            state.backlog.extend_from_slice(bytes);
            return Poll::Ready(Ok(()));
        }
        let mut written = 0;
        while written < bytes.len() {
            match Pin::new(&mut *stdin).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => {
                    state.stdin = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => {
                    state.stdin = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => break,
            }
        }
        if written < bytes.len() {
            state.backlog.extend_from_slice(&bytes[written..]);
            let this = self.clone();
            tokio::spawn(std::future::poll_fn(move |cx| this.poll_drain(cx)));
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the backlog out; ends when it is empty or the pipe is gone.
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        let state = &mut *state;
        loop {
            let Some(stdin) = state.stdin.as_mut() else {
                state.backlog.clear();
                break;
            };
            if state.backlog.is_empty() {
                break;
            }
            match Pin::new(&mut *stdin).poll_write(cx, &state.backlog) {
                Poll::Ready(Ok(n)) if n > 0 => state.backlog.advance(n),
                Poll::Ready(_) => state.stdin = None,
                Poll::Pending => {
                    if state.backlog.len() < MAX_BACKLOG {
                        state.waiters.drain(..).for_each(Waker::wake);
                    }
                    return Poll::Pending;
                }
            }
        }
        state.waiters.drain(..).for_each(Waker::wake);
        Poll::Ready(())
    }

    /// Closes the pipe (the child sees end of input); later writes fail.
    fn close(&self) {
        let mut state = self.lock();
        state.stdin = None;
        state.backlog.clear();
        state.waiters.drain(..).for_each(Waker::wake);
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed")
}

/// rmcp's side of the shared write half. rmcp's framed writer hands over whole messages.
struct LaneWriter(Arc<SharedWriter>);

impl AsyncWrite for LaneWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_accept(cx, buf).map_ok(|()| buf.len())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LaneWriter {
    fn drop(&mut self) {
        // rmcp closes its transport by dropping the writer: the child must see end of input.
        self.0.close();
    }
}

/// rmcp's side of the child's stdout: every line but the lane's answers.
struct LaneReader {
    inner: ChildStdout,
    lane: Arc<Lane>,
    buf: BytesMut,
    /// Bytes at the start of `buf` to hand to rmcp as they are.
    ready: usize,
    /// Bytes at the start of `buf` known to hold no newline (when `ready` is 0).
    scanned: usize,
    eof: bool,
}

impl AsyncRead for LaneReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let n = this.ready.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(at) = this.buf[this.scanned..].iter().position(|b| *b == b'\n') {
                let end = this.scanned + at + 1;
                this.scanned = 0;
                match Lane::answers(&this.buf[..end]) {
                    Some(id) => this.lane.deliver(id, this.buf.split_to(end).freeze()),
                    // Not the lane's: rmcp's, as it is.
                    None => this.ready = end,
                }
                continue;
            }
            this.scanned = this.buf.len();
            if this.eof || this.buf.len() > MAX_LINE {
                if this.buf.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                // An unterminated tail at the end, or an oversized line: rmcp's to judge.
                this.ready = this.buf.len();
                this.scanned = 0;
                continue;
            }
            this.buf.reserve(8 * 1024);
            let mut read = ReadBuf::uninit(this.buf.spare_capacity_mut());
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 {
                        this.eof = true;
                        this.lane.close();
                    }
                    // SAFETY: `n` bytes of the spare capacity were just initialised by the read.
                    unsafe { this.buf.set_len(this.buf.len() + n) };
                }
                Poll::Ready(Err(e)) => {
                    this.lane.close();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for LaneReader {
    fn drop(&mut self) {
        self.lane.close();
    }
}

/// rmcp's client transport over a child's stdio, with the lane on the same pipes. Owns the
/// child: dropping the transport kills it (the child is spawned with `kill_on_drop`).
pub(crate) struct ChildTransport {
    inner: AsyncRwTransport<RoleClient, LaneReader, LaneWriter>,
    child: Child,
}

/// Waits a while for `child` to exit; whether it did.
async fn exited(child: &mut Child) -> bool {
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(3), child.wait()).await,
        Ok(Ok(_))
    )
}

impl ChildTransport {
    /// Takes the child's stdin and stdout (both must be piped).
    pub(crate) fn new(mut child: Child) -> io::Result<(Self, Arc<Lane>)> {
        let missing = || io::Error::other("the child's stdin and stdout must be piped");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let writer = Arc::new(SharedWriter {
            state: Mutex::new(WriteState {
                stdin: Some(stdin),
                backlog: BytesMut::new(),
                waiters: Vec::new(),
            }),
        });
        let lane = Lane::new(writer.clone());
        let reader = LaneReader {
            inner: stdout,
            lane: lane.clone(),
            buf: BytesMut::new(),
            ready: 0,
            scanned: 0,
            eof: false,
        };
        let inner = AsyncRwTransport::new_client(reader, LaneWriter(writer));
        Ok((Self { inner, child }, lane))
    }
}

impl Transport<RoleClient> for ChildTransport {
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.inner.receive()
    }

    /// Closes stdin and waits for the child to exit, then asks it with SIGTERM, then kills it
    /// (the shutdown the MCP specification gives for stdio, as rmcp's own child transport does).
    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await?;
        let child = &mut self.child;
        if exited(child).await {
            return Ok(());
        }
        if let Some(pid) = child.id() {
            // SAFETY: kill only sends a signal to our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            if exited(child).await {
                return Ok(());
            }
        }
        child.kill().await
    }
}
