//! `stats`, `stats-job`, `stats-tube`.

use sprout_protocol::reply::{JobStats, ServerStats, TubeStats};
use sprout_protocol::Reply;

use crate::tube::TubeId;
use crate::{Engine, JobId, JobState, Reveal, SECOND};

impl Engine {
    pub(super) fn stats_job(&mut self, id: JobId, now: u64) -> Reply {
        self.s.cmd.stats_job += 1;
        match self.job_stats(id, now) {
            Some(s) => {
                self.reveal = Reveal::Job(self.q.jobs.get(&id).map_or(0, |j| j.lsn));
                Reply::StatsJob(Box::new(s))
            }
            None => Reply::NotFound,
        }
    }

    pub(super) fn stats_tube(&mut self, name: &str, now: u64) -> Reply {
        self.s.cmd.stats_tube += 1;
        match self.q.tubes.find(name) {
            Some(t) => Reply::StatsTube(Box::new(self.tube_stats(t, now))),
            None => Reply::NotFound,
        }
    }

    pub(super) fn stats_cmd(&mut self) -> Reply {
        self.s.cmd.stats += 1;
        Reply::Stats(Box::new(self.stats()))
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats {
            urgent: self.q.urgent,
            ready: self.q.ready,
            reserved: self.q.reserved.len() as u64,
            delayed: self.q.delayed.len() as u64 - self.q.delayed_dead,
            buried: self.q.buried,
            cmd: self.s.cmd.clone(),
            job_timeouts: self.q.job_timeouts,
            total_jobs: self.q.total_jobs,
            tubes: self.q.tubes.len() as u64,
            connections: self.s.conns.len() as u64,
            producers: self.s.producers,
            workers: self.s.workers,
            waiting: self.s.waiting,
            total_connections: self.s.total_connections,
            draining: self.local.draining,
        }
    }

    pub(crate) fn job_stats(&self, id: JobId, now: u64) -> Option<JobStats> {
        let j = self.q.jobs.get(&id)?;
        let secs = |ns: i128| (ns / i128::from(SECOND)) as i64;
        let time_left = match j.state {
            JobState::Reserved | JobState::Delayed => secs(j.deadline as i128 - now as i128),
            _ => 0,
        };
        Some(JobStats {
            id,
            tube: self.q.tubes.get(j.tube).name.clone(),
            state: j.state.name(),
            pri: j.pri,
            age: secs(now as i128 - j.created as i128),
            delay: u64::from(j.delay),
            ttr: u64::from(j.ttr),
            time_left,
            file: u64::from(j.file),
            reserves: j.reserves,
            timeouts: j.timeouts,
            releases: j.releases,
            buries: j.buries,
            kicks: j.kicks,
            origin: self.q.origins.get(&id).cloned(),
        })
    }

    pub(crate) fn tube_stats(&self, t: TubeId, now: u64) -> TubeStats {
        let tube = self.q.tubes.get(t);
        let pause_time_left = match tube.unpause_at {
            Some(at) if tube.pause > 0 => ((at as i128 - now as i128) / SECOND as i128) as i64,
            _ => 0,
        };
        TubeStats {
            name: tube.name.clone(),
            urgent: tube.urgent,
            ready: tube.ready.len() as u64,
            reserved: tube.reserved,
            delayed: tube.delayed.len() as u64,
            buried: tube.buried.len() as u64,
            total_jobs: tube.total_jobs,
            using: tube.sess.using,
            watching: tube.sess.watching,
            waiting: tube.sess.waiters.len() as u64,
            cmd_delete: tube.cmd_delete,
            cmd_pause_tube: tube.cmd_pause,
            pause: tube.pause / SECOND,
            pause_time_left,
            policy: self.policy_stats(t),
        }
    }
}
