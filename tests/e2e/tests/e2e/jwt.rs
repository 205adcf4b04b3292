//! JWTs from a configured issuer at the HTTP front door: the claims name the actor, and every
//! token that should not pass is refused with 401 before anything is served.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use patchbay_e2e::{Hub, Workspace, call_one, fixture_upstream};
use serde_json::{Value, json};

const SECRET: &str = "an-hs256-shared-secret-of-at-least-32-bytes";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The status of an `initialize` POSTed with `bearer`.
async fn status_with(url: &str, bearer: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(bearer)
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "jwt-test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn jwts_name_the_actor_and_bad_ones_are_refused() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[store]\npath = {:?}\n\n[auth]\n[[auth.jwt]]\nissuer = \"https://idp.test\"\n\
             audience = [\"patchbay\"]\nactor_claim = \"agentkeys.omni_account\"\n\
             vendor_claim = \"agentkeys.vendor\"\n[[auth.jwt.keys]]\nsecret = {SECRET:?}\n\n\
             [[policy]]\nactors = [\"omni-42\"]\nallow = [\"fx.echo\"]\n\n{}",
            ws.path("patchbay.db"),
            fixture_upstream("fx", &[], "")
        ),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    let claims = |extra: Value| {
        let mut c = json!({
            "iss": "https://idp.test", "aud": "patchbay", "sub": "someone",
            "exp": now() + 600, "agentkeys.omni_account": "omni-42", "agentkeys.vendor": "acme"
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    // A valid token is the actor its claim names, under that actor's policy.
    let good = token(claims(json!({})), SECRET);
    assert_eq!(status_with(&hub.url, &good).await, 200);
    let client = patchbay_e2e::http_client(&format!("{}?token={good}", hub.url)).await;
    let r = call_one(&client, "fx.echo", json!({"text": "as omni-42"})).await;
    assert_eq!(r["success"], true, "{r}");
    let r = call_one(&client, "fx.add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");

    // Each of these is refused before anything is served.
    let refused = [
        (
            "expired",
            token(claims(json!({"exp": now() - 3600})), SECRET),
        ),
        (
            "not yet valid",
            token(claims(json!({"nbf": now() + 3600})), SECRET),
        ),
        (
            "wrong issuer",
            token(claims(json!({"iss": "https://evil.test"})), SECRET),
        ),
        (
            "wrong audience",
            token(claims(json!({"aud": "someone-else"})), SECRET),
        ),
        (
            "wrong key",
            token(claims(json!({})), "another-secret-of-at-least-32-bytes!!"),
        ),
        ("alg none", {
            let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
            let body = base64url(claims(json!({})).to_string().as_bytes());
            format!("{header}.{body}.")
        }),
        ("tampered payload", {
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            parts[1] = base64url(
                claims(json!({"agentkeys.omni_account": "admin"}))
                    .to_string()
                    .as_bytes(),
            );
            parts.join(".")
        }),
    ];
    for (what, bad) in refused {
        assert_eq!(
            status_with(&hub.url, &bad).await,
            401,
            "{what} was not refused"
        );
    }
    client.cancel().await.unwrap();
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
