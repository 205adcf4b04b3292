//! Context cost: the `tools/list` JSON a model sees, in characters / 4 (a token estimate), for
//! the four meta tools and for `direct` on the same catalog.
//!
//! Run: `cargo build --release --bins && target/release/context-size [--many N]`

use std::time::Duration;

use anyhow::{Context as _, bail};
use patchbay_bench::{HttpSession, target_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn tools_list_chars(
    patchbay: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<(usize, usize, u64)> {
    let mut hub = tokio::process::Command::new(patchbay)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(hub.stdout.take().unwrap()).lines();
    let url = lines.next_line().await?.context("no address")?;
    let url = url
        .strip_prefix("listening ")
        .context("first line")?
        .to_owned();
    let base = url.trim_end_matches("/mcp");
    for _ in 0..400 {
        let r: Value = reqwest::get(format!("{base}/readyz")).await?.json().await?;
        if r["ready"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let s = HttpSession::open(&url).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = json!({"jsonrpc": "2.0", "method": "tools/list", "params": {}});
        if let Some(c) = &cursor {
            req["params"]["cursor"] = json!(c);
        }
        let r = s.request(req).await?;
        tools.extend(r["result"]["tools"].as_array().cloned().unwrap_or_default());
        cursor = r["result"]["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    // The hub's resident memory with this catalog loaded (and one `tools/list` served).
    let rss_kib = hub
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let _ = hub.start_kill();
    Ok((
        tools.len(),
        serde_json::to_string(&json!({ "tools": tools }))?.len(),
        rss_kib,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut many = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--many" => many = args.next().context("--many N")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "context-size [--many N]: tools/list size (chars/4) for meta vs direct over the fixture catalog (+N generated tools)"
                );
                return Ok(());
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    let dir = target_dir();
    let (patchbay, fixture) = (dir.join("patchbay"), dir.join("patchbay-fixture"));
    if !patchbay.exists() || !fixture.exists() {
        bail!("build the binaries first: cargo build --release --bins");
    }
    let tmp = tempfile::tempdir()?;
    let up = format!(
        "[upstreams.fx]\ncommand = {:?}\nargs = [\"--many\", \"{many}\"]\n",
        fixture.display().to_string()
    );
    println!(
        "| expose | tools | tools/list chars | tokens (chars/4) | hub RSS |\n|---|---:|---:|---:|---:|"
    );
    for expose in ["meta", "direct"] {
        let cfg = tmp.path().join(format!("{expose}.toml"));
        std::fs::write(&cfg, format!("[server]\nexpose = \"{expose}\"\n{up}"))?;
        let (n, chars, rss) = tools_list_chars(&patchbay, &cfg).await?;
        println!(
            "| {expose} | {n} | {chars} | {} | {:.1} MiB |",
            chars / 4,
            rss as f64 / 1024.0
        );
    }
    Ok(())
}
