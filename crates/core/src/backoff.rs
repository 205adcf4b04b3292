//! Capped exponential backoff with jitter, so restarting upstreams do not all retry in step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            attempt: 0,
        }
    }

    /// The next delay: `initial * 2^attempt`, capped, with up to 20% jitter removed.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let base = self.initial.saturating_mul(factor).min(self.cap);
        let jitter = base.mul_f64(0.2 * pseudo_random_unit());
        base - jitter
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in [0, 1): good enough for jitter, no RNG dependency.
fn pseudo_random_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_then_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] <= Duration::from_millis(100) && d[0] >= Duration::from_millis(80));
        assert!(d[2] >= Duration::from_millis(320));
        assert!(d[5] <= Duration::from_secs(1) && d[5] >= Duration::from_millis(800));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
