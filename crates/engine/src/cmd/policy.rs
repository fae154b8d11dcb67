//! Tube policies (`tube-policy <tube> [<key> <value>]`): a retry limit with an action when
//! it is reached (bury, delete, or a dead-letter tube), a backoff for jobs that come back,
//! and a cap on ready jobs. A policy is queue state: logged, restored, and in a cluster
//! replicated like jobs; a tube with a policy lives while it has one.
//!
//! Where a policy acts: whenever a reserved job would become ready again (its TTR ran out,
//! its worker released it, or its worker disconnected), [`Engine::return_job`] decides;
//! and a put to a tube at its `max-ready` is refused.

use std::fmt::Write as _;
use std::sync::Arc;

use sprout_protocol::reply::TubePolicyStats;
use sprout_protocol::{Backoff, Exhaust, PolicySet, Reply};

use crate::tube::TubeId;
use crate::{Deliveries, Engine, JobId, JournalOp, SECOND};

/// A tube's policy. The default is no policy at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Policy {
    /// A job reserved this many times is not made ready again: `on_exhaust` happens
    /// instead (0: off).
    pub max_reserves: u32,
    pub on_exhaust: Exhaust,
    /// The delay of a job coming back by TTR timeout, disconnect or a release with delay 0.
    pub retry_backoff: Backoff,
    /// A put to the tube with this many ready jobs is refused (0: off).
    pub max_ready: u64,
}

impl Policy {
    pub fn set(&mut self, s: PolicySet) {
        match s {
            PolicySet::MaxReserves(n) => self.max_reserves = n,
            PolicySet::OnExhaust(e) => self.on_exhaust = e,
            PolicySet::RetryBackoff(b) => self.retry_backoff = b,
            PolicySet::MaxReady(n) => self.max_ready = n,
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Policy::default()
    }

    /// `bury`, `delete` or `tube:<name>`.
    pub fn exhaust_text(&self) -> String {
        match &self.on_exhaust {
            Exhaust::Bury => "bury".into(),
            Exhaust::Delete => "delete".into(),
            Exhaust::Tube(t) => format!("tube:{t}"),
        }
    }

    /// `none`, `fixed:<s>` or `exp:<base>,<cap>`.
    pub fn backoff_text(&self) -> String {
        match self.retry_backoff {
            Backoff::None => "none".into(),
            Backoff::Fixed(s) => format!("fixed:{s}"),
            Backoff::Exp { base, cap } => format!("exp:{base},{cap}"),
        }
    }

    /// The policy as `tube-policy <tube>` shows it.
    pub fn yaml(&self) -> String {
        let mut y = String::from("---\n");
        let _ = write!(
            y,
            "max-reserves: {}\non-exhaust: {}\nretry-backoff: {}\nmax-ready: {}\n",
            self.max_reserves,
            self.exhaust_text(),
            self.backoff_text(),
            self.max_ready
        );
        y
    }

    /// Seconds of delay for a job coming back after its `reserves`-th reserve (0: none).
    /// The exponential backoff's jitter is derived from the job, so every replica of the
    /// queue computes the same delay: between half and all of `base * 2^(reserves-1)`,
    /// at most `cap`.
    pub fn backoff_secs(&self, id: JobId, reserves: u32) -> u32 {
        match self.retry_backoff {
            Backoff::None => 0,
            Backoff::Fixed(s) => s,
            Backoff::Exp { base, cap } => {
                let shift = reserves.saturating_sub(1).min(31);
                let full = u64::from(base)
                    .saturating_mul(1u64 << shift)
                    .min(u64::from(cap));
                let h = mix(id ^ (u64::from(reserves) << 40));
                (full - h % (full / 2 + 1)) as u32
            }
        }
    }
}

/// A 64-bit mixer (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// How a reserved job comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    /// `release` with this delay (seconds).
    Release(u32),
    /// Its TTR ran out.
    Timeout,
    /// Its worker went away.
    Disconnect,
}

impl Engine {
    pub(super) fn tube_policy(&mut self, name: &str, set: Option<PolicySet>) -> Reply {
        self.s.ext.tube_policy += 1;
        let Some(set) = set else {
            return match self.q.tubes.find(name) {
                Some(t) => {
                    let p = self.q.tubes.get(t).policy.as_deref().cloned();
                    Reply::Yaml(p.unwrap_or_default().yaml())
                }
                None => Reply::NotFound,
            };
        };
        let t = self.q.tubes.find_or_make(name);
        let mut p = self
            .q
            .tubes
            .get(t)
            .policy
            .as_deref()
            .cloned()
            .unwrap_or_default();
        p.set(set);
        self.set_policy(t, p);
        let name = self.q.tubes.get(t).name.clone();
        self.log(JournalOp::Policy(name));
        self.gc_tube(t);
        Reply::Ok
    }

    /// Sets tube `t`'s policy (the default one removes it).
    pub(crate) fn set_policy(&mut self, t: TubeId, p: Policy) {
        self.q.tubes.get_mut(t).policy = (!p.is_default()).then(|| Box::new(p));
    }

    /// At startup: a tube's policy as the log last recorded it.
    pub fn restore_policy(&mut self, tube: &str, p: Policy) {
        let t = self.q.tubes.find_or_make(tube);
        self.set_policy(t, p);
        self.gc_tube(t);
    }

