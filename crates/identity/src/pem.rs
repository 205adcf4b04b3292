//! Just enough PEM (RFC 7468) to read public keys and to read and write the hub key.

use base64::{Engine, engine::general_purpose::STANDARD};

/// One PEM block: its label (`PUBLIC KEY`, `PRIVATE KEY`, ...) and its DER bytes.
#[derive(Debug)]
pub(crate) struct Pem {
    pub label: String,
    pub der: Vec<u8>,
}

/// Reads the first PEM block of `text`.
pub(crate) fn decode(text: &str) -> Result<Pem, String> {
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no `-----BEGIN ...-----` line")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("malformed BEGIN line")?;
    let label = rest[..label_end].trim().to_owned();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body_and_end
        .find(&end_marker)
        .ok_or_else(|| format!("no `{end_marker}` line"))?;
    let body: String = body_and_end[..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if body.contains(':') {
        return Err("encrypted or annotated PEM is not supported".into());
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the PEM body is not valid base64".to_owned())?;
    if der.is_empty() {
        return Err("the PEM body is empty".into());
    }
    Ok(Pem { label, der })
}

/// Writes `der` as a PEM block with 64-character lines.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        let text = encode("PRIVATE KEY", &der);
        assert!(
            text.lines()
                .all(|l| l.len() <= 64 || l.starts_with("-----"))
        );
        let pem = decode(&format!("junk before\n{text}junk after")).unwrap();
        assert_eq!(pem.label, "PRIVATE KEY");
        assert_eq!(pem.der, der);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("nothing here").is_err());
        assert!(decode("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----").is_err());
        assert!(decode("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
