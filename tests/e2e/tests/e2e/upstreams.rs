//! Upstream life cycle: concurrent start, failures, crashes and restarts, no orphan processes,
//! stderr capture, HTTP upstreams, `list_changed`, and unprefixed namespaces.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use patchbay_e2e::*;
use rmcp::ServiceExt;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(20);

fn code_of(item: &Value) -> &str {
    item["error"]["code"].as_str().unwrap_or("")
}

fn state_of(readyz: &Value, namespace: &str) -> Value {
    readyz["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["namespace"] == namespace)
        .cloned()
        .unwrap_or_else(|| panic!("no upstream {namespace} in {readyz}"))
}

#[tokio::test]
async fn a_slow_upstream_never_blocks_the_others() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "[server]\nstartup_grace = \"0s\"\n\n{}{}",
            fixture_upstream("slow", &["--slow-start", "60000"], ""),
            fixture_upstream("fx", &[], "")
        ),
    );
    let started = Instant::now();
    let hub = Hub::serve(&config).await;
    let health = reqwest::get(format!("{}/healthz", hub.base)).await.unwrap();
    assert!(health.status().is_success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "healthz took {:?}",
        started.elapsed()
    );

    hub.wait_state("fx", "ready", LONG).await;
    assert_eq!(state_of(&hub.readyz().await, "slow")["state"], "starting");
    assert_eq!(hub.readyz().await["ready"], false);

    let client = hub.client().await;
    let r = call_one(&client, "fx.echo", json!({"text": "not blocked"})).await;
    assert_eq!(r["success"], true, "{r}");
    let slow = Hub::namespace_status(&client, "slow")
        .await
        .expect("list shows the slow namespace");
    assert_eq!(slow["state"], "starting", "{slow}");
    // With no start-up grace, calling into the starting namespace fails at once, saying so.
    let t = Instant::now();
    let r = call_one(&client, "slow.echo", json!({"text": "x"})).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["error"]["code"], "upstream_unavailable", "{r}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(state_of(&hub.readyz().await, "slow")["state"], "starting");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn an_early_call_waits_for_its_upstreams_first_start() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &fixture_upstream("slow", &["--slow-start", "1500"], ""),
    );
    let hub = Hub::serve(&config).await;
    let client = hub.client().await;
    assert_eq!(state_of(&hub.readyz().await, "slow")["state"], "starting");
    // `search` does not wait, but says what it cannot include yet.
    let found = patchbay_e2e::call(&client, "search", json!({"q": "echo"})).await;
    let found = found.structured_content.expect("structured");
    assert_eq!(found["starting"], json!(["slow"]), "{found}");
    // A call into the starting namespace waits for it (default grace 10 s) and succeeds.
    let t = Instant::now();
    let r = call_one(&client, "slow.echo", json!({"text": "worth the wait"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "waited {:?}",
        t.elapsed()
    );
    // An operation that does not exist in a ready namespace is still `not_found` at once.
    let t = Instant::now();
    let r = call_one(&client, "slow.nope", json!({})).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_failing_upstream_is_reported_and_the_others_work() {
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "{}{}",
            fixture_upstream("bad", &["--fail-start"], ""),
            fixture_upstream("fx", &[], "")
        ),
    );
    let hub = Hub::serve(&config).await;
    let bad = hub.wait_state("bad", "failed", LONG).await;
    assert!(
        bad["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "failed without a detail: {bad}"
    );
    hub.wait_state("fx", "ready", LONG).await;
    let client = hub.client().await;
    let r = call_one(&client, "fx.add", json!({"a": 2, "b": 3})).await;
    assert_eq!(r["success"], true, "{r}");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());

    // `check` reports the failure in its table and exits non-zero.
    let out = check(&config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "check succeeded with a failing upstream:\n{stdout}"
    );
    assert!(stdout.contains("UPSTREAM"), "no table header:\n{stdout}");
    let bad_row = stdout
        .lines()
        .find(|l| l.starts_with("bad "))
        .unwrap_or_else(|| panic!("no row for bad:\n{stdout}"));
    assert!(bad_row.contains("failed"), "{bad_row}");
    let fx_row = stdout
        .lines()
        .find(|l| l.starts_with("fx "))
        .unwrap_or_else(|| panic!("no row for fx:\n{stdout}"));
    assert!(fx_row.contains("ready"), "{fx_row}");

    // With only good upstreams it exits 0 and shows each one's operation count.
    let good = ws.write(
        "good.toml",
        &format!(
            "{}{}",
            fixture_upstream("fx", &[], ""),
            fixture_upstream("many", &["--many", "5"], "")
        ),
    );
    let out = check(&good).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |name: &str| -> usize {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "ready", "{row}");
        cols[2]
            .parse()
            .unwrap_or_else(|_| panic!("no operation count in {row}"))
    };
    let base = count("fx");
    assert!(base >= 10, "fx has {base} operations:\n{stdout}");
    assert_eq!(count("many"), base + 5, "{stdout}");
}

