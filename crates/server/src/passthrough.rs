//! Resources, prompts, completion and logging, passed through to the upstream that serves
//! them. Tools are the hub surface's business; everything else a client shows to people goes
//! through here unchanged, in every `expose` mode. Prompt names are rewritten like operation
//! names; resource URIs are kept as they are and routed by the registry.

// Logging is deprecated by SEP-2577 (2026-07-28); earlier protocol versions all have it.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use patchbay_core::{AllowAll, CallNode, ErrorCode, ForwardError, Route};
use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult, GetPromptRequest,
        GetPromptRequestParams, GetPromptResult, ReadResourceRequest, ReadResourceRequestParams,
        ReadResourceResult, Reference, ResultType, ServerResult, SetLevelRequest,
        SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest,
        UnsubscribeRequestParams,
    },
    service::RequestContext,
};
use serde::de::DeserializeOwned;

use crate::session::{HubState, Session, call_token};

/// JSON-RPC code for an unknown resource (MCP specification, "Error Handling" of resources).
const RESOURCE_NOT_FOUND: i32 = -32002;

impl Session {
    /// Forwards `request` along `route` as part of this client request's call tree, with this
    /// session's client reachable for requests back.
    async fn forward(
        &self,
        route: &Route,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let root = CallNode::root(call_token(context));
        let link = self.link(&context.peer, &context.extensions);
        self.hub
            .dispatcher
            .forward(
                route,
                request,
                &root,
                Some(link.channel(Some(context.id.clone()))),
                self.actor(),
            )
            .await
            .map_err(to_error_data)
    }

    pub(crate) async fn read_resource_through(
        &self,
        request: ReadResourceRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        let registry = self.hub.dispatcher.registry();
        let mut route = registry.route_resource(&request.uri, self.policy().as_ref());
        if route.is_none() {
            // An upstream still starting may be the one that serves it.
            self.hub.dispatcher.settle_all().await;
            route = registry.route_resource(&request.uri, self.policy().as_ref());
        }
        let Some(route) = route else {
            return Err(resource_not_found(&request.uri));
        };
        let forwarded = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        let mut result: ReadResourceResult =
            expect(self.forward(&route, forwarded, context).await?)?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    pub(crate) async fn subscribe_through(
        &self,
        uri: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let registry = self.hub.dispatcher.registry();
        let Some(route) = registry.route_resource(&uri, self.policy().as_ref()) else {
            return Err(resource_not_found(&uri));
        };
        let newly = self
            .state
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uri.clone());
        if !newly {
            return Ok(());
        }
        if self.hub.subscriptions.acquire(&uri) {
            let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(
                SubscribeRequestParams::new(uri.clone()),
            ));
            if let Err(e) = self.forward(&route, request, context).await {
                self.hub.subscriptions.release(&uri);
                self.state
                    .subscribed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&uri);
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) async fn unsubscribe_through(
        &self,
        uri: String,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let was = self
            .state
            .subscribed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&uri);
        if !was || !self.hub.subscriptions.release(&uri) {
            return Ok(());
        }
        let registry = self.hub.dispatcher.registry();
        let Some(route) = registry.route_resource(&uri, self.policy().as_ref()) else {
            return Ok(());
        };
        let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
            UnsubscribeRequestParams::new(uri),
        ));
        self.forward(&route, request, context).await.map(|_| ())
    }

    pub(crate) async fn get_prompt_through(
        &self,
        mut request: GetPromptRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<GetPromptResult, ErrorData> {
        let registry = self.hub.dispatcher.registry();
        let policy = self.policy();
        let mut found = registry.route_prompt(&request.name, policy.as_ref());
        if found.is_none() {
            // An upstream still starting may be the one that serves it.
            self.hub.dispatcher.settle_all().await;
            found = registry.route_prompt(&request.name, policy.as_ref());
        }
        let Some((route, upstream_name)) = found else {
            return Err(ErrorData::invalid_params(
                format!("no prompt named `{}`", request.name),
                None,
            ));
        };
        request.name = upstream_name;
        let forwarded = ClientRequest::GetPromptRequest(GetPromptRequest::new(request));
        let mut result: GetPromptResult = expect(self.forward(&route, forwarded, context).await?)?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    pub(crate) async fn complete_through(
        &self,
        mut request: CompleteRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let registry = self.hub.dispatcher.registry();
        let policy = self.policy();
        let policy = policy.as_ref();
        let route = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let (route, upstream_name) =
                    registry.route_prompt(&prompt.name, policy).ok_or_else(|| {
                        ErrorData::invalid_params(
                            format!("no prompt named `{}`", prompt.name),
                            None,
                        )
                    })?;
                prompt.name = upstream_name;
                route
            }
            Reference::Resource(template) => registry
                .route_template(&template.uri, policy)
                .or_else(|| registry.route_resource(&template.uri, policy))
                .ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("no resource template `{}`", template.uri),
                        None,
                    )
                })?,
            _ => {
                return Err(ErrorData::invalid_params(
                    "unknown completion reference",
                    None,
                ));
            }
        };
        let forwarded = ClientRequest::CompleteRequest(CompleteRequest::new(request));
        let mut result: CompleteResult = expect(self.forward(&route, forwarded, context).await?)?;
        result.result_type = Some(ResultType::COMPLETE);
        Ok(result)
    }

    /// Records the session's level (the hub filters what reaches this client by it) and asks
    /// every upstream that logs to send at that level. Upstream log levels are shared by all
    /// sessions, so the last request wins there; each client still sees only its own level.
    pub(crate) async fn set_level_through(
        &self,
        request: SetLevelRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let link = self.link(&context.peer, &context.extensions);
        link.set_level(request.level);
        let routes = self.hub.dispatcher.registry().logging_routes();
        for route in routes {
            let forwarded = ClientRequest::SetLevelRequest(SetLevelRequest::new(
                SetLevelRequestParams::new(request.level),
            ));
            if let Err(e) = self.forward(&route, forwarded, context).await {
                tracing::debug!(upstream = %route.namespace, error = %e.message, "logging/setLevel not passed on");
            }
        }
        Ok(())
    }
}

