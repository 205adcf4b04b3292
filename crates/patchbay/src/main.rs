//! The `patchbay` command line.

mod admin;
mod config;
mod connect;
mod hub;
mod ops;
mod store_link;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use patchbay_server::http::HttpSettings;
use tokio_util::sync::CancellationToken;

use crate::{config::Source, hub::Hub};

#[derive(Parser)]
#[command(
    name = "patchbay",
    version,
    about = "One MCP endpoint for every upstream: agents see four tools (list, search, schema, call).",
    long_about = "Patchbay gathers the tools of many MCP servers into one registry and serves it to any \
agent over Streamable HTTP, WebSocket or stdio, or by dialling out to a vendor's endpoint. By \
default agents see four tools: `search` to find an operation, `schema` to read its input, `call` \
to run it, and `list` to browse. With an [auth] section every caller is an authenticated actor \
under [[policy]] rules, and every call is audited (docs/security.md).\n\n\
Configuration: --config FILE, else ./patchbay.toml, else $XDG_CONFIG_HOME/patchbay/patchbay.toml \
(~/.config/patchbay/patchbay.toml), else an embedded demo upstream. FILE may be TOML or the \
{\"mcpServers\": {...}} JSON of Claude Desktop or Cursor. See docs/config.md.\n\n\
Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to change the level."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub(crate) struct ConfigArg {
    /// Configuration file (TOML, or mcpServers JSON).
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "PATCHBAY_CONFIG",
        global = true
    )]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the hub over Streamable HTTP at /mcp and WebSocket at /mcp/ws, with /healthz,
    /// /readyz and /metrics.
    ///
    /// WebSocket: one JSON-RPC message per text frame. /mcp_endpoint/call/?token=... serves the
    /// xiaozhi-esp32-server relay's clients, /mcp_endpoint/health?key=... its stats; dial-in
    /// tool providers connect to /providers/ws (or /mcp_endpoint/mcp/). [[endpoints]] entries
    /// are dialled out to and served as their configured actor.
    ///
    /// Without an [auth] section the hub serves loopback addresses only: binding another
    /// address refuses to start unless --insecure-no-auth is given.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen address; overrides server.listen (default 127.0.0.1:7420). Port 0 picks one.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Serve a non-loopback address with no authentication: anyone who can reach it can
        /// use every upstream. For isolated networks only.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Serve the hub over stdin/stdout, for a local agent that starts it as an MCP server.
    Stdio {
        #[command(flatten)]
        config: ConfigArg,
        /// The credential to act with, when the configuration has an [auth] section (a pb_
        /// token, a static token or a JWT). Checked again as the session goes on, so a revoked
        /// token stops working.
        #[arg(
            long,
            env = "PATCHBAY_TOKEN",
            value_name = "TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
    },
    /// Use the four tools from a terminal, against the configuration or a running hub (--url).
    Ops(ops::OpsArgs),
    /// Validate the configuration, start every upstream and dial every [[endpoints]] entry once,
    /// and report; non-zero exit if any failed.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Manage actors: the callers the hub knows (`actor add|list|disable|enable`).
    Actor(admin::ActorArgs),
    /// Manage bearer tokens of actors (`token issue|list|revoke`).
    Token(admin::TokenArgs),
    /// Bind a vendor's devices to an actor (`bind create|list|revoke`).
    Bind(admin::BindArgs),
    /// Manage dial-in tool providers: MCP servers that connect to the hub over WebSocket
    /// (`provider add|list|revoke`).
    Provider(admin::ProviderArgs),
    /// Manage actors' secrets, encrypted at rest (`secret set|list|delete`).
    Secret(admin::SecretArgs),
    /// Read the audit log (`audit tail|query|tree`).
    Audit(admin::AuditArgs),
    /// Bridge a local stdio MCP server to a remote WebSocket endpoint: `connect URL -- COMMAND
    /// [ARGS...]`.
    ///
    /// The endpoint (a Patchbay hub's ws(s)://HOST/providers/ws?token=pbp_..., or the xiaozhi
    /// cloud's wss://api.xiaozhi.me/mcp/?token=...) is the MCP client; COMMAND is the server.
    /// Each text frame becomes one line on the server's stdin, each stdout line one frame. If
    /// either side ends, both are restarted after a pause (backoff from 1 s up to
    /// --backoff-cap). With --config FILE ({"mcpServers": {...}}), every stdio server is
    /// bridged on its own socket, to its "endpoint" field or else URL. SIGINT/SIGTERM stop the
    /// servers (their whole process groups).
    Connect(connect::ConnectArgs),
    /// Run the built-in demo MCP server on stdio (the embedded configuration's upstream).
    DemoServer {
        /// Options of the demo server; see `patchbay demo-server -- --help`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Command::DemoServer { args } = &cli.command {
        use clap::Parser as _;
        let argv = std::iter::once("patchbay demo-server".to_owned()).chain(args.iter().cloned());
        patchbay_fixture::main_with(patchbay_fixture::Args::parse_from(argv));
    }
    init_logging();
    let code = match prepare(cli.command) {
        Ok(job) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(job.worker_threads())
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => match rt.block_on(run(job)) {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("patchbay: error: {e:#}");
                        2
                    }
                },
                Err(e) => {
                    eprintln!("patchbay: cannot start the runtime: {e}");
                    2
                }
            }
        }
        Err(e) => {
            eprintln!("patchbay: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

/// A command with its configuration loaded (before the runtime, which it sizes).
enum Job {
    Serve(config::Config, Option<String>, bool),
    Stdio(config::Config, Option<String>),
    Other(Command),
}

impl Job {
    fn worker_threads(&self) -> usize {
        let configured = match self {
            Job::Serve(c, _, _) | Job::Stdio(c, _) => c.server.worker_threads,
            Job::Other(_) => 0,
        };
        if configured > 0 {
            return configured;
        }
        // Half the cores: the hub shares the machine with its stdio upstreams, and fewer
        // threads mean fewer cross-thread wake-ups per proxied call (docs/benchmarks.md).
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        (cores / 2).max(1)
    }
}

fn prepare(command: Command) -> anyhow::Result<Job> {
    Ok(match command {
        Command::Serve {
            config,
            listen,
            insecure_no_auth,
        } => Job::Serve(load_config(&config)?, listen, insecure_no_auth),
        Command::Stdio { config, token } => Job::Stdio(load_config(&config)?, token),
        other => Job::Other(other),
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

async fn run(job: Job) -> anyhow::Result<i32> {
    match job {
        Job::Serve(config, listen, insecure) => serve(config, listen, insecure).await,
        Job::Stdio(config, token) => stdio(config, token).await,
        Job::Other(Command::Ops(args)) => ops::run(args).await,
        Job::Other(Command::Connect(args)) => connect::run(args).await,
        Job::Other(Command::Check { config }) => check(config).await,
        Job::Other(Command::Actor(args)) => admin::actor(args).await,
        Job::Other(Command::Token(args)) => admin::token(args).await,
        Job::Other(Command::Bind(args)) => admin::bind(args).await,
        Job::Other(Command::Provider(args)) => admin::provider(args).await,
        Job::Other(Command::Secret(args)) => admin::secret(args).await,
        Job::Other(Command::Audit(args)) => admin::audit(args).await,
        Job::Other(_) => unreachable!("serve, stdio and demo-server are handled before"),
    }
}

pub(crate) fn load_config(arg: &ConfigArg) -> anyhow::Result<config::Config> {
    let source = config::locate(arg.config.as_deref());
    let config = config::load(&source).with_context(|| format!("loading {source}"))?;
    if matches!(source, Source::Embedded) {
        tracing::info!(
            "no configuration found; serving the embedded demo upstream (see docs/config.md)"
        );
    } else {
        tracing::info!(config = %source, upstreams = config.upstreams.len(), "configuration loaded");
    }
    Ok(config)
}

/// Fires on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// How long in-flight HTTP requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

async fn serve(
    config: config::Config,
    listen: Option<String>,
    insecure_no_auth: bool,
) -> anyhow::Result<i32> {
    let listen = listen.unwrap_or_else(|| config.server.listen.clone());
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("`{listen}` is not an address like 127.0.0.1:7420"))?;
    if config.auth.is_none() && !addr.ip().is_loopback() {
        if !insecure_no_auth {
            anyhow::bail!(
                "refusing to serve {addr} without authentication: anyone who can reach it could \
                 use every upstream. Add an [auth] section (see docs/security.md), listen on a \
                 loopback address, or pass --insecure-no-auth on an isolated network"
            );
        }
        tracing::warn!(%addr, "SERVING WITHOUT AUTHENTICATION on a non-loopback address (--insecure-no-auth): anyone who can reach it can use every upstream");
        eprintln!("patchbay: WARNING: serving {addr} with NO AUTHENTICATION (--insecure-no-auth)");
    }
    let mut hub = Hub::start(&config)?;
    hub.dial_endpoints(&config);
    let settings = HttpSettings {
        max_body_bytes: config.server.max_message_bytes,
        session_idle: config.server.session_idle,
        allowed_hosts: config.server.allowed_hosts.clone(),
        allowed_origins: config.server.allowed_origins.clone(),
        websocket: patchbay_server::ws_door::SocketSettings {
            limits: patchbay_server::websocket::SocketLimits {
                max_message_bytes: config.server.ws_max_message_bytes,
                ping: config.server.ws_ping,
            },
            health_key: config.server.health_key.clone(),
            health_without_key: addr.ip().is_loopback(),
        },
    };
    let http_shutdown = CancellationToken::new();
    let router = patchbay_server::http::router(hub.state.clone(), &settings, http_shutdown.clone())
        .merge(patchbay_server::provider_door::routes(
            hub.dial_ins.clone(),
            settings.websocket.limits,
            settings.allowed_origins.clone(),
        ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // The first stdout line says where to connect (useful with port 0).
    println!("listening http://{local}/mcp");
    tracing::info!(%local, "serving MCP at http://{local}/mcp");

    let stop = http_shutdown.clone();
    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to small answers.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let drained = http_shutdown.clone();
    tokio::select! {
        r = server => r.context("HTTP server failed")?,
        _ = async { drained.cancelled().await; tokio::time::sleep(DRAIN).await } => {
            tracing::warn!("requests still open after {DRAIN:?}; closing them");
        }
    }
    hub.stop().await;
    Ok(0)
}

async fn stdio(config: config::Config, token: Option<String>) -> anyhow::Result<i32> {
    let hub = Hub::start(&config)?;
    let access = &hub.state.access;
    if access.requires_auth() {
        // Fail at start, with the reason, rather than on the agent's first request.
        let Some(token) = &token else {
            hub.stop().await;
            anyhow::bail!(
                "this configuration requires authentication: pass --token or set PATCHBAY_TOKEN"
            );
        };
        if let Err(e) = access.authenticate(token).await {
            hub.stop().await;
            anyhow::bail!("the token was refused: {e}");
        }
    }
    let shutdown = CancellationToken::new();
    tokio::select! {
        _ = patchbay_server::stdio::serve(hub.state.clone(), token, config.server.max_message_bytes, shutdown.clone()) => {
            tracing::info!("stdin closed; shutting down");
        }
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    shutdown.cancel();
    hub.stop().await;
    Ok(0)
}

async fn check(arg: ConfigArg) -> anyhow::Result<i32> {
    let config = load_config(&arg)?;
    let mut hub = Hub::start_settled(&config).await?;
    hub.dial_endpoints(&config);
    let statuses = hub.registry().statuses();
    let mut failed = 0;
    let mut waiting = 0;
    println!(
        "{:<20} {:<11} {:>10} {:>10}  DETAIL",
        "UPSTREAM", "STATE", "OPERATIONS", "STARTUP"
    );
    for s in &statuses {
        let ready = s.state == patchbay_core::UpstreamState::Ready;
        // A dial-in provider connects when it will: not being connected is no config failure.
        let offline_dial_in = !ready && hub.dial_ins.is_dial_in(&s.namespace);
        if offline_dial_in {
            waiting += 1;
        } else if !(ready && s.conflicts.is_empty()) {
            failed += 1;
        }
        let startup = s
            .startup_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "-".into());
        let mut detail = s.detail.clone().unwrap_or_default();
        if offline_dial_in {
            detail =
                "dial-in provider, not connected now (not a failure of the configuration)".into();
        }
        if !s.conflicts.is_empty() {
            detail = format!("name collision: {}", s.conflicts.join(", "));
        }
        println!(
            "{:<20} {:<11} {:>10} {:>10}  {}",
            s.namespace,
            s.state.as_str(),
            s.operations,
            startup,
            detail
        );
    }
    let endpoints_failed = check_endpoints(&hub).await;
    let disabled = config.upstreams.values().filter(|u| !u.enabled).count();
    println!(
        "{} upstream(s), {} ready, {} failed{}{}",
        statuses.len(),
        statuses.len() - failed - waiting,
        failed,
        if disabled > 0 {
            format!(", {disabled} disabled")
        } else {
            String::new()
        },
        if waiting > 0 {
            format!(", {waiting} dial-in not connected")
        } else {
            String::new()
        }
    );
    hub.stop().await;
    Ok(if failed + endpoints_failed > 0 { 1 } else { 0 })
}

/// Waits for each `[[endpoints]]` connection's first attempt (at most 15 s) and prints how it
/// went; returns how many are not connected.
async fn check_endpoints(hub: &Hub) -> usize {
    use patchbay_server::dialer::EndpointState;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut statuses = hub.state.endpoints.statuses();
    while statuses
        .iter()
        .any(|s| s.state == EndpointState::Connecting && s.connections == 0 && s.failures == 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        statuses = hub.state.endpoints.statuses();
    }
    if statuses.is_empty() {
        return 0;
    }
    println!("{:<44} {:<11}  DETAIL", "ENDPOINT", "STATE");
    let mut failed = 0;
    for s in &statuses {
        let connected = s.state == EndpointState::Connected;
        if !connected {
            failed += 1;
        }
        let state = if connected {
            "connected"
        } else if s.auth_failure {
            "auth_failed"
        } else {
            "failed"
        };
        let detail = s.last_error.clone().unwrap_or_default();
        println!("{:<44} {:<11}  {}", s.url, state, detail);
    }
    failed
}
