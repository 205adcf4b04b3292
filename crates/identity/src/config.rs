//! The `[auth]` section of the configuration: static tokens, JWT issuers and the hub's own key.
//!
//! ```toml
//! [auth]
//! hub_key = "/var/lib/patchbay/hub-key.pem"
//!
//! [[auth.tokens]]
//! actor = "ci"
//! token = "a-long-random-string-from-your-secret-store"
//! roles = ["runner"]
//!
//! [[auth.jwt]]
//! issuer = "https://login.example.com/"
//! audience = "patchbay"
//! jwks = "https://login.example.com/.well-known/jwks.json"
//! actor_claim = "agentkeys.omni_account"
//! vendor_claim = "agentkeys.vendor"
//! roles_claim = "scope"
//! ```
//!
//! Values are taken literally: expanding `${VAR}` references is the job of whoever loads the
//! configuration file.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Deserializer};

/// `[auth]`: how callers prove who they are. Every part is optional; an empty section accepts
/// only stored (`pb_...`) tokens, and only when a store is attached.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: fixed tokens for small setups. Default: none.
    #[serde(default)]
    pub tokens: Vec<StaticTokenConfig>,
    /// `[[auth.jwt]]`: issuers whose JWTs are accepted. Default: none.
    #[serde(default)]
    pub jwt: Vec<JwtIssuerConfig>,
    /// Path of the hub's own Ed25519 key (PKCS#8, PEM), which signs vendor binding tokens.
    /// Created on first use with mode 0600 (parent folders too). Default: none, and then
    /// bindings can be neither minted nor accepted.
    pub hub_key: Option<PathBuf>,
}

impl AuthConfig {
    /// Whether any credential source is configured (static tokens, JWT issuers or a hub key).
    /// Stored tokens depend on the store, which this section does not know about.
    pub fn is_configured(&self) -> bool {
        !self.tokens.is_empty() || !self.jwt.is_empty() || self.hub_key.is_some()
    }
}

/// `[[auth.tokens]]`: one fixed bearer token and the actor it authenticates.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// The actor this token authenticates.
    pub actor: String,
    /// The token itself: at least 16 characters, not starting with `pb_` (reserved for stored
    /// tokens) and not shaped like a JWT. Compared in constant time.
    pub token: String,
    /// Roles the actor gets with this token. Default: none.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Vendor acting for the actor when this token is used. Default: none.
    pub vendor: Option<String>,
    /// Name of this token in logs and audit records ([`crate::Credential::StaticToken`]).
    /// Default: the actor's name.
    pub label: Option<String>,
}

impl fmt::Debug for StaticTokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenConfig")
            .field("actor", &self.actor)
            .field("token", &"[redacted]")
            .field("roles", &self.roles)
            .field("vendor", &self.vendor)
            .field("label", &self.label)
            .finish()
    }
}

/// A JWT signature algorithm Patchbay verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys of 2048 to 8192 bits).
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256 over a shared secret of at least 32 bytes.
    HS256,
}

impl JwtAlgorithm {
    /// Every algorithm, the default for [`JwtIssuerConfig::algorithms`].
    pub const ALL: [JwtAlgorithm; 4] = [
        JwtAlgorithm::RS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::EdDSA,
        JwtAlgorithm::HS256,
    ];

