//! What an actor may see and call. One policy governs every surface: an operation it does not
//! allow is reported exactly as one that does not exist.
//!
//! [`Rules`] are the configured rule sets; [`Rules::policy_for`] compiles the ones that apply
//! to one actor (by name, role and vendor) into an [`ActorPolicy`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{CallError, ErrorCode};

/// Decides whether an actor may use an operation.
pub trait Policy: Send + Sync {
    /// Whether the actor may see and call operation (or prompt) `name`; `read_only` says
    /// whether the upstream annotates it read-only (`readOnlyHint`).
    fn allows(&self, name: &str, read_only: bool) -> bool;

    /// Whether the actor may learn that `namespace` exists while it has no operations yet (its
    /// upstream is still starting, or has failed), and may see its resources.
    fn sees_namespace(&self, _namespace: &str) -> bool {
        true
    }

    /// Admits one call now, or fails with `rate_limited` and a retry-after hint. The returned
    /// admission holds the actor's concurrency slot until dropped.
    fn admit(&self) -> Result<Admission, CallError> {
        Ok(Admission::default())
    }
}

/// One admitted call; dropping it frees the actor's concurrency slot.
#[derive(Debug, Default)]
pub struct Admission {
    _slot: Option<OwnedSemaphorePermit>,
}

/// The policy of a hub with no identity configured: everything is visible.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _operation: &str, _read_only: bool) -> bool {
        true
    }
}

/// One configured rule set (`[[policy]]`). Its selectors say whom it applies to: an actor
/// named in `actors`, holding a role in `roles`, or calling through a vendor in `vendors`. A
/// rule set with no selectors applies to everyone.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Actor names this rule set applies to.
    #[serde(default)]
    pub actors: Vec<String>,
    /// Roles this rule set applies to.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Vendors this rule set applies to. A vendor rule set can only narrow: what the actor's
    /// other rule sets grant is intersected with its `allow`.
    #[serde(default)]
    pub vendors: Vec<String>,
    /// Operation-name patterns granted (`*` matches any run of characters, `?` one).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Operation-name patterns refused; a deny wins over any allow.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Only operations their upstream annotates `readOnlyHint: true`. Default `false`.
    #[serde(default)]
    pub read_only: bool,
    /// Calls per second (token bucket refill rate). Default: unlimited.
    pub rate: Option<f64>,
    /// Calls allowed at once above `rate` (bucket size). Default: `rate` rounded up, at least 1.
    pub burst: Option<u32>,
    /// Calls in flight at once for the actor, across all its sessions. Default: unlimited.
    pub max_concurrent: Option<usize>,
}

impl RuleSet {
    fn applies(&self, who: &Subject<'_>) -> bool {
        let general = self.actors.is_empty() && self.roles.is_empty() && self.vendors.is_empty();
        general
            || self.actors.iter().any(|a| a == who.actor)
            || self.roles.iter().any(|r| who.roles.iter().any(|h| h == r))
    }

    fn applies_to_vendor(&self, who: &Subject<'_>) -> bool {
        who.vendor
            .is_some_and(|v| self.vendors.iter().any(|x| x == v))
    }
}

/// Whom a policy is compiled for.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub actor: &'a str,
    pub roles: &'a [String],
    pub vendor: Option<&'a str>,
}

/// Every configured rule set, and the rate and concurrency state of each actor (shared by all
/// of an actor's sessions).
#[derive(Default)]
pub struct Rules {
    sets: Vec<RuleSet>,
    limits: Mutex<HashMap<String, Arc<Limits>>>,
}

impl Rules {
    pub fn new(sets: Vec<RuleSet>) -> Self {
        Self {
            sets,
            limits: Mutex::default(),
        }
    }

    /// The policy of `who`: what its rule sets grant, minus what any denies, narrowed by its
    /// vendor's rule sets. An actor no rule set grants anything sees nothing.
    pub fn policy_for(&self, who: Subject<'_>) -> ActorPolicy {
        let own: Vec<&RuleSet> = self.sets.iter().filter(|s| s.applies(&who)).collect();
        let vendor: Vec<&RuleSet> = self
            .sets
            .iter()
            .filter(|s| s.applies_to_vendor(&who))
            .collect();
        let compile = |sets: &[&RuleSet], pick: fn(&RuleSet) -> &Vec<String>| -> Vec<Pattern> {
            sets.iter()
                .flat_map(|s| pick(s).iter())
                .map(|p| Pattern::new(p))
                .collect()
        };
        let vendor_allow: Vec<&RuleSet> = vendor
            .iter()
            .copied()
            .filter(|s| !s.allow.is_empty())
            .collect();
        let all: Vec<&RuleSet> = own.iter().chain(vendor.iter()).copied().collect();
        let rate = all.iter().filter_map(|s| s.rate).reduce(f64::min);
        let burst = all.iter().filter_map(|s| s.burst).min();
        let concurrent = all.iter().filter_map(|s| s.max_concurrent).min();
        let limits = (rate.is_some() || concurrent.is_some()).then(|| {
            let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(who.actor.to_owned())
                .or_insert_with(|| Arc::new(Limits::new(rate, burst, concurrent)))
                .clone()
        });
        ActorPolicy {
            allow: compile(&own, |s| &s.allow),
            deny: compile(&all, |s| &s.deny),
            vendor_allow: (!vendor_allow.is_empty()).then(|| compile(&vendor_allow, |s| &s.allow)),
            read_only: all.iter().any(|s| s.read_only),
            limits,
        }
    }
}

