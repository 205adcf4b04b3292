//! Providers: the code that talks to one source of operations. Each MCP upstream (a child
//! process over stdio, or a server over Streamable HTTP or legacy HTTP+SSE) gets a supervisor that connects,
//! fetches the catalog into the registry, re-lists on `list_changed`, and reconnects with
//! capped exponential backoff when the connection ends.

mod actor_values;
mod client;
mod dialin;
mod http;
mod lane;
mod mcp;
mod routing;
mod sessions;
mod sse;
mod stdio;
mod supervisor;

pub use actor_values::{ActorSecrets, ActorValue, depends_on_actor};
pub use dialin::{Admitted, DialInSettings, DialIns, Ended, ProviderTokens, WAITING};
pub use http::HttpSpec;
pub use mcp::McpProvider;
pub use stdio::{GroupGuard, StdioSpec};
pub use supervisor::{Sharing, UpstreamSpec, UpstreamTransport, start_upstream};
