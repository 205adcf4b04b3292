//! patchbay-identity's tests, compiled into one binary: real keys (OpenSSL-generated PEM
//! fixtures under `tests/keys/`), real signatures, a real HTTP server for JWKS URLs.

mod binding;
mod common;
mod config;
mod jwks;
mod jwt;
mod tokens;
