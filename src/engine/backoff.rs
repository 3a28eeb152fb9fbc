//! Exponential backoff with full jitter: the wait before retry `n` is drawn
//! uniformly from `[0, min(cap, base · 2^(n-1))]`, so that many runs failing
//! against the same peer do not retry in lockstep.

use std::time::Duration;

/// The longest wait between two attempts, whatever the base.
pub const CAP: Duration = Duration::from_secs(30);

/// The longest a peer's `Retry-After` is honoured: a run waits in its
/// worker, and a peer asking for an hour should fail the attempts, not
/// hold the worker for an hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait before retry number `retry` (1 for the first retry).
pub fn delay(base: Duration, retry: u32) -> Duration {
    let ceiling = ceiling(base, retry);
    ceiling.mul_f64(fastrand::f64())
}

/// The wait before retry number `retry` after an error whose peer asked
/// for `retry_after`: at least that (up to [`MAX_RETRY_AFTER`]), and never
/// less than the backoff.
pub fn delay_honouring(base: Duration, retry: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = delay(base, retry);
    match retry_after {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
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
    fn a_peer_s_retry_after_is_waited_out_up_to_its_cap() {
        let base = Duration::from_millis(1);
        let asked = Duration::from_secs(7);
        assert!(delay_honouring(base, 1, Some(asked)) >= asked);
        assert_eq!(
            delay_honouring(base, 1, Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
        assert!(delay_honouring(base, 1, None) <= base);
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
