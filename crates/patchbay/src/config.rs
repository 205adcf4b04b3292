//! The configuration file: TOML (`patchbay.toml`), or the `{"mcpServers": {...}}` JSON that
//! Claude Desktop, Cursor and others use. Documented field by field in `docs/config.md`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use patchbay_core::RuleSet;
use patchbay_identity::AuthConfig;
use patchbay_providers::{ActorValue, Sharing};
use patchbay_server::Expose;
use patchbay_store::is_valid_name;
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// `place` says where: "upstream `github`", "endpoints[0]", "auth.tokens[1]".
    #[error("{place}: environment variable `{var}` is not set (used in {field})")]
    MissingVar {
        place: String,
        var: String,
        field: String,
    },
    #[error("{place}: {message}")]
    Expansion { place: String, message: String },
    #[error("upstream `{upstream}`: {message}")]
    Upstream { upstream: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `mcpServers` JSON files whose servers join `upstreams` (paths relative to this file;
    /// `~` is the home directory).
    #[serde(default)]
    pub import: Vec<String>,
    #[serde(default)]
    pub server: ServerConfig,
    /// Upstreams by namespace.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// `[auth]`: credentials every front door accepts. Present (even empty) means every
    /// caller must authenticate; absent means none does, and the hub serves loopback only.
    pub auth: Option<AuthConfig>,
    /// `[[policy]]`: rule sets deciding what each actor may see and call (docs/security.md).
    #[serde(default)]
    pub policy: Vec<RuleSet>,
    /// `[store]`: where actors, tokens, bindings, secrets and the audit log are kept.
    pub store: Option<StoreConfig>,
    /// `[audit]`: the record of every call.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[[endpoints]]`: vendor endpoints the hub dials out to and serves MCP on.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// `[[endpoints]]`: a vendor's WebSocket endpoint (the xiaozhi cloud's `wss://.../mcp/?token=`)
/// that `patchbay serve` connects to and then serves MCP on, as the server, for as long as it
/// runs (reconnecting with backoff). See docs/protocol.md, "Dialling out".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ws://` or `wss://` URL; `${VAR}` is expanded. Its query values are never logged or shown.
    pub url: String,
    /// The actor the calls on this connection run as. Required when `[auth]` is present.
    pub actor: Option<String>,
    /// The vendor acting for the actor (policy rules may narrow by vendor), e.g. `xiaozhi`.
    pub vendor: Option<String>,
    /// Roles of that identity, for policy rules by role. Default none.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The surface served on the connection: `meta` (default), `direct` or `both`.
    #[serde(default)]
    pub expose: Expose,
    /// Longest wait between connection attempts (backoff grows from 1 s with jitter). Default 60s.
    #[serde(default = "minute", deserialize_with = "duration")]
    pub backoff_cap: Duration,
    /// A connection that stayed up this long resets the backoff to 1 s. Default 60s.
    #[serde(default = "minute", deserialize_with = "duration")]
    pub healthy_after: Duration,
    /// Interval of keepalive pings; an endpoint silent for two intervals is redialled.
    /// Default 20s; at least 1s.
    #[serde(default = "ping_default", deserialize_with = "duration")]
    pub ping: Duration,
    /// `false` keeps the entry without dialling it. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

fn ping_default() -> Duration {
    Duration::from_secs(20)
}

/// `[store]`: the embedded SQLite database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Database file, created (with its folders) on first start. Default
    /// `$XDG_DATA_HOME/patchbay/patchbay.db` (`~/.local/share/patchbay/patchbay.db`).
    pub path: Option<PathBuf>,
    /// File holding the 32-byte key (64 hex digits or base64) that encrypts secrets at rest.
    /// Default: the environment variable `PATCHBAY_SECRET_KEY`; without either, secrets can be
    /// neither set nor read (everything else works).
    pub secret_key_file: Option<PathBuf>,
}

/// `[audit]`: every call is recorded (who, how, what, how long, outcome, sizes) when a store
/// is in use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record calls at all. Default `true` (when a store is in use).
    pub enabled: bool,
    /// Keep each call's input and result too (they may hold personal data). Default `false`.
    pub payloads: bool,
    /// Records older than this are deleted (checked hourly). Default `90d`.
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// At most this many records are kept (the oldest go first). Default 1000000.
    pub max_rows: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            payloads: false,
            retention: Duration::from_secs(90 * 24 * 3600),
            max_rows: 1_000_000,
        }
    }
}

/// Where the hub keeps its data by default: `$XDG_DATA_HOME/patchbay`, else
/// `~/.local/share/patchbay`, else `./.patchbay`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".local").join("share")))
        .map(|d| d.join("patchbay"))
        .unwrap_or_else(|| PathBuf::from(".patchbay"))
}

