//! The deadlines of calls in flight, kept by one timer task rather than a timer per call.
//!
//! A tokio timer registered earlier than the runtime's next wake-up makes the runtime wake its
//! driver (a system call) so it can re-arm; with a timer per call, every call did that just
//! before going to its upstream. Here the keeper sleeps until the earliest deadline it knows
//! of and is only woken when a call brings an earlier one; a call that ends just leaves its
//! entry, so the keeper may wake once for nothing and re-arm for what is left.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, Weak},
};

use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;

/// The deadlines of one dispatcher's calls.
pub(crate) struct Deadlines {
    state: Arc<Mutex<State>>,
    rearm: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Each call's deadline (with a sequence number for uniqueness) and what to cancel then.
    entries: BTreeMap<(Instant, u64), CancellationToken>,
    /// When the keeper wakes next, if it is asleep on a deadline.
    armed: Option<Instant>,
    next: u64,
    keeper: bool,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::default(),
            rearm: Arc::default(),
        }
    }

    /// Watches deadline `at` until the returned guard is dropped.
    pub(crate) fn watch(&self, at: Instant) -> Deadline {
        let token = CancellationToken::new();
        let mut state = lock(&self.state);
        let key = (at, state.next);
        state.next += 1;
        state.entries.insert(key, token.clone());
        let earlier = state.armed.is_none_or(|armed| at < armed);
        if earlier {
            state.armed = Some(at);
        }
        if !state.keeper {
            state.keeper = true;
            tokio::spawn(keep(Arc::downgrade(&self.state), self.rearm.clone()));
        }
        drop(state);
        if earlier {
            self.rearm.notify_one();
        }
        Deadline {
            state: self.state.clone(),
            key,
            token,
        }
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        // Lets the keeper see it is no longer needed.
        self.rearm.notify_one();
    }
}

/// One watched deadline; no longer watched once dropped.
pub(crate) struct Deadline {
    state: Arc<Mutex<State>>,
    key: (Instant, u64),
    token: CancellationToken,
}

impl Deadline {
    /// Resolves when the deadline has passed.
    pub(crate) async fn passed(&self) {
        self.token.cancelled().await
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        lock(&self.state).entries.remove(&self.key);
    }
}

/// Sleeps until the earliest deadline (or until told of an earlier one), signals the ones
/// that have passed, and re-arms; ends once its dispatcher is gone.
async fn keep(state: Weak<Mutex<State>>, rearm: Arc<Notify>) {
    loop {
        let armed = {
            let Some(state) = state.upgrade() else {
                return;
            };
            let mut state = lock(&state);
            let now = Instant::now();
            while let Some(entry) = state.entries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().cancel();
            }
            state.armed = state.entries.keys().next().map(|(at, _)| *at);
            state.armed
        };
        match armed {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = rearm.notified() => {}
                }
            }
            None => rearm.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_passes_at_its_time_even_behind_a_later_one() {
        let deadlines = Deadlines::new();
        let start = Instant::now();
        let late = deadlines.watch(start + Duration::from_secs(60));
        let early = deadlines.watch(start + Duration::from_secs(1));
        early.passed().await;
        assert_eq!(start.elapsed().as_secs(), 1);
        drop(early);
        // A deadline whose call ended is not signalled; the later one still is.
        let ended = deadlines.watch(start + Duration::from_secs(30));
        drop(ended);
        late.passed().await;
        assert_eq!(start.elapsed().as_secs(), 60);
    }
}
