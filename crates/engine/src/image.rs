//! A snapshot of the engine: its whole queue and session state as bytes, and back.
//!
//! In a cluster every node holds the same engine (it applies the same inputs), and a Raft
//! snapshot replaces a prefix of the log: installing one must give an engine that answers
//! every later input exactly as the one it was taken from. So the image is exact, not a
//! summary: job slots and the free lists (which decide where the next job or tube goes),
//! the ready heaps as they are laid out, the bury and reserve sequence numbers, the
//! waiting reserves with their timers, the candidate set, and every counter that `stats`
//! and the metrics show. Node-local settings (limits, drain mode) and the binlog's journal
//! are not part of it: a restore keeps the receiving engine's.
//!
//! The encoding is little-endian and positional (a version byte first); equal engines give
//! equal bytes (maps are written in key order).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use sprout_protocol::reply::CmdCounts;
use sprout_protocol::{Backoff, Exhaust};

use crate::ages::ReadyAges;
use crate::body::Body;
use crate::conn::{Conn, Wait};
use crate::metrics::{Hist, TubeCounters};
use crate::table::JobTable;
use crate::tube::{Tube, TubeSessions, Tubes};
use crate::{Engine, ExtCounts, Job, JobState, Policy, Queue, Sessions};

const VERSION: u8 = 1;

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    fn pairs(&mut self, s: &BTreeSet<(u64, u64)>) {
        self.len(s.len());
        for &(a, b) in s {
            self.u64(a);
            self.u64(b);
        }
    }
    fn ids(&mut self, r: &roaring::RoaringTreemap) {
        let mut b = Vec::with_capacity(r.serialized_size());
        r.serialize_into(&mut b).expect("writing to memory");
        self.bytes(&b);
    }
    fn hist(&mut self, h: &Hist) {
        for &b in &h.buckets {
            self.u64(b);
        }
        self.u64(h.count);
        self.u64(h.sum_ns);
    }
}

