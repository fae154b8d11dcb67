//! Crash test for sproutd's binlog under load from many clients sharing tubes: sproutd
//! (`-b DIR -s 16384`, so segments rotate and compaction runs) is SIGKILLed at a random
//! moment of each cycle and restarted on the same directory, and what every client saw or
//! had acknowledged before the kill is checked against what comes back.
//!
//! Producers put into three shared tubes (random priorities, some delays, pipelined
//! batches, a few large bodies); workers watching all of them reserve and delete, release
//! (with and without a delay), bury or touch what they get; one more client kicks (`kick N`
//! on a tube, `kick-job ID`), deletes buried jobs and peeks (`peek ID`, `peek-ready`,
//! `peek-delayed`, `peek-buried`). Because a worker can get a job before its producer has
//! its `INSERTED`, this catches a server that reveals a job before the job's record is in
//! the log: a kill then erases a job a worker already started on, and the next `put` may
//! be answered with that job's id.
//!
//! A shared ledger keeps, per job id, the body put under it, when clients first saw it and
//! every change sent for it, with two stamps from one global counter: one taken before the
//! request was written, one after its reply was read. A change A certainly reached the
//! server before change B when A's reply came before B was sent; the changes no
//! acknowledged later change certainly follows are the ones that may have been the job's
//! last, and the job's state after the restart must be one they allow. Unanswered changes
//! never rule anything out. After each restart, the test fails on:
//!
//! 1. a job some client saw (RESERVED / FOUND) or had acknowledged (INSERTED) that is gone,
//!    unless a delete of it was acknowledged or in flight;
//! 2. an id reused: `INSERTED` with an id already seen or acknowledged (in any cycle, the
//!    verification probes included), or a job seen with the body of another id;
//! 3. an acknowledged change lost: a job back after its `DELETED`, or in a state its last
//!    acknowledged changes do not allow (reserved comes back ready, delayed may have become
//!    ready, buried stays buried unless a kick may have reached it). A RESERVED counts as
//!    a change here: a job a worker got after a `kick N` moved it must not come back
//!    buried or delayed;
//! 4. a job whose body was never put.
//!
//! Puts whose `INSERTED` never came may or may not be there after the restart; those that
//! are are adopted (found by counting the jobs and scanning the ids the ledger does not
//! know, from the previous probe's id on), the others must never show up later.
//!
//! `SPROUT_CRASH_CYCLES=N` sets the cycles per test (default 30), `SPROUT_CRASH_SEED=S`
//! replays a seed's random choices (the kill moments still depend on timing), and
//! `SPROUT_CRASH_SIGNAL=TERM` stops the server with SIGTERM instead (a graceful shutdown
//! writes and syncs everything: a control run in which no check may fail, whatever the
//! server's ordering of replies and log writes). `SPROUT_CRASH_BIN=PATH` runs another
//! server that takes the same flags (`-l -p -b -s -f`) in sproutd's place, e.g. beanstalkd
//! for comparison (Debian's beanstalkd 1.12 fails it: with `-s 16384` it loses acknowledged
//! jobs and garbles bodies across SIGKILL). `scripts/crash-test` wraps the long run.
//!
//! The kill comes at a random moment 0.3-1.5 s into each cycle's load; in half the cycles
//! (chosen at random) that moment only arms a trap, and the kill is sent by the first
//! client that then sees a job whose put is not answered yet, right after it recorded the
//! sighting (or by the test 300 ms later if none does). A server that reveals jobs before
//! their records are in the log loses one of them almost every time; a correct one has
//! nothing to lose then.
//!
//! Nothing waits by sleeping: client threads block on replies (with timeouts), producers
//! wait for room in the ledger on a condition variable with a bounded timeout, the trap is
//! polled with a deadline, and the only sleep is the random time before the kill, which is
//! what the test is about.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::*;

/// The shared tubes: every producer may put into each, every worker watches all.
const TUBES: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
/// The verification's own put (it learns the next id) goes here, watched by nobody.
const PROBE_TUBE: &str = "crash-probe";
/// Stands for the probe tube in `Job::tube`.
const PROBE: usize = usize::MAX;
const PRODUCERS: usize = 3;
const WORKERS: usize = 4;
/// Long enough that no reservation times out within a cycle.
const TTR: u32 = 120;
/// Producers wait while this many jobs are live (verification stays quick).
const LIVE_MAX: usize = 300;
/// Violation messages kept for the report (all are counted).
const MAX_MESSAGES: usize = 40;
/// The delays (seconds) of the puts that have one (15%).
const PUT_DELAYS: [u32; 3] = [1, 2, 3];

/// The states a job may show after a restart, as bits.
const READY: u8 = 1;
const DELAYED: u8 = 2;
const BURIED: u8 = 4;

fn state_bit(s: &str) -> Option<u8> {
    match s {
        "ready" => Some(READY),
        "delayed" => Some(DELAYED),
        "buried" => Some(BURIED),
        _ => None,
    }
}

fn states(m: u8) -> String {
    let v: Vec<&str> = [(READY, "ready"), (DELAYED, "delayed"), (BURIED, "buried")]
        .iter()
        .filter(|(b, _)| m & b != 0)
        .map(|&(_, n)| n)
        .collect();
    if v.is_empty() {
        "nothing".to_string()
    } else {
        v.join("|")
    }
}

// ---------------------------------------------------------------------------------------
// Stamps, bodies
// ---------------------------------------------------------------------------------------

/// One counter for every client of every test: a stamp taken after reading a reply is
/// smaller than one taken before a later request is written, whatever the threads.
static CLOCK: AtomicU64 = AtomicU64::new(1);

fn stamp() -> u64 {
    CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// What a body says about where it comes from: its tube, producer and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    tube: u8,
    producer: u8,
    seq: u32,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}/p{}/{}",
            TUBES[self.tube as usize], self.producer, self.seq
        )
    }
}

/// `crash <tube> p<producer> n<seq>|` and then `len` bytes in all of a filler with NULs,
/// CRs, LFs and high bytes, different for every key.
fn job_body(k: Key, len: usize) -> Vec<u8> {
    let mut b = format!("crash {} p{} n{}|", k.tube, k.producer, k.seq).into_bytes();
    let mut x = (u64::from(k.seq) << 16 | u64::from(k.producer) << 8 | u64::from(k.tube))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(match x % 8 {
            0 => 0,
            1 => b'\r',
            2 => b'\n',
            3 => 0xfe,
            _ => b'a' + (x % 26) as u8,
        });
    }
    b
}

