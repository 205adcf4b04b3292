//! Streamable HTTP upstreams.

use std::collections::{BTreeMap, HashMap};

use rmcp::{
    ServiceExt,
    service::{RoleClient, RunningService},
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};

use crate::client::UpstreamClient;

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
    let config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
        .custom_headers(headers)
        .max_concurrent_requests(64);
    let transport = StreamableHttpClientTransport::from_config(config);
    client.serve(transport).await.map_err(|e| format!("cannot connect to {}: {e}", spec.url))
}