/// Sessions subscribed to each resource URI, across the hub.
#[derive(Default)]
pub(crate) struct Subscriptions {
    counts: Mutex<HashMap<String, usize>>,
}

impl Subscriptions {
    /// Counts one more session for `uri`; true if it is the first (subscribe upstream).
    pub(crate) fn acquire(&self, uri: &str) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(uri.to_owned()).or_default();
        *n += 1;
        *n == 1
    }

    /// Counts one session fewer for `uri`; true if it was the last (unsubscribe upstream).
    pub(crate) fn release(&self, uri: &str) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                counts.remove(uri);
                true
            }
            None => false,
        }
    }

    /// Releases an ended session's subscriptions, unsubscribing upstream where it was the last.
    pub(crate) fn release_all(hub: &Arc<HubState>, uris: Vec<String>) {
        let last: Vec<String> = uris
            .into_iter()
            .filter(|u| hub.subscriptions.release(u))
            .collect();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if last.is_empty() {
            return;
        }
        let hub = hub.clone();
        runtime.spawn(async move {
            let root = CallNode::root(Default::default());
            for uri in last {
                let Some(route) = hub.dispatcher.registry().route_resource(&uri, &AllowAll) else {
                    continue;
                };
                let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                    UnsubscribeRequestParams::new(uri),
                ));
                let _ = hub
                    .dispatcher
                    .forward(&route, request, &root, None, None)
                    .await;
            }
        });
    }
}

/// The result as the type the request calls for. rmcp reads results into an untagged union,
/// so one shape can be read as another (an empty object as `EmptyResult`, say); re-read it.
/// Callers then mark it `resultType: complete`: an upstream on an older version leaves that
/// out, a 2026-07-28 client requires it, and rmcp removes it again for older clients.
fn expect<T: DeserializeOwned>(result: ServerResult) -> Result<T, ErrorData> {
    serde_json::to_value(&result)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            ErrorData::internal_error("the upstream answered with the wrong shape", None)
        })
}

fn resource_not_found(uri: &str) -> ErrorData {
    ErrorData::new(
        rmcp::model::ErrorCode(RESOURCE_NOT_FOUND),
        format!("Resource not found: {uri}"),
        Some(serde_json::json!({ "uri": uri })),
    )
}

/// A forwarded request's failure as the client sees it: the upstream's own error unchanged,
/// or the hub's error with its stable code in `data.code`.
fn to_error_data(e: ForwardError) -> ErrorData {
    match e {
        ForwardError::Upstream(e) => e,
        ForwardError::Hub(e) => {
            let code = match e.code {
                ErrorCode::NotFound | ErrorCode::InvalidInput => {
                    rmcp::model::ErrorCode::INVALID_PARAMS
                }
                _ => rmcp::model::ErrorCode::INTERNAL_ERROR,
            };
            ErrorData::new(
                code,
                e.message.clone(),
                Some(serde_json::json!({ "code": e.code })),
            )
        }
    }
}
