//! How long a tube's ready jobs have waited, for the oldest-ready-age metric without a scan.
//!
//! Ready jobs are counted in buckets of their ready time (100 ms wide), in time order. Jobs
//! become ready at the engine's current time, which only moves forward, so a new job almost
//! always lands in the last bucket: adding is O(1), removing a binary search over the
//! buckets. Each bucket remembers the earliest ready time added to it, so the oldest age is
//! exact until that job leaves while others of its bucket stay; then it reads at most one
//! bucket width (0.1 s) too old. At most one bucket per ready job, usually far fewer.

use std::collections::VecDeque;

/// Bucket width in nanoseconds.
pub(crate) const WIDTH: u64 = 100_000_000;

#[derive(Debug, Default, Clone)]
pub(crate) struct ReadyAges {
    /// (earliest ready time added, jobs) per bucket, by bucket; the front one is non-empty.
    q: VecDeque<(u64, u32)>,
    /// Buckets in `q` that are empty (kept until the front reaches them or compaction).
    empty: usize,
}

impl ReadyAges {
    /// A job became ready at `since`.
    pub(crate) fn add(&mut self, since: u64) {
        let b = since / WIDTH;
        let i = match self.q.back() {
            Some(&(f, _)) if f / WIDTH == b => self.q.len() - 1,
            Some(&(f, _)) if f / WIDTH < b => return self.q.push_back((since, 1)),
            None => return self.q.push_back((since, 1)),
            // Older than the newest bucket (only if the clock a caller passes went back).
            Some(_) => match self.q.binary_search_by_key(&b, |e| e.0 / WIDTH) {
                Ok(i) => i,
                Err(i) => return self.q.insert(i, (since, 1)),
            },
        };
        let e = &mut self.q[i];
        if e.1 == 0 {
            self.empty -= 1;
            e.0 = since;
        } else {
            e.0 = e.0.min(since);
        }
        e.1 += 1;
    }

    /// A job that became ready at `since` is no longer ready.
    pub(crate) fn remove(&mut self, since: u64) {
        let b = since / WIDTH;
        let found = self.q.binary_search_by_key(&b, |e| e.0 / WIDTH);
        debug_assert!(
            found.is_ok_and(|i| self.q[i].1 > 0),
            "ready ages: no job counted at {since}"
        );
        if let Ok(i) = found {
            let e = &mut self.q[i];
            if e.1 > 0 {
                e.1 -= 1;
                if e.1 == 0 {
                    self.empty += 1;
                }
            }
        }
        while self.q.front().is_some_and(|e| e.1 == 0) {
            self.q.pop_front();
            self.empty -= 1;
        }
        // Empty buckets behind a long-waiting job: drop them once they are half the queue.
        if self.empty > 32 && self.empty * 2 > self.q.len() {
            self.q.retain(|e| e.1 > 0);
            self.empty = 0;
        }
    }

    /// The buckets and the count of empty ones, for a snapshot.
    pub(crate) fn parts(&self) -> (&VecDeque<(u64, u32)>, usize) {
        (&self.q, self.empty)
    }

    pub(crate) fn from_parts(q: VecDeque<(u64, u32)>, empty: usize) -> Self {
        ReadyAges { q, empty }
    }

    /// When the oldest ready job became ready (see the module note on precision).
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.q.front().map(|e| e.0)
    }

    /// Jobs counted, for the consistency check.
    pub fn count(&self) -> u64 {
        self.q.iter().map(|e| e.1 as u64).sum()
    }

    /// Buckets held (empty ones included), for the consistency check.
    #[cfg(test)]
    pub fn buckets(&self) -> usize {
        self.q.len()
    }

    /// Internal consistency: buckets in order, the empty count right, the front non-empty.
    pub(crate) fn check(&self) -> Result<(), String> {
        let empty = self.q.iter().filter(|e| e.1 == 0).count();
        if empty != self.empty {
            return Err(format!(
                "ready ages: {empty} empty buckets, {} noted",
                self.empty
            ));
        }
        if self.q.front().is_some_and(|e| e.1 == 0) {
            return Err("ready ages: the front bucket is empty".into());
        }
        if self
            .q
            .iter()
            .zip(self.q.iter().skip(1))
            .any(|(a, b)| a.0 / WIDTH >= b.0 / WIDTH)
        {
            return Err("ready ages: buckets out of order".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn oldest_is_exact_while_the_first_job_of_its_bucket_stays() {
        let mut a = ReadyAges::default();
        assert_eq!(a.oldest(), None);
        a.add(10 * S + 5);
        a.add(10 * S + 7);
        a.add(12 * S);
        assert_eq!(a.oldest(), Some(10 * S + 5));
        // The other job of the first bucket leaves: still exact.
        a.remove(10 * S + 7);
        assert_eq!(a.oldest(), Some(10 * S + 5));
        a.remove(10 * S + 5);
        assert_eq!(a.oldest(), Some(12 * S));
        a.remove(12 * S);
        assert_eq!(a.oldest(), None);
        assert_eq!(a.buckets(), 0);
        a.check().unwrap();
    }

    #[test]
    fn oldest_is_at_most_one_bucket_too_old() {
        let mut a = ReadyAges::default();
        a.add(10 * S);
        a.add(10 * S + WIDTH / 2);
        a.remove(10 * S);
        let o = a.oldest().unwrap();
        assert!(
            o <= 10 * S + WIDTH / 2 && 10 * S + WIDTH / 2 - o < WIDTH,
            "{o}"
        );
    }

    #[test]
    fn a_job_older_than_the_newest_bucket_is_placed_in_order() {
        let mut a = ReadyAges::default();
        a.add(20 * S);
        a.add(5 * S);
        a.add(10 * S);
        a.check().unwrap();
        assert_eq!(a.oldest(), Some(5 * S));
        a.remove(5 * S);
        assert_eq!(a.oldest(), Some(10 * S));
        a.check().unwrap();
    }

    #[test]
    fn empty_buckets_behind_one_old_job_stay_bounded() {
        let mut a = ReadyAges::default();
        a.add(0);
        for i in 1..100_000u64 {
            a.add(i * WIDTH);
            a.remove(i * WIDTH);
            assert!(a.buckets() <= 66, "{} buckets at {i}", a.buckets());
        }
        a.check().unwrap();
        assert_eq!(a.oldest(), Some(0));
        assert_eq!(a.count(), 1);
    }
}
