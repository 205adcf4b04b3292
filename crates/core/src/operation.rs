//! One callable thing in the registry, with its input schema compiled once on first use.

use std::sync::OnceLock;

use rmcp::model::Tool;
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
    /// The upstream's definition, with `name` set to the operation name.
    pub definition: Tool,
    validator: OnceLock<Option<jsonschema::Validator>>,
}

/// How many failing paths an `invalid_input` error lists at most.
const MAX_REPORTED_ERRORS: usize = 20;

impl Operation {
    pub fn new(name: String, namespace: String, mut definition: Tool) -> Self {
        let upstream_name = definition.name.to_string();
        definition.name = name.clone().into();
        Self {
            name,
            namespace,
            upstream_name,
            definition,
            validator: OnceLock::new(),
        }
    }

    /// Whether the upstream annotates the operation read-only (`readOnlyHint: true`).
    pub fn is_read_only(&self) -> bool {
        self.definition
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            == Some(true)
    }

    pub fn description(&self) -> &str {
        self.definition.description.as_deref().unwrap_or("")
    }

    /// Checks `input` against the input schema. A schema that does not compile is logged once
    /// and skipped: the upstream stays the judge of its own input.
    pub fn validate(&self, input: &Value) -> Result<(), CallError> {
        let validator = self.validator.get_or_init(|| {
            let schema = Value::Object((*self.definition.input_schema).clone());
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
    use std::sync::Arc;

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
    fn a_broken_schema_is_not_enforced() {
        let op = op(json!({"type": 12}));
        assert!(op.validate(&json!({"anything": true})).is_ok());
    }
}
