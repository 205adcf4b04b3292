//! Vendor bindings: JWTs this hub signs with its own Ed25519 key, saying "this vendor acts for
//! this actor" (`iss` = `patchbay`, `aud` = `patchbay-binding`, `sub` = actor, `vendor`,
//! `bid` = binding id).
//!
//! The hub key is a PKCS#8 Ed25519 private key in a PEM file, created on first use with mode
//! 0600. Verification checks the signature, `iss`, `aud` and `exp` here; whether the binding is
//! still active is asked of the store ([`crate::TokenLookup::binding_active`]).

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    digest,
    signature::{Ed25519KeyPair, KeyPair},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    AuthError, BindingError, ConfigError, Credential, Identity,
    config::JwtAlgorithm,
    jwt::{self, Unverified},
    pem,
};

/// `iss` of binding tokens.
pub const BINDING_ISSUER: &str = "patchbay";
/// `aud` of binding tokens.
pub const BINDING_AUDIENCE: &str = "patchbay-binding";
/// Clock skew tolerated on a binding's `exp`, in seconds.
const LEEWAY_SECS: u64 = 60;

#[derive(Serialize, Deserialize)]
struct BindingClaims {
    iss: String,
    aud: String,
    sub: String,
    vendor: String,
    bid: String,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

/// The hub's own signing key.
pub(crate) struct HubKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Derived from the public key, so a future rotation can tell keys apart.
    kid: String,
}

impl HubKey {
    /// Loads the key at `path`, creating it (mode 0600, parent folders 0700) when absent.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, ConfigError> {
        let io = |source: std::io::Error| ConfigError::Io {
            what: "hub key",
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create(path).map_err(io)?;
                let bytes = std::fs::read(path).map_err(io)?;
                Self::from_file_bytes(path, &bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let fail = |message: &str| ConfigError::HubKey {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        warn_if_readable_by_others(path);
        let der = if bytes.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes).map_err(|_| fail("not UTF-8 PEM"))?;
            let block = pem::decode(text).map_err(|e| fail(&e))?;
            if block.label != "PRIVATE KEY" {
                return Err(fail("expected a `PRIVATE KEY` (PKCS#8) PEM block"));
            }
            block.der
        } else {
            bytes.to_vec()
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| fail("not an Ed25519 PKCS#8 private key"))?;
        let public = pair.public_key().as_ref();
        let thumb = digest::digest(&digest::SHA256, public);
        let kid = thumb.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(public),
            kid,
        })
    }

    /// Signs a binding token.
    pub(crate) fn mint(
        &self,
        actor: &str,
        vendor: &str,
        binding_id: &str,
        ttl: Option<Duration>,
    ) -> Result<String, BindingError> {
        for (what, value) in [
            ("actor", actor),
            ("vendor", vendor),
            ("binding id", binding_id),
        ] {
            if value.trim().is_empty() {
                return Err(BindingError::Invalid(format!("the {what} is empty")));
            }
        }
        let now = now_secs();
        let claims = BindingClaims {
            iss: BINDING_ISSUER.to_owned(),
            aud: BINDING_AUDIENCE.to_owned(),
            sub: actor.to_owned(),
            vendor: vendor.to_owned(),
            bid: binding_id.to_owned(),
            iat: now,
            exp: ttl.map(|ttl| now.saturating_add(ttl.as_secs().max(1))),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| BindingError::Sign(e.to_string()))
    }

    /// Checks a binding token's signature and claims (not whether it is still active).
    pub(crate) fn verify(
        &self,
        token: &str,
        unverified: &Unverified,
    ) -> Result<(Identity, String), AuthError> {
        if unverified.alg != JwtAlgorithm::EdDSA {
            return Err(AuthError::invalid(
                "binding tokens are signed with EdDSA only",
            ));
        }
        if unverified.kid.as_deref().is_some_and(|kid| kid != self.kid) {
            return Err(AuthError::invalid(
                "the binding was signed by another hub key",
            ));
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[BINDING_ISSUER]);
        validation.set_audience(&[BINDING_AUDIENCE]);
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<BindingClaims>(token, &self.decoding, &validation)
            .map_err(|e| jwt::map_error(&e))?
            .claims;
        if claims.sub.is_empty() || claims.vendor.is_empty() || claims.bid.is_empty() {
            return Err(AuthError::invalid(
                "the binding token lacks its actor, vendor or id",
            ));
        }
        let identity = Identity {
            actor: claims.sub,
            vendor: Some(claims.vendor),
            roles: Vec::new(),
            credential: Credential::Binding {
                id: claims.bid.clone(),
            },
        };
        Ok((identity, claims.bid))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Writes a new key to `path` atomically: a private temporary file, hard-linked into place (so
/// two processes racing to create it end up using the same key).
fn create(path: &Path) -> std::io::Result<()> {
    let pair = Ed25519KeyPair::generate().map_err(|_| std::io::Error::other("key generation"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| std::io::Error::other("PKCS#8 encoding"))?;
    let text = pem::encode("PRIVATE KEY", pkcs8.as_ref());

    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hub-key".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let result = (|| {
        let mut file = private_file(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        match std::fs::hard_link(&temp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(_) => {
                // No hard links here (some filesystems): create the file in place instead.
                let mut file = private_file(path)?;
                file.write_all(text.as_bytes())?;
                file.sync_all()
            }
        }
    })();
    let _ = std::fs::remove_file(&temp);
    if result.is_ok() {
        tracing::info!(path = %path.display(), "created the hub key");
    }
    result
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the hub key is readable by other users; run `chmod 600` on it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