impl Config {
    /// Whether this configuration uses the store: it has `[store]` or `[auth]` (stored tokens
    /// and bindings live there).
    pub fn uses_store(&self) -> bool {
        self.store.is_some() || self.auth.is_some()
    }

    /// The database file.
    pub fn store_path(&self) -> PathBuf {
        self.store
            .as_ref()
            .and_then(|s| s.path.clone())
            .unwrap_or_else(|| data_dir().join("patchbay.db"))
    }

    /// The `[auth]` section with the hub key defaulting to `hub-key.pem` beside the database,
    /// so `bind create` and `serve` agree on it.
    pub fn auth_with_defaults(&self) -> AuthConfig {
        let mut auth = self.auth.clone().unwrap_or_default();
        if auth.hub_key.is_none() {
            let dir = self
                .store_path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            auth.hub_key = Some(dir.join("hub-key.pem"));
        }
        auth
    }
}

/// `[server]`: the hub's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP front door. Default `127.0.0.1:7420`.
    pub listen: String,
    /// Which tools clients see: `meta` (the four tools), `direct` (every operation) or `both`.
    /// Default `meta`.
    pub expose: Expose,
    /// Per-call timeout when the upstream sets none. Default `60s`.
    #[serde(deserialize_with = "duration")]
    pub call_timeout: Duration,
    /// Largest accepted request or stdio message, in bytes. Default 4194304 (4 MiB).
    pub max_message_bytes: usize,
    /// An HTTP session idle this long is closed. Default `30m`.
    #[serde(deserialize_with = "duration")]
    pub session_idle: Duration,
    /// `Host` header values the HTTP front door accepts. Default: loopback names only.
    pub allowed_hosts: Option<Vec<String>>,
    /// Browser `Origin` values the HTTP front door accepts (`scheme://host[:port]`, `*` for
    /// any port, `null` for `Origin: null`); a request without `Origin` always passes.
    /// Default: loopback origins only (`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port).
    pub allowed_origins: Option<Vec<String>>,
    /// How many calls of one `call` batch run at once. Default 8.
    pub batch_concurrency: usize,
    /// Longest a call to `NAMESPACE.tool` that is not in the catalog yet waits for that
    /// upstream's first start to finish, so an early call does not fail as `not_found`.
    /// Nothing else waits. Default `10s`; `0s` disables.
    #[serde(deserialize_with = "duration")]
    pub startup_grace: Duration,
    /// Threads serving requests; 0 picks half the CPU cores (at least 1). Default 0.
    pub worker_threads: usize,
    /// Interval between the WebSocket front door's pings; a connection silent (no pong, no
    /// frame) for two intervals is closed. Default `20s`.
    #[serde(deserialize_with = "duration")]
    pub ws_ping: Duration,
    /// Largest WebSocket text frame accepted as a message, in bytes; larger ones get a
    /// JSON-RPC error `-32600`, and frames over twice this are not read (close 1009).
    /// Default 1048576 (1 MiB).
    pub ws_max_message_bytes: usize,
    /// The `key` that `/mcp_endpoint/health` requires. Default none: health then answers
    /// only when the hub listens on a loopback address.
    pub health_key: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7420".into(),
            expose: Expose::Meta,
            call_timeout: Duration::from_secs(60),
            max_message_bytes: 4 * 1024 * 1024,
            session_idle: Duration::from_secs(30 * 60),
            allowed_hosts: None,
            allowed_origins: None,
            batch_concurrency: 8,
            startup_grace: Duration::from_secs(10),
            worker_threads: 0,
            ws_ping: Duration::from_secs(20),
            ws_max_message_bytes: 1024 * 1024,
            health_key: None,
        }
    }
}

/// `[upstreams.NAME]`: one upstream MCP server; `NAME` is its namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Program to start for a stdio upstream.
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the program.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the program. Default: the hub's.
    pub cwd: Option<PathBuf>,
    /// URL of a Streamable HTTP upstream.
    pub url: Option<String>,
    /// HTTP headers sent to the upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether operation names carry `NAME.`; `false` keeps bare tool names. Default `true`.
    #[serde(default = "yes")]
    pub prefix: bool,
    /// Per-call timeout for this upstream. Default: `server.call_timeout`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub call_timeout: Option<Duration>,
    /// Longest wait for the upstream's `initialize` and `tools/list`. Default `30s`.
    #[serde(default = "startup_default", deserialize_with = "duration")]
    pub startup_timeout: Duration,
    /// Set `false` to keep the entry but not start it. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Who shares a connection to the upstream: `shared` (one for every client) or
    /// `session` (one per client session, so requests the upstream makes back mid-call always
    /// reach the right client). Default `shared`.
    #[serde(default)]
    pub sharing: Sharing,
}

