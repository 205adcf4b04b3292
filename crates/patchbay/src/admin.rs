//! `patchbay actor|token|bind|provider|secret|audit`: managing who may call the hub, and reading what
//! they did. Each command opens the store the configuration names (`[store]`, default
//! `~/.local/share/patchbay/patchbay.db`), does one thing and exits.

use std::{io::Read as _, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};
use patchbay_identity::Authenticator;
use patchbay_store::{AuditQuery, AuditRecord, CallNode, Store, now_ms};

use crate::{ConfigArg, config::Config, load_config, store_link};

#[derive(Args)]
pub struct ActorArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: ActorCommand,
}

#[derive(Subcommand)]
enum ActorCommand {
    /// Add an actor (a person's agent, a runner, a device owner).
    Add {
        name: String,
        /// A role the actor holds (repeatable); `[[policy]]` rule sets can select by role.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// List actors.
    List,
    /// Disable an actor: its tokens and bindings stop working at once, on open sessions too.
    Disable { name: String },
    /// Enable a disabled actor again.
    Enable { name: String },
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a bearer token for an actor. The token is printed once and never stored (only its
    /// hash is); keep it.
    Issue {
        actor: String,
        /// Lifetime, like `30d` or `12h`. Default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// A label to recognise the token by in `token list`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        actor: Option<String>,
    },
    /// Revoke a token by id: it stops working on the next request, on open sessions too.
    Revoke { id: String },
}

#[derive(Args)]
pub struct BindArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: BindCommand,
}

#[derive(Subcommand)]
enum BindCommand {
    /// Bind a vendor's devices (a hosted LLM, a speaker) to an actor: prints a token signed by
    /// the hub's key and the endpoint URLs to paste into the vendor's console (MCP over
    /// WebSocket, and Streamable HTTP).
    Create {
        #[arg(long)]
        actor: String,
        #[arg(long)]
        vendor: String,
        /// Lifetime, like `365d`. Default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        /// Public base URL of this hub, for the printed endpoint. Default: from server.listen.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// List bindings.
    List {
        #[arg(long)]
        actor: Option<String>,
    },
    /// Revoke a binding: its token stops working at once.
    Revoke { id: String },
}

#[derive(Args)]
pub struct ProviderArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: ProviderCommand,
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Register a dial-in tool provider: an MCP server that connects to the hub over WebSocket
    /// (`/providers/ws?token=...`) and whose tools join the registry under the namespace NAME.
    /// Prints its token once (only its hash is stored); keep it.
    Add {
        /// The provider's name, which is also its namespace (letters, digits, `_`, `-`).
        name: String,
        /// Public base URL of this hub, for the printed endpoint. Default: from server.listen.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// List dial-in providers (never their tokens).
    List,
    /// Remove a dial-in provider: its token stops working at once (an open connection stays
    /// until it closes; its namespace leaves the registry when the hub restarts).
    Revoke { name: String },
}

#[derive(Args)]
pub struct SecretArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Store a secret for an actor, read from stdin (never from the command line), encrypted
    /// with the key from `[store] secret_key_file` or `PATCHBAY_SECRET_KEY`.
    Set { actor: String, name: String },
    /// List the names of an actor's secrets (never the values).
    List { actor: String },
    /// Delete an actor's secret.
    Delete { actor: String, name: String },
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The latest calls.
    Tail {
        #[arg(long)]
        actor: Option<String>,
        /// How many. Default 20.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[arg(long)]
        json: bool,
    },
    /// Calls matching filters.
    Query {
        /// Only calls this recent, like `1h` or `7d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Operation name; `*` matches any run of characters.
        #[arg(long)]
        operation: Option<String>,
        /// `ok`, `tool_error`, or an error code such as `not_found`.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        /// At most this many (the newest). Default 100.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// A call and every call it caused, as a tree.
    Tree { call_id: String },
}

async fn open(config: &ConfigArg) -> anyhow::Result<(Config, Arc<dyn Store>)> {
    let config = load_config(config)?;
    let store = store_link::open(&config)?;
    Ok((config, store))
}

fn when(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}

fn when_opt(ms: Option<i64>) -> String {
    ms.map(when).unwrap_or_else(|| "-".into())
}

/// A token's or binding's state column: `active`, else `revoked` or `expired`.
fn state(active: bool, revoked_at: Option<i64>) -> &'static str {
    match (active, revoked_at) {
        (true, _) => "active",
        (false, Some(_)) => "revoked",
        (false, None) => "expired",
    }
}

/// The hub's public base URL without a trailing `/`: `--public-url`, else from server.listen.
fn public_base(public_url: Option<String>, config: &Config) -> String {
    let base = public_url.unwrap_or_else(|| format!("http://{}", config.server.listen));
    base.trim_end_matches('/').to_owned()
}

/// `base` with its `http(s)://` scheme turned into `ws(s)://`.
fn ws_base(base: &str) -> String {
    base.replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1)
}

