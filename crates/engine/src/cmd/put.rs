//! `put`: the header takes an id (from a block the log holds); the body is admitted
//! (node-local: drain mode, limits), logged by the server, then applied.

use bytes::Bytes;
use sprout_protocol::command::PutHeader;
use sprout_protocol::Reply;

use crate::body::Body;
use crate::{
    ConnId, Deliveries, Engine, Job, JobId, JobState, JournalOp, NewPut, ID_BLOCK, SECOND,
};

impl Engine {
    /// The live job holding `key` in tube `t`.
    pub(crate) fn key_holder(&self, t: crate::tube::TubeId, key: &str) -> Option<JobId> {
        let id = *self.q.tubes.get(t).unique.get(key)?;
        self.q.jobs.contains_key(&id).then_some(id)
    }

    /// Job `id` (in tube `t`) is deleted: its key is free, its origin forgotten. Two
    /// emptiness tests when no job ever had either (the common case: no lookup).
    pub(crate) fn drop_extras(&mut self, id: JobId, t: crate::tube::TubeId) {
        if !self.q.origins.is_empty() {
            self.q.origins.remove(&id);
        }
        if self.q.keys.is_empty() {
            return;
        }
        if let Some(k) = self.q.keys.remove(&id) {
            if let Some(tube) = self.q.tubes.try_get_mut(t) {
                if tube.unique.get(&k) == Some(&id) {
                    tube.unique.remove(&k);
                }
            }
        }
    }

    /// The job's `put-unique` key.
    pub fn job_key(&self, id: JobId) -> Option<&str> {
        if self.q.keys.is_empty() {
            return None;
        }
        self.q.keys.get(&id).map(|k| &**k)
    }

    /// A `put` header was accepted: takes the job id (used up even if the body fails).
    pub(crate) fn put_header(&mut self, c: ConnId) -> JobId {
        self.s.cmd.put += 1;
        if let Some(conn) = self.s.conns.get_mut(&c) {
            if !conn.producer {
                conn.producer = true;
                self.s.producers += 1;
            }
        }
        // Ids never wrap to 0; at u64::MAX (only from a damaged log) puts are refused.
        let id = self.q.next_job;
        self.q.next_job = self.q.next_job.saturating_add(1);
        // Take the next block while half of this one is left, so that its record is long
        // written before its first id is handed out.
        if self.q.next_job.saturating_add(ID_BLOCK / 2) >= self.q.id_limit {
            self.q.id_limit = self.q.next_job.saturating_add(ID_BLOCK);
            self.log(JournalOp::IdLimit(self.q.id_limit));
        }
        id
    }

    /// A `put` that was rejected after its numbers parsed (too big, trailing bytes).
    pub(crate) fn count_put(&mut self) {
        self.s.cmd.put += 1;
    }

    /// A `pause-tube` rejected for its tube name after it parsed (beanstalkd counts it).
    pub(crate) fn count_pause_tube(&mut self) {
        self.s.cmd.pause_tube += 1;
    }

    /// The body of the put whose header got `id` arrived: admits and applies it at once
    /// (without a log; with one, the server logs the put between [`Engine::put_admit`] and
    /// [`Engine::put_apply`]).
    #[cfg(test)]
    pub(crate) fn put_body(
        &mut self,
        c: ConnId,
        id: JobId,
        h: PutHeader,
        body: Bytes,
        now: u64,
        out: &mut Deliveries,
    ) -> Reply {
        match self.put_admit(c, id, h, body, now) {
            Ok(p) => self.put_apply(p, now, out),
            Err(r) => r,
        }
    }

    /// Decides whether a put may happen (drain mode, limits, a valid id): the part of a
    /// put that is node-local. Changes nothing.
    pub fn put_admit(
        &self,
        c: ConnId,
        id: JobId,
        h: PutHeader,
        body: Bytes,
        now: u64,
    ) -> Result<NewPut, Reply> {
        self.put_admit_key(c, id, h, body, None, now)
    }

    /// [`Engine::put_admit`] for `put-unique`: `EXISTS <id>` if a job with the key exists
    /// in the used tube.
    pub fn put_admit_key(
        &self,
        c: ConnId,
        id: JobId,
        h: PutHeader,
        body: Bytes,
        key: Option<&str>,
        now: u64,
    ) -> Result<NewPut, Reply> {
        if self.local.draining {
            return Err(Reply::Draining);
        }
        let Some(conn) = self.s.conns.get(&c) else {
            return Err(Reply::InternalError);
        };
        if self.put_would_exceed(body.len() as u64) || id == 0 || self.q.jobs.contains_key(&id) {
            return Err(Reply::OutOfMemory);
        }
        let tube = conn.use_tube;
        if let Some(other) = key.and_then(|k| self.key_holder(tube, k)) {
            return Err(Reply::Exists(other));
        }
        if self.over_max_ready(tube) {
            return Err(Reply::OutOfMemory);
        }
        Ok(NewPut {
            key: key.map(std::sync::Arc::from),
            conn: c,
            id,
            tube,
            tube_name: None,
            pri: h.pri,
            delay: h.delay,
            ttr: h.ttr.max(1),
            created: now,
            body,
            file: 0,
            lsn: 0,
        })
    }

    /// Applies an admitted put (logged first, with a log). Deterministic: it depends only
    /// on the put and the engine's state.
    pub(crate) fn put_apply(&mut self, p: NewPut, now: u64, out: &mut Deliveries) -> Reply {
        self.now = now;
        let id = p.id;
        if id == 0 {
            return Reply::OutOfMemory;
        }
        let tube = match &p.tube_name {
            None => p.tube,
            Some(name) => {
                let same =
                    self.q.tubes.try_get(p.tube).is_some_and(|t| {
                        std::sync::Arc::ptr_eq(&t.name, name) || *t.name == **name
                    });
                if same {
                    p.tube
                } else {
                    self.q.tubes.find_or_make(name)
                }
            }
        };
        if let Some(other) = p.key.as_deref().and_then(|k| self.key_holder(tube, k)) {
            // Another put of the key was applied since this one was admitted.
            self.gc_tube(tube);
            return Reply::Exists(other);
        }
        if self.over_max_ready(tube) {
            // The tube filled up since this put was admitted.
            self.gc_tube(tube);
            return Reply::OutOfMemory;
        }
        let delay = u64::from(p.delay) * SECOND;
        let logged = p.lsn != 0;
        let size = p.body.len() as u64;
        let job = Job {
            id,
            created: p.created,
            lsn: p.lsn,
            deadline: 0,
            seq: 0,
            reserves: 0,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
            pri: p.pri,
            tube,
            delay: p.delay,
            ttr: p.ttr.max(1),
            file: p.file,
            heap_pos: 0,
            state: JobState::Ready,
            body: Body::from_bytes(p.body),
        };
        if self.q.jobs.try_insert(job).is_err() {
            // Only a log that reused an id could get here (admission refuses a taken id).
            self.gc_tube(tube);
            return Reply::OutOfMemory;
        }
        self.q.body_bytes += size;
        if let Some(k) = p.key {
            self.q.tubes.get_mut(tube).unique.insert(k.clone(), id);
            self.q.keys.insert(id, k);
        }
        if !logged {
            self.log(JournalOp::Full(id));
        }
        self.q.total_jobs += 1;
        self.q.tubes.get_mut(tube).total_jobs += 1;
        if delay > 0 {
            self.make_delayed(id, p.created.saturating_add(delay));
        } else {
            self.make_ready(id);
            self.process_queue(now, out);
        }
        Reply::Inserted(id)
    }
}
