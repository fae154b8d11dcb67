//! The engine as a state machine: one entry point, [`Engine::apply`], that takes an input
//! stamped with its time and returns what it produced ([`Effects`]). The same sequence of
//! inputs gives the same state and the same effects on any machine: there is no clock, no
//! randomness, no hash order that depends on the process, and no node-local configuration
//! inside (drain mode and limits are decided before, by [`Engine::put_admit`]).
//! [`Engine::dump`] prints the whole state canonically, for comparing two engines.

use std::fmt::Write as _;

use sprout_protocol::{Command, Reply};

use crate::{ConnId, Deliveries, Engine, JobId, JournalOp, NewPut, Outcome, Reveal};

/// One input to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A client connected: a session starts.
    Connect,
    /// The client went away: its reservations return to ready.
    Disconnect(ConnId),
    /// A `put` header was read: the job id is taken.
    PutHeader(ConnId),
    /// An admitted (and, with a log, logged) put is applied.
    Put(NewPut),
    /// A `put` rejected after its numbers parsed (counted, as beanstalkd does).
    CountPut,
    /// A `pause-tube` rejected for its tube name (counted, as beanstalkd does).
    CountPauseTube,
    /// Any other command.
    Command(ConnId, Command),
    /// A client blocked in reserve half-closed: it stops waiting.
    CancelWait(ConnId),
    /// Time passed: run whatever is due.
    Tick,
    /// A clean shutdown: log the exact next id.
    CloseIds,
}

/// The direct result of an input.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Output {
    #[default]
    None,
    /// `Connect`: the new session.
    Conn(ConnId),
    /// `PutHeader`: the job id taken.
    Job(JobId),
    /// The reply to the caller.
    Reply(Reply),
    /// The caller now waits for a job (its reply comes later, as a delivery).
    Wait,
    /// `CancelWait`: whether it was waiting.
    Cancelled(bool),
}

/// What an input produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub output: Output,
    /// What the reply shows (for the commit watermark).
    pub reveal: Reveal,
    /// Replies owed to other connections (and to the caller, later).
    pub deliveries: Deliveries,
    /// Changes to log, in order (with the journal enabled).
    pub journal: Vec<JournalOp>,
}

impl Effects {
    pub fn clear(&mut self) {
        self.output = Output::None;
        self.reveal = Reveal::Nothing;
        self.deliveries.clear();
        self.journal.clear();
    }
}

impl Input {
    /// Whether the input can owe replies to other connections or move a timer earlier:
    /// without that, nobody needs to look at deliveries or deadlines after it.
    pub fn may_deliver(&self) -> bool {
        !matches!(
            self,
            Input::Connect
                | Input::PutHeader(_)
                | Input::CountPut
                | Input::CountPauseTube
                | Input::CloseIds
        )
    }

    /// Whether the input's effects depend on the time it is stamped with. Those that do not
    /// may be stamped with the time of the input before them (no clock read).
    pub fn uses_time(&self) -> bool {
        self.may_deliver()
    }
}

impl Engine {
    /// The time the last input was stamped with.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Applies one input at time `now` (nanoseconds, never going back); `fx` is cleared,
    /// then receives what the input produced.
    pub fn apply(&mut self, now: u64, input: Input, fx: &mut Effects) {
        fx.clear();
        self.reveal = Reveal::Nothing;
        let out = &mut fx.deliveries;
        fx.output = match input {
            Input::Connect => Output::Conn(self.connect()),
            Input::Disconnect(c) => {
                self.disconnect(c, now, out);
                Output::None
            }
            Input::PutHeader(c) => Output::Job(self.put_header(c)),
            Input::Put(p) => Output::Reply(self.put_apply(p, now, out)),
            Input::CountPut => {
                self.count_put();
                Output::None
            }
            Input::CountPauseTube => {
                self.count_pause_tube();
                Output::None
            }
            Input::Command(c, cmd) => match self.execute(c, cmd, now, out) {
                Outcome::Reply(r) => Output::Reply(r),
                Outcome::Wait => Output::Wait,
            },
            Input::CancelWait(c) => Output::Cancelled(self.cancel_wait(c)),
            Input::Tick => {
                self.tick(now, out);
                Output::None
            }
            Input::CloseIds => {
                self.close_ids();
                Output::None
            }
        };
        if self.has_dead() {
            self.free_dead(crate::cmd::flush::FREE_PER_INPUT);
        }
        fx.reveal = self.reveal;
        self.take_journal(&mut fx.journal);
    }