/// One actor's compiled policy.
#[derive(Debug, Clone)]
pub struct ActorPolicy {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
    /// When the actor calls through a vendor with rule sets: what those allow, intersected.
    vendor_allow: Option<Vec<Pattern>>,
    read_only: bool,
    limits: Option<Arc<Limits>>,
}

impl Policy for ActorPolicy {
    fn allows(&self, name: &str, read_only: bool) -> bool {
        (read_only || !self.read_only)
            && self.allow.iter().any(|p| p.matches(name))
            && self
                .vendor_allow
                .as_ref()
                .is_none_or(|v| v.iter().any(|p| p.matches(name)))
            && !self.deny.iter().any(|p| p.matches(name))
    }

    fn sees_namespace(&self, namespace: &str) -> bool {
        let prefix = format!("{namespace}.");
        !self.deny.iter().any(|p| p.covers_prefix(&prefix))
            && self.allow.iter().any(|p| p.may_match_prefix(&prefix))
            && self
                .vendor_allow
                .as_ref()
                .is_none_or(|v| v.iter().any(|p| p.may_match_prefix(&prefix)))
    }

    fn admit(&self) -> Result<Admission, CallError> {
        match &self.limits {
            None => Ok(Admission::default()),
            Some(limits) => limits.admit(),
        }
    }
}

/// A glob over operation names: `*` matches any run of characters (dots included), `?` one.
#[derive(Debug, Clone)]
struct Pattern(Vec<char>);

impl Pattern {
    fn new(text: &str) -> Self {
        Self(text.chars().collect())
    }

    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        glob(&self.0, &name)
    }

    /// Whether every name starting with `prefix` matches: the pattern is a literal head that
    /// `prefix` starts with, followed by a lone `*` (`conf.*`, `co*`, `*`).
    fn covers_prefix(&self, prefix: &str) -> bool {
        let head: String = self
            .0
            .iter()
            .take_while(|c| !matches!(c, '*' | '?'))
            .collect();
        let rest = &self.0[head.chars().count()..];
        rest == ['*'] && prefix.starts_with(&head)
    }

    /// Whether some name starting with `prefix` could match: the pattern's literal head
    /// (before its first wildcard) and `prefix` agree as far as both go.
    fn may_match_prefix(&self, prefix: &str) -> bool {
        let head: String = self
            .0
            .iter()
            .take_while(|c| !matches!(c, '*' | '?'))
            .collect();
        head.starts_with(prefix) || prefix.starts_with(&head)
    }
}

/// Iterative glob match with backtracking on the last `*`; linear in practice.
fn glob(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => {
                p += 1;
                n += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// An actor's rate (token bucket) and concurrency limits.
#[derive(Debug)]
struct Limits {
    bucket: Option<Mutex<Bucket>>,
    slots: Option<(Arc<Semaphore>, usize)>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Limits {
    fn new(rate: Option<f64>, burst: Option<u32>, concurrent: Option<usize>) -> Self {
        let bucket = rate.filter(|r| *r > 0.0).map(|rate| {
            let capacity = f64::from(burst.unwrap_or(rate.ceil() as u32).max(1));
            Mutex::new(Bucket {
                rate,
                capacity,
                tokens: capacity,
                at: Instant::now(),
            })
        });
        let slots = concurrent.map(|n| (Arc::new(Semaphore::new(n)), n));
        Self { bucket, slots }
    }

    fn admit(&self) -> Result<Admission, CallError> {
        let slot = match &self.slots {
            None => None,
            Some((semaphore, n)) => Some(semaphore.clone().try_acquire_owned().map_err(|_| {
                rate_limited(
                    format!("at most {n} calls at once for this actor"),
                    Duration::from_millis(100),
                )
            })?),
        };
        if let Some(bucket) = &self.bucket {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(b.capacity);
            b.at = now;
            if b.tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - b.tokens) / b.rate);
                return Err(rate_limited(
                    format!("more than {} calls per second for this actor", b.rate),
                    wait,
                ));
            }
            b.tokens -= 1.0;
        }
        Ok(Admission { _slot: slot })
    }
}

