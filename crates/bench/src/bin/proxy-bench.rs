//! Proxy overhead: `tools/call` through `patchbay serve` (Streamable HTTP) to a stdio echo
//! upstream, against the same calls made directly to that upstream over stdio.
//!
//! Run: `cargo build --release --bins && target/release/proxy-bench [--seconds 5] [--warmup 1] [--clients 1,16,64]`

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use patchbay_bench::{
    Figures, HttpSession, RawHttpSession, StdioPeer, measure, measure_alternating, serve_tcp_echo,
    target_dir, tcp_round_trip_floor,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Options {
    /// Measured time per point, in seconds (fractions allowed).
    seconds: f64,
    /// Warm-up before each point, in seconds.
    warmup: f64,
    clients: Vec<usize>,
}

/// The hidden argument that makes this binary the echo child of [`tcp_round_trip_floor`].
const TCP_ECHO_CHILD: &str = "--tcp-echo-child";

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        seconds: 5.0,
        warmup: 1.0,
        clients: vec![1, 16, 64],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => o.seconds = args.next().context("--seconds N")?.parse()?,
            "--warmup" => o.warmup = args.next().context("--warmup N")?.parse()?,
            "--clients" => {
                o.clients = args
                    .next()
                    .context("--clients 1,16,64")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "-h" | "--help" => {
                println!(
                    "proxy-bench [--seconds N] [--warmup N] [--clients 1,16,64]\n\n--seconds: measured time per point (default 5); --warmup: warm-up before each (default 1); fractions allowed.\n\nMeasures tools/call latency and throughput directly against a stdio echo upstream and through `patchbay serve`\n(both with lean hand-written clients), then the added p50 at one client with the two paths alternating call by call,\nand reference figures: the hub through reqwest, the direct call through rmcp's client, a meta `call`, `list`, `GET /healthz`,\nand the machine's floor for any extra hop: a one-byte TCP round trip between two processes (no HTTP, no async runtime).\nFigures and how to read them: docs/benchmarks.md."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    Ok(o)
}

/// `tools/call` of the echo tool named `name` (`echo` directly, `fx.echo` through the hub).
fn echo_call_of(name: &str) -> serde_json::Value {
    json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": name, "arguments": {"text": "hello"}}})
}

fn echo_call() -> serde_json::Value {
    echo_call_of("echo")
}

fn hub_echo_call() -> serde_json::Value {
    echo_call_of("fx.echo")
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(TCP_ECHO_CHILD) {
        return serve_tcp_echo(&args.next().context("address")?);
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let o = options()?;
    let dir = target_dir();
    let fixture = dir.join("patchbay-fixture");
    let patchbay = dir.join("patchbay");
    if !fixture.exists() || !patchbay.exists() {
        bail!("build the binaries first: cargo build --release --bins");
    }
    if !dir.ends_with("release") {
        eprintln!("warning: not a release build; figures will be meaningless");
    }
    if !(o.seconds > 0.0 && o.warmup >= 0.0) {
        bail!("--seconds must be positive and --warmup not negative");
    }
    let duration = Duration::from_secs_f64(o.seconds);
    let warmup = Duration::from_secs_f64(o.warmup);

    // The hub: expose = "direct", so the proxied call is the same tools/call under a new name.
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("patchbay.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nexpose = \"both\"\n[upstreams.fx]\ncommand = {:?}\n",
            fixture.display().to_string()
        ),
    )?;
    let mut hub = tokio::process::Command::new(&patchbay)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(hub.stdout.take().unwrap()).lines();
    let url = lines.next_line().await?.context("hub printed no address")?;
    let url = url
        .strip_prefix("listening ")
        .context("unexpected first line")?
        .to_owned();
    let base = url.trim_end_matches("/mcp").to_owned();
    for _ in 0..200 {
        let r: serde_json::Value = reqwest::get(format!("{base}/readyz")).await?.json().await?;
        if r["ready"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    println!(
        "tools/call echo, {}s per point after {}s warm-up; 2-core machine, shared\n",
        o.seconds, o.warmup
    );
    println!(
        "| clients | direct p50 | direct p99 | direct calls/s | hub p50 | hub p99 | hub calls/s | added p50 | p50 ratio | throughput ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &o.clients {
        let direct = {
            let peer = StdioPeer::start(&fixture, &[]).await?;
            let p = peer.clone();
            let f = measure(n, warmup, duration, move |_| {
                let p = p.clone();
                async move { p.request(echo_call()).await.map(|_| ()) }
            })
            .await;
            drop(peer);
            f
        };
        let hubbed = {
            let mut sessions = Vec::new();
            for _ in 0..n {
                sessions.push(Arc::new(RawHttpSession::open(&url).await?));
            }
            let sessions = Arc::new(sessions);
            measure(n, warmup, duration, move |c| {
                let s = sessions[c].clone();
                async move {
                    let r = s.request(hub_echo_call()).await?;
                    if r.get("result").is_none() {
                        bail!("call failed: {r}");
                    }
                    Ok(())
                }
            })
            .await
        };
        row(n, direct, hubbed);
    }

    // Added latency at one client with the two paths measured call by call in turn, so a
    // change in the machine's load cannot favour one of them.
    {
        let peer = StdioPeer::start(&fixture, &[]).await?;
        let session = RawHttpSession::open(&url).await?;
        let (direct, hubbed) = measure_alternating(
            warmup,
            duration,
            || peer.request(echo_call()),
            || session.request(hub_echo_call()),
        )
        .await;
        println!(
            "\nalternating, 1 client: direct p50 {}, hub p50 {}, added p50 {}",
            us(direct.p50),
            us(hubbed.p50),
            us(hubbed.p50.saturating_sub(direct.p50)),
        );
    }

    // The same direct calls through rmcp's client (what the hub uses upstream), for reference.
    {
        use rmcp::{ServiceExt, model::CallToolRequestParams, transport::TokioChildProcess};
        let client = Arc::new(
            ().serve(TokioChildProcess::new(tokio::process::Command::new(
                &fixture,
            ))?)
            .await?,
        );
        let c = client.clone();
        let f = measure(1, warmup, duration, move |_| {
            let c = c.clone();
            async move {
                let mut p = CallToolRequestParams::new("echo");
                p.arguments = json!({"text": "hello"}).as_object().cloned();
                c.call_tool(p).await?;
                Ok(())
            }
        })
        .await;
        println!(
            "\ndirect through rmcp's client, 1 client: p50 {}, p99 {}",
            us(f.p50),
            us(f.p99)
        );
    }

    // The same proxied call through reqwest, a full HTTP client library (connection pool, a
    // background task per connection): what a typical client adds on top of the hub.
    let library = {
        let session = Arc::new(HttpSession::open(&url).await?);
        measure(1, warmup, duration, move |_| {
            let s = session.clone();
            async move { s.request(hub_echo_call()).await.map(|_| ()) }
        })
        .await
    };
    println!(
        "hub through reqwest (a client library) instead of the lean client, 1 client: p50 {}, p99 {}",
        us(library.p50),
        us(library.p99)
    );

    // The meta surface: the same echo as one item of a `call` batch.
    let meta = one_client(
        &url,
        warmup,
        duration,
        "call",
        json!({"calls": [{"tool": "fx.echo", "input": {"text": "hello"}}]}),
        |r| r["result"]["structuredContent"]["results"][0]["success"] == true,
    )
    .await?;
    println!(
        "\nmeta `call` (one item), 1 client: p50 {}, p99 {}, {:.0} calls/s",
        us(meta.p50),
        us(meta.p99),
        meta.per_second
    );

    // The front door alone: a meta `list` of one operation never reaches the upstream.
    let front = one_client(&url, warmup, duration, "list", json!({"limit": 1}), |r| {
        r.get("result").is_some()
    })
    .await?;
    println!(
        "front door only (`list`, limit 1, no upstream), 1 client: p50 {}, p99 {}, {:.0} calls/s",
        us(front.p50),
        us(front.p99),
        front.per_second
    );

    // The floor: an HTTP round trip to the hub that does no MCP work at all.
    let raw = Arc::new(RawHttpSession::open(&url).await?);
    let floor = measure(1, warmup, duration, move |_| {
        let raw = raw.clone();
        async move { raw.get("/healthz").await.map(|_| ()) }
    })
    .await;
    println!(
        "HTTP floor (`GET /healthz`), 1 client: p50 {}, p99 {}",
        us(floor.p50),
        us(floor.p99)
    );
    let _ = hub.start_kill();

    // The machine's own floor for one extra hop, whatever speaks over it.
    let tcp = tokio::task::spawn_blocking(move || {
        tcp_round_trip_floor(&[TCP_ECHO_CHILD], warmup, duration)
    })
    .await??;
    println!(
        "TCP floor (one byte to another process and back, blocking I/O, no HTTP): p50 {}, p99 {}",
        us(tcp.p50),
        us(tcp.p99)
    );
    Ok(())
}

/// One client calling tool `name` with `arguments` in a loop on its own session; `ok` judges
/// each JSON-RPC answer.
async fn one_client(
    url: &str,
    warmup: Duration,
    duration: Duration,
    name: &'static str,
    arguments: serde_json::Value,
    ok: fn(&serde_json::Value) -> bool,
) -> anyhow::Result<Figures> {
    let session = Arc::new(RawHttpSession::open(url).await?);
    let request = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": name, "arguments": arguments}});
    Ok(measure(1, warmup, duration, move |_| {
        let (s, request) = (session.clone(), request.clone());
        async move {
            let r = s.request(request).await?;
            if !ok(&r) {
                bail!("`{name}` failed: {r}");
            }
            Ok(())
        }
    })
    .await)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn row(n: usize, d: Figures, h: Figures) {
    let added = h.p50.as_secs_f64() - d.p50.as_secs_f64();
    println!(
        "| {n} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} µs | {:.2} | {:.2} |",
        us(d.p50),
        us(d.p99),
        d.per_second,
        us(h.p50),
        us(h.p99),
        h.per_second,
        added * 1e6,
        h.p50.as_secs_f64() / d.p50.as_secs_f64(),
        h.per_second / d.per_second,
    );
}