fn parse_key(b: &[u8]) -> Option<Key> {
    let end = b.iter().position(|&c| c == b'|')?;
    let s = std::str::from_utf8(&b[..end]).ok()?;
    let mut f = s.strip_prefix("crash ")?.split(' ');
    let k = Key {
        tube: f.next()?.parse().ok()?,
        producer: f.next()?.strip_prefix('p')?.parse().ok()?,
        seq: f.next()?.strip_prefix('n')?.parse().ok()?,
    };
    (f.next().is_none() && (k.tube as usize) < TUBES.len()).then_some(k)
}

/// The start of a body, for messages.
fn brief(b: &[u8]) -> String {
    let s = show(&b[..b.len().min(48)]);
    if b.len() > 48 {
        format!("{s}... ({} B)", b.len())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// The ledger
// ---------------------------------------------------------------------------------------

/// A change to a job (or what a verification found), as sent by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put {
        delayed: bool,
    },
    Reserve,
    Release {
        delayed: bool,
    },
    Bury,
    KickJob,
    Delete,
    /// The state a verification found (send and ack: the verification's stamp).
    Found(u8),
}

impl Kind {
    /// The states the job may show after a restart if this was the last change to it
    /// that reached the log; None: gone.
    fn after_restart(self) -> Option<u8> {
        Some(match self {
            Kind::Put { delayed: false } | Kind::Release { delayed: false } => READY,
            Kind::Put { delayed: true } | Kind::Release { delayed: true } => READY | DELAYED,
            // Reserved jobs come back ready.
            Kind::Reserve | Kind::KickJob => READY,
            Kind::Bury => BURIED,
            Kind::Delete => return None,
            Kind::Found(m) => m,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    /// Taken before the request was written.
    send: u64,
    /// Taken after its reply was read; None: no reply came (the server died).
    ack: Option<u64>,
    /// The reply said it changed nothing (NOT_FOUND).
    void: bool,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let k = match self.kind {
            Kind::Put { delayed } => format!("put{}", if delayed { "(delayed)" } else { "" }),
            Kind::Reserve => "reserve".into(),
            Kind::Release { delayed } => {
                format!("release{}", if delayed { "(delay 1)" } else { "" })
            }
            Kind::Bury => "bury".into(),
            Kind::KickJob => "kick-job".into(),
            Kind::Delete => "delete".into(),
            Kind::Found(m) => format!("found {} at a restart", states(m)),
        };
        match self.ack {
            Some(a) => write!(f, "{k} [{}..{a}]", self.send),
            None => write!(f, "{k} [{}..unanswered]", self.send),
        }
    }
}

/// A put as its producer sent it.
struct PutRec {
    body: Vec<u8>,
    tube: usize,
    delayed: bool,
    send: u64,
    /// When INSERTED came.
    ack: Option<u64>,
    /// The job's id, from INSERTED, from the first client that saw it, or from the
    /// verification that adopted it.
    id: Option<u64>,
    /// Unanswered, and not there after this cycle's restart: it must never show up.
    absent_after: Option<usize>,
}

/// A `kick N` on a tube (the ledger cannot tell which jobs it moved).
struct TubeKick {
    tube: usize,
    bound: u64,
    send: u64,
    ack: Option<u64>,
    kicked: u64,
}

struct Job {
    /// None: a verification probe.
    key: Option<Key>,
    tube: usize,
    /// Since the last verification (which replaces them with what it found).
    ops: Vec<Op>,
    /// The first sighting (RESERVED or FOUND): the stamp after its reply was read, and how.
    seen: Option<(u64, &'static str)>,
    /// Counted in the figures already.
    seen_counted: bool,
    /// Gone for good since this cycle's restart.
    gone: Option<usize>,
    /// The cycle in which the ledger learned the id.
    cycle: usize,
}

impl Job {
    fn name(&self) -> String {
        match self.key {
            Some(k) => k.to_string(),
            None => "a verification probe".to_string(),
        }
    }

    /// The job for an id-reuse message: what it was, since when, its last known changes.
    fn describe(&self) -> String {
        format!(
            "{} (known since cycle {}{}; its changes: {})",
            self.name(),
            self.cycle,
            match self.gone {
                Some(g) => format!(", gone since cycle {g}'s restart"),
                None => String::new(),
            },
            self.history()
        )
    }

    fn history(&self) -> String {
        let v: Vec<String> = self
            .ops
            .iter()
            .filter(|o| !o.void)
            .map(|o| o.to_string())
            .collect();
        v.join(", ")
    }
}

#[derive(Default)]
struct Figures {
    cycles: usize,
    puts_sent: u64,
    inserted: u64,
    unanswered_found: u64,
    unanswered_absent: u64,
    reveals: u64,
    seen: u64,
    seen_early: u64,
    seen_early_lost: u64,
    seen_lost: u64,
    acked_lost: u64,
    ids_reused: u64,
    acked_changes: u64,
    deletes: u64,
    came_back: u64,
    wrong_state: u64,
    never_put: u64,
    kicks: u64,
    kicked: u64,
    trapped: u64,
    other: u64,
}

impl Figures {
    fn failures(&self) -> u64 {
        self.seen_lost
            + self.acked_lost
            + self.ids_reused
            + self.came_back
            + self.wrong_state
            + self.never_put
            + self.other
    }

    fn report(&self, name: &str, t: Duration) -> String {
        format!(
            "crash test {name}: {} cycles in {:.1} s ({} kills right after a client saw a job \
             whose put was not answered); {} puts sent, {} answered INSERTED, \
             {} unanswered ones there after the restart, {} not; {} reveals (RESERVED/FOUND) \
             of {} jobs, {} of them seen before their put was answered ({} of those lost); \
             {} acknowledged changes ({} deletes, {} tube kicks moving {} jobs)\n\
             seen-then-lost {} (must be 0), acknowledged-then-lost {} (must be 0), ids \
             reused {} (must be 0), deleted-then-back {} (must be 0), states not allowed {} \
             (must be 0), bodies never put {} (must be 0), other protocol errors {} (must be 0)",
            self.cycles,
            t.as_secs_f64(),
            self.trapped,
            self.puts_sent,
            self.inserted,
            self.unanswered_found,
            self.unanswered_absent,
            self.reveals,
            self.seen,
            self.seen_early,
            self.seen_early_lost,
            self.acked_changes,
            self.deletes,
            self.kicks,
            self.kicked,
            self.seen_lost,
            self.acked_lost,
            self.ids_reused,
            self.came_back,
            self.wrong_state,
            self.never_put,
            self.other,
        )
    }
}

/// What a verification expects of one job.
struct Expect {
    /// A delete of it was acknowledged.
    must_be_gone: bool,
    /// A delete of it was in flight.
    may_be_gone: bool,
    /// The states it may show if there.
    states: u8,
}

#[derive(Default)]
struct Ledger {
    cycle: usize,
    jobs: HashMap<u64, Job>,
    puts: HashMap<Key, PutRec>,
    /// This cycle's `kick N`s.
    kicks: Vec<TubeKick>,
    /// Jobs no acknowledged delete or verification has removed.
    live: BTreeSet<u64>,
    /// Deleted (acknowledged) since the last verification.
    deleted: Vec<u64>,
    /// Gone for good, checked again now and then.
    gone: Vec<u64>,
    /// Probably buried (a hint for kick-job and delete).
    buried: BTreeSet<u64>,
    max_id: u64,
    next_seq: [u32; PRODUCERS],
    fig: Figures,
    messages: Vec<String>,
}

impl Ledger {
    fn violation(&mut self, msg: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(format!("cycle {}: {msg}", self.cycle));
        }
    }

    fn learn(&mut self, id: u64, key: Option<Key>, tube: usize, ops: Vec<Op>) {
        self.jobs.insert(
            id,
            Job {
                key,
                tube,
                ops,
                seen: None,
                seen_counted: false,
                gone: None,
                cycle: self.cycle,
            },
        );
        self.live.insert(id);
        self.max_id = self.max_id.max(id);
    }

    /// The put `key` was answered `INSERTED id`.
    fn inserted(&mut self, key: Key, id: u64, ack: u64) {
        self.fig.inserted += 1;
        self.fig.acked_changes += 1;
        if let Err(msg) = self.check_inserted(key, id, ack) {
            self.fig.ids_reused += 1;
            self.violation(msg);
        }
    }

    fn check_inserted(&mut self, key: Key, id: u64, ack: u64) -> Result<(), String> {
        let p = self
            .puts
            .get_mut(&key)
            .expect("put registered before it was sent");
        p.ack = Some(ack);
        if let Some(other) = p.id.filter(|&o| o != id) {
            return Err(format!(
                "INSERTED {id} for {key}, whose job a client had seen as {other}"
            ));
        }
        p.id = Some(id);
        let op = Op {
            kind: Kind::Put { delayed: p.delayed },
            send: p.send,
            ack: Some(ack),
            void: false,
        };
        let tube = p.tube;
        match self.jobs.get_mut(&id) {
            None => self.learn(id, Some(key), tube, vec![op]),
            // A client saw it before this reply came.
            Some(j) if j.key == Some(key) => {
                for o in &mut j.ops {
                    if matches!(o.kind, Kind::Put { .. }) {
                        o.ack = Some(ack);
                    }
                }
            }
            Some(j) => {
                return Err(format!(
                    "id reused: INSERTED {id} for {key}, but {id} is {}",
                    j.describe()
                ));
            }
        }
        Ok(())
    }

    /// A client got job `id` with `body` (RESERVED or FOUND): it exists, and that must
    /// survive any crash from now on. Ok(true): its put is not answered yet. Err: a
    /// violation (recorded).
    fn revealed(
        &mut self,
        id: u64,
        body: &[u8],
        how: &'static str,
        send: u64,
        ack: u64,
    ) -> Result<bool, ()> {
        self.fig.reveals += 1;
        self.check_reveal(id, body, how, send, ack)
            .map_err(|msg| self.violation(msg))
    }

    fn check_reveal(
        &mut self,
        id: u64,
        body: &[u8],
        how: &'static str,
        send: u64,
        ack: u64,
    ) -> Result<bool, String> {
        let key = parse_key(body);
        let Some(p) = key.and_then(|k| self.puts.get_mut(&k)) else {
            self.fig.never_put += 1;
            return Err(format!("{how} {id} with a body never put: {}", brief(body)));
        };
        let key = key.unwrap();
        if p.body != body {
            self.fig.never_put += 1;
            return Err(format!(
                "{how} {id}: the body differs from the one put as {key}: {}",
                brief(body)
            ));
        }
        if let Some(other) = p.id.filter(|&o| o != id) {
            self.fig.ids_reused += 1;
            return Err(format!(
                "{how} {id} carries the body of {key}, which is job {other}"
            ));
        }
        if let Some(c) = p.absent_after {
            self.fig.came_back += 1;
            return Err(format!(
                "{how} {id} carries the body of {key}, an unanswered put whose job was not \
                 there after cycle {c}'s restart"
            ));
        }
        p.id = Some(id);
        let early = p.ack.is_none();
        let op = Op {
            kind: Kind::Put { delayed: p.delayed },
            send: p.send,
            ack: p.ack,
            void: false,
        };
        let tube = p.tube;
        match self.jobs.get(&id) {
            None => self.learn(id, Some(key), tube, vec![op]),
            Some(j) if j.key != Some(key) => {
                self.fig.ids_reused += 1;
                return Err(format!(
                    "id reused: {how} {id} carries {key}, but {id} is {}",
                    j.describe()
                ));
            }
            Some(j) => {
                if let Some(g) = j.gone {
                    self.fig.came_back += 1;
                    return Err(format!(
                        "{how} {id} ({key}): gone since cycle {g}'s restart, it is back"
                    ));
                }
                let deleted = j
                    .ops
                    .iter()
                    .find(|o| o.kind == Kind::Delete && !o.void && o.ack.is_some_and(|a| a < send));
                if let Some(d) = deleted {
                    self.fig.came_back += 1;
                    return Err(format!(
                        "{how} {id} ({key}) [{send}..{ack}] after its {d} was answered DELETED"
                    ));
                }
            }
        }
        let j = self.jobs.get_mut(&id).unwrap();
        if j.seen.is_none_or(|(s, _)| ack < s) {
            j.seen = Some((ack, how));
        }
        Ok(early)
    }

    /// Registers a change about to be sent; returns its index for `settle`.
    fn sent(&mut self, id: u64, kind: Kind, send: u64) -> usize {
        let j = self
            .jobs
            .get_mut(&id)
            .expect("a change to a job the ledger knows");
        j.ops.push(Op {
            kind,
            send,
            ack: None,
            void: false,
        });
        j.ops.len() - 1
    }

    /// The reply to change `i` of job `id` came: it happened (or, `void`, changed nothing).
    fn settle(&mut self, id: u64, i: usize, ack: u64, void: bool) {
        let j = self.jobs.get_mut(&id).unwrap();
        let o = &mut j.ops[i];
        o.ack = Some(ack);
        o.void = void;
        if void {
            if matches!(o.kind, Kind::KickJob | Kind::Delete) {
                self.buried.remove(&id);
            }
            return;
        }
        self.fig.acked_changes += 1;
        match o.kind {
            Kind::Delete => {
                self.fig.deletes += 1;
                self.live.remove(&id);
                self.buried.remove(&id);
                self.deleted.push(id);
            }
            Kind::Bury => {
                self.buried.insert(id);
            }
            Kind::KickJob => {
                self.buried.remove(&id);
            }
            _ => {}
        }
    }

    /// What the changes since the last verification allow for job `id` after a restart.
    fn expect(&self, id: u64) -> Expect {
        let j = &self.jobs[&id];
        let ops: Vec<&Op> = j.ops.iter().filter(|o| !o.void).collect();
        // Some acknowledged change of the job was sent after `ack`: what came before was
        // not the job's last change.
        let followed = |ack: Option<u64>| {
            ack.is_some_and(|a| ops.iter().any(|o| o.ack.is_some() && o.send > a))
        };
        // Any acknowledged change came after the put (or the restart that found the job).
        let first = |o: &Op| {
            matches!(o.kind, Kind::Put { .. } | Kind::Found(_))
                && ops.iter().any(|o2| {
                    o2.ack.is_some() && !matches!(o2.kind, Kind::Put { .. } | Kind::Found(_))
                })
        };
        let kicks: Vec<&TubeKick> = self.kicks.iter().filter(|k| k.tube == j.tube).collect();
        let mut e = Expect {
            must_be_gone: false,
            may_be_gone: false,
            states: 0,
        };
        for o in &ops {
            if o.kind == Kind::Delete && o.ack.is_some() {
                e.must_be_gone = true;
            }
            if followed(o.ack) || first(o) {
                continue;
            }
            // Buried by this change (or found buried at the last restart).
            if matches!(o.kind, Kind::Bury | Kind::Found(BURIED)) {
                // A `kick N` that moved fewer than N jobs moved every buried job of its
                // tube: one sent after this bury was answered ended it.
                let ended = kicks.iter().any(|k| {
                    k.ack.is_some() && k.kicked < k.bound && o.ack.is_some_and(|a| k.send > a)
                });
                // Any kick not over before the bury was sent may have moved the job to
                // ready (unless a change known to come later followed it).
                let maybe_kicked = kicks.iter().any(|k| {
                    (k.ack.is_none() || k.kicked > 0)
                        && k.ack.is_none_or(|a| a >= o.send)
                        && !followed(k.ack)
                });
                if maybe_kicked {
                    e.states |= READY;
                }
                if ended {
                    continue;
                }
            }
            match o.kind.after_restart() {
                Some(m) => e.states |= m,
                None => e.may_be_gone = true,
            }
        }
        e
    }
}

impl Ledger {
    /// The kicks of the job's tube since its first change this cycle (some of its moves
    /// the job's own history does not show), for messages.
    fn kicks_note(&self, id: u64) -> String {
        let j = &self.jobs[&id];
        let from = j
            .ops
            .iter()
            .filter(|o| !matches!(o.kind, Kind::Found(_)))
            .map(|o| o.send)
            .min()
            .unwrap_or(0);
        let v: Vec<String> = self
            .kicks
            .iter()
            .filter(|k| k.tube == j.tube && k.ack.is_none_or(|a| a > from))
            .map(|k| match k.ack {
                Some(a) => format!("kick {} [{}..{a}] KICKED {}", k.bound, k.send, k.kicked),
                None => format!("kick {} [{}..unanswered]", k.bound, k.send),
            })
            .collect();
        if v.is_empty() {
            String::new()
        } else {
            let n = v.len();
            let shown = v[n.saturating_sub(6)..].join(", ");
            format!("; the kicks of {} meanwhile: {shown}", tube_name(j.tube))
        }
    }
}

/// The trap's states: a client that sees a job whose put is not answered yet kills the
/// server at once if the trap is armed.
const IDLE: u8 = 0;
const ARMED: u8 = 1;
const FIRING: u8 = 2;
const FIRED: u8 = 3;

struct Shared {
    ledger: Mutex<Ledger>,
    /// Signalled when acknowledged deletes make room for producers.
    room: Condvar,
    /// Set once the cycle's server is dead.
    stop: AtomicBool,
    /// The cycle's server.
    pid: AtomicU32,
    trap: AtomicU8,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called right after a client saw a job whose put is not answered: the moment a
    /// server that reveals jobs before they are in the log loses one to a kill.
    fn spring(&self) {
        if self
            .trap
            .compare_exchange(ARMED, FIRING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            // SAFETY: a plain syscall. The main thread reaps the server only once the
            // trap is FIRED, so the pid cannot have been reused.
            unsafe {
                libc::kill(
                    self.pid.load(Ordering::SeqCst) as libc::pid_t,
                    libc::SIGKILL,
                )
            };
            self.trap.store(FIRED, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// A reply that carries a job (`<word> <id> <bytes>` and the data), or another line.
enum JobReply {
    Job(u64, Vec<u8>),
    Other(String),
}

struct Client {
    c: Conn,
    sh: Arc<Shared>,
    rng: Rng,
    who: String,
}

impl Client {
    fn connect(sh: &Arc<Shared>, addr: &Addr, seed: u64, who: String) -> io::Result<Client> {
        Ok(Client {
            c: Conn::try_connect(addr)?,
            sh: sh.clone(),
            rng: Rng::new(seed),
            who,
        })
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.sh.ledger()
    }

    fn cmd(&mut self, line: &str) -> io::Result<String> {
        self.c.try_send(format!("{line}\r\n").as_bytes())?;
        self.c.try_line()
    }

    /// Records a protocol violation; the error stops this client.
    fn broken(&self, msg: String) -> io::Error {
        let mut l = self.ledger();
        l.fig.other += 1;
        l.violation(format!("{}: {msg}", self.who));
        io::Error::other("protocol violation")
    }

    fn expect_line(&mut self, line: &str, want: &str) -> io::Result<()> {
        let r = self.cmd(line)?;
        if r != want {
            return Err(self.broken(format!("{line}: expected {want}, got {r:?}")));
        }
        Ok(())
    }

    /// Reads the data of a `<word> <id> <bytes>` reply whose line is `head`.
    fn job_reply(&mut self, head: String, word: &str) -> io::Result<JobReply> {
        let f: Vec<&str> = head.split(' ').collect();
        let parsed = match f[..] {
            [w, id, n] if w == word => id.parse::<u64>().ok().zip(n.parse::<usize>().ok()),
            _ => None,
        };
        let Some((id, n)) = parsed else {
            return Ok(JobReply::Other(head));
        };
        let mut d = self.c.try_exact(n + 2)?;
        if !d.ends_with(b"\r\n") {
            return Err(self.broken(format!("{head}: data not CRLF-terminated")));
        }
        d.truncate(n);
        Ok(JobReply::Job(id, d))
    }

    /// Sends a change to job `id` registered as `kind` (None: not a change the ledger
    /// follows); `want` is the reply that means done, `void` one that means "changed
    /// nothing". Returns whether it was done.
    fn change(
        &mut self,
        id: u64,
        line: &str,
        kind: Option<Kind>,
        want: &str,
        void: Option<&str>,
    ) -> io::Result<bool> {
        let send = stamp();
        let i = kind.map(|k| self.ledger().sent(id, k, send));
        let r = self.cmd(line)?;
        let ack = stamp();
        let done = r == want;
        if !done && void != Some(r.as_str()) {
            return Err(self.broken(format!("{line}: expected {want}, got {r:?}")));
        }
        let mut l = self.ledger();
        match i {
            Some(i) => l.settle(id, i, ack, !done),
            None if done => l.fig.acked_changes += 1,
            None => {}
        }
        if done && kind == Some(Kind::Delete) {
            self.sh.room.notify_all();
        }
        Ok(done)
    }

    /// `line` (a peek) answered FOUND or NOT_FOUND; a job found is revealed.
    fn peek(&mut self, line: &str, want_id: Option<u64>) -> io::Result<()> {
        let send = stamp();
        let head = self.cmd(line)?;
        if head == "NOT_FOUND" {
            return Ok(());
        }
        match self.job_reply(head, "FOUND")? {
            JobReply::Job(id, body) => {
                let ack = stamp();
                if want_id.is_some_and(|w| w != id) {
                    return Err(self.broken(format!("{line}: FOUND {id}")));
                }
                let r = self.ledger().revealed(id, &body, "FOUND", send, ack);
                match r {
                    Ok(early) => {
                        if early {
                            self.sh.spring();
                        }
                        Ok(())
                    }
                    Err(()) => Err(io::Error::other("violation")),
                }
            }
            JobReply::Other(h) => Err(self.broken(format!("{line}: got {h:?}"))),
        }
    }
}

/// Puts batches of 1-3 jobs (pipelined) into the shared tubes until the server dies.
fn producer(mut cl: Client, p: usize) -> io::Result<()> {
    let mut tube = p % TUBES.len();
    let sh = cl.sh.clone();
    cl.expect_line(
        &format!("use {}", TUBES[tube]),
        &format!("USING {}", TUBES[tube]),
    )?;
    loop {
        let l = sh.ledger();
        if l.live.len() >= LIVE_MAX {
            // Wait for the workers' deletes (bounded: the server may be gone).
            let full = |l: &mut Ledger| l.live.len() >= LIVE_MAX && !sh.stop.load(Ordering::SeqCst);
            let (l, _) = sh
                .room
                .wait_timeout_while(l, Duration::from_millis(100), full)
                .unwrap_or_else(PoisonError::into_inner);
            drop(l);
            if sh.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            continue;
        }
        drop(l);
        if cl.rng.below(5) == 0 {
            tube = cl.rng.below(TUBES.len() as u64) as usize;
            let t = TUBES[tube];
            cl.expect_line(&format!("use {t}"), &format!("USING {t}"))?;
        }
        let mut specs = Vec::new();
        for _ in 0..1 + cl.rng.below(3) {
            let len = if cl.rng.below(30) == 0 {
                4800 + cl.rng.below(400) as usize
            } else {
                24 + cl.rng.below(300) as usize
            };
            let pri = match cl.rng.below(4) {
                0 => 0,
                1 => cl.rng.next() as u32,
                _ => cl.rng.below(1000) as u32,
            };
            let delay = if cl.rng.below(100) < 15 {
                PUT_DELAYS[cl.rng.below(PUT_DELAYS.len() as u64) as usize]
            } else {
                0
            };
            specs.push((len, pri, delay));
        }
        let mut wire = Vec::new();
        let mut keys = Vec::new();
        let send = stamp();
        {
            let mut l = sh.ledger();
            for (len, pri, delay) in specs {
                let seq = l.next_seq[p];
                l.next_seq[p] += 1;
                let key = Key {
                    tube: tube as u8,
                    producer: p as u8,
                    seq,
                };
                let body = job_body(key, len);
                let head = format!("put {pri} {delay} {TTR} {}\r\n", body.len());
                wire.extend_from_slice(head.as_bytes());
                wire.extend_from_slice(&body);
                wire.extend_from_slice(b"\r\n");
                l.puts.insert(
                    key,
                    PutRec {
                        body,
                        tube,
                        delayed: delay > 0,
                        send,
                        ack: None,
                        id: None,
                        absent_after: None,
                    },
                );
                l.fig.puts_sent += 1;
                keys.push(key);
            }
        }
        cl.c.try_send(&wire)?;
        for key in keys {
            let r = cl.c.try_line()?;
            let ack = stamp();
            let Some(id) = r.strip_prefix("INSERTED ").and_then(|i| i.parse().ok()) else {
                return Err(cl.broken(format!("put {key}: got {r:?}")));
            };
            sh.ledger().inserted(key, id, ack);
        }
    }
}

/// Reserves from every shared tube and deletes, releases, buries or touches what it gets,
/// until the server dies.
fn worker(mut cl: Client) -> io::Result<()> {
    for t in TUBES {
        let r = cl.cmd(&format!("watch {t}"))?;
        if !r.starts_with("WATCHING ") {
            return Err(cl.broken(format!("watch {t}: got {r:?}")));
        }
    }
    cl.expect_line("ignore default", &format!("WATCHING {}", TUBES.len()))?;
    loop {
        let send = stamp();
        let head = cl.cmd("reserve-with-timeout 1")?;
        if head == "TIMED_OUT" {
            continue;
        }
        let (id, body) = match cl.job_reply(head, "RESERVED")? {
            JobReply::Job(id, body) => (id, body),
            JobReply::Other(h) => return Err(cl.broken(format!("reserve: got {h:?}"))),
        };
        let ack = stamp();
        {
            let mut l = cl.ledger();
            let Ok(early) = l.revealed(id, &body, "RESERVED", send, ack) else {
                return Err(io::Error::other("violation"));
            };
            let i = l.sent(id, Kind::Reserve, send);
            l.settle(id, i, ack, false);
            l.buried.remove(&id);
            if early {
                cl.sh.spring();
            }
        }
        if cl.rng.below(10) == 0 {
            cl.change(id, &format!("touch {id}"), None, "TOUCHED", None)?;
        }
        let pri = cl.rng.below(1000);
        let (line, kind, want) = match cl.rng.below(100) {
            0..50 => (format!("delete {id}"), Kind::Delete, "DELETED"),
            50..68 => (
                format!("release {id} {pri} 0"),
                Kind::Release { delayed: false },
                "RELEASED",
            ),
            68..80 => (
                format!("release {id} {pri} 1"),
                Kind::Release { delayed: true },
                "RELEASED",
            ),
            _ => (format!("bury {id} {pri}"), Kind::Bury, "BURIED"),
        };
        cl.change(id, &line, Some(kind), want, None)?;
    }
}

/// A job the ledger thinks buried (or any live one), picked at random.
fn pick(cl: &mut Client, buried: bool) -> Option<u64> {
    let x = cl.rng.next();
    let l = cl.ledger();
    let set = if buried { &l.buried } else { &l.live };
    let (lo, hi) = (*set.first()?, *set.last()?);
    set.range(lo + x % (hi - lo + 1)..).next().copied()
}

/// Kicks (tubes and single jobs), deletes buried jobs and peeks, until the server dies.
fn kicker(mut cl: Client) -> io::Result<()> {
    let mut tube = 0;
    cl.expect_line(&format!("use {}", TUBES[0]), &format!("USING {}", TUBES[0]))?;
    loop {
        if cl.rng.below(4) == 0 {
            tube = cl.rng.below(TUBES.len() as u64) as usize;
            let t = TUBES[tube];
            cl.expect_line(&format!("use {t}"), &format!("USING {t}"))?;
        }
        match cl.rng.below(100) {
            0..20 => {
                let bound = [1, 2, 1000][cl.rng.below(3) as usize];
                let send = stamp();
                let i = {
                    let mut l = cl.ledger();
                    l.kicks.push(TubeKick {
                        tube,
                        bound,
                        send,
                        ack: None,
                        kicked: 0,
                    });
                    l.kicks.len() - 1
                };
                let r = cl.cmd(&format!("kick {bound}"))?;
                let ack = stamp();
                let Some(n) = r
                    .strip_prefix("KICKED ")
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    return Err(cl.broken(format!("kick {bound}: got {r:?}")));
                };
                let mut l = cl.ledger();
                let kick = &mut l.kicks[i];
                kick.ack = Some(ack);
                kick.kicked = n;
                l.fig.kicks += 1;
                l.fig.kicked += n;
                l.fig.acked_changes += 1;
            }
            20..45 => {
                if let Some(id) = pick(&mut cl, true) {
                    let line = format!("kick-job {id}");
                    cl.change(id, &line, Some(Kind::KickJob), "KICKED", Some("NOT_FOUND"))?;
                }
            }
            45..50 => {
                if let Some(id) = pick(&mut cl, true) {
                    let line = format!("delete {id}");
                    cl.change(id, &line, Some(Kind::Delete), "DELETED", Some("NOT_FOUND"))?;
                }
            }
            50..70 => {
                if let Some(id) = pick(&mut cl, false) {
                    cl.peek(&format!("peek {id}"), Some(id))?;
                }
            }
            70..78 => {
                // Just past the newest id known: often a put not answered yet.
                let ahead = 1 + cl.rng.below(3);
                let id = cl.ledger().max_id + ahead;
                cl.peek(&format!("peek {id}"), Some(id))?;
            }
            78..90 => cl.peek("peek-ready", None)?,
            90..95 => cl.peek("peek-delayed", None)?,
            _ => cl.peek("peek-buried", None)?,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Verification after a restart
// ---------------------------------------------------------------------------------------

/// `peek <id>`: the body, or None for NOT_FOUND.
fn peek(c: &mut Conn, id: u64) -> Option<Vec<u8>> {
    let head = c.cmd(&format!("peek {id}"));
    if head == "NOT_FOUND" {
        return None;
    }
    let (got, body) = c.job_data(&head, "FOUND");
    assert_eq!(got, id, "peek {id}");
    Some(body)
}

/// The job's state and tube, from stats-job.
fn state_and_tube(c: &mut Conn, id: u64) -> (String, String) {
    let mut s = c.yaml(&format!("stats-job {id}"));
    (s.remove("state").unwrap(), s.remove("tube").unwrap())
}

fn tube_name(t: usize) -> &'static str {
    if t == PROBE {
        PROBE_TUBE
    } else {
        TUBES[t]
    }
}

/// Checks every job the ledger knows against the restarted server `c`, adopts the
/// unanswered puts that are there, and leaves the ledger as the server is. Returns the
/// first id the next verification scans from (the probe's id + 1).
fn verify(c: &mut Conn, l: &mut Ledger, rng: &mut Rng, scan_from: u64) -> u64 {
    let cycle = l.cycle;
    let now = stamp();
    let mut found = 0i64;
    let mut ids: Vec<u64> = l.live.iter().copied().chain(l.deleted.drain(..)).collect();
    ids.sort_unstable();
    ids.dedup();
    for &id in &ids {
        let e = l.expect(id);
        let kicks = l.kicks_note(id);
        let j = l.jobs.get_mut(&id).unwrap();
        let put = j.key.map(|k| &l.puts[&k]);
        let early = match (j.seen, put) {
            (Some((s, _)), Some(p)) => p.ack.is_none_or(|a| s < a),
            _ => false,
        };
        if j.seen.is_some() && !j.seen_counted {
            j.seen_counted = true;
            l.fig.seen += 1;
            l.fig.seen_early += u64::from(early);
        }
        let Some(body) = peek(c, id) else {
            j.gone = Some(cycle);
            l.gone.push(id);
            l.live.remove(&id);
            l.buried.remove(&id);
            if e.must_be_gone || e.may_be_gone {
                continue;
            }
            let msg = match j.seen {
                Some((s, how)) => {
                    l.fig.seen_lost += 1;
                    l.fig.seen_early_lost += u64::from(early);
                    format!(
                        "job {id} ({}) was seen by a client ({how} at {s}{}) and is gone after \
                         the restart; its changes: {}",
                        j.name(),
                        if early {
                            ", before its put was answered"
                        } else {
                            ""
                        },
                        j.history()
                    )
                }
                None => {
                    l.fig.acked_lost += 1;
                    format!(
                        "job {id} ({}) was acknowledged (INSERTED) and is gone after the \
                         restart; its changes: {}",
                        j.name(),
                        j.history()
                    )
                }
            };
            l.violation(msg);
            continue;
        };
        found += 1;
        let (state, tube) = state_and_tube(c, id);
        let mut bad = Vec::new();
        if put.is_some_and(|p| p.body != body) {
            l.fig.never_put += 1;
            bad.push(format!(
                "its body differs from the one put: {}",
                brief(&body)
            ));
        }
        if tube != tube_name(j.tube) {
            l.fig.other += 1;
            bad.push(format!("it is in tube {tube}"));
        }
        if e.must_be_gone {
            l.fig.came_back += 1;
            bad.push("it is there although its DELETED was received".to_string());
        }
        let bit = state_bit(&state);
        if !e.must_be_gone && bit.is_none_or(|b| e.states & b == 0) {
            l.fig.wrong_state += 1;
            bad.push(format!(
                "it is {state}, and its changes allow {}",
                states(e.states)
            ));
        }
        let msg = (!bad.is_empty()).then(|| {
            format!(
                "job {id} ({}) after the restart: {}; its changes: {}{kicks}",
                j.name(),
                bad.join("; "),
                j.history()
            )
        });
        let b = bit.unwrap_or(READY);
        j.ops = vec![Op {
            kind: Kind::Found(if b == DELAYED { DELAYED | READY } else { b }),
            send: now,
            ack: Some(now),
            void: false,
        }];
        l.live.insert(id);
        if b == BURIED {
            l.buried.insert(id);
        } else {
            l.buried.remove(&id);
        }
        if let Some(msg) = msg {
            l.violation(msg);
        }
    }
    l.kicks.clear();
    // Jobs gone for good stay gone: those found gone at the last restart, and a sample of
    // the older ones.
    let recent: Vec<u64> = l
        .gone
        .iter()
        .copied()
        .filter(|id| l.jobs[id].gone.is_some_and(|g| g + 1 == cycle))
        .collect();
    let sample: Vec<u64> = if l.gone.is_empty() {
        Vec::new()
    } else {
        (0..64)
            .map(|_| l.gone[rng.below(l.gone.len() as u64) as usize])
            .collect()
    };
    let again: BTreeSet<u64> = recent.into_iter().chain(sample).collect();
    for id in again {
        if let Some(body) = peek(c, id) {
            found += 1;
            let j = &l.jobs[&id];
            let msg = format!(
                "job {id} ({}), gone since cycle {}'s restart, is back: {}",
                j.name(),
                j.gone.unwrap(),
                brief(&body)
            );
            l.fig.came_back += 1;
            l.violation(msg);
        }
    }
    // Every job there that the ledger does not know is an unanswered put whose record
    // made it to the log. Count them, learn the next id, then look for them.
    let stats = c.yaml("stats");
    let total: i64 = ["ready", "reserved", "delayed", "buried"]
        .iter()
        .map(|s| stats[&format!("current-jobs-{s}")].parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        c.cmd(&format!("use {PROBE_TUBE}")),
        format!("USING {PROBE_TUBE}")
    );
    let send = stamp();
    let probe = c.put(0, 0, TTR, b"probe");
    let ack = stamp();
    if let Some(j) = l.jobs.get(&probe) {
        let msg = format!(
            "id reused: the verification's put got {probe}, which is {}",
            j.describe()
        );
        l.fig.ids_reused += 1;
        l.violation(msg);
    } else {
        let ops = vec![
            Op {
                kind: Kind::Put { delayed: false },
                send,
                ack: Some(ack),
                void: false,
            },
            Op {
                kind: Kind::Delete,
                send: ack,
                ack: Some(stamp()),
                void: false,
            },
        ];
        l.learn(probe, None, PROBE, ops);
        l.live.remove(&probe);
        l.jobs.get_mut(&probe).unwrap().gone = Some(cycle);
        l.gone.push(probe);
    }
    assert_eq!(c.cmd(&format!("delete {probe}")), "DELETED");
    let mut extra = total - found;
    let mut id = scan_from;
    while extra > 0 && id < probe {
        if !l.jobs.contains_key(&id) {
            if let Some(body) = peek(c, id) {
                extra -= 1;
                adopt(c, l, id, body);
            }
        }
        id += 1;
    }
    if extra != 0 {
        l.fig.other += 1;
        l.violation(format!(
            "stats counts {total} jobs, {} more than the ledger's and the unanswered puts \
             found from id {scan_from} to the probe's {probe}",
            extra
        ));
    }
    // The unanswered puts not found are gone: their bodies must never show up.
    for p in l.puts.values_mut() {
        if p.ack.is_none() && p.id.is_none() && p.absent_after.is_none() {
            p.absent_after = Some(cycle);
            l.fig.unanswered_absent += 1;
        }
    }
    probe + 1
}

/// Job `id`, unknown to the ledger, is there after a restart with `body`: it must be an
/// unanswered put.
fn adopt(c: &mut Conn, l: &mut Ledger, id: u64, body: Vec<u8>) {
    let cycle = l.cycle;
    let key = parse_key(&body);
    let Some(p) = key.and_then(|k| l.puts.get_mut(&k)) else {
        l.fig.never_put += 1;
        l.violation(format!(
            "job {id} is there after the restart with a body never put: {}",
            brief(&body)
        ));
        return;
    };
    let key = key.unwrap();
    let (state, tube) = state_and_tube(c, id);
    let mut bad = Vec::new();
    if p.body != body {
        l.fig.never_put += 1;
        bad.push(format!(
            "its body differs from the one put: {}",
            brief(&body)
        ));
    }
    if let Some(other) = p.id {
        l.fig.ids_reused += 1;
        bad.push(format!("that put's job is {other}"));
    }
    if let Some(c) = p.absent_after {
        l.fig.came_back += 1;
        bad.push(format!("its job was not there after cycle {c}'s restart"));
    }
    if tube != TUBES[p.tube] {
        l.fig.other += 1;
        bad.push(format!("it is in tube {tube}"));
    }
    let Some(bit) = state_bit(&state) else {
        l.fig.wrong_state += 1;
        l.violation(format!("job {id} ({key}) is {state} after the restart"));
        return;
    };
    if !bad.is_empty() {
        l.violation(format!(
            "job {id} is there after the restart with the body of the unanswered put {key}, \
             but {}",
            bad.join("; ")
        ));
        return;
    }
    p.id = Some(id);
    let tube = p.tube;
    l.fig.unanswered_found += 1;
    let now = stamp();
    let ops = vec![Op {
        kind: Kind::Found(if bit == DELAYED { DELAYED | READY } else { bit }),
        send: now,
        ack: Some(now),
        void: false,
    }];
    l.learn(id, Some(key), tube, ops);
    l.jobs.get_mut(&id).unwrap().cycle = cycle;
    if bit == BURIED {
        l.buried.insert(id);
    }
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

/// sproutd (or `bin`, another server taking the same flags) with `args` on a free port,
/// its stderr appended to `log`.
fn start(bin: Option<&Path>, args: &[&str], log: &fs::File) -> Server {
    let Some(bin) = bin else {
        return Server::start_with(args, |c| {
            c.stderr(log.try_clone().unwrap());
        });
    };
    let mut last = None;
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.try_clone().unwrap());
        match Server::launch(cmd, Addr::Tcp(port)) {
            Ok(s) => return s,
            Err(st) => last = Some(st),
        }
    }
    panic!("{} {args:?} did not start: {last:?}", bin.display());
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The two tests each keep both cores busy: they take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn crash_cross_client_fsync_always() {
    crash_test("crash-f0", &["-f", "0"]);
}

/// With the default fsync interval a reply waits until its records are written (not
/// synced), and SIGKILL keeps written data: the same guarantees hold.
#[test]
fn crash_cross_client_default_fsync() {
    crash_test("crash-fdefault", &[]);
}

fn crash_test(name: &str, flags: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let cycles = env_num("SPROUT_CRASH_CYCLES").unwrap_or(30) as usize;
    let seed = env_num("SPROUT_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let graceful = std::env::var("SPROUT_CRASH_SIGNAL").is_ok_and(|s| s == "TERM");
    let other = std::env::var_os("SPROUT_CRASH_BIN").map(PathBuf::from);
    let sig = if graceful {
        libc::SIGTERM
    } else {
        libc::SIGKILL
    };
    println!(
        "crash test {name}: {cycles} cycles, SPROUT_CRASH_SEED={seed}{}{}",
        if graceful {
            ", stopping with SIGTERM"
        } else {
            ""
        },
        match &other {
            Some(b) => format!(", server {}", b.display()),
            None => String::new(),
        }
    );
    let dir = TempDir::new(name);
    // The log directory as the last kill left it (the restart may rewrite it).
    let killed = TempDir::new(&format!("{name}-killed"));
    let log = std::env::temp_dir().join(format!("sproutd-{name}-{}.log", std::process::id()));
    let _ = fs::remove_file(&log);
    let sh = Arc::new(Shared {
        ledger: Mutex::new(Ledger::default()),
        room: Condvar::new(),
        stop: AtomicBool::new(false),
        pid: AtomicU32::new(0),
        trap: AtomicU8::new(IDLE),
    });
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut scan_from = 1;
        for cycle in 0..=cycles {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            io::Write::write_all(&mut f, format!("=== {name}: cycle {cycle}\n").as_bytes())
                .unwrap();
            let mut a = vec!["-b", dir.path().to_str().unwrap(), "-s", "16384"];
            a.extend_from_slice(flags);
            let s = start(other.as_deref(), &a, &f);
            {
                let mut l = sh.ledger();
                l.cycle = cycle;
                scan_from = verify(&mut s.conn(), &mut l, &mut rng, scan_from);
                l.fig.cycles = cycle;
                if l.fig.failures() > 0 {
                    panic!(
                        "{}\nafter cycle {cycle}'s restart:\n{}",
                        l.fig.report(name, t0.elapsed()),
                        l.messages.join("\n")
                    );
                }
            }
            if cycle == cycles {
                break;
            }
            sh.stop.store(false, Ordering::SeqCst);
            let mut handles = Vec::new();
            let roles = (0..PRODUCERS)
                .map(|p| format!("producer {p}"))
                .chain((0..WORKERS).map(|w| format!("worker {w}")))
                .chain(["kicker".to_string()]);
            for (i, who) in roles.enumerate() {
                let (sh, addr, seed) = (sh.clone(), s.addr.clone(), rng.next());
                handles.push(std::thread::spawn(move || {
                    let Ok(cl) = Client::connect(&sh, &addr, seed, who) else {
                        return;
                    };
                    // Err: the server died (or the client found a violation, recorded).
                    let _ = match i {
                        i if i < PRODUCERS => producer(cl, i),
                        i if i < PRODUCERS + WORKERS => worker(cl),
                        _ => kicker(cl),
                    };
                }));
            }
            // The point of the test: a random moment under load. Every other cycle (at
            // random) the kill comes from the first client that sees a job whose put is
            // not answered after that moment (or 300 ms later, if none does).
            let trap = !graceful && rng.below(2) == 0;
            std::thread::sleep(Duration::from_millis(300 + rng.below(1201)));
            let mut s = s;
            if trap {
                sh.pid.store(s.pid(), Ordering::SeqCst);
                sh.trap.store(ARMED, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_millis(300);
                while sh.trap.load(Ordering::SeqCst) == ARMED && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let disarmed = sh
                    .trap
                    .compare_exchange(ARMED, IDLE, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if disarmed {
                    s.signal(sig);
                } else {
                    // A client fired: wait (briefly) until its kill is sent.
                    while sh.trap.load(Ordering::SeqCst) != FIRED {
                        std::thread::yield_now();
                    }
                    sh.trap.store(IDLE, Ordering::SeqCst);
                    sh.ledger().fig.trapped += 1;
                }
            } else {
                s.signal(sig);
            }
            let st = s.wait_exit(Duration::from_secs(10));
            if graceful {
                assert!(st.success(), "sproutd exit after SIGTERM: {st}");
            }
            sh.stop.store(true, Ordering::SeqCst);
            sh.room.notify_all();
            for h in handles {
                if let Err(e) = h.join() {
                    std::panic::resume_unwind(e);
                }
            }
            for e in fs::read_dir(killed.path()).unwrap().flatten() {
                fs::remove_file(e.path()).unwrap();
            }
            copy_dir(dir.path(), killed.path());
            // Client threads record what they find wrong and stop.
            let l = sh.ledger();
            if l.fig.failures() > 0 {
                panic!(
                    "{}\nduring cycle {cycle}:\n{}",
                    l.fig.report(name, t0.elapsed()),
                    l.messages.join("\n")
                );
            }
        }
    }));
    if let Err(e) = run {
        let keep = PathBuf::from(format!("{}.wal", log.display()));
        let keep_killed = PathBuf::from(format!("{}.killed.wal", log.display()));
        for (from, to) in [(dir.path(), &keep), (killed.path(), &keep_killed)] {
            let _ = fs::remove_dir_all(to);
            let _ = fs::create_dir_all(to);
            copy_dir(from, to);
        }
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        println!(
            "crash test {name} failed (SPROUT_CRASH_SEED={seed}); sproutd's stderr is in {}, \
             the log directory in {} (as the last kill left it: {}); its last lines:\n{}",
            log.display(),
            keep.display(),
            keep_killed.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        std::panic::resume_unwind(e);
    }
    let _ = fs::remove_file(&log);
    let l = sh.ledger();
    println!(
        "{}\n{} jobs live at the end, {} segment files",
        l.fig.report(name, t0.elapsed()),
        l.live.len(),
        fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
            .count()
    );
}
