//! Builds a running hub from a configuration: registry, dispatcher and one supervisor per
//! upstream, all started at once; none waits for another.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use patchbay_core::{
    DispatchSettings, Dispatcher, NamespaceSettings, Registry, Rules, UpstreamState,
};
use patchbay_identity::Authenticator;
use patchbay_providers::{
    ActorSecrets, DialInSettings, DialIns, HttpSpec, McpProvider, ProviderTokens, StdioSpec,
    UpstreamSpec, UpstreamTransport, start_upstream,
};
use patchbay_server::{HubState, access::Access};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    store_link::{self, Audit, StoreLookup, StoreProviderTokens, StoreSecrets},
};

pub struct Hub {
    pub state: Arc<HubState>,
    pub shutdown: CancellationToken,
    supervisors: Vec<JoinHandle<()>>,
    /// Dial-in tool providers (`patchbay provider add`), registered from the store.
    pub dial_ins: Arc<DialIns>,
    /// The audit writer, flushed on stop.
    audit: Option<Arc<Audit>>,
}

impl Hub {
    /// Registers every enabled upstream and starts its supervisor. Returns at once.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let shutdown = CancellationToken::new();
        let store = if config.uses_store() {
            Some(store_link::open(config)?)
        } else {
            None
        };
        let secrets = store
            .clone()
            .map(|s| Arc::new(StoreSecrets(s)) as Arc<dyn ActorSecrets>);
        let mut supervisors = Vec::new();
        for (namespace, up) in config.upstreams.iter().filter(|(_, u)| u.enabled) {
            let transport = match (&up.command, &up.url) {
                (Some(command), _) => UpstreamTransport::Stdio(StdioSpec {
                    command: command.clone(),
                    args: up.args.clone(),
                    env: up.env.clone(),
                    cwd: up.cwd.clone(),
                }),
                (None, Some(url)) => UpstreamTransport::Http(HttpSpec {
                    url: url.clone(),
                    headers: up.headers.clone(),
                }),
                (None, None) => unreachable!("validated"),
            };
            let provider = McpProvider::new(namespace);
            let handle = registry.register(
                namespace,
                NamespaceSettings {
                    prefix: up.prefix,
                    call_timeout: up.call_timeout,
                },
                provider.clone(),
            )?;
            let mut spec = UpstreamSpec::new(namespace.clone(), transport);
            spec.startup_timeout = up.startup_timeout;
            spec.sharing = up.sharing;
            supervisors.push(start_upstream(
                spec,
                provider,
                handle,
                secrets.clone(),
                shutdown.child_token(),
            ));
        }
        let dial_ins = DialIns::new(
            registry.clone(),
            store
                .clone()
                .map(|s| Arc::new(StoreProviderTokens(s)) as Arc<dyn ProviderTokens>),
            DialInSettings::default(),
            shutdown.child_token(),
        );
        if let Some(store) = &store {
            register_dial_ins(store.clone(), dial_ins.clone());
        }
        let dispatcher = Dispatcher::new(
            registry,
            DispatchSettings {
                call_timeout: config.server.call_timeout,
                batch_concurrency: config.server.batch_concurrency,
                startup_grace: config.server.startup_grace,
            },
        );
        let (access, audit) = access(config, store)?;
        let state = Arc::new(HubState::with_access(
            dispatcher,
            config.server.expose,
            access,
        ));
        Ok(Self {
            state,
            shutdown,
            supervisors,
            dial_ins,
            audit,
        })
    }

    /// Starts keeping a connection to every enabled `[[endpoints]]` entry (the dialer); they
    /// stop with the hub.
    pub fn dial_endpoints(&mut self, config: &Config) {
        for e in config.endpoints.iter().filter(|e| e.enabled) {
            let mut spec = patchbay_server::dialer::EndpointSpec::new(e.url.clone());
            spec.actor = e.actor.clone();
            spec.vendor = e.vendor.clone();
            spec.roles = e.roles.clone();
            spec.expose = e.expose;
            spec.backoff_cap = e.backoff_cap;
            spec.healthy_after = e.healthy_after;
            spec.limits = patchbay_server::websocket::SocketLimits {
                max_message_bytes: config.server.ws_max_message_bytes,
                ping: e.ping,
            };
            spec.initial_backoff = spec.initial_backoff.min(e.backoff_cap);
            self.supervisors.push(patchbay_server::dialer::start(
                self.state.clone(),
                spec,
                self.shutdown.child_token(),
            ));
        }
    }

    /// Starts the hub and waits until every upstream has had its start-up time (plus a second)
    /// to become ready: what one-shot commands (`check`, `ops`) need before they answer.
    pub async fn start_settled(config: &Config) -> anyhow::Result<Self> {
        let longest = config
            .upstreams
            .values()
            .map(|u| u.startup_timeout)
            .max()
            .unwrap_or_default();
        let hub = Self::start(config)?;
        hub.settle(longest + Duration::from_secs(1)).await;
        Ok(hub)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.state.dispatcher.registry()
    }

    /// Waits until no upstream is still starting, or `limit` passes. Dial-in providers are
    /// not waited for: they connect when they will.
    pub async fn settle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.registry().statuses().iter().all(|s| {
                s.state != UpstreamState::Starting || self.dial_ins.is_dial_in(&s.namespace)
            }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every upstream (and every child process) and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.supervisors {
            let _ = task.await;
        }
        if let Some(audit) = self.audit {
            audit.close().await;
        }
    }
}

/// Registers every stored dial-in provider's namespace (in state `starting`), before the hub
/// serves when the runtime allows it. A name that clashes with an upstream is reported and
/// left out.
fn register_dial_ins(store: Arc<dyn patchbay_store::Store>, dial_ins: Arc<DialIns>) {
    let load = async move {
        match store.providers().await {
            Ok(providers) => {
                for p in providers {
                    if let Err(e) = dial_ins.register(&p.name) {
                        tracing::error!(provider = %p.name, error = %e, "dial-in provider left out");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list dial-in providers"),
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| rt.block_on(load))
        }
        Ok(rt) => {
            rt.spawn(load);
        }
        Err(_) => {}
    }
}

/// Authentication, policy and audit from the configuration.
fn access(
    config: &Config,
    store: Option<Arc<dyn patchbay_store::Store>>,
) -> anyhow::Result<(Access, Option<Arc<Audit>>)> {
    let authenticator = match &config.auth {
        None => None,
        Some(_) => {
            let lookup = store
                .clone()
                .map(|s| Arc::new(StoreLookup(s)) as Arc<dyn patchbay_identity::TokenLookup>);
            Some(Arc::new(
                Authenticator::new(&config.auth_with_defaults(), lookup).context("in [auth]")?,
            ))
        }
    };
    let audit = match &store {
        Some(store) if config.audit.enabled => Some(Audit::start(store.clone(), &config.audit)),
        _ => None,
    };
    let access = Access {
        authenticator,
        rules: Arc::new(Rules::new(config.policy.clone())),
        audit: audit
            .clone()
            .map(|a| a as Arc<dyn patchbay_server::access::AuditFor>),
    };
    Ok((access, audit))
}
