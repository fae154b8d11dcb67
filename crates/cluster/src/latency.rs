//! The replication latency histogram: how long a batch this node proposed took to be
//! committed (a majority has it in its log on disk), retries across a leader change
//! included.

use std::sync::Mutex;
use std::time::Duration;

/// Bucket upper bounds, in microseconds.
pub const BOUNDS_US: [u64; 15] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A histogram at one moment: non-cumulative counts per bound of [`BOUNDS_US`]; what is
/// above the last bound is only in `count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    pub buckets: [u64; BOUNDS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl Latencies {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BOUNDS_US.iter().position(|&b| us <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// Shared between the proposer that records and the readers of `/metrics`.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Latencies>);

impl Recorder {
    pub(crate) fn record(&self, d: Duration) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).record(d);
    }

    pub(crate) fn get(&self) -> Latencies {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_falls_in_the_first_bucket_that_holds_it() {
        let mut l = Latencies::default();
        l.record(Duration::from_micros(250));
        l.record(Duration::from_micros(251));
        l.record(Duration::from_millis(3));
        l.record(Duration::from_secs(60));
        assert_eq!(l.buckets[0], 1);
        assert_eq!(l.buckets[1], 1);
        assert_eq!(l.buckets[4], 1);
        assert_eq!(
            l.buckets.iter().sum::<u64>(),
            3,
            "60 s is above every bound"
        );
        assert_eq!(l.count, 4);
        assert_eq!(l.sum_us, 250 + 251 + 3_000 + 60_000_000);
    }
}
