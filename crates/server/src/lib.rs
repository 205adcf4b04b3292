//! Front doors and the hub surface they serve. Each front door (Streamable HTTP, stdio,
//! WebSocket) runs a [`session::Session`] per client over the shared [`session::HubState`].

pub mod access;
mod client_link;
pub mod dialer;
mod fastpath;
pub mod http;
mod open_requests;
mod passthrough;
pub mod provider_door;
pub mod session;
pub mod session_end;
pub mod stdio;
pub mod summary;
pub mod surface;
pub mod websocket;
pub mod ws_client;
pub mod ws_door;

pub use session::{HubState, Session};
pub use surface::Expose;
