//! What the engine measures beyond beanstalkd's counters, for `/metrics`: per tube, how
//! long jobs wait in ready before a worker reserves them, how long workers hold them before
//! deleting them, timeouts and buries, and the age of the oldest ready job.

use super::{Engine, SECOND};
use sprout_protocol::reply::TubeStats;

/// Histogram bucket upper bounds, in seconds.
pub const BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

/// A fixed-bucket histogram of durations (non-cumulative counts; +Inf is `count`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hist {
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum_ns: u64,
}

impl Hist {
    pub(crate) fn record(&mut self, ns: u64) {
        let secs = ns as f64 / SECOND as f64;
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }
}

/// Per-tube measurements kept by the engine (they vanish with the tube, like its stats).
#[derive(Debug, Clone, Default)]
pub struct TubeCounters {
    /// Time from becoming ready (put, release, kick, delay end, timeout) to reserve.
    pub queue_wait: Hist,
    /// Time from reserve (or the last touch) to delete.
    pub reserve_to_delete: Hist,
    pub timeouts: u64,
    pub buries: u64,
    /// Jobs the tube's policy sent to its dead-letter tube.
    pub dead_lettered: u64,
    /// Returns to ready that the tube's retry backoff delayed.
    pub retries_delayed: u64,
}

/// One tube's metrics at a moment.
#[derive(Debug, Clone)]
pub struct TubeMetrics {
    pub stats: TubeStats,
    pub counters: TubeCounters,
    /// Seconds the oldest ready job has been ready (0 with none).
    pub oldest_ready_age: f64,
}

impl Engine {
    /// Every tube's metrics: O(tubes).
    pub fn tube_metrics(&self, now: u64) -> Vec<TubeMetrics> {
        self.q
            .tubes
            .ids()
            .iter()
            .map(|&t| {
                let tube = self.q.tubes.get(t);
                let oldest = tube.ages.oldest();
                TubeMetrics {
                    stats: self.tube_stats(t, now),
                    counters: tube.counters.clone(),
                    oldest_ready_age: oldest
                        .map(|since| now.saturating_sub(since) as f64 / SECOND as f64)
                        .unwrap_or(0.0),
                }
            })
            .collect()
    }
}