#[tokio::test]
async fn a_crashed_upstream_fails_in_flight_calls_and_restarts() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let sleeper = hub.client().await;
    let crasher = hub.client().await;

    let in_flight = tokio::spawn(async move {
        let r = call_one(&sleeper, "fx.sleep", json!({})).await;
        (r, Instant::now(), sleeper)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished(), "fx.sleep returned early");

    let crashed_at = Instant::now();
    let _ = call_one(&crasher, "fx.crash", json!({})).await;
    let (r, failed_at, sleeper) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight call ended")
        .unwrap();
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(code_of(&r), "upstream_unavailable", "{r}");
    let took = failed_at.saturating_duration_since(crashed_at);
    assert!(
        took < Duration::from_secs(2),
        "in-flight call failed only after {took:?}"
    );

    hub.wait_state("fx", "restarting", Duration::from_secs(5))
        .await;
    // Until it is back, calls fail the same way (unless the ~1 s backoff already ran out).
    let r = call_one(&crasher, "fx.echo", json!({"text": "x"})).await;
    if r["success"] != true {
        assert_eq!(code_of(&r), "upstream_unavailable", "{r}");
    }
    hub.wait_state("fx", "ready", LONG).await;
    let r = call_one(&sleeper, "fx.echo", json!({"text": "again"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "again");

    sleeper.cancel().await.unwrap();
    crasher.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

/// Config with two stdio fixtures writing pid files; returns (config path, pid file paths).
fn two_upstreams_with_pid_files(ws: &Workspace) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let a = ws.path("a.pid");
    let b = ws.path("b.pid");
    let config = ws.write(
        "patchbay.toml",
        &format!(
            "{}{}",
            fixture_upstream("a", &["--pid-file", a.to_str().unwrap()], ""),
            fixture_upstream("b", &["--pid-file", b.to_str().unwrap()], "")
        ),
    );
    (config, vec![a, b])
}

async fn pids(files: &[std::path::PathBuf]) -> Vec<i32> {
    let mut out = Vec::new();
    for f in files {
        out.push(wait_pid_file(f, LONG).await);
    }
    out
}

async fn assert_all_dead(pids: &[i32]) {
    let dead = eventually(Duration::from_secs(5), || {
        pids.iter().all(|p| !pid_alive(*p))
    })
    .await;
    let alive: Vec<i32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(dead, "processes left behind: {alive:?}");
}

#[tokio::test]
async fn serve_leaves_no_process_behind_on_sigterm() {
    let ws = Workspace::new();
    let (config, files) = two_upstreams_with_pid_files(&ws);
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let pids = pids(&files).await;
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let status = hub.stop_with_signal(libc::SIGTERM).await;
    assert!(status.success(), "{status:?}");
    assert_all_dead(&pids).await;
}

#[tokio::test]
async fn serve_leaves_no_process_behind_on_sigint() {
    let ws = Workspace::new();
    let (config, files) = two_upstreams_with_pid_files(&ws);
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let pids = pids(&files).await;
    // With a session open, too.
    let client = hub.client().await;
    let r = call_one(&client, "a.echo", json!({"text": "x"})).await;
    assert_eq!(r["success"], true, "{r}");
    let status = hub.stop_with_signal(libc::SIGINT).await;
    assert!(status.success(), "{status:?}");
    assert_all_dead(&pids).await;
    drop(client);
}

#[tokio::test]
async fn stdio_mode_leaves_no_process_behind_when_stdin_closes() {
    let ws = Workspace::new();
    let (config, files) = two_upstreams_with_pid_files(&ws);
    let mut child = tokio::process::Command::new(patchbay())
        .arg("stdio")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let client = ().serve((stdout, stdin)).await.expect("MCP over the hub's stdio");
    let pids = pids(&files).await;
    // Both upstreams are up once their tools can be called.
    for ns in ["a", "b"] {
        let ok = async {
            loop {
                if call_one(&client, &format!("{ns}.echo"), json!({"text": "x"})).await["success"]
                    == true
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(LONG, ok)
            .await
            .unwrap_or_else(|_| panic!("{ns} never became callable"));
    }
    // Closing the client closes the hub's stdin.
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the hub exits after stdin closes")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_all_dead(&pids).await;
}

#[tokio::test]
async fn an_upstream_behind_a_wrapper_shell_leaves_nothing_behind() {
    let ws = Workspace::new();
    let pid_file = ws.path("wrapped.pid");
    // `; true` keeps the shell from exec-ing the fixture: the shell stays as the parent.
    let script = format!(
        "{} --pid-file {}; true",
        fixture().display(),
        pid_file.display()
    );
    let config = ws.write(
        "patchbay.toml",
        &format!("[upstreams.wrapped]\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\n"),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let fixture_pid = wait_pid_file(&pid_file, LONG).await;
    let shell_pid = parent_of(fixture_pid).expect("fixture has a parent");
    assert_ne!(
        shell_pid,
        hub.child.id().unwrap() as i32,
        "the shell exec'd the fixture; the test proves nothing"
    );
    let client = hub.client().await;
    assert_eq!(
        call_one(&client, "wrapped.echo", json!({"text": "x"})).await["success"],
        true
    );
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
    assert_all_dead(&[fixture_pid, shell_pid]).await;
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn upstream_stderr_reaches_the_hub_log_tagged_with_its_name() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    assert!(
        hub.log
            .wait_for("fixture ready (", Duration::from_secs(5))
            .await,
        "log:\n{}",
        hub.log.text()
    );
    let text = hub.log.text();
    let line = text
        .lines()
        .find(|l| l.contains("fixture ready ("))
        .unwrap();
    assert!(line.contains("upstream=fx"), "not tagged: {line}");
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn an_http_upstream_is_called_and_its_loss_is_noticed() {
    let fx = HttpFixture::start("127.0.0.1:0", &[]).await;
    let addr = fx.addr();
    let ws = Workspace::new();
    let config = ws.write(
        "patchbay.toml",
        &format!("[upstreams.remote]\nurl = {:?}\n", fx.url),
    );
    let hub = Hub::serve(&config).await;
    hub.wait_state("remote", "ready", LONG).await;
    let client = hub.client().await;
    let r = call_one(&client, "remote.echo", json!({"text": "over http"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "over http");

    // Killed while idle: the next call fails at once, and the namespace leaves `ready`.
    fx.kill().await;
    let t = Instant::now();
    let r = call_one(&client, "remote.echo", json!({"text": "x"})).await;
    assert_eq!(code_of(&r), "upstream_unavailable", "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the failure took {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = state_of(&hub.readyz().await, "remote");
        if s["state"] != "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "remote still ready after the fixture died: {s}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The same address again: the hub reconnects.
    let fx = HttpFixture::start(&addr, &[]).await;
    hub.wait_state("remote", "ready", Duration::from_secs(40))
        .await;
    let r = call_one(&client, "remote.echo", json!({"text": "back"})).await;
    assert_eq!(r["success"], true, "{r}");

    // Killed during a call: the call fails at once rather than hanging until its timeout.
    let sleeper = hub.client().await;
    let in_flight = tokio::spawn(async move {
        let r = call_one(&sleeper, "remote.sleep", json!({})).await;
        (r, Instant::now(), sleeper)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());
    let killed_at = Instant::now();
    fx.kill().await;
    let (r, failed_at, sleeper) = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("the in-flight call ended")
        .unwrap();
    assert_eq!(code_of(&r), "upstream_unavailable", "{r}");
    let took = failed_at - killed_at;
    assert!(
        took < Duration::from_secs(2),
        "the in-flight call failed only after {took:?}"
    );
    sleeper.cancel().await.unwrap();
    hub.wait_state("remote", "restarting", Duration::from_secs(5))
        .await;

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn tools_added_upstream_appear_in_list_and_search() {
    let ws = Workspace::new();
    let config = ws.write("patchbay.toml", &fixture_upstream("fx", &[], ""));
    let hub = Hub::serve(&config).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    let names = |v: Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["tool"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = names(
        call(&client, "list", json!({}))
            .await
            .structured_content
            .unwrap(),
        "operations",
    );
    assert!(listed.contains(&"fx.echo".to_owned()));
    assert!(!listed.contains(&"fx.late".to_owned()));

    let r = call_one(&client, "fx.add_tool", json!({"name": "late"})).await;
    assert_eq!(r["success"], true, "{r}");
    let mut seen = false;
    for _ in 0..200 {
        let listed = names(
            call(&client, "list", json!({}))
                .await
                .structured_content
                .unwrap(),
            "operations",
        );
        if listed.contains(&"fx.late".to_owned()) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen, "fx.late never appeared in list");
    let found = names(
        call(&client, "search", json!({"q": "late"}))
            .await
            .structured_content
            .unwrap(),
        "results",
    );
    assert!(
        found.contains(&"fx.late".to_owned()),
        "search for late: {found:?}"
    );
    let r = call_one(&client, "fx.late", json!({"text": "hi"})).await;
    assert_eq!(r["success"], true, "{r}");

    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn unprefixed_upstreams_collide_or_expose_bare_names() {
    let ws = Workspace::new();
    let colliding = ws.write(
        "colliding.toml",
        &format!(
            "{}{}",
            fixture_upstream("one", &[], "prefix = false"),
            fixture_upstream("two", &[], "prefix = false")
        ),
    );
    let out = check(&colliding).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "check passed despite colliding names:\n{stdout}"
    );
    assert!(
        stdout.contains("collision") && stdout.contains("echo"),
        "collision not named:\n{stdout}"
    );

    let distinct = ws.write(
        "distinct.toml",
        &format!(
            "{}{}",
            fixture_upstream("one", &["--prefix-tools", "one_"], "prefix = false"),
            fixture_upstream("fx", &[], "")
        ),
    );
    let out = check(&distinct).await;
    assert!(
        out.status.success(),
        "check failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let hub = Hub::serve(&distinct).await;
    hub.wait_all_ready(LONG).await;
    let client = hub.client().await;
    let r = call_one(&client, "one_echo", json!({"text": "bare"})).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["result"]["content"][0]["text"], "bare");
    let r = call_one(&client, "one.one_echo", json!({"text": "bare"})).await;
    assert_eq!(code_of(&r), "not_found", "{r}");
    let r = call_one(&client, "fx.echo", json!({"text": "prefixed"})).await;
    assert_eq!(r["success"], true, "{r}");
    client.cancel().await.unwrap();
    assert!(hub.stop().await.success());
}

#[tokio::test]
async fn a_failed_upstream_stays_failed_with_its_detail_while_retrying() {
    let ws = Workspace::new();
    // Each attempt takes a while to fail, so a retry shown as `starting` would be seen.
    let config = ws.write(
        "patchbay.toml",
        "[upstreams.bad]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 0.4; echo giving up >&2; exit 1\"]\n",
    );
    let hub = Hub::serve(&config).await;
    hub.wait_state("bad", "failed", LONG).await;
    // The first retry comes after 0.8-1 s, the second 1.6-2 s later.
    let until = Instant::now() + Duration::from_millis(3200);
    while Instant::now() < until {
        let bad = state_of(&hub.readyz().await, "bad");
        assert_eq!(
            bad["state"], "failed",
            "a retrying upstream that never started: {bad}"
        );
        assert!(
            bad["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "no detail: {bad}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        hub.log.text().matches("upstream is down").count() >= 2,
        "no retry happened:\n{}",
        hub.log.text()
    );
    assert!(hub.stop().await.success());
}
