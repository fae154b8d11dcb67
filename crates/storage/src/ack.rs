//! Acknowledgement and the commit watermark: what the writer publishes about its progress,
//! and the two ways a reply waits on it.
//!
//! Every record has a log position (LSN): the byte offset of its end in one stream that
//! never restarts within a process, across segments and epochs. An epoch begins when a
//! checkpoint or, after write errors, a resume rewrites live jobs into a new segment.
//!
//! - A reply that **acknowledges** a change (INSERTED, DELETED, ...) waits on a [`Ticket`]:
//!   it succeeds once the change is durable, and fails if the write failed (the client is
//!   then told the change was not made, or may not have been).
//! - Anything that **reveals** state (RESERVED, FOUND, a job's stats, NOT_FOUND) waits
//!   until the watermark [`Acked::durable`] reaches the position of the change it shows.
//!   The watermark never goes back and never passes a failed write until a resume has
//!   rewritten what failed, so nothing a client sees can be lost in a crash.

/// When to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `-f 0`: before acknowledging anything.
    Always,
    /// `-f MS`: at most every MS ms, and within MS ms of a write.
    Every(u64),
    /// `-F`
    Never,
}

impl SyncPolicy {
    pub fn from_flag(ms: Option<u64>) -> Self {
        match ms {
            Some(0) => SyncPolicy::Always,
            Some(ms) => SyncPolicy::Every(ms),
            None => SyncPolicy::Never,
        }
    }
}

/// What the writer has done. A ticket for position `lsn` appended in `epoch` succeeds
/// when the epoch is unchanged and `written` (or `synced`) reaches `lsn`; it fails when the
/// epoch moved on or `failed_from < lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub epoch: u64,
    pub written: u64,
    pub synced: u64,
    pub failed_from: u64,
    /// What the previous epoch got written and synced before it ended (its tickets up to
    /// these positions succeeded even if they are checked late).
    pub prev_written: u64,
    pub prev_synced: u64,
    /// The commit watermark: every change at or below it is durable as the policy defines
    /// it (synced with `-f 0`, written otherwise), or was rewritten by the checkpoint or
    /// resume that began this epoch. Never goes back.
    pub durable: u64,
    /// Where this epoch's checkpoint or resume records end: the watermark moves within
    /// the epoch only once they are durable.
    pub heal_end: u64,
}

impl Acked {
    pub(crate) fn new() -> Acked {
        Acked {
            epoch: 0,
            written: 0,
            synced: 0,
            failed_from: u64::MAX,
            prev_written: 0,
            prev_synced: 0,
            durable: 0,
            heal_end: 0,
        }
    }

    /// Moves the watermark to `point` (durable per policy in this epoch), but not past a
    /// failed write, and not before this epoch's rewrite is complete.
    pub(crate) fn advance(&mut self, point: u64) {
        if point >= self.heal_end {
            self.durable = self.durable.max(point.min(self.failed_from));
        }
    }

    /// Is everything up to `lsn` durable?
    pub fn covers(&self, lsn: u64) -> bool {
        self.durable >= lsn
    }
}

/// A position in the log that an acknowledgement waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub epoch: u64,
    pub lsn: u64,
}

impl Ticket {
    /// Some(true) when durable enough, Some(false) when it never will be, None to wait.
    pub fn check(&self, a: &Acked, policy: SyncPolicy) -> Option<bool> {
        if a.epoch < self.epoch {
            // The writer has not reached the checkpoint this ticket follows yet.
            return None;
        }
        let always = policy == SyncPolicy::Always;
        if a.epoch > self.epoch {
            let prev = if always {
                a.prev_synced
            } else {
                a.prev_written
            };
            return Some(a.epoch == self.epoch + 1 && self.lsn <= prev);
        }
        if a.failed_from < self.lsn {
            return Some(false);
        }
        let done = if always { a.synced } else { a.written };
        (done >= self.lsn).then_some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_stops_at_a_failure_and_moves_on_after_the_rewrite() {
        let mut a = Acked::new();
        a.advance(100);
        assert!(a.covers(100) && !a.covers(101));
        // A write from 150 on failed: nothing past it is durable, whatever is written later.
        a.failed_from = 150;
        a.advance(140);
        assert_eq!(a.durable, 140);
        a.advance(300);
        assert_eq!(a.durable, 150);
        // A resume starts epoch 1 at 400, its records end at 450.
        a = Acked {
            epoch: 1,
            failed_from: u64::MAX,
            heal_end: 450,
            ..a
        };
        a.advance(420);
        assert_eq!(a.durable, 150, "moved before the rewrite was durable");
        a.advance(450);
        assert!(a.covers(300), "the rewrite covers what failed before it");
        a.advance(10);
        assert_eq!(a.durable, 450, "the watermark went back");
    }
}