fn rate_limited(why: String, retry_after: Duration) -> CallError {
    let ms = retry_after.as_millis().max(1) as u64;
    CallError::new(
        ErrorCode::RateLimited,
        format!("rate limited: {why}; retry in {ms} ms"),
    )
    .with_data(serde_json::json!({ "retryAfterMs": ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: serde_json::Value) -> RuleSet {
        serde_json::from_value(v).unwrap()
    }

    fn who<'a>(actor: &'a str, roles: &'a [String], vendor: Option<&'a str>) -> Subject<'a> {
        Subject {
            actor,
            roles,
            vendor,
        }
    }

    #[test]
    fn globs() {
        let m = |p: &str, n: &str| Pattern::new(p).matches(n);
        assert!(m("github.*", "github.create_issue"));
        assert!(!m("github.*", "githubx.create"));
        assert!(m("fs.read_*", "fs.read_file"));
        assert!(!m("fs.read_*", "fs.write_file"));
        assert!(m("*", "anything.at.all"));
        assert!(m("a?c", "abc") && !m("a?c", "abbc"));
        assert!(m("*.delete_*", "github.delete_repo"));
        assert!(m("**x", "x") && !m("", "x") && m("", ""));
    }

    #[test]
    fn deny_wins_and_unmatched_actors_see_nothing() {
        let rules = Rules::new(vec![
            set(
                serde_json::json!({"actors": ["alice"], "allow": ["github.*", "fs.*"], "deny": ["github.delete_*"]}),
            ),
            set(serde_json::json!({"roles": ["ops"], "allow": ["db.*"]})),
        ]);
        let alice = rules.policy_for(who("alice", &[], None));
        assert!(alice.allows("github.create_issue", false));
        assert!(!alice.allows("github.delete_repo", false));
        assert!(!alice.allows("db.query", true));
        assert!(alice.sees_namespace("github") && !alice.sees_namespace("db"));
        let ops = ["ops".to_owned()];
        let bob = rules.policy_for(who("bob", &ops, None));
        assert!(bob.allows("db.query", false) && !bob.allows("fs.read", true));
        let eve = rules.policy_for(who("eve", &[], None));
        assert!(!eve.allows("github.create_issue", true) && !eve.sees_namespace("github"));
    }

    #[test]
    fn denying_a_whole_namespace_hides_it() {
        let rules = Rules::new(vec![set(
            serde_json::json!({"allow": ["*"], "deny": ["conf.*", "x*"]}),
        )]);
        let p = rules.policy_for(who("a", &[], None));
        assert!(!p.sees_namespace("conf") && !p.sees_namespace("xyz"));
        assert!(p.sees_namespace("github"));
        let partial = Rules::new(vec![set(
            serde_json::json!({"allow": ["*"], "deny": ["conf.delete_*"]}),
        )]);
        assert!(
            partial
                .policy_for(who("a", &[], None))
                .sees_namespace("conf")
        );
    }

    #[test]
    fn vendors_narrow_and_read_only_filters() {
        let rules = Rules::new(vec![
            set(serde_json::json!({"actors": ["alice"], "allow": ["*"]})),
            set(
                serde_json::json!({"vendors": ["xiaozhi"], "allow": ["home.*"], "read_only": true}),
            ),
        ]);
        let laptop = rules.policy_for(who("alice", &[], None));
        assert!(laptop.allows("github.create_issue", false));
        let speaker = rules.policy_for(who("alice", &[], Some("xiaozhi")));
        assert!(!speaker.allows("github.create_issue", true));
        assert!(speaker.allows("home.lights_status", true));
        assert!(!speaker.allows("home.lights_on", false), "read-only rule");
        assert!(speaker.sees_namespace("home") && !speaker.sees_namespace("github"));
    }

    #[test]
    fn rate_and_concurrency_limits_are_per_actor() {
        let rules = Rules::new(vec![set(
            serde_json::json!({"allow": ["*"], "rate": 1.0, "burst": 2, "max_concurrent": 1}),
        )]);
        let a1 = rules.policy_for(who("a", &[], None));
        let a2 = rules.policy_for(who("a", &[], None));
        let held = a1.admit().expect("first call");
        let e = a2
            .admit()
            .expect_err("second concurrent call of the same actor");
        assert_eq!(e.code, ErrorCode::RateLimited);
        drop(held);
        let _ = a2.admit().expect("slot freed; a burst token left");
        let e = a1.admit().expect_err("bucket empty");
        assert!(e.data.unwrap()["retryAfterMs"].as_u64().unwrap() > 0);
        let b = rules.policy_for(who("b", &[], None));
        assert!(b.admit().is_ok(), "another actor has its own limits");
    }
}
