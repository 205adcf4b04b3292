//! Calls form a tree: a request to the hub is a node, each upstream call it makes is a child.
//! Cancelling a node cancels its subtree; deadlines only ever shrink going down.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A call id, unique across restarts too (the audit log keeps ids from earlier runs): ids
/// count up from the microseconds since the Unix epoch at which the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

static NEXT_CALL_ID: LazyLock<AtomicU64> = LazyLock::new(|| {
    let micros = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    AtomicU64::new(micros)
});

impl CallId {
    pub fn next() -> Self {
        CallId(NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// One node of the call tree.
#[derive(Debug, Clone)]
pub struct CallNode {
    pub id: CallId,
    pub parent: Option<CallId>,
    pub ct: CancellationToken,
    pub deadline: Option<Instant>,
}

impl CallNode {
    /// A root node: cancelled with `ct` (for example the client's request token).
    pub fn root(ct: CancellationToken) -> Self {
        Self {
            id: CallId::next(),
            parent: None,
            ct,
            deadline: None,
        }
    }

    /// A child whose deadline is the earlier of the parent's and `timeout` from now.
    pub fn child(&self, timeout: Option<Duration>) -> Self {
        self.child_with_id(CallId::next(), timeout)
    }

    /// A child with a given id (one reported before the call starts, as the audit does).
    pub fn child_with_id(&self, id: CallId, timeout: Option<Duration>) -> Self {
        let own = timeout.map(|t| Instant::now() + t);
        let deadline = match (self.deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            id,
            parent: Some(self.id),
            ct: self.ct.child_token(),
            deadline,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.ct.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelling_a_node_cancels_its_subtree_only() {
        let root = CallNode::root(CancellationToken::new());
        let a = root.child(None);
        let a1 = a.child(None);
        let b = root.child(None);
        a.ct.cancel();
        assert!(a1.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(!root.is_cancelled());
        root.ct.cancel();
        assert!(b.is_cancelled());
        assert_eq!(a1.parent, Some(a.id));
    }

    #[tokio::test]
    async fn deadlines_only_shrink() {
        let root = CallNode::root(CancellationToken::new()).child(Some(Duration::from_secs(1)));
        let long = root.child(Some(Duration::from_secs(60)));
        assert_eq!(long.deadline, root.deadline);
        let short = root.child(Some(Duration::from_millis(10)));
        assert!(short.deadline < root.deadline);
    }
}
