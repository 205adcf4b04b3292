//! One callable thing in the registry, with its input schema compiled once on first use.

use std::sync::{Arc, OnceLock};

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use crate::error::{CallError, ErrorCode};

/// An operation: an upstream tool under its operation name.
#[derive(Debug)]
pub struct Operation {
    /// The operation name (`namespace.tool`, or the bare tool name without a prefix).
    pub name: String,
    pub namespace: String,
    /// The name the upstream knows the tool by; used when calling it.
    pub upstream_name: String,
    /// The upstream's definition, with `name` set to the operation name, as JSON text. Parsed,
    /// a definition takes several times the memory of its text (10,000 generated tools: 31 MB
    /// against 4), and it is read rarely: by `schema`, by a `direct` listing, and once to
    /// compile the input schema.
    definition: Box<str>,
    /// The description, which every `list` and `search` summary shows.
    description: Box<str>,
    read_only: bool,
    validator: OnceLock<Option<jsonschema::Validator>>,
}

/// How many failing paths an `invalid_input` error lists at most.
const MAX_REPORTED_ERRORS: usize = 20;

impl Operation {
    pub fn new(name: String, namespace: String, mut definition: Tool) -> Self {
        let upstream_name = definition.name.to_string();
        definition.name = name.clone().into();
        let read_only = definition
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            == Some(true);
        Self {
            description: definition.description.as_deref().unwrap_or("").into(),
            // A `Tool` is plain data; writing it as JSON does not fail.
            definition: serde_json::to_string(&definition)
                .unwrap_or_default()
                .into_boxed_str(),
            name,
            namespace,
            upstream_name,
            read_only,
            validator: OnceLock::new(),
        }
    }

    /// Whether the upstream annotates the operation read-only (`readOnlyHint: true`).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The upstream's definition, with `name` set to the operation name (parsed on each call).
    pub fn definition(&self) -> Tool {
        serde_json::from_str(&self.definition).unwrap_or_else(|e| {
            // Unreachable: the text was written from a `Tool`.
            tracing::error!(operation = %self.name, error = %e, "stored definition does not read back");
            Tool::new(
                self.name.clone(),
                self.description.to_string(),
                Arc::new(JsonObject::new()),
            )
        })
    }

    /// Checks `input` against the input schema. A schema that does not compile is logged once
    /// and skipped: the upstream stays the judge of its own input.
    pub fn validate(&self, input: &Value) -> Result<(), CallError> {
        let validator = self.validator.get_or_init(|| {
            let schema = Value::Object(Arc::unwrap_or_clone(self.definition().input_schema));
            match jsonschema::validator_for(&schema) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(operation = %self.name, error = %e, "input schema does not compile; calls are not validated");
                    None
                }
            }
        });
        let Some(validator) = validator else {
            return Ok(());
        };
        if validator.is_valid(input) {
            return Ok(());
        }
        let errors: Vec<Value> = validator
            .iter_errors(input)
            .take(MAX_REPORTED_ERRORS)
            .map(|e| {
                let path = e.instance_path().to_string();
                json!({
                    "path": if path.is_empty() { "/".to_owned() } else { path },
                    "schemaPath": e.schema_path().to_string(),
                    "message": e.to_string(),
                })
            })
            .collect();
        let first = errors
            .first()
            .and_then(|e| {
                Some(format!(
                    "{}: {}",
                    e["path"].as_str()?,
                    e["message"].as_str()?
                ))
            })
            .unwrap_or_default();
        Err(CallError::new(
            ErrorCode::InvalidInput,
            format!(
                "input does not match the schema of `{}` ({first})",
                self.name
            ),
        )
        .with_data(json!({ "errors": errors })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(schema: Value) -> Operation {
        let tool = Tool::new("add", "adds", Arc::new(schema.as_object().unwrap().clone()));
        Operation::new("m.add".into(), "m".into(), tool)
    }

    #[test]
    fn reports_failing_paths() {
        let op = op(
            json!({"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}),
        );
        assert!(op.validate(&json!({"a":1,"b":2})).is_ok());
        let err = op.validate(&json!({"a":"x"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        let paths: Vec<String> = err.data.unwrap()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect();
        assert!(paths.contains(&"/a".to_owned()), "{paths:?}");
        assert!(
            paths.contains(&"/".to_owned()),
            "missing b is reported at the root: {paths:?}"
        );
    }

    #[test]
    fn the_definition_reads_back_whole_under_the_operation_name() {
        let mut tool = Tool::new(
            "add",
            "adds",
            Arc::new(
                json!({"type":"object","properties":{"b":{},"a":{}}})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        );
        tool.annotations = Some(rmcp::model::ToolAnnotations::new().read_only(true));
        tool.title = Some("Add".into());
        let op = Operation::new("m.add".into(), "m".into(), tool.clone());
        assert!(op.is_read_only());
        assert_eq!(op.description(), "adds");
        assert_eq!(op.upstream_name, "add");
        let back = op.definition();
        assert_eq!(back.name, "m.add");
        tool.name = "m.add".into();
        assert_eq!(back, tool);
        // The upstream's key order is kept.
        let keys: Vec<&String> = back.input_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn a_broken_schema_is_not_enforced() {
        let op = op(json!({"type": 12}));
        assert!(op.validate(&json!({"anything": true})).is_ok());
    }
}
