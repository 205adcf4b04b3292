//! Upstream settings that use the caller's secrets (`${actor.secret.NAME}`): each actor's calls
//! reach a process started with that actor's values, and the values appear nowhere else.

use std::{path::Path, process::Stdio, time::Duration};

use patchbay_e2e::{HttpFixture, Hub, Workspace, call_one, fixture, patchbay};
use serde_json::json;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Runs `patchbay ARGS --config CONFIG` with the secret key set, feeding `stdin`.
async fn cli(config: &Path, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(patchbay())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PATCHBAY_SECRET_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run patchbay");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "patchbay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn client_as(hub: &Hub, token: &str) -> patchbay_e2e::Client {
    patchbay_e2e::http_client(&format!("{}?token={token}", hub.url)).await
}

#[tokio::test]
async fn each_actor_reaches_the_upstream_with_its_own_secret() {
    let ws = Workspace::new();
    let db = ws.path("patchbay.db");
    let web = HttpFixture::start("127.0.0.1:0", &[]).await;
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[auth]\n\n[store]\npath = {db:?}\n\n[[policy]]\nallow = [\"*\"]\n\n\
             [upstreams.demo]\ncommand = {:?}\nenv = {{ GH_TOKEN = \"Bearer ${{actor.secret.gh}}\", WHO = \"${{actor.name}}\" }}\n\n\
             [upstreams.web]\nurl = {:?}\nheaders = {{ Authorization = \"Bearer ${{actor.secret.gh}}\" }}\n",
            fixture().display().to_string(),
            web.url
        ),
    );
    let mut tokens = Vec::new();
    for (actor, secret) in [("alice", "alice-S3CRET-111"), ("bob", "bob-S3CRET-222")] {
        cli(&config, &["actor", "add", actor], "").await;
        cli(&config, &["secret", "set", actor, "gh"], secret).await;
        tokens.push(cli(&config, &["token", "issue", actor], "").await);
    }

    let hub = Hub::serve_with(&config, &[("PATCHBAY_SECRET_KEY", KEY)]).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    let alice = client_as(&hub, &tokens[0]).await;
    let bob = client_as(&hub, &tokens[1]).await;
    let env = |r: serde_json::Value| {
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };

    let a = call_one(&alice, "demo.env", json!({"name": "GH_TOKEN"})).await;
    assert_eq!(env(a.clone()), "Bearer alice-S3CRET-111", "{a}");
    let b = call_one(&bob, "demo.env", json!({"name": "GH_TOKEN"})).await;
    assert_eq!(env(b.clone()), "Bearer bob-S3CRET-222", "{b}");
    assert_eq!(
        env(call_one(&alice, "demo.env", json!({"name": "WHO"})).await),
        "alice"
    );
    let pid = |r: serde_json::Value| env(r);
    let (pa, pb) = (
        pid(call_one(&alice, "demo.pid", json!({})).await),
        pid(call_one(&bob, "demo.pid", json!({})).await),
    );
    assert_ne!(pa, pb, "two actors share one upstream process");

    // An HTTP upstream gets each caller's values on its requests.
    let header = |r: serde_json::Value| env(r);
    let a = call_one(&alice, "web.header", json!({"name": "authorization"})).await;
    assert_eq!(header(a.clone()), "Bearer alice-S3CRET-111", "{a}");
    let b = call_one(&bob, "web.header", json!({"name": "authorization"})).await;
    assert_eq!(header(b.clone()), "Bearer bob-S3CRET-222", "{b}");

    drop((alice, bob));
    let log = hub.log.clone();
    hub.stop().await;
    // The values never reach the log or the database in the clear.
    let log = log.text();
    assert!(log.contains("started a connection of its own"), "{log}");
    for secret in ["alice-S3CRET-111", "bob-S3CRET-222"] {
        assert!(!log.contains(secret), "secret in the hub log");
        for file in ["patchbay.db", "patchbay.db-wal", "patchbay.db-shm"] {
            let bytes = std::fs::read(ws.path(file)).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret in {file}"
            );
        }
    }
}