fn yes() -> bool {
    true
}

fn startup_default() -> Duration {
    Duration::from_secs(30)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration like \"10s\" or \"5m\": {e}"
        ))
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// One entry of a `{"mcpServers": {...}}` file, as Claude Desktop, Cursor and others write it.
/// Read by `import` and by `patchbay connect`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct McpServerEntry {
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The WebSocket endpoint `patchbay connect` bridges this server to (its own extension).
    pub endpoint: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct McpServersFile {
    pub mcp_servers: BTreeMap<String, McpServerEntry>,
}

/// The embedded default: one demo upstream, served by this very binary (`patchbay demo-server`).
pub fn embedded_default() -> Config {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "patchbay".into());
    let mut upstreams = BTreeMap::new();
    upstreams.insert(
        "demo".to_owned(),
        UpstreamConfig {
            command: Some(exe),
            args: vec!["demo-server".into()],
            ..UpstreamConfig::empty()
        },
    );
    Config {
        upstreams,
        ..Config::default()
    }
}

impl UpstreamConfig {
    fn empty() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            prefix: true,
            call_timeout: None,
            startup_timeout: startup_default(),
            enabled: true,
            sharing: Sharing::Shared,
        }
    }
}

/// Where a configuration came from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Embedded => f.write_str("the embedded demo configuration"),
        }
    }
}

/// Finds the configuration: `--config`, else `./patchbay.toml`, else the user config dir
/// (`$XDG_CONFIG_HOME/patchbay/patchbay.toml` or `~/.config/patchbay/patchbay.toml`), else the
/// embedded default.
pub fn locate(explicit: Option<&Path>) -> Source {
    if let Some(p) = explicit {
        return Source::File(p.to_path_buf());
    }
    let local = PathBuf::from("patchbay.toml");
    if local.is_file() {
        return Source::File(local);
    }
    if let Some(dir) = user_config_dir() {
        let p = dir.join("patchbay").join("patchbay.toml");
        if p.is_file() {
            return Source::File(p);
        }
    }
    Source::Embedded
}

fn user_config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Loads, imports, expands `${VAR}` and validates.
pub fn load(source: &Source) -> Result<Config, ConfigError> {
    let mut config = match source {
        Source::Embedded => embedded_default(),
        Source::File(path) => load_file(path)?,
    };
    expand_all(&mut config, &|name| std::env::var(name).ok())?;
    validate(&config)?;
    Ok(config)
}

fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('{');
    if is_json {
        let mut config = Config::default();
        merge_mcp_servers(&mut config, path, &text)?;
        return Ok(config);
    }
    let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    for import in config.import.clone() {
        let p = resolve_path(base, &import);
        let text = std::fs::read_to_string(&p).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        merge_mcp_servers(&mut config, &p, &text)?;
    }
    Ok(config)
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

fn merge_mcp_servers(config: &mut Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    let file: McpServersFile = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: format!("expected {{\"mcpServers\": {{...}}}}: {e}"),
    })?;
    for (name, entry) in file.mcp_servers {
        let namespace = namespace_for(&name);
        if config.upstreams.contains_key(&namespace) {
            return Err(ConfigError::Invalid(format!(
                "{}: server `{name}` would use namespace `{namespace}`, which is already configured",
                path.display()
            )));
        }
        if let Some(kind) = entry.kind.as_deref()
            && !matches!(
                kind,
                "stdio" | "http" | "streamable-http" | "streamableHttp" | "sse"
            )
        {
            return Err(ConfigError::Invalid(format!(
                "{}: server `{name}` has unknown type `{kind}`",
                path.display()
            )));
        }
        config.upstreams.insert(
            namespace,
            UpstreamConfig {
                command: entry.command,
                args: entry.args,
                env: entry.env,
                cwd: entry.cwd,
                url: entry.url,
                headers: entry.headers,
                enabled: !entry.disabled,
                ..UpstreamConfig::empty()
            },
        );
    }
    Ok(())
}

/// `mcpServers` keys are free text; namespaces are not. Rewrites deterministically.
fn namespace_for(name: &str) -> String {
    let mut ns: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if ns.is_empty() {
        ns.push('_');
    }
    ns
}

