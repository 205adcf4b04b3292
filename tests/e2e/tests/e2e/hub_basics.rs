use std::time::Duration;

use patchbay_e2e::*;
use serde_json::json;

#[tokio::test]
async fn http_front_door_serves_the_four_tools() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    let client = hub.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["list", "search", "schema", "call"]);
    let r = call_one(&client, "fx.echo", json!({"text": "hello"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "hello");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}
