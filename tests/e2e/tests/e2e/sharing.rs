//! `sharing = "session"`: each client session gets a connection (here, a process) of its own,
//! started on its first call and stopped when the session ends; calls without a session
//! (`patchbay ops`) and the catalog use the shared one.

use std::time::Duration;

use patchbay_e2e::{Hub, Workspace, call_one, eventually, fixture_upstream, pid_alive};
use serde_json::json;

/// The fixture's process id as seen through `call`.
async fn upstream_pid(client: &patchbay_e2e::Client) -> i32 {
    let r = call_one(client, "demo.pid", json!({})).await;
    assert_eq!(r["success"], true, "{r}");
    r["result"]["structuredContent"]["pid"]
        .as_i64()
        .or_else(|| {
            r["result"]["content"][0]["text"]
                .as_str()
                .and_then(|t| t.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no pid in {r}")) as i32
}

#[tokio::test]
async fn each_session_gets_its_own_upstream_process_until_it_ends() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream("demo", &[], "sharing = \"session\""),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;

    let a = hub.client().await;
    let b = hub.client().await;
    let pid_a = upstream_pid(&a).await;
    let pid_b = upstream_pid(&b).await;
    assert_ne!(pid_a, pid_b, "two sessions share a process");
    assert_eq!(upstream_pid(&a).await, pid_a, "a session's process changed");
    assert!(pid_alive(pid_a) && pid_alive(pid_b));

    // Ending session A (DELETE) stops its process and only its process.
    a.cancel().await.expect("close session A");
    assert!(
        eventually(Duration::from_secs(10), || !pid_alive(pid_a)).await,
        "session A's upstream process {pid_a} outlived its session"
    );
    assert!(
        pid_alive(pid_b),
        "session B's process stopped with A's session"
    );
    assert_eq!(upstream_pid(&b).await, pid_b);

    // A hub shutdown stops the rest.
    drop(b);
    hub.stop().await;
    assert!(
        eventually(Duration::from_secs(10), || !pid_alive(pid_b)).await,
        "session B's upstream process {pid_b} outlived the hub"
    );
}

#[tokio::test]
async fn shared_is_the_default_and_every_session_uses_one_process() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("demo", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    let a = hub.client().await;
    let b = hub.client().await;
    assert_eq!(upstream_pid(&a).await, upstream_pid(&b).await);
}