/// Expands `${VAR}` and `${VAR:-default}` in every string that reaches an upstream.
/// `$${` stands for a literal `${`.
pub fn expand_all(
    config: &mut Config,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (name, up) in &mut config.upstreams {
        if !up.enabled {
            continue;
        }
        let place = format!("upstream `{name}`");
        let ctx = |field: String| (place.as_str(), field);
        if let Some(c) = &mut up.command {
            *c = expand(c, lookup, ctx("command".into()))?;
        }
        for (i, a) in up.args.iter_mut().enumerate() {
            *a = expand(a, lookup, ctx(format!("args[{i}]")))?;
        }
        for (k, v) in up.env.iter_mut() {
            *v = expand(v, lookup, ctx(format!("env.{k}")))?;
        }
        for (k, v) in up.headers.iter_mut() {
            *v = expand(v, lookup, ctx(format!("headers.{k}")))?;
        }
        if let Some(u) = &mut up.url {
            *u = expand(u, lookup, ctx("url".into()))?;
        }
    }
    for (i, e) in config.endpoints.iter_mut().enumerate() {
        if e.enabled {
            e.url = expand(&e.url, lookup, (&format!("endpoints[{i}]"), "url".into()))?;
        }
    }
    // Credentials in [auth] come from the environment as a rule (`token = "${CI_TOKEN}"`).
    if let Some(auth) = &mut config.auth {
        for (i, t) in auth.tokens.iter_mut().enumerate() {
            t.token = expand(
                &t.token,
                lookup,
                (&format!("auth.tokens[{i}]"), "token".into()),
            )?;
        }
        for (i, issuer) in auth.jwt.iter_mut().enumerate() {
            let place = format!("auth.jwt[{i}]");
            if let Some(j) = &mut issuer.jwks {
                *j = expand(j, lookup, (&place, "jwks".into()))?;
            }
            for (k, key) in issuer.keys.iter_mut().enumerate() {
                if let Some(secret) = &mut key.secret {
                    *secret = expand(secret, lookup, (&place, format!("keys[{k}].secret")))?;
                }
            }
        }
    }
    Ok(())
}

fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    (place, field): (&str, String),
) -> Result<String, ConfigError> {
    let place = place.to_owned();
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(ConfigError::Expansion {
                place,
                message: format!("unclosed `${{` in {field}"),
            });
        };
        let spec = &body[..end];
        let (var, default) = match spec.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (spec, None),
        };
        if let Some(what) = var.strip_prefix("actor.") {
            // Filled per caller when the upstream is used (one connection per actor).
            let in_env_or_headers = field.starts_with("env.") || field.starts_with("headers.");
            let placeholder = match what.strip_prefix("secret.") {
                Some(name) if in_env_or_headers && is_valid_name(name) => {
                    ActorValue::Secret(name.to_owned()).placeholder()
                }
                None if in_env_or_headers && what == "name" => ActorValue::Name.placeholder(),
                _ => {
                    return Err(ConfigError::Expansion {
                        place,
                        message: format!(
                            "`${{{var}}}` in {field}: only `${{actor.name}}` and \
                             `${{actor.secret.NAME}}` are known, and only in env and headers"
                        ),
                    });
                }
            };
            out.push_str(&placeholder);
            rest = &body[end + 1..];
            continue;
        }
        match lookup(var).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(ConfigError::MissingVar {
                    place,
                    var: var.to_owned(),
                    field,
                });
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    if config.server.batch_concurrency == 0 {
        return Err(ConfigError::Invalid(
            "server.batch_concurrency must be at least 1".into(),
        ));
    }
    if config.server.ws_max_message_bytes < 1024 {
        return Err(ConfigError::Invalid(
            "server.ws_max_message_bytes must be at least 1024".into(),
        ));
    }
    if config.server.ws_ping < Duration::from_secs(1) {
        return Err(ConfigError::Invalid(
            "server.ws_ping must be at least 1s".into(),
        ));
    }
    if config.server.max_message_bytes < 1024 {
        return Err(ConfigError::Invalid(
            "server.max_message_bytes must be at least 1024".into(),
        ));
    }
    for (i, e) in config.endpoints.iter().enumerate() {
        let bad = |m: &str| ConfigError::Invalid(format!("endpoints[{i}]: {m}"));
        if !(e.url.starts_with("ws://") || e.url.starts_with("wss://")) {
            return Err(bad("url must start with ws:// or wss://"));
        }
        if config.auth.is_some() && e.actor.is_none() && e.enabled {
            return Err(bad(
                "`actor` is required when [auth] is present: the calls on the connection run as it",
            ));
        }
        if e.ping < Duration::from_secs(1) {
            return Err(bad("ping must be at least 1s"));
        }
        if e.backoff_cap < Duration::from_millis(100) {
            return Err(bad("backoff_cap must be at least 100ms"));
        }
    }
    for (name, up) in &config.upstreams {
        if !patchbay_core::name::is_valid_namespace(name) {
            return Err(ConfigError::Upstream {
                upstream: name.clone(),
                message: "a namespace may hold letters, digits, `_` and `-` (no dots), at most 64"
                    .into(),
            });
        }
        match (&up.command, &up.url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Upstream {
                    upstream: name.clone(),
                    message: "set `command` or `url`, not both".into(),
                });
            }
            (None, None) => {
                return Err(ConfigError::Upstream {
                    upstream: name.clone(),
                    message: "set `command` (stdio) or `url` (HTTP)".into(),
                });
            }
            (None, Some(url)) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ConfigError::Upstream {
                    upstream: name.clone(),
                    message: format!("`url` must start with http:// or https://, not `{url}`"),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn auth_credentials_are_expanded_and_a_missing_one_is_named() {
        let mut c = parse(
            r#"
[auth]
[[auth.tokens]]
actor = "ci"
token = "${TOKEN}-and-more-than-16"
"#,
        );
        expand_all(&mut c, &vars).unwrap();
        assert_eq!(c.auth.unwrap().tokens[0].token, "s3cret-and-more-than-16");
        let mut c = parse("[auth]\n[[auth.tokens]]\nactor = \"ci\"\ntoken = \"${NOPE}\"\n");
        let e = expand_all(&mut c, &vars).unwrap_err().to_string();
        assert_eq!(
            e,
            "auth.tokens[0]: environment variable `NOPE` is not set (used in token)"
        );
    }

    #[test]
    fn the_issue_example_parses() {
        let mut c = parse(
            r#"
[server]
listen = "127.0.0.1:7420"
expose = "meta"
call_timeout = "60s"

[upstreams.github]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github"]
env = { GITHUB_TOKEN = "${TOKEN}" }

[upstreams.docs]
url = "https://example.com/mcp"
headers = { Authorization = "Bearer ${TOKEN}" }
call_timeout = "10s"

[upstreams.ref]
command = "node"
args = ["server.js"]
prefix = false
"#,
        );
        expand_all(&mut c, &vars).unwrap();
        validate(&c).unwrap();
        assert_eq!(c.upstreams["github"].env["GITHUB_TOKEN"], "s3cret");
        assert_eq!(
            c.upstreams["docs"].headers["Authorization"],
            "Bearer s3cret"
        );
        assert_eq!(
            c.upstreams["docs"].call_timeout,
            Some(Duration::from_secs(10))
        );
        assert!(!c.upstreams["ref"].prefix);
        assert!(c.upstreams["github"].prefix);
        assert_eq!(c.server.expose, Expose::Meta);
    }

    #[test]
    fn a_missing_variable_is_named() {
        let mut c = parse("[upstreams.gh]\ncommand = \"x\"\nenv = { T = \"${NOPE}\" }\n");
        let e = expand_all(&mut c, &vars).unwrap_err().to_string();
        assert!(
            e.contains("NOPE") && e.contains("gh") && e.contains("env.T"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_literals() {
        let up = ("upstream `u`", "f".to_owned());
        assert_eq!(
            expand("${NOPE:-x}/${TOKEN}", &vars, up.clone()).unwrap(),
            "x/s3cret"
        );
        assert_eq!(expand("$${TOKEN} $5", &vars, up).unwrap(), "${TOKEN} $5");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<Config>("[server]\nlisten_addr = \"x\"").is_err());
        assert!(toml::from_str::<Config>("[server]\ncall_timeout = \"soon\"").is_err());
    }

    #[test]
    fn mcp_servers_json_is_accepted_unchanged() {
        let mut c = Config::default();
        let json = r#"{"mcpServers": {
            "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
            "my.remote": {"url": "https://example.com/mcp", "type": "http"},
            "off": {"command": "x", "disabled": true}
        }}"#;
        merge_mcp_servers(&mut c, Path::new("mcp.json"), json).unwrap();
        assert_eq!(c.upstreams["filesystem"].args.len(), 3);
        assert_eq!(
            c.upstreams["my_remote"].url.as_deref(),
            Some("https://example.com/mcp")
        );
        assert!(!c.upstreams["off"].enabled);
        validate(&c).unwrap();
    }

    #[test]
    fn both_or_neither_transport_is_an_error() {
        let c = parse("[upstreams.a]\ncommand = \"x\"\nurl = \"http://y\"\n");
        assert!(validate(&c).is_err());
        let c = parse("[upstreams.a]\nargs = []\n");
        assert!(validate(&c).is_err());
    }
}
