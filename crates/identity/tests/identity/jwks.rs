//! JWKS documents: from a file, and from a URL served by a local HTTP server, with key
//! rotation (an unknown `kid` fetches the new document) and periodic refresh.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
    RsaPublicKeyComponents,
};
use axum::{Router, extract::State, routing::get};
use patchbay_identity::AuthError;
use serde_json::{Value, json};

use crate::common::*;

fn rsa_jwk(file: &str, kid: &str) -> Value {
    let pair = RsaKeyPair::from_der(&der(file)).unwrap();
    let parts = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&parts.n), "e": b64(&parts.e)})
}

fn ec_jwk(kid: &str) -> Value {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der("ec.key")).unwrap();
    let point = pair.public_key().as_ref();
    assert_eq!(point[0], 4);
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])})
}

fn ed_jwk(kid: &str) -> Value {
    let pair = Ed25519KeyPair::from_pkcs8(&der("ed.key")).unwrap();
    json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pair.public_key().as_ref())})
}

#[tokio::test]
async fn jwks_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let document = json!({"keys": [
        // Entries Patchbay does not use are skipped, not fatal.
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "sym", "k": b64(HS_SECRET)},
        {"kty": "weird"},
        rsa_jwk("rsa.key", "r1"),
        ec_jwk("e1"),
        ed_jwk("d1"),
    ]});
    std::fs::write(&path, document.to_string()).unwrap();
    let auth = authenticator(
        &issuer_toml("", &format!("jwks = \"{}\"", path.display())),
        None,
    );
    for (signer, kid) in [(rsa(), "r1"), (ec(), "e1"), (ed(), "d1")] {
        let identity = auth
            .authenticate(&signer.with_kid(kid).sign(&claims(json!({}))))
            .await
            .unwrap_or_else(|e| panic!("kid {kid} refused: {e}"));
        assert_eq!(identity.actor, "alice");
    }
    // A token without kid is tried against the keys of its algorithm.
    auth.authenticate(&ed().sign(&claims(json!({}))))
        .await
        .unwrap();
    // The JWKS key's algorithm is pinned: an HS256 token naming the RSA kid, signed with its
    // modulus or the symmetric JWKS entry, is refused.
    let forged = hs(HS_SECRET.as_bytes())
        .with_kid("sym")
        .sign(&claims(json!({})));
    reject(&auth, &forged).await;
    let forged = hs(&der("rsa.pub")).with_kid("r1").sign(&claims(json!({})));
    reject(&auth, &forged).await;
    // A key not in the document.
    assert_eq!(
        reject(&auth, &rsa2().with_kid("r1").sign(&claims(json!({})))).await,
        AuthError::invalid("bad signature")
    );
}

/// A tiny JWKS server: serves whatever document is current, counting requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Served {
    document: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(State(served): State<Served>) -> axum::Json<Value> {
    served.hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(served.document.lock().unwrap().clone())
}

impl JwksServer {
    async fn start(document: Value) -> Self {
        let served = Served {
            document: Arc::new(Mutex::new(document)),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            document: served.document,
            hits: served.hits,
            _task: task,
        }
    }

    fn set(&self, document: Value) {
        *self.document.lock().unwrap() = document;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn jwks_url_with_key_rotation() {
    let server = JwksServer::start(json!({"keys": [rsa_jwk("rsa.key", "2024")]})).await;
    let auth = authenticator(
        &issuer_toml("", &format!("jwks = \"{}\"", server.url)),
        None,
    );

    let old = rsa().with_kid("2024").sign(&claims(json!({})));
    auth.authenticate(&old).await.unwrap();
    auth.authenticate(&old).await.unwrap();
    assert_eq!(server.hits(), 1, "the document is cached");

    // The issuer rotates to a new RSA key and an EC key.
    server.set(json!({"keys": [rsa_jwk("rsa2.key", "2025"), ec_jwk("2025-ec")]}));
    let new = rsa2().with_kid("2025").sign(&claims(json!({"sub": "bob"})));
    let identity = auth.authenticate(&new).await.unwrap();
    assert_eq!(identity.actor, "bob");
    assert_eq!(server.hits(), 2, "the unknown kid fetched the new document");
    auth.authenticate(&ec().with_kid("2025-ec").sign(&claims(json!({}))))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);

    // The old key is gone with the rotation; neither it nor other unknown kids fetch the
    // document again within the minute.
    reject(&auth, &old).await;
    for kid in ["x1", "x2", "x3"] {
        let error = reject(&auth, &rsa().with_kid(kid).sign(&claims(json!({})))).await;
        assert!(matches!(error, AuthError::Invalid(_)), "{error}");
    }
    assert_eq!(
        server.hits(),
        2,
        "one re-read for the first unknown kid, then none"
    );
}

#[tokio::test]
async fn jwks_url_is_refreshed_on_its_interval() {
    let server = JwksServer::start(json!({"keys": [ed_jwk("a")]})).await;
    let auth = authenticator(
        &issuer_toml(
            "",
            &format!("jwks = \"{}\"\njwks_refresh = \"200ms\"", server.url),
        ),
        None,
    );
    let token = ed().with_kid("a").sign(&claims(json!({})));
    auth.authenticate(&token).await.unwrap();
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stale: still served from the cache while a refresh runs in the background.
    auth.authenticate(&token).await.unwrap();
    for _ in 0..50 {
        if server.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unreachable_jwks_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let auth = authenticator(
        &issuer_toml(
            "",
            &format!("jwks = \"http://127.0.0.1:{port}/jwks.json\"\njwks_timeout = \"2s\""),
        ),
        None,
    );
    let token = rsa().with_kid("k").sign(&claims(json!({})));
    let error = reject(&auth, &token).await;
    assert_eq!(error, AuthError::Unavailable);
    assert_eq!(error.status_code(), 503);
}

#[tokio::test]
async fn jwks_url_must_be_https_unless_loopback() {
    let error = patchbay_identity::Authenticator::new(
        &config(&issuer_toml("", "jwks = \"http://idp.example/jwks.json\"")),
        None,
    )
    .unwrap_err();
    assert!(error.to_string().contains("https"), "{error}");
}