pub async fn actor(args: ActorArgs) -> anyhow::Result<i32> {
    let (_, store) = open(&args.config).await?;
    match args.command {
        ActorCommand::Add { name, roles } => {
            let a = store.add_actor(&name, &roles).await?;
            println!("added actor {} (roles: {})", a.name, a.roles.join(", "));
        }
        ActorCommand::List => {
            println!("{:<24} {:<9} {:<24} roles", "actor", "state", "created");
            for a in store.actors().await? {
                let state = if a.disabled { "disabled" } else { "active" };
                println!(
                    "{:<24} {:<9} {:<24} {}",
                    a.name,
                    state,
                    when(a.created_at),
                    a.roles.join(",")
                );
            }
        }
        ActorCommand::Disable { name } => {
            store.disable_actor(&name).await?;
            println!("disabled {name}: its tokens and bindings no longer work");
        }
        ActorCommand::Enable { name } => {
            store.enable_actor(&name).await?;
            println!("enabled {name}");
        }
    }
    Ok(0)
}

pub async fn token(args: TokenArgs) -> anyhow::Result<i32> {
    let (_, store) = open(&args.config).await?;
    match args.command {
        TokenCommand::Issue { actor, ttl, name } => {
            let (info, secret) = store.issue_token(&actor, ttl, name.as_deref()).await?;
            eprintln!(
                "issued {} for {} (expires {}); it is shown only now:",
                info.id,
                info.actor,
                when_opt(info.expires_at)
            );
            println!("{}", secret.expose());
        }
        TokenCommand::List { actor } => {
            println!(
                "{:<14} {:<16} {:<16} {:<22} {:<22} state",
                "id", "actor", "label", "created", "expires"
            );
            let now = now_ms();
            for t in store.tokens(actor.as_deref()).await? {
                println!(
                    "{:<14} {:<16} {:<16} {:<22} {:<22} {}",
                    t.id,
                    t.actor,
                    t.label.as_deref().unwrap_or("-"),
                    when(t.created_at),
                    when_opt(t.expires_at),
                    state(t.is_active(now), t.revoked_at)
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let t = store.revoke_token(&id).await?;
            println!("revoked {} ({})", t.id, t.actor);
        }
    }
    Ok(0)
}

pub async fn bind(args: BindArgs) -> anyhow::Result<i32> {
    let (config, store) = open(&args.config).await?;
    match args.command {
        BindCommand::Create {
            actor,
            vendor,
            ttl,
            public_url,
        } => {
            let binding = store.create_binding(&actor, &vendor, ttl).await?;
            let authenticator = Authenticator::new(&config.auth_with_defaults(), None)
                .context("loading the hub key")?;
            let token = authenticator
                .mint_binding(&actor, &vendor, &binding.id, ttl)
                .context("signing the binding token")?;
            let base = public_base(public_url, &config);
            eprintln!(
                "bound {vendor} to {actor} as {} (expires {}); paste the endpoint into the vendor's console:",
                binding.id,
                when_opt(binding.expires_at)
            );
            println!("token:    {token}");
            println!("endpoint: {}/mcp/ws?token={token}", ws_base(&base));
            println!("http:     {base}/mcp?token={token}");
        }
        BindCommand::List { actor } => {
            println!(
                "{:<14} {:<16} {:<12} {:<22} {:<22} state",
                "id", "actor", "vendor", "created", "expires"
            );
            let now = now_ms();
            for b in store.bindings(actor.as_deref()).await? {
                println!(
                    "{:<14} {:<16} {:<12} {:<22} {:<22} {}",
                    b.id,
                    b.actor,
                    b.vendor,
                    when(b.created_at),
                    when_opt(b.expires_at),
                    state(b.is_active(now), b.revoked_at)
                );
            }
        }
        BindCommand::Revoke { id } => {
            let b = store.revoke_binding(&id).await?;
            println!("revoked {} ({} through {})", b.id, b.actor, b.vendor);
        }
    }
    Ok(0)
}

pub async fn provider(args: ProviderArgs) -> anyhow::Result<i32> {
    let (config, store) = open(&args.config).await?;
    match args.command {
        ProviderCommand::Add { name, public_url } => {
            if config.upstreams.contains_key(&name) {
                anyhow::bail!(
                    "`{name}` is already the namespace of a configured upstream; choose another name"
                );
            }
            let (info, token) = store.add_provider(&name).await?;
            let ws_base = ws_base(&public_base(public_url, &config));
            eprintln!(
                "added provider {}; its tools join the namespace `{}` when it connects. The token \
                 is shown once:",
                info.name, info.name
            );
            println!("token:    {}", token.expose());
            println!("endpoint: {ws_base}/providers/ws?token={}", token.expose());
        }
        ProviderCommand::List => {
            println!("{:<32} created", "provider");
            for p in store.providers().await? {
                println!("{:<32} {}", p.name, when(p.created_at));
            }
        }
        ProviderCommand::Revoke { name } => {
            let p = store.revoke_provider(&name).await?;
            println!("revoked provider {}", p.name);
        }
    }
    Ok(0)
}

pub async fn secret(args: SecretArgs) -> anyhow::Result<i32> {
    let (_, store) = open(&args.config).await?;
    match args.command {
        SecretCommand::Set { actor, name } => {
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .context("reading the secret from stdin")?;
            let value = value.strip_suffix('\n').unwrap_or(&value);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() {
                anyhow::bail!(
                    "no secret on stdin (pipe it in, e.g. `printf %s \"$VALUE\" | patchbay secret set {actor} {name}`)"
                );
            }
            store.set_secret(&actor, &name, value).await?;
            println!("stored secret {name} for {actor}");
        }
        SecretCommand::List { actor } => {
            for name in store.secret_names(&actor).await? {
                println!("{name}");
            }
        }
        SecretCommand::Delete { actor, name } => {
            store.delete_secret(&actor, &name).await?;
            println!("deleted secret {name} of {actor}");
        }
    }
    Ok(0)
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<i32> {
    let (_, store) = open(&args.config).await?;
    match args.command {
        AuditCommand::Tail { actor, lines, json } => {
            print_records(&store.audit_tail(lines, actor.as_deref()).await?, json);
        }
        AuditCommand::Query {
            since,
            operation,
            outcome,
            actor,
            limit,
            json,
        } => {
            let query = AuditQuery {
                since: since.map(|d| now_ms() - d.as_millis() as i64),
                operation,
                outcome,
                actor,
                limit,
                ..AuditQuery::default()
            };
            print_records(&store.audit_query(query).await?, json);
        }
        AuditCommand::Tree { call_id } => {
            let records = store.audit_tree(&call_id).await?;
            match CallNode::build(records, &call_id) {
                Some(root) => print_tree(&root, 0),
                None => {
                    eprintln!("no call {call_id} in the audit log");
                    return Ok(1);
                }
            }
        }
    }
    Ok(0)
}

fn print_records(records: &[AuditRecord], json: bool) {
    for r in records {
        if json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            println!("{}", line(r));
        }
    }
}

fn line(r: &AuditRecord) -> String {
    let via = match &r.vendor {
        Some(v) => format!("{}/{v}", r.front_door),
        None => r.front_door.clone(),
    };
    format!(
        "{} {:<14} {:<10} {:<28} {:<12} {:>6}ms {:>7}B in {:>8}B out  call {}{}",
        when(r.time),
        r.actor,
        via,
        r.operation,
        r.outcome,
        r.duration_ms,
        r.bytes_in,
        r.bytes_out,
        r.call_id,
        r.parent_call_id
            .as_deref()
            .map(|p| format!(" (parent {p})"))
            .unwrap_or_default()
    )
}

fn print_tree(node: &CallNode, depth: usize) {
    let r = &node.record;
    println!(
        "{}{} {} {} {}ms (call {})",
        "  ".repeat(depth),
        if depth == 0 { "●" } else { "└" },
        r.operation,
        r.outcome,
        r.duration_ms,
        r.call_id
    );
    for child in &node.children {
        print_tree(child, depth + 1);
    }
}
