//! Reading configured claims out of a verified JWT payload.

use serde_json::{Map, Value};

/// Finds claim `name` in `claims`: a literal key first (`"agentkeys.omni_account": ...`), then
/// a nested path, splitting at dots (`{"agentkeys": {"omni_account": ...}}`); mixed forms
/// (`{"a.b": {"c": ...}}` for `a.b.c`) work too.
pub(crate) fn find<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    for (i, _) in name.match_indices('.') {
        let (head, tail) = (&name[..i], &name[i + 1..]);
        if let Some(Value::Object(inner)) = claims.get(head)
            && let Some(value) = find(inner, tail)
        {
            return Some(value);
        }
    }
    None
}

/// A claim as a single string: a string as is, a number or boolean in its JSON text.
pub(crate) fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A roles or scopes claim: an array of strings, or one space-separated string.
pub(crate) fn as_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn literal_nested_and_mixed() {
        let literal = obj(json!({"agentkeys.omni_account": "alice"}));
        assert_eq!(
            find(&literal, "agentkeys.omni_account"),
            Some(&json!("alice"))
        );
        let nested = obj(json!({"agentkeys": {"omni_account": "bob"}}));
        assert_eq!(find(&nested, "agentkeys.omni_account"), Some(&json!("bob")));
        let mixed = obj(json!({"https://x.example": {"ns.a": {"b": 1}}}));
        assert_eq!(find(&mixed, "https://x.example.ns.a.b"), Some(&json!(1)));
        let both = obj(json!({"a.b": "literal", "a": {"b": "nested"}}));
        assert_eq!(find(&both, "a.b"), Some(&json!("literal")));
        assert_eq!(find(&nested, "agentkeys.vendor"), None);
        assert_eq!(
            find(&nested, "agentkeys"),
            Some(&json!({"omni_account": "bob"}))
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            as_list(&json!("read write")).unwrap(),
            vec!["read", "write"]
        );
        assert_eq!(as_list(&json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert_eq!(as_list(&json!(["a", 1])), None);
        assert_eq!(as_list(&json!(3)), None);
        assert_eq!(as_text(&json!(42)).unwrap(), "42");
        assert_eq!(as_text(&json!({})), None);
    }
}
