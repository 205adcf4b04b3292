//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, run on Node 22
//! by `scripts/conformance`): first against the conformance fixture alone, to prove the
//! fixture, then against `patchbay serve` fronting that fixture over stdio and over Streamable
//! HTTP. Every scenario of the `active` and `pending` server suites must pass.

use std::{path::PathBuf, process::Stdio, time::Duration};

use patchbay_e2e::{Hub, Workspace, bin, start_listening};
use tokio::process::{Child, Command};

fn conformance_fixture() -> PathBuf {
    bin("patchbay-conformance-fixture")
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/conformance")
}

/// Runs one suite against `url` and asserts that every scenario passed.
async fn run_suite(url: &str, suite: &str) {
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new(script())
            .arg(url)
            .args(["--suite", suite])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the conformance suite finished within 180 s")
    .expect("run scripts/conformance (did scripts/test-deps run?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("suite {suite} against {url}:\n{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or_else(|| panic!("no summary line; {report}"));
    assert!(summary.ends_with(" 0 failed"), "{summary}; {report}");
    assert!(!stdout.contains('✗'), "a scenario failed; {report}");
    let passed: usize = summary
        .trim_start_matches("Total: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed > 0, "nothing ran; {report}");
    assert!(out.status.success(), "exit status {}; {report}", out.status);
}

async fn run_all_suites(url: &str) {
    run_suite(url, "active").await;
    run_suite(url, "pending").await;
}

/// `patchbay-conformance-fixture --http 127.0.0.1:0`, and its URL.
async fn http_fixture() -> (Child, String) {
    let mut cmd = Command::new(conformance_fixture());
    cmd.args(["--http", "127.0.0.1:0"]);
    let (child, first, _log) = start_listening(cmd).await;
    let url = first
        .strip_prefix("listening ")
        .expect("listening line")
        .to_owned();
    (child, url)
}

fn hub_config(ws: &Workspace, upstream: &str) -> PathBuf {
    ws.write(
        "patchbay.toml",
        &format!(
            "[server]\nexpose = \"direct\"\n\n[upstreams.conformance]\n{upstream}\nprefix = false\n"
        ),
    )
}

#[tokio::test]
async fn the_fixture_alone_passes_every_scenario() {
    let (_fixture, url) = http_fixture().await;
    run_all_suites(&url).await;
}

#[tokio::test]
async fn patchbay_fronting_a_stdio_upstream_passes_every_scenario() {
    let ws = Workspace::new();
    let upstream = format!(
        "command = {:?}",
        conformance_fixture().display().to_string()
    );
    let hub = Hub::serve(&hub_config(&ws, &upstream)).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    run_all_suites(&hub.url).await;
}

#[tokio::test]
async fn patchbay_fronting_an_http_upstream_passes_every_scenario() {
    let (_fixture, fixture_url) = http_fixture().await;
    let ws = Workspace::new();
    let hub = Hub::serve(&hub_config(&ws, &format!("url = {fixture_url:?}"))).await;
    hub.wait_all_ready(Duration::from_secs(20)).await;
    run_all_suites(&hub.url).await;
}
