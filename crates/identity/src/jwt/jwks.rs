//! A JWKS document (file or URL), cached and refreshed.
//!
//! - First use: fetched and awaited (a failure is retried at most every [`RETRY_AFTER_FAILURE`]).
//! - Every `refresh` interval: re-read in the background while the cached keys keep serving.
//! - A token naming an unknown `kid`: re-read at once and awaited, at most once per
//!   [`UNKNOWN_KID_INTERVAL`], so a stream of made-up `kid`s cannot hammer the issuer.
//!
//! A failed or empty fetch never replaces keys that worked.

use std::{
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::jwk::Jwk;
use serde_json::Value;

use super::keys::{self, VerifyKey};
use crate::AuthError;

/// Least time between two refreshes caused by unknown `kid`s.
pub(crate) const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(60);
/// Least time between a failed fetch and the next attempt.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Largest JWKS document read, in bytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Where the JWKS document lives.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    File(PathBuf),
    Url(reqwest::Url),
}

impl Source {
    /// Parses the `jwks` setting: an `https://` URL (`http://` only for loopback hosts), or a
    /// file path.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            if lower.contains("://") {
                return Err(format!("jwks `{text}`: only https:// URLs or file paths"));
            }
            return Ok(Source::File(PathBuf::from(text)));
        }
        let url = reqwest::Url::parse(text).map_err(|e| format!("jwks `{text}`: {e}"))?;
        if url.scheme() == "http" {
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "jwks `{text}`: plain http is only allowed for loopback hosts; use https"
                ));
            }
        }
        Ok(Source::Url(url))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => write!(f, "{u}"),
        }
    }
}

pub(crate) struct Jwks {
    issuer: String,
    source: Source,
    refresh: Duration,
    client: Option<reqwest::Client>,
    state: RwLock<State>,
    /// Set while a background refresh is under way, so only one is spawned.
    refreshing: AtomicBool,
    /// Held while fetching, so concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<Vec<VerifyKey>>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last attempt, successful or not.
    attempted_at: Option<Instant>,
    /// Last failed attempt.
    failed_at: Option<Instant>,
    /// Last refresh caused by an unknown `kid`.
    forced_at: Option<Instant>,
    /// Fetches attempted so far (for tests and diagnostics).
    fetches: u64,
}

fn within(at: Option<Instant>, interval: Duration) -> bool {
    at.is_some_and(|t| t.elapsed() < interval)
}

impl Jwks {
    pub(crate) fn new(
        issuer: &str,
        source: Source,
        refresh: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = match source {
            Source::File(_) => None,
            Source::Url(_) => Some(
                reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client for the JWKS: {e}"))?,
            ),
        };
        Ok(Self {
            issuer: issuer.to_owned(),
            source,
            refresh,
            client,
            state: RwLock::new(State::default()),
            refreshing: AtomicBool::new(false),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many fetches have been attempted.
    #[cfg(test)]
    pub(crate) fn fetches(&self) -> u64 {
        self.read(|s| s.fetches)
    }

    /// The current keys: fetched (and awaited) on first use; refreshed in the background once
    /// older than the refresh interval.
    pub(crate) async fn keys(self: &Arc<Self>) -> Result<Arc<Vec<VerifyKey>>, AuthError> {
        let (keys, stale, may_retry) = self.read(|s| {
            (
                s.keys.clone(),
                !within(s.fetched_at, self.refresh),
                !within(s.failed_at, RETRY_AFTER_FAILURE),
            )
        });
        match keys {
            Some(keys) => {
                if stale
                    && may_retry
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                    && !self.refreshing.swap(true, Ordering::AcqRel)
                {
                    let this = Arc::clone(self);
                    runtime.spawn(async move {
                        this.fetch(Instant::now()).await;
                        this.refreshing.store(false, Ordering::Release);
                    });
                }
                Ok(keys)
            }
            None if may_retry => self
                .fetch(Instant::now())
                .await
                .ok_or(AuthError::Unavailable),
            None => Err(AuthError::Unavailable),
        }
    }

    /// Re-reads the document because a token named a `kid` no cached key has; `None` when the
    /// last such refresh was less than [`UNKNOWN_KID_INTERVAL`] ago or the fetch failed.
    pub(crate) async fn refresh_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<Vec<VerifyKey>>> {
        let allowed = self.write(|s| {
            if within(s.forced_at, UNKNOWN_KID_INTERVAL) {
                false
            } else {
                s.forced_at = Some(Instant::now());
                true
            }
        });
        if !allowed {
            return None;
        }
        self.fetch(Instant::now()).await
    }

    /// Fetches the document unless another caller finished a fetch after `wanted_after`;
    /// returns the keys then in force (`None` if there are none).
    async fn fetch(&self, wanted_after: Instant) -> Option<Arc<Vec<VerifyKey>>> {
        let _guard = self.fetching.lock().await;
        if let Some(keys) = self.read(|s| {
            s.attempted_at
                .filter(|t| *t >= wanted_after)
                .and(s.keys.clone())
        }) {
            return Some(keys);
        }
        let result = self.load().await;
        self.write(|s| {
            s.attempted_at = Some(Instant::now());
            s.fetches += 1;
            match result {
                Ok(keys) => {
                    tracing::debug!(issuer = %self.issuer, source = %self.source, keys = keys.len(), "JWKS loaded");
                    s.keys = Some(Arc::new(keys));
                    s.fetched_at = Some(Instant::now());
                }
                Err(message) => {
                    s.failed_at = Some(Instant::now());
                    tracing::warn!(issuer = %self.issuer, source = %self.source, "JWKS not loaded: {message}");
                }
            }
            s.keys.clone()
        })
    }

    async fn load(&self) -> Result<Vec<VerifyKey>, String> {
        let bytes = match (&self.source, &self.client) {
            (Source::File(path), _) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?
            }
            (Source::Url(url), Some(client)) => {
                let mut response = client
                    .get(url.clone())
                    .header("accept", "application/json")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                    if bytes.len() + chunk.len() > MAX_DOCUMENT {
                        return Err(format!("larger than {MAX_DOCUMENT} bytes"));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                bytes
            }
            (Source::Url(_), None) => return Err("no HTTP client".into()),
        };
        parse(&bytes)
    }
}

/// Reads the usable keys of a JWKS document (`{"keys": [...]}`); entries that do not parse or
/// are not for RS256, ES256 or EdDSA signatures are skipped.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let keys: Vec<VerifyKey> = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| keys::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "none of its {} keys is an RS256, ES256 or EdDSA signing key",
            entries.len()
        ));
    }
    Ok(keys)
}
