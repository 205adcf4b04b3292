//! One test binary for every end-to-end area.

mod hub_basics;
mod upstreams;
mod cancellation;
mod surface;
mod config_cli;
mod bad_input;
mod third_party;
