//! One test binary for every end-to-end area.

mod actor_secrets;
mod bad_input;
mod benchmarks;
mod cancellation;
mod config_cli;
mod conformance;
mod credentials;
mod dialin;
mod dialout;
mod fast_path;
mod hub_basics;
mod interop;
mod isolation;
mod jwt;
mod protocol;
mod resumption;
mod sharing;
mod surface;
mod third_party;
mod upstreams;
mod websocket;
