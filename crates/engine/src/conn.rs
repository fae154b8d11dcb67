//! The engine's view of a client connection: used tube, watch list, reservations, and a
//! blocked reserve.

use std::collections::BTreeSet;

use super::job::JobId;
use super::tube::TubeId;

pub type ConnId = u64;

/// A reserve that is waiting for a job.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    /// Arrival order among waiters.
    pub seq: u64,
    /// `reserve-with-timeout`'s end, if any.
    pub(crate) timeout_at: Option<u64>,
    /// The entry in the engine's wait-timer set (timeout or deadline-soon), if any.
    pub(crate) timer: Option<u64>,
    /// `reserve-batch`: up to this many jobs at once (0: a plain reserve).
    pub(crate) batch: u32,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) use_tube: TubeId,
    /// Watched tubes in watch order (beanstalkd's order, swap-remove on ignore).
    pub(crate) watch: Vec<TubeId>,
    /// Reserved jobs by (deadline, id).
    pub(crate) reserved: BTreeSet<(u64, JobId)>,
    pub(crate) wait: Option<Wait>,
    pub(crate) producer: bool,
    pub(crate) worker: bool,
}

impl Conn {
    pub fn new(default: TubeId) -> Self {
        Conn {
            use_tube: default,
            watch: vec![default],
            reserved: BTreeSet::new(),
            wait: None,
            producer: false,
            worker: false,
        }
    }

    /// The earliest reservation deadline.
    pub(crate) fn soonest_deadline(&self) -> Option<u64> {
        self.reserved.first().map(|&(d, _)| d)
    }
}
