//! Ids of a connection's requests still being answered. A second request with an id still in
//! use is refused (JSON-RPC `-32600`): its answer could not be told apart from the first one's.
//! Shared by the line (stdio) and WebSocket transports.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use rmcp::model::JsonRpcMessage;
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Default)]
pub(crate) struct OpenRequests(Arc<Mutex<HashSet<String>>>);

fn key(id: &impl Serialize) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

impl OpenRequests {
    /// Records an incoming request's id, or says why it must be refused (its id is in use).
    fn begin(&self, id: &impl Serialize) -> Result<(), String> {
        let key = key(id);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if open.insert(key.clone()) {
            Ok(())
        } else {
            Err(format!(
                "duplicate request id {key}: a request with this id is still in progress"
            ))
        }
    }

    /// Passes `message` on, or refuses it as `(id, -32600, why)` when it is a request whose id
    /// is still in use.
    pub(crate) fn admit<Req, Resp, Not>(
        &self,
        message: JsonRpcMessage<Req, Resp, Not>,
    ) -> Result<JsonRpcMessage<Req, Resp, Not>, (Value, i32, String)> {
        if let JsonRpcMessage::Request(r) = &message
            && let Err(why) = self.begin(&r.id)
        {
            return Err((
                serde_json::to_value(&r.id).unwrap_or(Value::Null),
                -32600,
                why,
            ));
        }
        Ok(message)
    }

    /// Forgets the id that an outgoing answer (a response or an error) answers.
    pub(crate) fn end<Req, Resp, Not>(&self, message: &JsonRpcMessage<Req, Resp, Not>) {
        let answered = match message {
            JsonRpcMessage::Response(r) => Some(key(&r.id)),
            JsonRpcMessage::Error(e) => e.id.as_ref().map(key),
            _ => None,
        };
        if let Some(k) = answered {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
        }
    }
}
