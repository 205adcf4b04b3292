//! Upstream settings that depend on who calls: `${actor.name}` and `${actor.secret.NAME}` in
//! an upstream's `env` and `headers`. The configuration keeps them as placeholders; each actor
//! gets a connection of its own with them filled in (see `sessions`).

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::supervisor::UpstreamTransport;

/// Where an actor's secret values come from (the store).
pub trait ActorSecrets: Send + Sync {
    /// `actor`'s secret `name`, `None` if it has none; `Err` says why it cannot be read
    /// (never the value).
    fn secret<'a>(
        &'a self,
        actor: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
}

/// One caller-dependent value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorValue {
    /// The calling actor's name.
    Name,
    /// The calling actor's secret of this name.
    Secret(String),
}

// Private-use characters: they cannot come out of TOML expansion by accident (`$${` escapes a
// literal `${`, which therefore never reads as a placeholder).
const OPEN: char = '\u{F8F0}';
const CLOSE: char = '\u{F8F1}';

impl ActorValue {
    /// How the configuration stores this value until a caller fills it in.
    pub fn placeholder(&self) -> String {
        match self {
            ActorValue::Name => format!("{OPEN}name{CLOSE}"),
            ActorValue::Secret(n) => format!("{OPEN}secret.{n}{CLOSE}"),
        }
    }

    fn parse(inner: &str) -> Option<Self> {
        match inner.strip_prefix("secret.") {
            Some(name) => Some(ActorValue::Secret(name.to_owned())),
            None => (inner == "name").then_some(ActorValue::Name),
        }
    }
}

/// Whether any env or header value of `transport` depends on the caller.
pub fn depends_on_actor(transport: &UpstreamTransport) -> bool {
    let values: Box<dyn Iterator<Item = &String>> = match transport {
        UpstreamTransport::Stdio(s) => Box::new(s.env.values()),
        UpstreamTransport::Http(h) => Box::new(h.headers.values()),
    };
    values.into_iter().any(|v| v.contains(OPEN))
}

/// `transport` with every placeholder filled for `actor`; `None` for all of them gives the
/// caller-free version (empty values) that the shared connection lists the catalog with.
pub(crate) async fn fill(
    transport: &UpstreamTransport,
    actor: Option<&str>,
    secrets: Option<&dyn ActorSecrets>,
) -> Result<UpstreamTransport, String> {
    let mut filled = transport.clone();
    let values: &mut BTreeMap<String, String> = match &mut filled {
        UpstreamTransport::Stdio(s) => &mut s.env,
        UpstreamTransport::Http(h) => &mut h.headers,
    };
    for (key, value) in values.iter_mut() {
        if value.contains(OPEN) {
            *value = fill_one(value, actor, secrets)
                .await
                .map_err(|why| format!("{key}: {why}"))?;
        }
    }
    Ok(filled)
}

async fn fill_one(
    text: &str,
    actor: Option<&str>,
    secrets: Option<&dyn ActorSecrets>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let value = match (ActorValue::parse(&after[..end]), actor) {
            (_, None) | (None, _) => String::new(),
            (Some(ActorValue::Name), Some(actor)) => actor.to_owned(),
            (Some(ActorValue::Secret(name)), Some(actor)) => {
                let source = secrets.ok_or("no store holds actor secrets")?;
                source
                    .secret(actor, &name)
                    .await?
                    .ok_or_else(|| format!("actor `{actor}` has no secret `{name}` (patchbay secret set {actor} {name})"))?
            }
        };
        out.push_str(&value);
        rest = &after[end + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StdioSpec;

    struct Fixed;

    impl ActorSecrets for Fixed {
        fn secret<'a>(
            &'a self,
            actor: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, String>> {
            Box::pin(async move { Ok((name == "tok").then(|| format!("{actor}-secret"))) })
        }
    }

    fn stdio(value: String) -> UpstreamTransport {
        UpstreamTransport::Stdio(StdioSpec {
            command: "x".into(),
            args: vec![],
            env: BTreeMap::from([("T".to_owned(), value)]),
            cwd: None,
        })
    }

    fn env_of(t: &UpstreamTransport) -> &str {
        match t {
            UpstreamTransport::Stdio(s) => &s.env["T"],
            UpstreamTransport::Http(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn placeholders_are_filled_per_actor() {
        let t = stdio(format!(
            "Bearer {} for {}",
            ActorValue::Secret("tok".into()).placeholder(),
            ActorValue::Name.placeholder()
        ));
        assert!(depends_on_actor(&t));
        let alice = fill(&t, Some("alice"), Some(&Fixed)).await.unwrap();
        assert_eq!(env_of(&alice), "Bearer alice-secret for alice");
        let shared = fill(&t, None, Some(&Fixed)).await.unwrap();
        assert_eq!(env_of(&shared), "Bearer  for ");
        let missing = stdio(ActorValue::Secret("other".into()).placeholder());
        let e = fill(&missing, Some("bob"), Some(&Fixed)).await.unwrap_err();
        assert!(e.contains("no secret `other`"), "{e}");
        assert!(!depends_on_actor(&stdio("plain ${x}".into())));
    }
}
