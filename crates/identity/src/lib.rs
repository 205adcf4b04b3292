//! Who is calling: the layer between front doors and sessions.
//!
//! A front door hands the presented bearer string to [`Authenticator::authenticate`] and gets
//! an [`Identity`] (actor, vendor, roles, and which [`Credential`] proved it) or an
//! [`AuthError`] whose message and [`AuthError::www_authenticate`] value are safe to send back.
//!
//! Credentials, chosen by the token's shape:
//! - `pb_...`: a stored token, checked through [`TokenLookup`] (implemented by the store).
//! - A JWT (three base64url parts): a binding token when its `iss` is `patchbay` (signed by the
//!   hub's own Ed25519 key, minted with [`Authenticator::mint_binding`], and refused as
//!   [`AuthError::Revoked`] once [`TokenLookup::binding_active`] says no); otherwise a token
//!   of the `[[auth.jwt]]` issuer its `iss` names: RS256, ES256, EdDSA or HS256, each key
//!   pinned to one algorithm, with `exp`, `nbf`, `iss` and `aud` checked.
//! - Anything else: a static token from `[[auth.tokens]]`, compared in constant time.
//!
//! No HTTP framework and no database here: front doors call in, the store is behind a trait.
//! The only crypto backend is aws-lc-rs.

mod authenticator;
mod binding;
pub mod config;
mod error;
mod identity;
mod jwt;
mod lookup;
mod pem;
mod static_tokens;

pub use authenticator::{Authenticator, MAX_TOKEN_LEN, STORED_TOKEN_PREFIX, bearer_token};
pub use binding::{BINDING_AUDIENCE, BINDING_ISSUER};
pub use config::{AuthConfig, JwtAlgorithm, JwtIssuerConfig, JwtKeyConfig, StaticTokenConfig};
pub use error::{AuthError, BindingError, ConfigError};
pub use identity::{Credential, Identity};
pub use lookup::{MemoryTokenLookup, TokenLookup};
