//! One place per command: each file holds what its command does to the engine, counters
//! included. [`Engine::execute`] dispatches; what a command's reply waits for (its
//! acknowledgement or what it shows) is in the protocol's command table.

mod bury;
mod delete;
pub(crate) mod flush;
mod kick;
mod list;
mod move_job;
mod pause;
mod peek;
pub(crate) mod policy;
mod put;
mod release;
mod reprioritize;
mod reserve;
mod stats;
mod touch;
mod tubes;

use sprout_protocol::{Command, Reply};

use crate::{ConnId, Deliveries, Engine, Outcome, Reveal};

impl Engine {
    /// Runs one command (not `put`, whose parts have their own calls, nor `quit`). What
    /// its reply shows is [`Engine::reveal`] afterwards.
    pub(crate) fn execute(
        &mut self,
        c: ConnId,
        cmd: Command,
        now: u64,
        out: &mut Deliveries,
    ) -> Outcome {
        self.reveal = Reveal::Nothing;
        let o = self.run(c, cmd, now, out);
        if o == Outcome::Reply(Reply::NotFound) {
            self.reveal = Reveal::Absence;
        }
        o
    }

    fn run(&mut self, c: ConnId, cmd: Command, now: u64, out: &mut Deliveries) -> Outcome {
        self.now = now;
        if !self.s.conns.contains_key(&c) {
            return Outcome::Reply(Reply::InternalError);
        }
        let r = match cmd {
            Command::Put(_) | Command::Quit => Reply::InternalError,
            Command::Reserve => {
                self.s.cmd.reserve += 1;
                return self.reserve(c, None, now, out);
            }
            Command::ReserveWithTimeout(t) => {
                self.s.cmd.reserve_with_timeout += 1;
                return self.reserve(c, Some(t), now, out);
            }
            Command::ReserveJob(id) => self.reserve_job_cmd(c, id, now),
            Command::Delete(id) => self.delete(c, id, now),
            Command::Release { id, pri, delay } => self.release(c, id, pri, delay, now, out),
            Command::Bury { id, pri } => self.bury(c, id, pri),
            Command::Touch(id) => self.touch(c, id, now),
            Command::Use(name) => self.use_tube(c, &name),
            Command::Watch(name) => self.watch(c, &name),
            Command::Ignore(name) => self.ignore(c, &name),
            Command::Peek(id) => self.peek(id),
            Command::PeekReady => self.peek_ready(c),
            Command::PeekDelayed => self.peek_delayed(c),
            Command::PeekBuried => self.peek_buried(c),
            Command::Kick(n) => self.kick_cmd(c, n, now, out),
            Command::KickJob(id) => self.kick_job(id, now, out),
            Command::StatsJob(id) => self.stats_job(id, now),
            Command::StatsTube(name) => self.stats_tube(&name, now),
            Command::Stats => self.stats_cmd(),
            Command::ListTubes => self.list_tubes(),
            Command::ListTubeUsed => self.list_tube_used(c),
            Command::ListTubesWatched => self.list_tubes_watched(c),
            Command::PauseTube { tube, delay } => self.pause_tube(&tube, delay, now),
            Command::FlushTube(tube) => self.flush_tube(&tube),
            Command::ListJobs {
                tube,
                state,
                after,
                limit,
            } => self.list_jobs(&tube, state, after, limit),
            Command::Reprioritize { id, pri } => self.reprioritize(c, id, pri),
            Command::MoveJob { id, tube } => self.move_job(c, id, &tube, now, out),
            Command::ReserveBatch { max, timeout } => {
                return self.reserve_batch(c, max, timeout, now, out);
            }
            // put-unique's parts have their own inputs, as put's do.
            Command::PutUnique { .. } => Reply::InternalError,
            Command::TubePolicy { tube, set } => self.tube_policy(&tube, set),
            // Answered by the server (a cluster node, or CLUSTER_ERROR on one server).
            Command::ClusterAdd { .. }
            | Command::ClusterRemove(_)
            | Command::ClusterTransferLeader(_) => Reply::InternalError,
        };
        Outcome::Reply(r)
    }
}
