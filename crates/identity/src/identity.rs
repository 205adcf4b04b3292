//! The result of a successful authentication: who is calling, and which credential proved it.

use std::fmt;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The actor's name (for a JWT: the mapped claim, with the issuer's `actor_prefix`).
    pub actor: String,
    /// The vendor acting for the actor (a binding's vendor, or a JWT's vendor claim), if any.
    pub vendor: Option<String>,
    /// Roles or scopes the credential carries (static token config, JWT claim, or the store).
    pub roles: Vec<String>,
    /// Which credential proved this identity.
    pub credential: Credential,
}

/// Which credential proved an [`Identity`]. Never holds a secret: safe to log and audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A token from `[[auth.tokens]]` in the configuration.
    StaticToken {
        /// The entry's `label` (default: its actor).
        label: String,
    },
    /// A `pb_...` token issued by `patchbay token issue` and kept (hashed) in the store.
    StoredToken {
        /// The token's id in the store.
        id: String,
    },
    /// A JWT from a configured `[[auth.jwt]]` issuer.
    Jwt {
        /// The token's `iss`.
        issuer: String,
        /// The token's `sub`, or empty when it has none.
        subject: String,
    },
    /// A vendor binding token minted by this hub (`patchbay bind create`).
    Binding {
        /// The binding id (`bid` claim).
        id: String,
    },
    /// No credential was presented: the hub's own configuration names the identity (an
    /// `[[endpoints]]` entry, whose connection the hub opens itself).
    Configured {
        /// What configured it, e.g. `endpoint wss://api.example/mcp/?token=…` (never a secret).
        label: String,
    },
}

impl Identity {
    /// Whether the identity carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::StaticToken { label } => write!(f, "static token `{label}`"),
            Credential::StoredToken { id } => write!(f, "token {id}"),
            Credential::Jwt { issuer, subject } => write!(f, "JWT from {issuer} for `{subject}`"),
            Credential::Binding { id } => write!(f, "binding {id}"),
            Credential::Configured { label } => write!(f, "configured {label}"),
        }
    }
}
