//! A full consistency check of the engine's redundant structures, for tests and fuzzing.

use super::job::{JobState, URGENT_THRESHOLD};
use super::Engine;

impl Engine {
    /// Verifies that every job is in exactly the sets its state says, that every count
    /// matches the sets it counts, and that the candidate and timer sets are exact.
    /// O(everything): for tests only.
    pub fn check_invariants(&self) -> Result<(), String> {
        let (mut ready, mut urgent, mut reserved, mut delayed, mut buried) = (0, 0, 0, 0, 0);
        for (&id, j) in self.q.jobs.iter() {
            if j.id != id {
                return Err(format!("job {id} stored as {}", j.id));
            }
            let t = self.q.tubes.get(j.tube);
            let in_ready = self
                .q
                .jobs
                .slot(id)
                .is_some_and(|s| t.ready.get(j.heap_pos as usize) == Some(&s));
            let in_delayed = t.delayed.contains(&(j.deadline, id));
            let in_gdelayed = self.q.delayed.contains(&(j.deadline, id));
            let in_buried = t.buried.contains(&(j.seq, id));
            let in_reserved = self
                .q
                .reserved
                .range((j.deadline, id, 0)..=(j.deadline, id, u64::MAX))
                .next()
                .is_some();
            let want = match j.state {
                JobState::Ready => {
                    ready += 1;
                    if j.pri < URGENT_THRESHOLD {
                        urgent += 1;
                    }
                    [true, false, false, false, false]
                }
                JobState::Delayed => {
                    delayed += 1;
                    [false, true, true, false, false]
                }
                JobState::Buried => {
                    buried += 1;
                    [false, false, false, true, false]
                }
                JobState::Reserved => {
                    reserved += 1;
                    let holder = self
                        .q
                        .reserved
                        .range((j.deadline, id, 0)..=(j.deadline, id, u64::MAX))
                        .next()
                        .map(|e| e.2);
                    let held = holder
                        .and_then(|c| self.s.conns.get(&c))
                        .is_some_and(|c| c.reserved.contains(&(j.deadline, id)));
                    if !held {
                        return Err(format!("reserved job {id} not held by its connection"));
                    }
                    [false, false, false, false, true]
                }
            };
            let have = [in_ready, in_delayed, in_gdelayed, in_buried, in_reserved];
            if have != want {
                return Err(format!("job {id} in {:?}: sets {have:?}", j.state));
            }
            if !t.ids[j.state as usize].contains(id) {
                return Err(format!(
                    "job {id} missing from its tube's {:?} ids",
                    j.state
                ));
            }
        }
        let counts = [
            (ready, self.q.ready, "ready"),
            (urgent, self.q.urgent, "urgent"),
            (reserved, self.q.reserved.len() as u64, "reserved"),
            (
                delayed,
                self.q.delayed.len() as u64 - self.q.delayed_dead,
                "delayed",
            ),
            (buried, self.q.buried, "buried"),
        ];
        for (n, have, what) in counts {
            if n != have {
                return Err(format!("{what}: {n} jobs, counter says {have}"));
            }
        }
        let bytes: u64 = self.q.jobs.iter_all().map(|j| j.body.len() as u64).sum();
        if bytes != self.q.body_bytes {
            return Err(format!(
                "body bytes {bytes}, counter says {}",
                self.q.body_bytes
            ));
        }
        for (id, k) in &self.q.keys {
            let Some(j) = self.q.jobs.iter_all().find(|j| j.id == *id) else {
                return Err(format!("key {k} of job {id}, which does not exist"));
            };
            if self.q.jobs.get(id).is_none() {
                // Deleted by a flush, not freed yet: its key is free already.
                continue;
            }
            if self.q.tubes.get(j.tube).unique.get(k) != Some(id) {
                return Err(format!("key {k} of job {id} not in its tube's keys"));
            }
        }
        for &tid in self.q.tubes.ids() {
            for (k, id) in &self.q.tubes.get(tid).unique {
                let live = self.q.jobs.get(id).is_some();
                if live && self.q.keys.get(id) != Some(k) {
                    return Err(format!("tube key {k} names job {id}, whose key differs"));
                }
            }
        }
        let held: usize = self.s.conns.values().map(|c| c.reserved.len()).sum();
        if held != self.q.reserved.len() {
            return Err(format!(
                "{held} reservations held, {} reserved",
                self.q.reserved.len()
            ));
        }
        let (mut tube_jobs, mut using, mut watching, mut waiters) = (0u64, 0, 0, 0);
        for &tid in self.q.tubes.ids() {
            let t = self.q.tubes.get(tid);
            if self.q.tubes.find(&t.name) != Some(tid) {
                return Err(format!("tube {} not findable", t.name));
            }
            tube_jobs += t.job_count();
            using += t.sess.using;
            watching += t.sess.watching;
            waiters += t.sess.waiters.len();
            if tid != 0 && t.unreferenced() {
                return Err(format!("tube {} unreferenced but alive", t.name));
            }
            let sizes = [
                t.ready.len() as u64,
                t.reserved,
                t.buried.len() as u64,
                t.delayed.len() as u64,
            ];
            for (state, n) in sizes.iter().enumerate() {
                if t.ids[state].len() != *n {
                    return Err(format!(
                        "tube {}: {} ids for state {state}, {n} jobs",
                        t.name,
                        t.ids[state].len()
                    ));
                }
            }
            let urgent = t
                .ready
                .iter()
                .filter(|&&s| self.q.jobs.at(s).pri < URGENT_THRESHOLD)
                .count() as u64;
            for (i, &s) in t.ready.iter().enumerate() {
                let j = self.q.jobs.at(s);
                if j.heap_pos as usize != i || j.tube != tid || j.state != JobState::Ready {
                    return Err(format!("tube {}: ready heap slot {i} is wrong", t.name));
                }
                if i > 0 {
                    let p = self.q.jobs.at(t.ready[(i - 1) / 2]);
                    if (p.pri, p.id) > (j.pri, j.id) {
                        return Err(format!("tube {}: ready heap order broken", t.name));
                    }
                }
            }
            t.ages
                .check()
                .map_err(|e| format!("tube {}: {e}", t.name))?;
            if t.ages.count() != t.ready.len() as u64 {
                return Err(format!(
                    "tube {}: ready ages count {} jobs, the heap {}",
                    t.name,
                    t.ages.count(),
                    t.ready.len()
                ));
            }
            if let Some(o) = t.ages.oldest() {
                // Exact or at most one bucket too old.
                let min = t.ready.iter().map(|&s| self.q.jobs.at(s).deadline).min();
                if min.is_none_or(|m| o > m || m - o >= super::ages::WIDTH) {
                    return Err(format!(
                        "tube {}: oldest ready {o}, jobs say {min:?}",
                        t.name
                    ));
                }
            }
            if urgent != t.urgent {
                return Err(format!("tube {} urgent {} != {urgent}", t.name, t.urgent));
            }
            let want = if t.unpause_at.is_none() && !t.sess.waiters.is_empty() {
                t.ready.first().map(|&s| {
                    let j = self.q.jobs.at(s);
                    (j.pri, j.id)
                })
            } else {
                None
            };
            if want != t.sess.candidate {
                return Err(format!(
                    "tube {} candidate {:?} != {want:?}",
                    t.name, t.sess.candidate
                ));
            }
            if let Some((p, id)) = want {
                if !self.s.candidates.contains(&(p, id, tid)) {
                    return Err(format!("tube {} candidate missing from set", t.name));
                }
            }
            if t.unpause_at
                .is_some_and(|at| !self.q.paused.contains(&(at, tid)))
            {
                return Err(format!("tube {} pause not scheduled", t.name));
            }
        }
        let live = self.q.jobs.len() as u64 - self.q.jobs.dead_count();
        if tube_jobs != live {
            return Err(format!("tubes hold {tube_jobs} jobs, {live} exist"));
        }
        let live_candidates = self
            .q
            .tubes
            .ids()
            .iter()
            .filter(|&&t| self.q.tubes.get(t).sess.candidate.is_some())
            .count();
        if live_candidates != self.s.candidates.len() {
            return Err("stale candidate entries".into());
        }
        if !self.s.candidates.is_empty() {
            return Err("a waiter and a ready job coexist in an unpaused tube".into());
        }
        let conns = self.s.conns.len() as u64;
        let watch: u64 = self.s.conns.values().map(|c| c.watch.len() as u64).sum();
        if using != conns || watching != watch {
            return Err(format!(
                "using {using}/{conns}, watching {watching}/{watch}"
            ));
        }
        let waiting = self.s.conns.values().filter(|c| c.wait.is_some()).count() as u64;
        if waiting != self.s.waiting {
            return Err(format!("waiting {waiting} != counter {}", self.s.waiting));
        }
        let wait_entries: usize = self
            .s
            .conns
            .values()
            .filter(|c| c.wait.is_some())
            .map(|c| c.watch.len())
            .sum();
        if wait_entries != waiters {
            return Err(format!("{waiters} waiter entries, want {wait_entries}"));
        }
        let timers = self
            .s
            .conns
            .iter()
            .filter_map(|(&id, c)| c.wait.and_then(|w| w.timer).map(|t| (t, id)))
            .count();
        if timers != self.s.wait_timers.len() {
            return Err("wait timer set out of step".into());
        }
        let producers = self.s.conns.values().filter(|c| c.producer).count() as u64;
        let workers = self.s.conns.values().filter(|c| c.worker).count() as u64;
        if producers != self.s.producers || workers != self.s.workers {
            return Err("producer/worker counts out of step".into());
        }
        Ok(())
    }
}
