//! What an actor may see and call. One policy governs every surface: an operation it does not
//! allow is reported exactly as one that does not exist.

/// Decides whether an actor may use an operation.
pub trait Policy: Send + Sync {
    fn allows(&self, operation: &str) -> bool;

    /// Whether the actor may learn that `namespace` exists while it has no operations yet (its
    /// upstream is still starting, or has failed). A policy with rules must answer from them.
    fn sees_namespace(&self, _namespace: &str) -> bool {
        true
    }
}

/// The policy of a hub with no identity configured: everything is visible.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Policy for AllowAll {
    fn allows(&self, _operation: &str) -> bool {
        true
    }
}
