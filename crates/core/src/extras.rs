//! What an upstream serves besides tools: its declared capabilities, resources, resource
//! templates and prompts, as the registry keeps them, and how a resource URI finds the upstream
//! that serves it.

use std::collections::HashMap;

use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities};

use crate::name::operation_name;

/// One namespace's resources, templates and prompts. Prompt names are the names clients see
/// (`namespace.prompt`, or bare without a prefix); resource URIs are the upstream's own.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// What the upstream declared in its `initialize` answer; `None` until it has answered.
    pub capabilities: Option<ServerCapabilities>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    /// Client-facing prompt name -> the upstream's own name.
    prompt_names: HashMap<String, String>,
}

impl Extras {
    pub(crate) fn set_prompts(&mut self, namespace: &str, prefix: bool, prompts: Vec<Prompt>) {
        self.prompt_names.clear();
        self.prompts = prompts
            .into_iter()
            .map(|mut p| {
                let name = operation_name(namespace, &p.name, prefix);
                self.prompt_names
                    .insert(name.clone(), std::mem::take(&mut p.name));
                p.name = name;
                p
            })
            .collect();
    }

    /// The upstream's own name for the prompt clients call `name`.
    pub(crate) fn upstream_prompt(&self, name: &str) -> Option<&str> {
        self.prompt_names.get(name).map(String::as_str)
    }

    /// Whether `uri` is one of this upstream's resources or matches one of its templates.
    pub(crate) fn serves_uri(&self, uri: &str) -> bool {
        self.resources.iter().any(|r| r.uri == uri)
            || self
                .templates
                .iter()
                .any(|t| template_matches(&t.uri_template, uri))
    }

    pub(crate) fn has_template(&self, uri_template: &str) -> bool {
        self.templates
            .iter()
            .any(|t| t.uri_template == uri_template)
    }

    pub(crate) fn offers_resources(&self) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|c| c.resources.is_some())
    }
}

/// Whether `uri` is an expansion of the RFC 6570 `template`. Each `{...}` expression matches
/// any run of characters: simple expressions (`{id}`) stop at `/`, `?` and `#`; reserved and
/// path-style ones (`{+path}`, `{/segments}`, `{?query}`, ...) may span them. Matching is
/// deliberately loose: it only decides which upstream a URI goes to, and that upstream checks
/// the URI itself.
pub fn template_matches(template: &str, uri: &str) -> bool {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        parts.push(Part::Literal(&rest[..open]));
        let expression = &rest[open + 1..open + close];
        let spans = expression.starts_with(['+', '#', '/', '?', '&', ';', '.']);
        parts.push(Part::Expression { spans });
        rest = &rest[open + close + 1..];
    }
    parts.push(Part::Literal(rest));
    match_parts(&parts, uri)
}

enum Part<'a> {
    Literal(&'a str),
    Expression { spans: bool },
}

fn match_parts(parts: &[Part<'_>], uri: &str) -> bool {
    match parts.split_first() {
        None => uri.is_empty(),
        Some((Part::Literal(lit), rest)) => uri
            .strip_prefix(lit)
            .is_some_and(|tail| match_parts(rest, tail)),
        Some((Part::Expression { spans }, rest)) => {
            // Try every length, shortest first; templates are short, so this stays cheap.
            for (end, c) in uri.char_indices() {
                if match_parts(rest, &uri[end..]) {
                    return true;
                }
                if !spans && matches!(c, '/' | '?' | '#') {
                    return false;
                }
            }
            match_parts(rest, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn simple_expressions_match_one_segment() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/42/data"
        ));
        assert!(template_matches("file:///{name}", "file:///a.txt"));
        assert!(!template_matches("file:///{name}", "file:///dir/a.txt"));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/42/data"
        ));
        assert!(template_matches("users://{id}", "users://"));
    }

    #[test]
    fn reserved_expressions_span_slashes() {
        assert!(template_matches("file:///{+path}", "file:///dir/a.txt"));
        assert!(template_matches(
            "repo://{owner}/{repo}{/path}",
            "repo://a/b/c/d"
        ));
        assert!(template_matches(
            "search://q{?term,page}",
            "search://q?term=x&page=2"
        ));
    }

    #[test]
    fn literal_templates_and_malformed_ones() {
        assert!(template_matches("static://x", "static://x"));
        assert!(!template_matches("static://x", "static://xy"));
        assert!(template_matches("odd://{unclosed", "odd://{unclosed"));
    }
}
