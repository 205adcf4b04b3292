//! Front doors and the hub surface they serve. Each front door (Streamable HTTP, stdio) runs
//! a [`session::Session`] per client over the shared [`session::HubState`].

pub mod access;
mod client_link;
mod fastpath;
pub mod http;
mod passthrough;
pub mod session;
pub mod session_end;
pub mod stdio;
pub mod surface;

pub use session::{HubState, Session};
pub use surface::Expose;
