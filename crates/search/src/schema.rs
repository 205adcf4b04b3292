//! Flattening a JSON Schema's properties into searchable parameter names and descriptions.

use serde_json::Value;

use crate::Param;

/// Nesting deeper than this is not followed: real tool schemas are shallow, and a bound keeps a
/// hostile or self-similar schema from costing unbounded time.
const MAX_DEPTH: usize = 6;
/// At most this many parameters are taken from one schema.
const MAX_PARAMS: usize = 256;

/// Extracts parameter names and descriptions from a JSON Schema (top-level and nested properties).
///
/// Follows `properties`, array `items`, and the alternatives of `anyOf` / `oneOf` / `allOf`.
/// Nested parameters keep their own name (`address.city` yields `city`), since the words are
/// what matter for search. Anything that is not an object schema yields nothing.
pub fn params_from_schema(schema: &Value) -> Vec<Param> {
    let mut out = Vec::new();
    collect(schema, 0, &mut out);
    out
}

/// [`params_from_schema`] for a schema already held as a JSON object (as MCP tools hold their
/// input schemas), without copying it into a `Value` first.
pub fn params_from_object(schema: &serde_json::Map<String, Value>) -> Vec<Param> {
    let mut out = Vec::new();
    collect_object(schema, 0, &mut out);
    out
}

fn collect(schema: &Value, depth: usize, out: &mut Vec<Param>) {
    if let Some(obj) = schema.as_object() {
        collect_object(obj, depth, out);
    }
}

fn collect_object(obj: &serde_json::Map<String, Value>, depth: usize, out: &mut Vec<Param>) {
    if depth > MAX_DEPTH || out.len() >= MAX_PARAMS {
        return;
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            if out.len() >= MAX_PARAMS {
                return;
            }
            let description = prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.push(Param {
                name: name.clone(),
                description: description.to_string(),
            });
            collect(prop, depth + 1, out);
        }
    }
    if let Some(items) = obj.get("items") {
        collect(items, depth + 1, out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = obj.get(key).and_then(Value::as_array) {
            for alt in alts {
                collect(alt, depth + 1, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_nested_properties() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "options": {"type": "object", "properties": {
                    "units": {"type": "string", "description": "metric or imperial"}
                }},
                "tags": {"type": "array", "items": {"type": "object", "properties": {
                    "label": {"type": "string"}
                }}}
            }
        });
        let mut names: Vec<String> = params_from_schema(&schema)
            .into_iter()
            .map(|p| p.name)
            .collect();
        names.sort();
        assert_eq!(names, ["city", "label", "options", "tags", "units"]);
        let city = params_from_schema(&schema)
            .into_iter()
            .find(|p| p.name == "city")
            .unwrap();
        assert_eq!(city.description, "City name");
    }

    #[test]
    fn tolerates_non_schemas() {
        assert!(params_from_schema(&json!(null)).is_empty());
        assert!(params_from_schema(&json!("x")).is_empty());
        assert!(params_from_schema(&json!({"properties": 3})).is_empty());
        assert!(params_from_schema(&json!({"properties": {"a": 1}})).len() == 1);
    }
}
