//! The store's cryptography, all from aws-lc-rs: random ids and token secrets, SHA-256 of token
//! secrets, and AES-256-GCM sealing of secret values.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{SecretKey, SecretString, StoreError};

/// What every token secret starts with, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "pb_";

/// What every dial-in provider's token starts with (`patchbay provider add`).
pub const PROVIDER_TOKEN_PREFIX: &str = "pbp_";

/// Random bytes in a token secret.
const TOKEN_BYTES: usize = 32;

/// Length of a token secret: the prefix and 43 characters of unpadded base64url.
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;

/// Whether `text` has the shape of a Patchbay token secret (`pb_` and 43 base64url characters).
/// Says nothing about validity; use it to tell a token from a JWT before asking the store.
pub fn looks_like_token(text: &str) -> bool {
    text.len() == TOKEN_LEN
        && text.starts_with(TOKEN_PREFIX)
        && text[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), StoreError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| StoreError::Crypto("the system random generator failed"))
}

/// A short public id: `prefix` and 8 characters of lowercase base32 (40 random bits). Unique
/// constraints in the schema catch the rare collision; the caller draws again.
pub(crate) fn random_id(prefix: &str) -> Result<String, StoreError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 5];
    fill_random(&mut bytes)?;
    let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut id = String::with_capacity(prefix.len() + 8);
    id.push_str(prefix);
    for i in (0..8).rev() {
        id.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    Ok(id)
}

/// A new token secret (`pb_` + base64url of 32 random bytes) and the hash to store.
pub(crate) fn mint_token() -> Result<(SecretString, [u8; 32]), StoreError> {
    let minted = mint_secret(TOKEN_PREFIX)?;
    debug_assert_eq!(minted.0.expose().len(), TOKEN_LEN);
    Ok(minted)
}

/// A new secret (`prefix` + base64url of 32 random bytes) and the hash to store.
pub(crate) fn mint_secret(prefix: &str) -> Result<(SecretString, [u8; 32]), StoreError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_random(&mut bytes)?;
    let secret = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_token(&secret);
    Ok((SecretString::new(secret), hash))
}

/// SHA-256 of a presented token secret: what the store keeps and looks tokens up by. The secrets
/// carry 256 random bits, so a plain hash is enough (no salt or slow hash needed).
pub(crate) fn hash_token(secret: &str) -> [u8; 32] {
    let d = digest(&SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Seals and opens secret values with AES-256-GCM. Each value gets a fresh random 96-bit nonce,
/// stored beside the ciphertext; the actor and the secret's name are the associated data, so a
/// ciphertext copied to another row does not open.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

/// A sealed value: the nonce and the ciphertext with its 16-byte tag appended.
pub(crate) struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Result<Self, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key.bytes())
            .map_err(|_| StoreError::Crypto("AES-256-GCM rejected the key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, actor: &str, name: &str, value: &str) -> Result<Sealed, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut in_out = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(actor, name)),
                &mut in_out,
            )
            .map_err(|_| StoreError::Crypto("AES-256-GCM sealing failed"))?;
        Ok(Sealed {
            nonce,
            ciphertext: in_out,
        })
    }

    pub fn open(
        &self,
        actor: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<SecretString, StoreError> {
        let fail = || StoreError::Decrypt {
            actor: actor.to_owned(),
            name: name.to_owned(),
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated_data(actor, name)), &mut in_out)
            .map_err(|_| fail())?;
        let text = std::str::from_utf8(plain).map_err(|_| fail())?;
        Ok(SecretString::new(text))
    }
}

/// `patchbay-secret-v1`, the actor and the name, each NUL-terminated. Names cannot contain NUL,
/// so two different (actor, name) pairs never give the same bytes.
fn associated_data(actor: &str, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(20 + actor.len() + name.len());
    for part in ["patchbay-secret-v1", actor, name] {
        aad.extend_from_slice(part.as_bytes());
        aad.push(0);
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let (secret, hash) = mint_token().unwrap();
        assert!(looks_like_token(secret.expose()), "{}", secret.expose());
        assert_eq!(hash, hash_token(secret.expose()));
        let (other, _) = mint_token().unwrap();
        assert_ne!(secret, other);
        assert!(!looks_like_token("pb_short"));
        assert!(!looks_like_token("eyJhbGciOiJIUzI1NiJ9.e30.x"));
    }

    #[test]
    fn ids() {
        let id = random_id("tok_").unwrap();
        assert_eq!(id.len(), 12);
        assert!(id.starts_with("tok_"));
        assert!(
            id[4..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        );
    }

    #[test]
    fn seal_round_trip_and_binding_to_row() {
        let sealer = Sealer::new(&SecretKey::from_bytes([7; 32])).unwrap();
        let sealed = sealer.seal("alice", "github", "ghp_value").unwrap();
        assert!(
            !sealed
                .ciphertext
                .windows(9)
                .any(|w| w == b"ghp_value".as_slice())
        );
        let opened = sealer
            .open("alice", "github", &sealed.nonce, &sealed.ciphertext)
            .unwrap();
        assert_eq!(opened.expose(), "ghp_value");
        assert!(
            sealer
                .open("bob", "github", &sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        assert!(
            sealer
                .open("alice", "gitlab", &sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        let other = Sealer::new(&SecretKey::from_bytes([8; 32])).unwrap();
        assert!(
            other
                .open("alice", "github", &sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        // Fresh nonce each time.
        let again = sealer.seal("alice", "github", "ghp_value").unwrap();
        assert_ne!(again.nonce, sealed.nonce);
    }
}
