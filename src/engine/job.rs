//! A job and its states.

use bytes::Bytes;

use super::conn::ConnId;
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
    pub fn name(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Reserved => "reserved",
            JobState::Buried => "buried",
            JobState::Delayed => "delayed",
        }
    }
}

/// A job. Times are nanoseconds on the engine's clock (wall-clock based, see the server).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub tube: TubeId,
    pub pri: u32,
    pub state: JobState,
    /// Delay of the last put/release, ns.
    pub delay: u64,
    /// Time to run, ns (at least one second).
    pub ttr: u64,
    pub created: u64,
    /// Delayed: when it becomes ready. Reserved: when the reservation ends.
    pub deadline: u64,
    /// The connection holding the reservation (meaningful while reserved).
    pub reserver: ConnId,
    /// While buried: position in its tube's buried FIFO. While reserved: when the
    /// reservation was made (disconnect returns reservations in this order).
    pub seq: u64,
    pub reserves: u32,
    pub timeouts: u32,
    pub releases: u32,
    pub buries: u32,
    pub kicks: u32,
    /// The binlog segment holding this job's latest full record (0 without a binlog).
    pub file: u32,
    pub body: Bytes,
}
