//! Cumulative kernel counters turned into per-second rates.
//!
//! A counter that went backwards (wrapped, reset, or its device came back after
//! hot-plug) yields no rate for that tick rather than a negative or absurd one; the next
//! tick measures from the new value.

use std::collections::HashMap;
use std::time::Instant;

/// The previous reading of each counter, by key.
#[derive(Debug, Default)]
pub struct Rates {
    prev: HashMap<String, (u64, Instant)>,
}

impl Rates {
    /// The rate of `key` since its previous reading, recording `value` for the next one.
    /// `None` on the first reading, after a decrease, or when no time passed.
    pub fn rate(&mut self, key: &str, value: u64, now: Instant) -> Option<f64> {
        let prev = self.prev.insert(key.to_owned(), (value, now))?;
        rate(prev, (value, now))
    }

    /// Forgets counters not seen since the last call with `keep` (an interface or disk
    /// that disappeared), so the map does not grow with device churn.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.prev.retain(|k, _| keep(k));
    }
}

/// Per-second rate between two readings of a cumulative counter.
pub fn rate((prev, then): (u64, Instant), (cur, now): (u64, Instant)) -> Option<f64> {
    let delta = cur.checked_sub(prev)?;
    let secs = now.checked_duration_since(then)?.as_secs_f64();
    (secs > 0.0).then(|| delta as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn first_reading_and_resets_give_no_rate() {
        let t0 = Instant::now();
        let mut r = Rates::default();
        assert_eq!(r.rate("a", 100, t0), None);
        assert_eq!(r.rate("a", 300, t0 + Duration::from_secs(2)), Some(100.0));
        assert_eq!(r.rate("a", 5, t0 + Duration::from_secs(3)), None, "a reset is not a negative rate");
        assert_eq!(r.rate("a", 15, t0 + Duration::from_secs(4)), Some(10.0));
        r.retain(|k| k != "a");
        assert_eq!(r.rate("a", 20, t0 + Duration::from_secs(5)), None);
    }

    proptest! {
        #[test]
        fn rates_are_finite_and_non_negative(a in any::<u64>(), b in any::<u64>(), ms in 0u64..100_000) {
            let t0 = Instant::now();
            if let Some(r) = rate((a, t0), (b, t0 + Duration::from_millis(ms))) {
                prop_assert!(r.is_finite() && r >= 0.0);
            }
        }
    }
}