    /// Tubes with a policy, and their policies (for the log to rewrite them).
    pub fn policies(&self) -> Vec<(Arc<str>, Policy)> {
        self.q
            .tubes
            .ids()
            .iter()
            .filter_map(|&t| {
                let tube = self.q.tubes.get(t);
                Some((tube.name.clone(), tube.policy.as_deref()?.clone()))
            })
            .collect()
    }

    /// The policy of a tube by name, if it has one.
    pub fn policy(&self, tube: &str) -> Option<&Policy> {
        self.q.tubes.get(self.q.tubes.find(tube)?).policy.as_deref()
    }

    /// `stats-tube`'s policy fields, for a tube with a policy.
    pub(crate) fn policy_stats(&self, t: TubeId) -> Option<Box<TubePolicyStats>> {
        let tube = self.q.tubes.get(t);
        let p = tube.policy.as_deref()?;
        Some(Box::new(TubePolicyStats {
            max_reserves: p.max_reserves,
            on_exhaust: p.exhaust_text(),
            retry_backoff: p.backoff_text(),
            max_ready: p.max_ready,
            dead_lettered: tube.counters.dead_lettered,
            retries_delayed: tube.counters.retries_delayed,
        }))
    }

    /// Would a put to tube `t` go beyond its `max-ready`?
    pub(crate) fn over_max_ready(&self, t: TubeId) -> bool {
        let tube = self.q.tubes.get(t);
        tube.policy
            .as_deref()
            .is_some_and(|p| p.max_ready > 0 && tube.ready.len() as u64 >= p.max_ready)
    }

    /// A reserved job, already out of its reservation, comes back. Without a policy: ready
    /// (or delayed by a release's delay). With one: the exhaust action if the job has been
    /// reserved `max-reserves` times; else the backoff's delay when it comes back by
    /// timeout, disconnect or a release with delay 0. Logs the change.
    pub(crate) fn return_job(&mut self, id: JobId, how: Return, now: u64, out: &mut Deliveries) {
        let Some(j) = self.q.jobs.get(&id) else {
            return;
        };
        let (t, reserves) = (j.tube, j.reserves);
        let policy = self.q.tubes.get(t).policy.as_deref().cloned();
        let Some(p) = policy else {
            let delay = match how {
                Return::Release(d) => d,
                _ => 0,
            };
            // Logged before it can be handed out, so that its next reserve shows it; a
            // disconnect is not logged (a reserved job comes back ready after a restart).
            if how != Return::Disconnect {
                self.log(JournalOp::Update(id));
            }
            self.make_ready_or_delayed(id, delay, now, out);
            return;
        };
        if p.max_reserves > 0 && reserves >= p.max_reserves {
            self.exhaust(id, t, &p.on_exhaust, now, out);
            return;
        }
        let delay = match how {
            Return::Release(d) if d > 0 => d,
            _ => {
                let d = p.backoff_secs(id, reserves);
                if d > 0 {
                    self.q.tubes.get_mut(t).counters.retries_delayed += 1;
                    self.job_mut(id).delay = d;
                }
                d
            }
        };
        self.log(JournalOp::Update(id));
        self.make_ready_or_delayed(id, delay, now, out);
    }

    fn make_ready_or_delayed(&mut self, id: JobId, delay: u32, now: u64, out: &mut Deliveries) {
        if delay > 0 {
            self.make_delayed(id, now.saturating_add(u64::from(delay) * SECOND));
        } else {
            self.make_ready(id);
            self.process_queue(now, out);
        }
    }

    /// A job out of retries: buried, deleted, or moved ready to a dead-letter tube (which
    /// records where it came from).
    fn exhaust(&mut self, id: JobId, t: TubeId, action: &Exhaust, now: u64, out: &mut Deliveries) {
        match action {
            Exhaust::Bury => {
                let j = self.job_mut(id);
                j.buries += 1;
                self.q.tubes.get_mut(t).counters.buries += 1;
                self.make_buried(id);
                self.log(JournalOp::Update(id));
            }
            Exhaust::Delete => self.remove_taken(id),
            Exhaust::Tube(name) => {
                let to = self.q.tubes.find_or_make(name);
                self.q.tubes.get_mut(t).counters.dead_lettered += 1;
                if to != t {
                    let origin = self.q.tubes.get(t).name.clone();
                    self.q.origins.insert(id, origin);
                    self.move_key(id, t, to);
                    self.job_mut(id).tube = to;
                    self.log(JournalOp::Move(id));
                    self.make_ready(id);
                    self.process_queue(now, out);
                    self.gc_tube(t);
                } else {
                    self.log(JournalOp::Update(id));
                    self.make_ready_or_delayed(id, 0, now, out);
                }
            }
        }
    }

    /// Deletes a job that is in no state's sets (taken out of its reservation).
    fn remove_taken(&mut self, id: JobId) {
        if let Some(j) = self.q.jobs.remove(&id) {
            self.drop_extras(id, j.tube);
            self.q.body_bytes -= j.body.len() as u64;
            let tube = self.q.tubes.get_mut(j.tube);
            let size = (tube.name.len() + j.body.len()) as u64;
            self.log(JournalOp::Delete {
                id,
                file: j.file,
                size,
            });
            self.gc_tube(j.tube);
        }
    }

    /// The tube a dead-lettered job came from.
    pub fn job_origin(&self, id: JobId) -> Option<&Arc<str>> {
        if self.q.origins.is_empty() {
            return None;
        }
        self.q.origins.get(&id)
    }
}
