//! `pause-tube`: no job of the tube is handed out until the pause ends (not logged).

use sprout_protocol::Reply;

use crate::tube::TubeId;
use crate::{Engine, SECOND};

impl Engine {
    pub(super) fn pause_tube(&mut self, name: &str, delay: u32, now: u64) -> Reply {
        self.s.cmd.pause_tube += 1;
        match self.q.tubes.find(name) {
            Some(t) => {
                self.pause(t, delay, now);
                Reply::Paused
            }
            None => Reply::NotFound,
        }
    }

    pub(crate) fn pause(&mut self, t: TubeId, delay: u32, now: u64) {
        // beanstalkd: a zero delay pauses for one nanosecond, which ends any pause.
        let d = (u64::from(delay) * SECOND).max(1);
        let tube = self.q.tubes.get_mut(t);
        if let Some(at) = tube.unpause_at.take() {
            self.q.paused.remove(&(at, t));
        }
        let tube = self.q.tubes.get_mut(t);
        tube.cmd_pause += 1;
        tube.pause = d;
        let at = now.saturating_add(d);
        tube.unpause_at = Some(at);
        self.q.paused.insert((at, t));
        self.refresh_candidate(t);
    }
}
