//! A job and its states.

use super::body::Body;
use super::tube::TubeId;

pub type JobId = u64;

/// Priorities below this count as urgent.
pub const URGENT_THRESHOLD: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Ready,
    Reserved,
    Buried,
    Delayed,
}

impl JobState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Reserved => "reserved",
            JobState::Buried => "buried",
            JobState::Delayed => "delayed",
        }
    }
}

/// A job. Times are nanoseconds on the engine's clock (wall-clock based, see the server).
/// Laid out to be small: jobs are most of the server's memory.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub created: u64,
    /// Log position of the job's latest logged change (0 without a log): anything that
    /// shows the job waits until the log is durable up to here.
    pub lsn: u64,
    /// Delayed: when it becomes ready. Reserved: when the reservation ends.
    pub deadline: u64,
    /// While buried: position in its tube's buried FIFO. While reserved: when the
    /// reservation was made (disconnect returns reservations in this order).
    pub seq: u64,
    pub reserves: u32,
    pub timeouts: u32,
    pub releases: u32,
    pub buries: u32,
    pub kicks: u32,
    pub pri: u32,
    pub tube: TubeId,
    /// Delay of the last put/release, seconds.
    pub delay: u32,
    /// Time to run, seconds (at least one).
    pub ttr: u32,
    /// The binlog segment holding this job's latest full record (0 without a binlog).
    pub file: u32,
    /// Position in its tube's ready heap (meaningful while ready).
    pub(crate) heap_pos: u32,
    pub state: JobState,
    pub body: Body,
}

#[cfg(test)]
mod size {
    /// Jobs are most of the server's memory: keep the record small.
    #[test]
    fn a_job_is_96_bytes() {
        assert_eq!(std::mem::size_of::<super::Job>(), 96);
        assert_eq!(std::mem::size_of::<Option<super::Job>>(), 96);
    }
}
