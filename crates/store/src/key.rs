//! The key that encrypts actors' secrets at rest.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT,
};

use crate::StoreError;

/// A 256-bit key for AES-256-GCM, supplied by whoever opens the store (from a key file or an
/// environment variable). `Debug` prints `[redacted]`; there is no way to print the key.
///
/// Two text forms are accepted, by [`SecretKey::parse`] (surrounding whitespace, such as a
/// file's trailing newline, is ignored):
/// - 64 hexadecimal characters, e.g. the output of `openssl rand -hex 32`;
/// - base64 of 32 bytes (standard or URL-safe alphabet, padded or not), e.g. the output of
///   `openssl rand -base64 32` or of [`SecretKey::generate`] then [`SecretKey::to_base64`].
///
/// [`SecretKey::from_bytes`] takes the raw 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// The key from its raw 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// The key from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, StoreError> {
        <[u8; 32]>::try_from(bytes).map(SecretKey).map_err(|_| {
            StoreError::InvalidSecretKey(format!("expected 32 bytes, got {}", bytes.len()))
        })
    }

    /// The key from 64 hexadecimal characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidSecretKey(
                "expected 64 hexadecimal characters".into(),
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| StoreError::InvalidSecretKey("bad hexadecimal digit".into()))?;
        }
        Ok(SecretKey(bytes))
    }

    /// The key from base64 of 32 bytes, standard or URL-safe, padded or not (whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        let decoded = [&STANDARD_PAD_INDIFFERENT, &URL_SAFE_PAD_INDIFFERENT]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or_else(|| StoreError::InvalidSecretKey("not valid base64".into()))?;
        Self::from_slice(&decoded)
    }

    /// The key from a key file's content or an environment variable: 64 hex characters, or
    /// base64 of 32 bytes (see the type's docs).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let trimmed = text.trim();
        if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Self::from_hex(trimmed);
        }
        Self::from_base64(trimmed).map_err(|_| {
            StoreError::InvalidSecretKey(
                "expected 64 hexadecimal characters or base64 of 32 bytes".into(),
            )
        })
    }

    /// A fresh random key from the system generator.
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        crate::crypto::fill_random(&mut bytes)?;
        Ok(SecretKey(bytes))
    }

    /// The key as standard base64 (44 characters), for writing a new key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn hex_and_base64_agree() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let key = SecretKey::from_bytes(bytes);
        assert_eq!(SecretKey::parse(&format!("{hex}\n")).unwrap(), key);
        assert_eq!(SecretKey::parse(&hex.to_uppercase()).unwrap(), key);
        assert_eq!(SecretKey::parse(&key.to_base64()).unwrap(), key);
        assert_eq!(
            SecretKey::parse(URL_SAFE_NO_PAD.encode(bytes).as_str()).unwrap(),
            key
        );
    }

    #[test]
    fn bad_keys_are_refused_without_echo() {
        for bad in ["", "abc", &"zz".repeat(32), &STANDARD.encode([1u8; 31])] {
            let err = SecretKey::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid secret key"), "{err}");
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn debug_redacts() {
        let key = SecretKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }
}