    /// The whole state, queue and sessions, as canonical text: two engines hold the same
    /// state exactly when their dumps are equal.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let q = &self.q;
        let _ = writeln!(
            s,
            "queue: next_job {} id_limit {} seq {} ready {} urgent {} buried {} \
             job_timeouts {} total_jobs {} body_bytes {}",
            q.next_job,
            q.id_limit,
            q.seq,
            q.ready,
            q.urgent,
            q.buried,
            q.job_timeouts,
            q.total_jobs,
            q.body_bytes
        );
        let mut jobs: Vec<_> = q.jobs.iter().map(|(_, j)| j).collect();
        jobs.sort_by_key(|j| j.id);
        for j in jobs {
            let _ = writeln!(
                s,
                "job {} {:?} tube {} pri {} delay {} ttr {} created {} deadline {} seq {} \
                 counts {}/{}/{}/{}/{} file {} lsn {} heap {} body {:?}",
                j.id,
                j.state,
                j.tube,
                j.pri,
                j.delay,
                j.ttr,
                j.created,
                j.deadline,
                j.seq,
                j.reserves,
                j.timeouts,
                j.releases,
                j.buries,
                j.kicks,
                j.file,
                j.lsn,
                j.heap_pos,
                j.body.as_slice()
            );
        }
        for &t in q.tubes.ids() {
            let tube = q.tubes.get(t);
            let ready: Vec<JobId> = tube.ready.iter().map(|&s| q.jobs.at(s).id).collect();
            let _ = writeln!(
                s,
                "tube {t} {:?} ready {ready:?} delayed {:?} buried {:?} urgent {} reserved {} \
                 pause {} unpause_at {:?} total_jobs {} cmd_delete {} cmd_pause {} \
                 counters {:?} ages {:?} | using {} watching {} waiters {:?} candidate {:?}",
                tube.name,
                tube.delayed,
                tube.buried,
                tube.urgent,
                tube.reserved,
                tube.pause,
                tube.unpause_at,
                tube.total_jobs,
                tube.cmd_delete,
                tube.cmd_pause,
                tube.counters,
                tube.ages,
                tube.sess.using,
                tube.sess.watching,
                tube.sess.waiters,
                tube.sess.candidate
            );
        }
        let mut keys: Vec<_> = q.keys.iter().collect();
        keys.sort();
        let _ = writeln!(s, "keys {keys:?}");
        let mut origins: Vec<_> = q.origins.iter().collect();
        origins.sort();
        let _ = writeln!(s, "origins {origins:?}");
        for &t in q.tubes.ids() {
            let mut u: Vec<_> = q.tubes.get(t).unique.iter().collect();
            u.sort();
            let tube = q.tubes.get(t);
            let _ = writeln!(
                s,
                "tube {t} unique {u:?} ids {:?} policy {:?}",
                tube.ids, tube.policy
            );
        }
        let _ = writeln!(
            s,
            "dead {} delayed_dead {} graveyard {:?}",
            q.jobs.dead_count(),
            q.delayed_dead,
            q.graveyard
        );
        let _ = writeln!(s, "delayed {:?}", q.delayed);
        let _ = writeln!(s, "reserved {:?}", q.reserved);
        let _ = writeln!(s, "paused {:?}", q.paused);
        let ss = &self.s;
        let _ = writeln!(
            s,
            "sessions: next_conn {} wait_seq {} total_connections {} producers {} workers {} \
             waiting {}",
            ss.next_conn, ss.wait_seq, ss.total_connections, ss.producers, ss.workers, ss.waiting
        );
        let mut conns: Vec<_> = ss.conns.iter().collect();
        conns.sort_by_key(|(id, _)| **id);
        for (id, c) in conns {
            let _ = writeln!(s, "conn {id} {c:?}");
        }
        let _ = writeln!(s, "wait_timers {:?}", ss.wait_timers);
        let _ = writeln!(s, "candidates {:?}", ss.candidates);
        let _ = writeln!(s, "cmd {:?}", ss.cmd);
        s
    }
}