/// Why a snapshot could not be read.
fn bad() -> String {
    "engine snapshot: truncated or malformed".into()
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(bad());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, String> {
        Ok(self.u8()? != 0)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| bad())?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| bad())?,
        ))
    }
    /// A count of items at least `min` bytes each (so a corrupt count cannot allocate).
    fn len(&mut self, min: usize) -> Result<usize, String> {
        let n = usize::try_from(self.u64()?).map_err(|_| bad())?;
        if n.saturating_mul(min.max(1)) > self.0.len() {
            return Err(bad());
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&[u8], String> {
        let n = self.len(1)?;
        self.take(n)
    }
    fn str(&mut self) -> Result<Arc<str>, String> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map(Arc::from).map_err(|_| bad())
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, String> {
        Ok(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn pairs(&mut self) -> Result<BTreeSet<(u64, u64)>, String> {
        let n = self.len(16)?;
        (0..n).map(|_| Ok((self.u64()?, self.u64()?))).collect()
    }
    fn ids(&mut self) -> Result<roaring::RoaringTreemap, String> {
        let b = self.bytes()?;
        roaring::RoaringTreemap::deserialize_from(b).map_err(|_| bad())
    }
    fn hist(&mut self) -> Result<Hist, String> {
        let mut h = Hist::default();
        for b in &mut h.buckets {
            *b = self.u64()?;
        }
        h.count = self.u64()?;
        h.sum_ns = self.u64()?;
        Ok(h)
    }
}

/// The counters of `CmdCounts`, in a fixed order.
macro_rules! cmd_fields {
    ($m:ident) => {
        $m!(
            put,
            peek,
            peek_ready,
            peek_delayed,
            peek_buried,
            reserve,
            reserve_with_timeout,
            delete,
            release,
            use_,
            watch,
            ignore,
            bury,
            kick,
            touch,
            stats,
            stats_job,
            stats_tube,
            list_tubes,
            list_tube_used,
            list_tubes_watched,
            pause_tube,
            reserve_job,
            kick_job
        )
    };
}

const STATES: [JobState; 4] = [
    JobState::Ready,
    JobState::Reserved,
    JobState::Buried,
    JobState::Delayed,
];

fn put_job(e: &mut Enc, j: &Job) {
    e.u64(j.id);
    e.u64(j.created);
    e.u64(j.lsn);
    e.u64(j.deadline);
    e.u64(j.seq);
    for v in [j.reserves, j.timeouts, j.releases, j.buries, j.kicks, j.pri] {
        e.u32(v);
    }
    e.u32(j.tube);
    e.u32(j.delay);
    e.u32(j.ttr);
    e.u32(j.file);
    e.u32(j.heap_pos);
    e.u8(j.state as u8);
    e.bytes(j.body.as_slice());
}

fn get_job(d: &mut Dec) -> Result<Job, String> {
    let (id, created, lsn, deadline, seq) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?, d.u64()?);
    let mut c = [0u32; 6];
    for v in &mut c {
        *v = d.u32()?;
    }
    let (tube, delay, ttr, file, heap_pos) = (d.u32()?, d.u32()?, d.u32()?, d.u32()?, d.u32()?);
    let state = *STATES.get(d.u8()? as usize).ok_or_else(bad)?;
    let body = Body::from_bytes(Bytes::copy_from_slice(d.bytes()?));
    Ok(Job {
        id,
        created,
        lsn,
        deadline,
        seq,
        reserves: c[0],
        timeouts: c[1],
        releases: c[2],
        buries: c[3],
        kicks: c[4],
        pri: c[5],
        tube,
        delay,
        ttr,
        file,
        heap_pos,
        state,
        body,
    })
}

fn put_policy(e: &mut Enc, p: &Policy) {
    e.u32(p.max_reserves);
    match &p.on_exhaust {
        Exhaust::Bury => e.u8(0),
        Exhaust::Delete => e.u8(1),
        Exhaust::Tube(t) => {
            e.u8(2);
            e.bytes(t.as_bytes());
        }
    }
    match p.retry_backoff {
        Backoff::None => e.u8(0),
        Backoff::Fixed(s) => {
            e.u8(1);
            e.u32(s);
        }
        Backoff::Exp { base, cap } => {
            e.u8(2);
            e.u32(base);
            e.u32(cap);
        }
    }
    e.u64(p.max_ready);
}

fn get_policy(d: &mut Dec) -> Result<Policy, String> {
    let max_reserves = d.u32()?;
    let on_exhaust = match d.u8()? {
        0 => Exhaust::Bury,
        1 => Exhaust::Delete,
        2 => Exhaust::Tube(d.str()?.to_string()),
        _ => return Err(bad()),
    };
    let retry_backoff = match d.u8()? {
        0 => Backoff::None,
        1 => Backoff::Fixed(d.u32()?),
        2 => Backoff::Exp {
            base: d.u32()?,
            cap: d.u32()?,
        },
        _ => return Err(bad()),
    };
    Ok(Policy {
        max_reserves,
        on_exhaust,
        retry_backoff,
        max_ready: d.u64()?,
    })
}

fn put_tube(e: &mut Enc, t: &Tube) {
    e.bytes(t.name.as_bytes());
    e.len(t.list_pos);
    e.len(t.ready.len());
    for &s in &t.ready {
        e.u32(s);
    }
    let (q, empty) = t.ages.parts();
    e.len(q.len());
    for &(since, n) in q {
        e.u64(since);
        e.u32(n);
    }
    e.len(empty);
    e.pairs(&t.delayed);
    e.pairs(&t.buried);
    e.u64(t.urgent);
    e.u64(t.reserved);
    for ids in &t.ids {
        e.ids(ids);
    }
    e.u64(t.dead_jobs);
    let mut unique: Vec<_> = t.unique.iter().collect();
    unique.sort();
    e.len(unique.len());
    for (k, &id) in unique {
        e.bytes(k.as_bytes());
        e.u64(id);
    }
    match &t.policy {
        Some(p) => {
            e.u8(1);
            put_policy(e, p);
        }
        None => e.u8(0),
    }
    e.u64(t.sess.using);
    e.u64(t.sess.watching);
    e.pairs(&t.sess.waiters);
    match t.sess.candidate {
        Some((pri, id)) => {
            e.u8(1);
            e.u32(pri);
            e.u64(id);
        }
        None => e.u8(0),
    }
    e.u64(t.pause);
    e.opt_u64(t.unpause_at);
    e.u64(t.total_jobs);
    e.u64(t.cmd_delete);
    e.u64(t.cmd_pause);
    let c = &t.counters;
    e.hist(&c.queue_wait);
    e.hist(&c.reserve_to_delete);
    for v in [c.timeouts, c.buries, c.dead_lettered, c.retries_delayed] {
        e.u64(v);
    }
}

fn get_tube(d: &mut Dec) -> Result<Tube, String> {
    let name = d.str()?;
    let list_pos = d.len(0)?;
    let n = d.len(4)?;
    let ready = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>, _>>()?;
    let n = d.len(12)?;
    let q = (0..n)
        .map(|_| Ok((d.u64()?, d.u32()?)))
        .collect::<Result<VecDeque<_>, String>>()?;
    let ages = ReadyAges::from_parts(q, d.len(0)?);
    let (delayed, buried) = (d.pairs()?, d.pairs()?);
    let (urgent, reserved) = (d.u64()?, d.u64()?);
    let ids = [d.ids()?, d.ids()?, d.ids()?, d.ids()?];
    let dead_jobs = d.u64()?;
    let n = d.len(16)?;
    let mut unique = FxHashMap::default();
    for _ in 0..n {
        let k = d.str()?;
        unique.insert(k, d.u64()?);
    }
    let policy = if d.bool()? {
        Some(Box::new(get_policy(d)?))
    } else {
        None
    };
    let (using, watching, waiters) = (d.u64()?, d.u64()?, d.pairs()?);
    let candidate = if d.bool()? {
        Some((d.u32()?, d.u64()?))
    } else {
        None
    };
    let (pause, unpause_at) = (d.u64()?, d.opt_u64()?);
    let (total_jobs, cmd_delete, cmd_pause) = (d.u64()?, d.u64()?, d.u64()?);
    let counters = TubeCounters {
        queue_wait: d.hist()?,
        reserve_to_delete: d.hist()?,
        timeouts: d.u64()?,
        buries: d.u64()?,
        dead_lettered: d.u64()?,
        retries_delayed: d.u64()?,
    };
    Ok(Tube {
        name,
        list_pos,
        ready,
        ages,
        delayed,
        buried,
        urgent,
        reserved,
        ids,
        dead_jobs,
        unique,
        policy,
        sess: TubeSessions {
            using,
            watching,
            waiters,
            candidate,
        },
        pause,
        unpause_at,
        total_jobs,
        cmd_delete,
        cmd_pause,
        counters,
    })
}

fn put_conn(e: &mut Enc, c: &Conn) {
    e.u32(c.use_tube);
    e.len(c.watch.len());
    for &t in &c.watch {
        e.u32(t);
    }
    e.pairs(&c.reserved);
    match c.wait {
        Some(w) => {
            e.u8(1);
            e.u64(w.seq);
            e.opt_u64(w.timeout_at);
            e.opt_u64(w.timer);
            e.u32(w.batch);
        }
        None => e.u8(0),
    }
    e.u8(c.producer as u8);
    e.u8(c.worker as u8);
}

fn get_conn(d: &mut Dec) -> Result<Conn, String> {
    let use_tube = d.u32()?;
    let n = d.len(4)?;
    let watch = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>, _>>()?;
    let reserved = d.pairs()?;
    let wait = if d.bool()? {
        Some(Wait {
            seq: d.u64()?,
            timeout_at: d.opt_u64()?,
            timer: d.opt_u64()?,
            batch: d.u32()?,
        })
    } else {
        None
    };
    Ok(Conn {
        use_tube,
        watch,
        reserved,
        wait,
        producer: d.bool()?,
        worker: d.bool()?,
    })
}

fn put_names(e: &mut Enc, m: &FxHashMap<u64, Arc<str>>) {
    let mut v: Vec<_> = m.iter().collect();
    v.sort();
    e.len(v.len());
    for (&id, s) in v {
        e.u64(id);
        e.bytes(s.as_bytes());
    }
}

fn get_names(d: &mut Dec) -> Result<FxHashMap<u64, Arc<str>>, String> {
    let n = d.len(16)?;
    let mut m = FxHashMap::default();
    for _ in 0..n {
        let id = d.u64()?;
        m.insert(id, d.str()?);
    }
    Ok(m)
}

impl Engine {
    /// The engine's queue and session state as bytes (see the module documentation):
    /// [`Engine::restore_snapshot`] on any engine gives one that behaves exactly as this
    /// one. O(jobs + tubes + connections); bodies are copied.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u8(VERSION);
        e.u64(self.now);
        let q = &self.q;
        let (slots, free, dead) = q.jobs.parts();
        e.len(slots.len());
        for s in slots {
            match s {
                Some(j) => {
                    e.u8(1);
                    put_job(&mut e, j);
                }
                None => e.u8(0),
            }
        }
        e.len(free.len());
        for &f in free {
            e.u32(f);
        }
        e.ids(dead);
        let (slots, free, list) = q.tubes.parts();
        e.len(slots.len());
        for s in slots {
            match s {
                Some(t) => {
                    e.u8(1);
                    put_tube(&mut e, t);
                }
                None => e.u8(0),
            }
        }
        for ids in [free, list] {
            e.len(ids.len());
            for &t in ids {
                e.u32(t);
            }
        }
        for v in [q.next_job, q.id_limit, q.seq] {
            e.u64(v);
        }
        e.pairs(&q.delayed);
        e.len(q.reserved.len());
        for &(d, id, c) in &q.reserved {
            e.u64(d);
            e.u64(id);
            e.u64(c);
        }
        e.len(q.paused.len());
        for &(at, t) in &q.paused {
            e.u64(at);
            e.u32(t);
        }
        for v in [
            q.ready,
            q.urgent,
            q.buried,
            q.job_timeouts,
            q.total_jobs,
            q.body_bytes,
            q.delayed_dead,
        ] {
            e.u64(v);
        }
        e.len(q.graveyard.len());
        for g in &q.graveyard {
            e.pairs(g);
        }
        put_names(&mut e, &q.keys);
        put_names(&mut e, &q.origins);

        let s = &self.s;
        let mut conns: Vec<_> = s.conns.iter().collect();
        conns.sort_by_key(|(id, _)| **id);
        e.len(conns.len());
        for (&id, c) in conns {
            e.u64(id);
            put_conn(&mut e, c);
        }
        e.u64(s.next_conn);
        e.u64(s.wait_seq);
        e.pairs(&s.wait_timers);
        e.len(s.candidates.len());
        for &(pri, id, t) in &s.candidates {
            e.u32(pri);
            e.u64(id);
            e.u32(t);
        }
        macro_rules! put_cmd {
            ($($f:ident),*) => { $( e.u64(s.cmd.$f); )* };
        }
        cmd_fields!(put_cmd);
        for v in [s.total_connections, s.producers, s.workers, s.waiting] {
            e.u64(v);
        }
        let x = &s.ext;
        for v in [
            x.flush_tube,
            x.reserve_batch,
            x.list_jobs,
            x.put_unique,
            x.reprioritize,
            x.move_job,
            x.tube_policy,
        ] {
            e.u64(v);
        }
        e.0
    }

    /// Replaces the queue and session state with a snapshot's (see [`Engine::snapshot`]);
    /// node-local settings stay. On malformed bytes nothing changes and the error says so.
    pub fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut d = Dec(bytes);
        if d.u8()? != VERSION {
            return Err("engine snapshot: unknown version".into());
        }
        let now = d.u64()?;
        let n = d.len(1)?;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push(if d.bool()? {
                Some(get_job(&mut d)?)
            } else {
                None
            });
        }
        let n = d.len(4)?;
        let free = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>, _>>()?;
        let jobs = JobTable::from_parts(slots, free, d.ids()?);
        let n = d.len(1)?;
        let mut tslots = Vec::with_capacity(n);
        for _ in 0..n {
            tslots.push(if d.bool()? {
                Some(get_tube(&mut d)?)
            } else {
                None
            });
        }
        let mut lists = [Vec::new(), Vec::new()];
        for l in &mut lists {
            let n = d.len(4)?;
            *l = (0..n).map(|_| d.u32()).collect::<Result<Vec<_>, _>>()?;
        }
        let [tfree, tlist] = lists;
        if tlist
            .iter()
            .any(|&t| tslots.get(t as usize).is_none_or(|s| s.is_none()))
        {
            return Err(bad());
        }
        let tubes = Tubes::from_parts(tslots, tfree, tlist);
        let (next_job, id_limit, seq) = (d.u64()?, d.u64()?, d.u64()?);
        let delayed = d.pairs()?;
        let n = d.len(24)?;
        let reserved = (0..n)
            .map(|_| Ok((d.u64()?, d.u64()?, d.u64()?)))
            .collect::<Result<BTreeSet<_>, String>>()?;
        let n = d.len(12)?;
        let paused = (0..n)
            .map(|_| Ok((d.u64()?, d.u32()?)))
            .collect::<Result<BTreeSet<_>, String>>()?;
        let mut c = [0u64; 7];
        for v in &mut c {
            *v = d.u64()?;
        }
        let n = d.len(8)?;
        let graveyard = (0..n).map(|_| d.pairs()).collect::<Result<Vec<_>, _>>()?;
        let (keys, origins) = (get_names(&mut d)?, get_names(&mut d)?);
        let q = Queue {
            jobs,
            tubes,
            next_job,
            id_limit,
            seq,
            delayed,
            reserved,
            paused,
            ready: c[0],
            urgent: c[1],
            buried: c[2],
            job_timeouts: c[3],
            total_jobs: c[4],
            body_bytes: c[5],
            delayed_dead: c[6],
            graveyard,
            keys,
            origins,
        };

        let n = d.len(8)?;
        let mut conns = FxHashMap::default();
        for _ in 0..n {
            let id = d.u64()?;
            conns.insert(id, get_conn(&mut d)?);
        }
        let (next_conn, wait_seq, wait_timers) = (d.u64()?, d.u64()?, d.pairs()?);
        let n = d.len(16)?;
        let candidates = (0..n)
            .map(|_| Ok((d.u32()?, d.u64()?, d.u32()?)))
            .collect::<Result<BTreeSet<_>, String>>()?;
        let mut cmd = CmdCounts::default();
        macro_rules! get_cmd {
            ($($f:ident),*) => { $( cmd.$f = d.u64()?; )* };
        }
        cmd_fields!(get_cmd);
        let (total_connections, producers, workers, waiting) =
            (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
        let mut x = [0u64; 7];
        for v in &mut x {
            *v = d.u64()?;
        }
        if !d.0.is_empty() {
            return Err(bad());
        }
        let s = Sessions {
            conns,
            next_conn,
            wait_seq,
            wait_timers,
            candidates,
            cmd,
            total_connections,
            producers,
            workers,
            waiting,
            ext: ExtCounts {
                flush_tube: x[0],
                reserve_batch: x[1],
                list_jobs: x[2],
                put_unique: x[3],
                reprioritize: x[4],
                move_job: x[5],
                tube_policy: x[6],
            },
        };
        self.q = q;
        self.s = s;
        self.now = now;
        Ok(())
    }
}
