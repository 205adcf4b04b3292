//! Outbound WebSocket connections (the endpoint dialer, `patchbay connect`): `ws://` and
//! `wss://` with rustls on the aws-lc-rs provider and the system's root certificates.
//!
//! An answer other than `101` to the upgrade is reported with its status; `401` and `403` as
//! an auth failure, since that is what a vendor endpoint says to a wrong or expired token.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message};
use futures::{Sink, SinkExt, Stream, StreamExt, future::ready};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream,
    tungstenite::{self, protocol::WebSocketConfig},
};

/// A frame of a client connection.
pub use tokio_tungstenite::tungstenite::Message as Frame;

/// An open client connection.
pub type ClientSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// `401`/`403` at the upgrade: the endpoint refused the credential in the URL.
    #[error("auth failure: the endpoint answered the upgrade with HTTP {status}")]
    Auth { status: u16 },
    /// Any other non-`101` answer.
    #[error("the endpoint answered the upgrade with HTTP {status}")]
    Http { status: u16 },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

impl ConnectError {
    pub fn is_auth(&self) -> bool {
        matches!(self, ConnectError::Auth { .. })
    }
}

/// Opens `url` (`ws://` or `wss://`). `max_message_bytes` bounds the frames read.
pub async fn connect(
    url: &str,
    max_message_bytes: usize,
    timeout: Duration,
) -> Result<ClientSocket, ConnectError> {
    let connector = if url.starts_with("wss://") {
        Some(Connector::Rustls(
            tls_config().map_err(ConnectError::Other)?,
        ))
    } else {
        Some(Connector::Plain)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ConnectError::Timeout(timeout)),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            Err(if matches!(status, 401 | 403) {
                ConnectError::Auth { status }
            } else {
                ConnectError::Http { status }
            })
        }
        // tungstenite's errors never carry the URL, so they are safe to report.
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}

/// The TLS settings of every outbound connection, made once: aws-lc-rs, the system's roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no root certificates found on this system for wss://".into());
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS settings: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// The close frame the peer sent, once it has: `code` and reason, for logs and status.
pub type PeerClose = Arc<Mutex<Option<(u16, String)>>>;

/// Splits a client socket into halves carrying axum's `Message`, the type the server-side
/// transport (`websocket::SocketTransport::over`) reads and writes. The peer's close frame,
/// when one comes, is recorded in the returned [`PeerClose`].
#[allow(clippy::type_complexity)]
pub fn axum_halves(
    socket: ClientSocket,
) -> (
    impl Sink<Message> + Unpin + Send + 'static,
    impl Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
    PeerClose,
) {
    let closed = PeerClose::default();
    let seen = closed.clone();
    let (sink, stream) = socket.split();
    let sink =
        Box::pin(sink.with(|m: Message| ready(Ok::<_, tungstenite::Error>(to_tungstenite(m)))));
    let stream = Box::pin(stream.filter_map(move |frame| {
        ready(match frame {
            Ok(tungstenite::Message::Close(Some(f))) => {
                *seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((u16::from(f.code), f.reason.as_str().to_owned()));
                Some(Ok(Message::Close(None)))
            }
            Ok(m) => from_tungstenite(m).map(Ok),
            Err(e) => Some(Err(axum::Error::new(e))),
        })
    }));
    (sink, stream, closed)
}

fn to_tungstenite(message: Message) -> tungstenite::Message {
    match message {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Ping(b) => tungstenite::Message::Ping(b),
        Message::Pong(b) => tungstenite::Message::Pong(b),
        Message::Close(f) => {
            tungstenite::Message::Close(f.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
    }
}

fn from_tungstenite(message: tungstenite::Message) -> Option<Message> {
    Some(match message {
        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Ping(b) => Message::Ping(b),
        tungstenite::Message::Pong(b) => Message::Pong(b),
        tungstenite::Message::Close(f) => Message::Close(f.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        tungstenite::Message::Frame(_) => return None,
    })
}

/// `url` without secrets: every query value and any user information replaced by `…`.
pub fn redact(url: &str) -> String {
    let (before, fragment) = match url.split_once('#') {
        Some((b, _)) => (b, "#…"),
        None => (url, ""),
    };
    let (base, query) = match before.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://…@{host}{path}"),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    let query = query.map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}=…"),
                None => pair.to_owned(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{base}{}{fragment}", query.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_query_values_and_user_info() {
        assert_eq!(
            redact("wss://api.xiaozhi.me/mcp/?token=abc.def&x=1"),
            "wss://api.xiaozhi.me/mcp/?token=…&x=…"
        );
        assert_eq!(redact("ws://u:p@h:1/p"), "ws://…@h:1/p");
        assert_eq!(redact("ws://h/p"), "ws://h/p");
    }

    #[test]
    fn tls_uses_aws_lc_rs() {
        // Building the settings must not need a process-wide default provider.
        if let Ok(config) = tls_config() {
            assert!(!config.crypto_provider().cipher_suites.is_empty());
        }
    }
}
