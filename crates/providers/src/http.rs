//! Streamable HTTP upstreams.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use rmcp::{
    ServiceExt,
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport, common::client_side_sse::ExponentialBackoff,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use crate::{client::UpstreamClient, routing::RoutingTransport, sse::SseTransport};

/// How to reach an HTTP upstream.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub url: String,
    /// Headers sent with every request (for example `Authorization`).
    pub headers: BTreeMap<String, String>,
}

pub(crate) async fn connect(
    spec: &HttpSpec,
    client: UpstreamClient,
) -> Result<RunningService<RoleClient, UpstreamClient>, String> {
    let mut headers = HashMap::new();
    for (name, value) in &spec.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("bad header name `{name}`: {e}"))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| format!("bad value for header `{name}`"))?;
        headers.insert(name, value);
    }
    let mut config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
        .custom_headers(headers)
        .max_concurrent_requests(64);
    config.retry_config = Arc::new(stream_retry());
    let transport = StreamableHttpClientTransport::from_config(config);
    let transport = RoutingTransport::new(transport, client.callers.clone());
    let streamable = match client.clone().serve(transport).await {
        Ok(service) => return Ok(service),
        Err(e) => e,
    };
    // Servers of the 2024-11-05 era speak HTTP+SSE instead; try that before giving up.
    tracing::debug!(url = %spec.url, error = %streamable, "Streamable HTTP failed; trying legacy SSE");
    let sse = match SseTransport::connect(&spec.url, &spec.headers).await {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "cannot connect to {}: {streamable} (legacy SSE: {e})",
                spec.url
            ));
        }
    };
    let sse = RoutingTransport::new(sse, client.callers.clone());
    let service = client.serve(sse).await.map_err(|e| {
        format!(
            "cannot connect to {}: {streamable} (legacy SSE: {e})",
            spec.url
        )
    })?;
    tracing::info!(url = %spec.url, "connected over legacy HTTP+SSE");
    Ok(service)
}

/// How a broken SSE stream is resumed: one attempt, made at once; if the upstream does not take
/// it, the stream ends. rmcp's default retries forever (at the server's `retry` interval, 3 s
/// for rmcp servers), so a call in flight when the upstream died would hang until its timeout.
/// Ending the stream fails the call as `upstream_unavailable`, and that failure makes the
/// supervisor check the connection (see `UpstreamClient::suspect`).
fn stream_retry() -> ExponentialBackoff {
    let mut policy = ExponentialBackoff::default();
    // `retry(0)` (the first, immediate resume) is always allowed; `retry(1)` is refused.
    policy.max_times = Some(1);
    policy
}
