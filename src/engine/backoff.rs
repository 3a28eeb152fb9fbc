//! Exponential backoff with full jitter: the wait before retry `n` is drawn
//! uniformly from `[0, min(cap, base · 2^(n-1))]`, so that many runs failing
//! against the same peer do not retry in lockstep.

use std::time::Duration;

/// The longest wait between two attempts, whatever the base.
pub const CAP: Duration = Duration::from_secs(30);

/// The wait before retry number `retry` (1 for the first retry).
pub fn delay(base: Duration, retry: u32) -> Duration {
    let ceiling = ceiling(base, retry);
    ceiling.mul_f64(fastrand::f64())
}

/// The upper bound of the wait before retry number `retry`.
pub fn ceiling(base: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(ceiling(base, 1), Duration::from_millis(100));
        assert_eq!(ceiling(base, 2), Duration::from_millis(200));
        assert_eq!(ceiling(base, 4), Duration::from_millis(800));
        assert_eq!(ceiling(base, 40), CAP);
    }

    #[test]
    fn delay_stays_within_its_ceiling() {
        let base = Duration::from_millis(100);
        for retry in 1..6 {
            for _ in 0..100 {
                assert!(delay(base, retry) <= ceiling(base, retry));
            }
        }
    }
}