    /// The name used in a JWT header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::EdDSA => "EdDSA",
            JwtAlgorithm::HS256 => "HS256",
        }
    }

    /// Parses a JWT header's `alg`; `None` for anything Patchbay does not verify (including
    /// `none`).
    pub fn from_header(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[auth.jwt]]`: one issuer whose JWTs are accepted.
///
/// A token is routed to the entry whose `issuer` equals its `iss`; only that entry's keys can
/// verify it. Keys come from `keys`, from `jwks`, or both. Tokens must carry `exp`, `iss` and
/// `aud`; `nbf` is checked when present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// The exact `iss` value of this issuer's tokens. `patchbay` is reserved for bindings.
    pub issuer: String,
    /// Accepted `aud` values (a string or a list); a token must name at least one. Required.
    pub audience: OneOrMany,
    /// Algorithms accepted from this issuer. Each key is further pinned to its own algorithm.
    /// Default: `["RS256", "ES256", "EdDSA", "HS256"]`.
    #[serde(default = "all_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Keys given directly. Default: none.
    #[serde(default)]
    pub keys: Vec<JwtKeyConfig>,
    /// A JWKS document: a file path, or an `https://` URL (`http://` only for loopback hosts).
    /// Fetched on first use, cached, re-read every `jwks_refresh`, and re-read at once (at most
    /// once a minute) when a token names a `kid` the cache does not know. Keys without `alg`
    /// are pinned by type: RSA to RS256, P-256 to ES256, Ed25519 to EdDSA; symmetric (`oct`)
    /// keys in a JWKS are ignored. Default: none.
    pub jwks: Option<String>,
    /// How often the JWKS is re-read. Default `10m`.
    #[serde(default = "ten_minutes", deserialize_with = "duration")]
    pub jwks_refresh: Duration,
    /// Longest wait for the JWKS URL to answer. Default `10s`.
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub jwks_timeout: Duration,
    /// Clock skew tolerated when checking `exp` and `nbf`. Default `60s`.
    #[serde(default = "sixty_seconds", deserialize_with = "duration")]
    pub leeway: Duration,
    /// Claim naming the actor. A name with dots (`agentkeys.omni_account`) matches a literal
    /// key with dots first, then a nested path (`{"agentkeys": {"omni_account": ...}}`).
    /// Default `sub`.
    #[serde(default = "sub")]
    pub actor_claim: String,
    /// Text put before the claim's value to form the actor's name (for example `acme:`, so
    /// this issuer's subjects cannot collide with local actors). Default: empty.
    #[serde(default)]
    pub actor_prefix: String,
    /// Claim naming the vendor acting for the actor (for example `agentkeys.vendor`); same
    /// lookup rules as `actor_claim`. Default: none (no vendor).
    pub vendor_claim: Option<String>,
    /// Claim holding roles or scopes: an array of strings, or a space-separated string such
    /// as OAuth's `scope`. Default: none (no roles).
    pub roles_claim: Option<String>,
}

/// One key of an `[[auth.jwt]]` issuer: exactly one of `pem`, `pem_file`, `secret`,
/// `secret_file`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Key id: when set, this key verifies only tokens whose header `kid` is the same; when
    /// unset, it is tried for any token of its algorithm. Default: none.
    pub kid: Option<String>,
    /// The only algorithm this key verifies. Default: from the key (RS256 for an RSA key,
    /// ES256 for a P-256 key, EdDSA for an Ed25519 key, HS256 for a secret). A public key
    /// can never verify HS256.
    pub algorithm: Option<JwtAlgorithm>,
    /// A PEM public key (`PUBLIC KEY`, or `RSA PUBLIC KEY`): RSA, EC P-256 or Ed25519.
    pub pem: Option<String>,
    /// A file holding such a PEM public key.
    pub pem_file: Option<PathBuf>,
    /// An HS256 shared secret (its UTF-8 bytes, at least 32).
    pub secret: Option<String>,
    /// A file holding an HS256 shared secret (its bytes, one trailing newline dropped).
    pub secret_file: Option<PathBuf>,
}

impl fmt::Debug for JwtKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeyConfig")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("pem", &self.pem.as_ref().map(|_| "[pem]"))
            .field("pem_file", &self.pem_file)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `audience = "patchbay"`
    One(String),
    /// `audience = ["patchbay", "patchbay-staging"]`
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn all_algorithms() -> Vec<JwtAlgorithm> {
    JwtAlgorithm::ALL.to_vec()
}

fn sub() -> String {
    "sub".to_owned()
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn sixty_seconds() -> Duration {
    Duration::from_secs(60)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration like \"10s\" or \"5m\": {e}"
        ))
    })
}
