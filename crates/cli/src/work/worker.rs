//! The worker's event loop: one connection, up to `--concurrency` COMMANDs, shutdown and
//! reconnects.
//!
//! # The connection
//!
//! One connection carries everything: reserves, `stats-job`, touches, and each job's
//! outcome. Reservations belong to a connection, so the connection that reserved a job
//! is the only one that may touch, delete, release or bury it. One command is in flight
//! at a time, chosen by urgency: touches that are due, then outcomes, then reclaims
//! (below), then `stats-job` for new jobs, and last a reserve when a slot is free. The
//! reserve waits at most a second (`reserve-batch <free> 1` on sproutd, falling back to
//! `reserve-with-timeout 1` when the server answers `BAD_FORMAT`/`UNKNOWN_COMMAND`), so a
//! touch or an outcome never waits longer than that; a job whose TTR is about to run out
//! meanwhile makes the server end the wait with `DEADLINE_SOON`.
//!
//! # Heartbeat
//!
//! A held job is touched every TTR/2 (from its reserve, then from each touch's sending),
//! whatever its COMMAND is doing. A touch answered `NOT_FOUND` means the reservation is
//! gone (the TTR ran out anyway): the job becomes an orphan (below).
//!
//! # A lost connection
//!
//! Every job is tagged with the connection ("generation") that holds its reservation.
//! When the connection breaks, the server gives all its reservations back (or, if the
//! server itself died, its log restores them as ready), so every job of the lost
//! connection becomes an orphan, held by nobody:
//!
//! - jobs whose COMMAND had not started are forgotten: the server runs them again;
//! - running COMMANDs go on. Their outcome is applied only once the job is held again by
//!   this worker: after reconnecting (at once, then with backoff: 0.5 s doubling to
//!   30 s), and again when the COMMAND ends, the worker tries to *reclaim* each orphan:
//!   `peek <id>` must find a job with the same body (ids are only unique within a
//!   server's life: this guards against a server that restarted without its log), then
//!   `reserve-job <id>` must reserve it (it fails if another worker holds it).
//!   Reclaimed, the job is touched and its outcome applied as usual; otherwise it is
//!   logged as `abandoned` and left to whoever has it or will reserve it. At most three
//!   reclaims are tried per job.
//! - an outcome that was in flight when the connection broke is never sent again
//!   blindly: if the job is still there (peek finds it), it is reclaimed and the outcome
//!   applied again (for a delete, finding the job proves it was not deleted; a release or
//!   bury made twice only adds to the job's counters); if it is gone, the job is logged
//!   as `abandoned` with a note that its `delete` was probably done. So a job is never
//!   deleted twice and never reported as done unless a `DELETED` came back.
//! - a job delivered again to this worker while its orphaned COMMAND still runs (same id,
//!   same body) is adopted by that COMMAND rather than run a second time.
//!
//! Against servers without `reserve-job`, orphans are simply abandoned.
//!
//! # Shutdown
//!
//! The first SIGTERM or SIGINT stops reserving (a reserve in flight is waited for, and
//! what it brings is released at once, never run). Running COMMANDs get `--grace` to end
//! on their own, and their outcomes apply as usual; then each gets SIGTERM, SIGKILL up to
//! 5 s later, and its job is released with delay 0 as soon as it has exited. A second
//! signal does that at once, with SIGKILL. The worker exits 0 when no job is left: every
//! job it held was deleted, buried or released, or (if the connection is down at the
//! end) given back by the server when the connection broke.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::child::{self, Ctl, Finished, Spec};
use super::log::{Fields, Level, Log};
use super::metrics::{self, Metrics};
use super::proto::{self, Reply, Session, SessionError, Writer, REPLY_TIMEOUT};
use super::{Config, EXIT_CONFIG, EXIT_STOPPED, EXIT_UNAUTHORIZED, EXIT_UNREACHABLE};
use crate::cli::yaml::Stats;

/// The longest a reserve waits for a job, in seconds.
const RESERVE_TIMEOUT: u64 = 1;
/// After `DEADLINE_SOON`, how long before the next reserve (so that a job with a TTR of
/// one second, always within the server's safety margin, does not make the worker spin).
const DEADLINE_SOON_PAUSE: Duration = Duration::from_millis(200);
/// After an unexpected reply to a reserve, how long before the next one.
const RESERVE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Reconnect delays: the first retry is immediate, then this, doubling up to the max.
const RECONNECT_MIN: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How many times one job may be reclaimed.
const MAX_RECLAIMS: u32 = 3;

/// What the loop waits for, besides signals and timers.
pub(super) enum Event {
    /// A reply on connection `gen`.
    Reply(u64, Reply),
    /// Connection `gen` broke.
    Lost(u64, io::Error),
    /// A reconnect attempt ended.
    Session(Result<Session, SessionError>),
    /// The COMMAND of the job with this key ended.
    Exited(u64, Finished),
}

struct Conn {
    writer: Writer,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The command in flight, by job key.
#[derive(Debug, Clone, Copy)]
enum Op {
    Reserve {
        batch: bool,
    },
    StatsJob(u64),
    /// With the moment the touch was sent.
    Touch(u64, Instant),
    Outcome(u64),
    Peek(u64),
    ReserveJob(u64),
}

struct Inflight {
    op: Op,
    deadline: Instant,
}

enum Phase {
    /// Reserved; waiting for its `stats-job`.
    Fetching,
    Running {
        ctl: mpsc::UnboundedSender<Ctl>,
    },
    /// The COMMAND ended; the outcome (`Job::action`) is to be applied.
    Done(Finished),
    /// Reserved during shutdown: released at once, never run.
    NotRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reclaim {
    No,
    /// Peek it when connected.
    Pending,
    /// Peek found it: reserve-job it.
    Peeked,
}

/// A job's `stats-job` counters at its reserve.
#[derive(Debug, Default)]
struct Info {
    tube: String,
    pri: u64,
    ttr: u64,
    reserves: u64,
    releases: u64,
    timeouts: u64,
    age: u64,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Delete,
    Bury(&'static str),
    Release(u32, &'static str),
}

struct Job {
    id: u64,
    body: Arc<[u8]>,
    info: Info,
    phase: Phase,
    /// The connection generation holding its reservation; None: an orphan.
    held: Option<u64>,
    /// Its reserve, or its last touch.
    touched_at: Instant,
    reclaim: Reclaim,
    reclaims: u32,
    /// Asked to stop for shutdown: released whatever its exit status.
    stopping: bool,
    action: Option<Action>,
    note: Option<&'static str>,
}

impl Job {
    fn new(id: u64, body: Vec<u8>, gen: u64) -> Job {
        Job {
            id,
            body: body.into(),
            info: Info::default(),
            phase: Phase::Fetching,
            held: Some(gen),
            touched_at: Instant::now(),
            reclaim: Reclaim::No,
            reclaims: 0,
            stopping: false,
            action: None,
            note: None,
        }
    }

    /// When the next touch is due: TTR/2 after the last (half a second before the TTR is
    /// known; it is at least one second).
    fn touch_due(&self) -> Instant {
        self.touched_at + Duration::from_millis(self.info.ttr.max(1) * 500)
    }

    fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }
}

struct Stop {
    grace_end: Instant,
    /// The running COMMANDs were told to stop (grace over, or a second signal).
    stopped: bool,
    forced: bool,
}

struct Worker {
    cfg: Arc<Config>,
    spec: Arc<Spec>,
    log: Arc<Log>,
    metrics: Option<metrics::Shared>,
    tx: mpsc::UnboundedSender<Event>,
    conn: Option<Conn>,
    /// The current (or last) connection's generation.
    gen: u64,
    connecting: bool,
    reconnect_at: Option<Instant>,
    reconnect_delay: Duration,
    inflight: Option<Inflight>,
    jobs: BTreeMap<u64, Job>,
    next_key: u64,
    /// Whether the server has `reserve-batch` (None: not known yet on this connection).
    batch: Option<bool>,
    /// What was last logged about `reserve-batch`.
    batch_logged: Option<bool>,
    /// Whether the server has `reserve-job` (reclaims).
    reclaim_ok: bool,
    reserve_after: Instant,
    stop: Option<Stop>,
}

/// Runs the worker until it is stopped; returns its exit status.
pub(super) async fn run(cfg: Config) -> u8 {
    let log = Arc::new(Log::new(cfg.json));
    // Signals first: one that arrives while connecting is then a clean stop.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            log.event(
                Level::Error,
                "error",
                &format!("signal handlers: {e}"),
                vec![],
            );
            return EXIT_CONFIG;
        }
    };
    let metrics = match &cfg.metrics {
        None => None,
        Some(addr) => match tokio::net::TcpListener::bind(addr.as_str()).await {
            Ok(l) => {
                let m = metrics::Shared::default();
                tokio::spawn(metrics::serve(l, m.clone()));
                Some(m)
            }
            Err(e) => {
                log.event(
                    Level::Error,
                    "error",
                    &format!("--metrics {addr}: {e}"),
                    vec![],
                );
                return EXIT_CONFIG;
            }
        },
    };
    let session = match proto::open(&cfg.target, &cfg.tubes, true).await {
        Ok(s) => s,
        Err(SessionError::Io(e)) if crate::conn::auth_failure(&e).is_some() => {
            let a = crate::conn::auth_failure(&e);
            log.event(
                Level::Error,
                "unauthorized",
                &format!(
                    "{}: {}",
                    cfg.target.addr,
                    a.as_ref().map_or(String::new(), |a| a.to_string())
                ),
                vec![],
            );
            return match a {
                Some(crate::conn::AuthError::Refused) => EXIT_UNAUTHORIZED,
                _ => EXIT_CONFIG,
            };
        }
        Err(SessionError::Io(e)) => {
            log.event(
                Level::Error,
                "unreachable",
                &format!("cannot connect to {}: {e}", cfg.target.addr),
                vec![],
            );
            return EXIT_UNREACHABLE;
        }
        Err(SessionError::Refused(m)) => {
            log.event(Level::Error, "refused", &m, vec![]);
            return EXIT_CONFIG;
        }
    };
    policy_notes(&cfg, &log, &session);
    log.info(
        "started",
        "worker started",
        vec![
            ("addr", cfg.target.addr.clone().into()),
            ("tubes", json!(cfg.tubes)),
            ("concurrency", cfg.concurrency.into()),
            ("max_attempts", cfg.max_attempts.into()),
            ("backoff", cfg.backoff.to_string().into()),
            ("bury_on", json!(cfg.bury_on)),
            (
                "max_runtime_s",
                cfg.max_runtime.map(|d| d.as_secs_f64()).into(),
            ),
            ("grace_s", cfg.grace.as_secs_f64().into()),
        ],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cfg = Arc::new(cfg);
    let mut w = Worker {
        spec: Arc::new(Spec {
            program: cfg.program.clone(),
            args: cfg.args.clone(),
            max_runtime: cfg.max_runtime,
            grace: cfg.grace,
        }),
        cfg,
        log,
        metrics,
        tx,
        conn: None,
        gen: 0,
        connecting: false,
        reconnect_at: None,
        reconnect_delay: RECONNECT_MIN,
        inflight: None,
        jobs: BTreeMap::new(),
        next_key: 0,
        batch: None,
        batch_logged: None,
        reclaim_ok: true,
        reserve_after: Instant::now(),
        stop: None,
    };
    w.install(session);
    loop {
        w.maybe_reconnect();
        w.pump().await;
        if w.finished() {
            break;
        }
        let wake = w.next_wake();
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => w.on_event(ev),
                None => break,
            },
            _ = term.recv() => w.on_signal("SIGTERM"),
            _ = int.recv() => w.on_signal("SIGINT"),
            _ = sleep_until(wake) => {}
        }
        w.tick();
    }
    w.log.info("stopped", "worker stopped", vec![]);
    EXIT_STOPPED
}

/// Notes on the watched tubes' policies (sproutd), where they and the worker's options
/// overlap.
fn policy_notes(cfg: &Config, log: &Log, s: &Session) {
    let Some(list) = &s.policies else { return };
    for (tube, p) in list {
        if p.max_reserves > 0 && p.max_reserves != cfg.max_attempts {
            let who = if p.max_reserves < cfg.max_attempts {
                "the server acts first: a job reserved that many times is not retried \
                 (on-exhaust applies) before --max-attempts is reached"
            } else {
                "the worker acts first: it buries a failing job after --max-attempts \
                 attempts, before the policy's limit"
            };
            log.warn(
                "policy-mismatch",
                &format!(
                    "tube {tube}: policy max-reserves {} (on-exhaust {}) and --max-attempts \
                     {} disagree: {who}",
                    p.max_reserves, p.on_exhaust, cfg.max_attempts
                ),
                vec![
                    ("tube", tube.clone().into()),
                    ("max_reserves", p.max_reserves.into()),
                    ("max_attempts", cfg.max_attempts.into()),
                ],
            );
        }
        if p.retry_backoff != "none" {
            log.info(
                "policy-backoff",
                &format!(
                    "tube {tube}: policy retry-backoff {} applies to jobs the worker \
                     releases with delay 0 (at shutdown, or with --backoff fixed:0) and to \
                     those of a lost connection; other releases carry the --backoff delay",
                    p.retry_backoff
                ),
                vec![("tube", tube.clone().into())],
            );
        }
    }
}

impl Worker {
    // ----- the connection ------------------------------------------------------------

    /// Takes a new connection into use.
    fn install(&mut self, s: Session) {
        self.gen += 1;
        let gen = self.gen;
        let tx = self.tx.clone();
        let mut reader = s.reader;
        let handle = tokio::spawn(async move {
            loop {
                match proto::read_reply(&mut reader).await {
                    Ok(r) => {
                        if tx.send(Event::Reply(gen, r)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Event::Lost(gen, e));
                        break;
                    }
                }
            }
        });
        self.conn = Some(Conn {
            writer: s.writer,
            reader: handle,
        });
        self.batch = None;
        self.reserve_after = Instant::now();
        self.reconnect_delay = RECONNECT_MIN;
        self.settle_orphans();
        self.metric(|m| m.set_connected(true, gen > 1));
    }

    /// On a new connection (or when reclaims turn out to be impossible): each orphan is
    /// to be reclaimed if it can be; if not, a finished one is abandoned now, and a
    /// running one when its COMMAND ends.
    fn settle_orphans(&mut self) {
        let can = self.reclaim_ok && self.conn.is_some();
        let mut abandon = Vec::new();
        for (&k, j) in self.jobs.iter_mut() {
            if j.held.is_some() {
                continue;
            }
            if can && j.reclaims < MAX_RECLAIMS {
                j.reclaim = Reclaim::Pending;
            } else {
                j.reclaim = Reclaim::No;
                if matches!(j.phase, Phase::Done(_)) {
                    abandon.push(k);
                }
            }
        }
        for k in abandon {
            self.finish(k, "abandoned", Some("its reservation was lost"));
        }
    }

    /// The connection broke (or stopped answering): every job it held becomes an orphan.
    fn lose(&mut self, err: &dyn std::fmt::Display) {
        if self.conn.take().is_none() {
            return;
        }
        let running = self.jobs.values().filter(|j| j.running()).count();
        self.log.warn(
            "connection-lost",
            &format!(
                "connection to {} lost: {err}; reconnecting",
                self.cfg.target.addr
            ),
            vec![("running", running.into())],
        );
        self.metric(|m| m.set_connected(false, false));
        if let Some(Inflight {
            op: Op::Outcome(k), ..
        }) = self.inflight.take()
        {
            if let Some(j) = self.jobs.get_mut(&k) {
                j.note = Some("the connection was lost while its outcome was being applied");
            }
        }
        let mut forget = Vec::new();
        let mut abandon = Vec::new();
        for (&k, j) in self.jobs.iter_mut() {
            j.held = None;
            j.reclaim = Reclaim::No;
            match j.phase {
                Phase::Fetching | Phase::NotRun => forget.push(k),
                Phase::Running { .. } => {}
                Phase::Done(_) => {
                    if !self.reclaim_ok {
                        abandon.push(k);
                    }
                }
            }
        }
        for k in forget {
            if let Some(j) = self.jobs.remove(&k) {
                self.log.info(
                    "job-returned",
                    &format!(
                        "job {}: connection lost before its COMMAND started; the server \
                         gives it back",
                        j.id
                    ),
                    vec![("job", j.id.into())],
                );
            }
        }
        for k in abandon {
            self.finish(k, "abandoned", Some("connection lost"));
        }
        self.reconnect_at = Some(Instant::now());
        self.reconnect_delay = RECONNECT_MIN;
    }

    /// Starts a reconnect attempt when one is due.
    fn maybe_reconnect(&mut self) {
        if self.conn.is_some() || self.connecting {
            return;
        }
        match self.reconnect_at {
            Some(at) if Instant::now() >= at => {}
            _ => return,
        }
        self.reconnect_at = None;
        self.connecting = true;
        let tx = self.tx.clone();
        let target = self.cfg.target.clone();
        let tubes = self.cfg.tubes.clone();
        tokio::spawn(async move {
            let r = proto::open(&target, &tubes, false).await;
            let _ = tx.send(Event::Session(r));
        });
    }

    fn on_session(&mut self, r: Result<Session, SessionError>) {
        self.connecting = false;
        match r {
            Ok(s) => {
                self.install(s);
                let orphans = self.jobs.values().filter(|j| j.held.is_none()).count();
                self.log.info(
                    "reconnected",
                    &format!("reconnected to {}", self.cfg.target.addr),
                    vec![("orphans", orphans.into())],
                );
            }
            Err(e) => {
                let delay = self.reconnect_delay;
                self.reconnect_delay = (delay * 2).min(RECONNECT_MAX);
                self.reconnect_at = Some(Instant::now() + delay);
                self.log.warn(
                    "reconnect-failed",
                    &format!(
                        "cannot reconnect to {}: {e}; next try in {:.1}s",
                        self.cfg.target.addr,
                        delay.as_secs_f64()
                    ),
                    vec![],
                );
            }
        }
    }

    /// Sends the next command if none is in flight.
    async fn pump(&mut self) {
        while self.inflight.is_none() && self.conn.is_some() {
            let Some((op, line, wait)) = self.next_op() else {
                return;
            };
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let writer = &mut conn.writer;
            let write = async {
                writer.command(&line)?;
                writer.flush().await
            };
            match tokio::time::timeout(REPLY_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    self.inflight = Some(Inflight {
                        op,
                        deadline: Instant::now() + wait + REPLY_TIMEOUT,
                    });
                }
                Ok(Err(e)) => self.lose(&e),
                Err(_) => self.lose(&"write timed out"),
            }
        }
    }

    /// The most urgent command to send now, with how long its reply may take beyond the
    /// usual.
    fn next_op(&self) -> Option<(Op, String, Duration)> {
        let now = Instant::now();
        let gen = Some(self.gen);
        let held = || self.jobs.iter().filter(move |(_, j)| j.held == gen);
        if let Some((&k, j)) = held().find(|(_, j)| now >= j.touch_due()) {
            return Some((Op::Touch(k, now), format!("touch {}", j.id), Duration::ZERO));
        }
        if let Some((&k, j)) =
            held().find(|(_, j)| matches!(j.phase, Phase::Done(_) | Phase::NotRun))
        {
            let line = match j.action {
                Some(Action::Delete) => format!("delete {}", j.id),
                Some(Action::Bury(_)) => format!("bury {} {}", j.id, j.info.pri),
                Some(Action::Release(d, _)) => {
                    format!("release {} {} {d}", j.id, j.info.pri)
                }
                None => format!("release {} {} 0", j.id, j.info.pri),
            };
            return Some((Op::Outcome(k), line, Duration::ZERO));
        }
        if let Some((&k, j)) = self
            .jobs
            .iter()
            .find(|(_, j)| self.reclaim_ok && j.held.is_none() && j.reclaim != Reclaim::No)
        {
            return Some(if j.reclaim == Reclaim::Pending {
                (Op::Peek(k), format!("peek {}", j.id), Duration::ZERO)
            } else {
                (
                    Op::ReserveJob(k),
                    format!("reserve-job {}", j.id),
                    Duration::ZERO,
                )
            });
        }
        if let Some((&k, j)) = held().find(|(_, j)| matches!(j.phase, Phase::Fetching)) {
            return Some((
                Op::StatsJob(k),
                format!("stats-job {}", j.id),
                Duration::ZERO,
            ));
        }
        let free = self.cfg.concurrency.saturating_sub(self.busy());
        if self.stop.is_none() && free > 0 && now >= self.reserve_after {
            let wait = Duration::from_secs(RESERVE_TIMEOUT);
            return Some(if self.batch != Some(false) {
                (
                    Op::Reserve { batch: true },
                    format!("reserve-batch {free} {RESERVE_TIMEOUT}"),
                    wait,
                )
            } else {
                (
                    Op::Reserve { batch: false },
                    format!("reserve-with-timeout {RESERVE_TIMEOUT}"),
                    wait,
                )
            });
        }
        None
    }

    /// Jobs that take a slot: being started or running (orphans included: their
    /// COMMANDs still run).
    fn busy(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| matches!(j.phase, Phase::Fetching | Phase::Running { .. }))
            .count()
    }

    // ----- events ----------------------------------------------------------------------

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Reply(gen, r) => {
                if self.conn.is_some() && gen == self.gen {
                    match self.inflight.take() {
                        Some(inf) => self.on_reply(inf.op, r),
                        None => self.lose(&format!("unexpected reply {:?}", r.head)),
                    }
                }
            }
            Event::Lost(gen, e) => {
                if gen == self.gen {
                    self.lose(&e);
                }
            }
            Event::Session(r) => self.on_session(r),
            Event::Exited(k, fin) => self.on_exit(k, fin),
        }
    }

    fn on_reply(&mut self, op: Op, r: Reply) {
        match op {
            Op::Reserve { batch } => self.on_reserved(batch, r),
            Op::StatsJob(k) => self.on_stats(k, r),
            Op::Touch(k, sent) => {
                let Some(j) = self.jobs.get_mut(&k) else {
                    return;
                };
                if r.head == "TOUCHED" {
                    j.touched_at = sent;
                } else {
                    self.log.warn(
                        "reservation-lost",
                        &format!(
                            "job {}: touch answered {}: no longer reserved by this worker \
                             (its TTR ran out?)",
                            j.id, r.head
                        ),
                        vec![("job", j.id.into())],
                    );
                    self.orphan(k);
                }
            }
            Op::Outcome(k) => self.on_outcome(k, r),
            Op::Peek(k) => {
                let Some(j) = self.jobs.get_mut(&k) else {
                    return;
                };
                if r.word() == "FOUND" && r.data.as_deref() == Some(&j.body[..]) {
                    j.reclaim = Reclaim::Peeked;
                } else {
                    self.reclaim_failed(k, "no longer on the server");
                }
            }
            Op::ReserveJob(k) => {
                let gen = self.gen;
                let Some(j) = self.jobs.get_mut(&k) else {
                    return;
                };
                match r.jobs.first() {
                    Some((id, body)) if *id == j.id && body[..] == j.body[..] => {
                        j.held = Some(gen);
                        j.touched_at = Instant::now();
                        j.reclaim = Reclaim::No;
                        j.reclaims += 1;
                        let id = j.id;
                        self.log.info(
                            "reclaimed",
                            &format!("job {id}: reserved again after the connection was lost"),
                            vec![("job", id.into())],
                        );
                    }
                    Some(_) => {
                        // Cannot happen (peek just showed this body): hand it back.
                        self.lose(&"reserve-job returned another job");
                    }
                    None => {
                        let unsupported =
                            matches!(r.head.as_str(), "UNKNOWN_COMMAND" | "BAD_FORMAT");
                        self.reclaim_failed(k, "held by another worker");
                        if unsupported {
                            self.reclaim_ok = false;
                            self.settle_orphans();
                        }
                    }
                }
            }
        }
    }

    fn on_reserved(&mut self, batch: bool, r: Reply) {
        if batch {
            let ok = !matches!(r.head.as_str(), "BAD_FORMAT" | "UNKNOWN_COMMAND");
            self.batch = Some(ok);
            if self.batch_logged != Some(ok) {
                self.batch_logged = Some(ok);
                let msg = if ok {
                    "reserving with reserve-batch"
                } else {
                    "the server has no reserve-batch: reserving with reserve-with-timeout"
                };
                self.log.info("reserve-mode", msg, vec![]);
            }
            if !ok {
                return;
            }
        }
        match r.word() {
            "RESERVED" | "RESERVED_BATCH" => {
                for (id, body) in r.jobs {
                    self.reserved(id, body);
                }
            }
            "TIMED_OUT" => {}
            "DEADLINE_SOON" => self.reserve_after = Instant::now() + DEADLINE_SOON_PAUSE,
            _ => {
                self.log.warn(
                    "reserve-error",
                    &format!("reserve: server replied {}", r.head),
                    vec![],
                );
                self.reserve_after = Instant::now() + RESERVE_ERROR_PAUSE;
            }
        }
    }

    /// A job came from a reserve.
    fn reserved(&mut self, id: u64, body: Vec<u8>) {
        let gen = self.gen;
        // Ours already, orphaned, with its COMMAND still going: take the reservation over.
        if let Some(j) = self
            .jobs
            .values_mut()
            .find(|j| j.id == id && j.held.is_none() && j.body[..] == body[..])
        {
            j.held = Some(gen);
            j.touched_at = Instant::now();
            j.reclaim = Reclaim::No;
            self.log.info(
                "reclaimed",
                &format!("job {id}: delivered again while its COMMAND still runs here: adopted"),
                vec![("job", id.into())],
            );
            return;
        }
        let k = self.next_key;
        self.next_key += 1;
        self.jobs.insert(k, Job::new(id, body, gen));
    }

    fn on_stats(&mut self, k: u64, r: Reply) {
        let stopping = self.stop.is_some();
        let Some(j) = self.jobs.get_mut(&k) else {
            return;
        };
        let Some(data) = r.data.filter(|_| r.head.starts_with("OK ")) else {
            // Not ours any more (cannot happen while we hold it): let the server have it.
            let id = j.id;
            self.jobs.remove(&k);
            self.log.warn(
                "stats-job",
                &format!("job {id}: stats-job answered {}: skipped", r.head),
                vec![("job", id.into())],
            );
            return;
        };
        let st = Stats::parse(&data);
        j.info = Info {
            tube: st.get("tube").unwrap_or("").to_string(),
            pri: st.num("pri"),
            ttr: st.num("ttr").max(1),
            reserves: st.num("reserves"),
            releases: st.num("releases"),
            timeouts: st.num("timeouts"),
            age: st.num("age"),
        };
        if stopping {
            j.phase = Phase::NotRun;
            j.action = Some(Action::Release(0, "not-started"));
            return;
        }
        self.start(k);
    }

    /// Starts job `k`'s COMMAND.
    fn start(&mut self, k: u64) {
        let Some(j) = self.jobs.get_mut(&k) else {
            return;
        };
        let i = &j.info;
        let env = vec![
            ("SPROUT_JOB_ID", j.id.to_string()),
            ("SPROUT_TUBE", i.tube.clone()),
            ("SPROUT_PRI", i.pri.to_string()),
            ("SPROUT_RESERVES", i.reserves.to_string()),
            ("SPROUT_RELEASES", i.releases.to_string()),
            ("SPROUT_TIMEOUTS", i.timeouts.to_string()),
            ("SPROUT_AGE", i.age.to_string()),
        ];
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (spec, log, body, tx, id) = (
            self.spec.clone(),
            self.log.clone(),
            j.body.clone(),
            self.tx.clone(),
            j.id,
        );
        tokio::spawn(async move {
            let fin = child::run(spec, id, env, body, ctl_rx, log).await;
            let _ = tx.send(Event::Exited(k, fin));
        });
        j.phase = Phase::Running { ctl: ctl_tx };
        self.log.job(
            "start",
            vec![
                ("job", id.into()),
                ("tube", j.info.tube.clone().into()),
                ("attempt", j.info.reserves.into()),
                ("ttr", j.info.ttr.into()),
            ],
        );
        self.update_running();
    }

    fn on_exit(&mut self, k: u64, fin: Finished) {
        let Some(j) = self.jobs.get_mut(&k) else {
            return;
        };
        j.action = Some(decide(&self.cfg, j, &fin));
        j.phase = Phase::Done(fin);
        if j.held.is_none() {
            if self.reclaim_ok && j.reclaims < MAX_RECLAIMS {
                j.reclaim = Reclaim::Pending;
            } else {
                self.finish(k, "abandoned", Some("its reservation was lost"));
            }
        }
        self.update_running();
    }

    fn on_outcome(&mut self, k: u64, r: Reply) {
        let Some(j) = self.jobs.get(&k) else {
            return;
        };
        let outcome = match (j.action, r.head.as_str()) {
            (Some(Action::Delete), "DELETED") => "deleted",
            (Some(Action::Bury(_)), "BURIED") => "buried",
            // A release the server could not make (out of memory) buries the job.
            (Some(Action::Release(..)) | None, "BURIED") => "buried",
            (Some(Action::Release(..)) | None, "RELEASED") => "released",
            (_, "NOT_FOUND") => {
                self.log.warn(
                    "reservation-lost",
                    &format!(
                        "job {}: outcome answered NOT_FOUND: no longer reserved by this \
                         worker (its TTR ran out?)",
                        j.id
                    ),
                    vec![("job", j.id.into())],
                );
                self.orphan(k);
                return;
            }
            (_, other) => {
                let note = format!("the server refused its outcome: {other}");
                self.log
                    .warn("outcome-error", &note, vec![("job", j.id.into())]);
                "abandoned"
            }
        };
        self.finish(k, outcome, None);
    }

    /// Job `k` lost its reservation on a live connection.
    fn orphan(&mut self, k: u64) {
        let Some(j) = self.jobs.get_mut(&k) else {
            return;
        };
        j.held = None;
        match j.phase {
            Phase::Fetching | Phase::NotRun => {
                self.jobs.remove(&k);
            }
            Phase::Running { .. } => {}
            Phase::Done(_) => {
                if self.reclaim_ok && j.reclaims < MAX_RECLAIMS {
                    j.reclaim = Reclaim::Pending;
                } else {
                    self.finish(k, "abandoned", Some("its reservation was lost"));
                }
            }
        }
    }

    /// A reclaim of job `k` did not work out.
    fn reclaim_failed(&mut self, k: u64, why: &'static str) {
        let Some(j) = self.jobs.get_mut(&k) else {
            return;
        };
        j.reclaim = Reclaim::No;
        j.reclaims += 1;
        if matches!(j.phase, Phase::Done(_)) {
            let note = match (j.note, j.action) {
                (Some(_), Some(Action::Delete)) if why == "no longer on the server" => {
                    "connection lost while deleting it; gone from the server since, so the \
                     delete was probably done"
                }
                _ => why,
            };
            self.finish(k, "abandoned", Some(note));
        }
        // A running orphan is tried once more when its COMMAND ends.
    }

    fn on_signal(&mut self, name: &str) {
        let running = self.jobs.values().filter(|j| j.running()).count();
        match &mut self.stop {
            None => {
                self.stop = Some(Stop {
                    grace_end: Instant::now() + self.cfg.grace,
                    stopped: false,
                    forced: false,
                });
                let msg = if running == 0 {
                    format!("{name}: taking no more jobs; none running")
                } else {
                    format!(
                        "{name}: taking no more jobs; {running} running get up to {}s to \
                         finish (a second signal stops them now)",
                        self.cfg.grace.as_secs_f64()
                    )
                };
                self.log
                    .info("shutdown", &msg, vec![("running", running.into())]);
            }
            Some(s) if !s.forced => {
                s.forced = true;
                s.stopped = true;
                self.log.warn(
                    "shutdown-now",
                    &format!(
                        "{name} again: killing {running} running COMMANDs, releasing their jobs"
                    ),
                    vec![("running", running.into())],
                );
                self.tell_running(Ctl::Kill);
            }
            Some(_) => {}
        }
    }

    /// Timers: the end of the grace period, and a reply that does not come.
    fn tick(&mut self) {
        let now = Instant::now();
        if let Some(s) = &mut self.stop {
            if !s.stopped && now >= s.grace_end {
                s.stopped = true;
                let running = self.jobs.values().filter(|j| j.running()).count();
                if running > 0 {
                    self.log.info(
                        "grace-over",
                        &format!(
                            "grace over: stopping {running} running COMMANDs (SIGTERM), \
                             releasing their jobs"
                        ),
                        vec![("running", running.into())],
                    );
                }
                self.tell_running(Ctl::Stop);
            }
        }
        if self.inflight.as_ref().is_some_and(|i| now >= i.deadline) {
            self.lose(&"no reply from the server in time");
        }
    }

    fn tell_running(&mut self, c: Ctl) {
        for j in self.jobs.values_mut() {
            if let Phase::Running { ctl } = &j.phase {
                j.stopping = true;
                let _ = ctl.send(c);
            }
        }
    }

    /// Whether the worker is done: stopping, and nothing left to wait for.
    fn finished(&mut self) -> bool {
        if self.stop.is_none() || self.jobs.values().any(|j| j.running()) {
            return false;
        }
        if self.conn.is_none() {
            // Nothing runs and there is no connection to apply anything on: the server
            // has given back every reservation of the lost connection already.
            let keys: Vec<u64> = self.jobs.keys().copied().collect();
            for k in keys {
                self.finish(k, "abandoned", Some("connection lost; shutting down"));
            }
            return true;
        }
        self.jobs.is_empty() && self.inflight.is_none()
    }

    /// The next moment something must happen by timer.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut t = now + Duration::from_secs(60);
        // While a command is in flight nothing else can be sent: its reply (an event)
        // comes first.
        if self.inflight.is_none() && self.conn.is_some() {
            let gen = Some(self.gen);
            for j in self.jobs.values() {
                if j.held == gen {
                    t = t.min(j.touch_due());
                }
            }
            if self.stop.is_none() && self.reserve_after > now {
                t = t.min(self.reserve_after);
            }
        }
        if let Some(s) = &self.stop {
            if !s.stopped {
                t = t.min(s.grace_end);
            }
        }
        if let Some(i) = &self.inflight {
            t = t.min(i.deadline);
        }
        if let Some(at) = self.reconnect_at {
            t = t.min(at);
        }
        t
    }

    // ----- the end of a job ----------------------------------------------------------

    /// Logs job `k`'s end and forgets it.
    fn finish(&mut self, k: u64, outcome: &'static str, note: Option<&'static str>) {
        let Some(j) = self.jobs.remove(&k) else {
            return;
        };
        let fin = match &j.phase {
            Phase::Done(f) => Some(f),
            _ => None,
        };
        let (delay, reason) = match j.action {
            Some(Action::Release(d, r)) => (Some(d), Some(r)),
            Some(Action::Bury(r)) => (None, Some(r)),
            _ => (None, None),
        };
        let tail = fin
            .filter(|f| outcome == "buried" && !f.stderr_tail.is_empty())
            .map(|f| f.stderr_tail.join("\n"));
        let mut fields: Fields = vec![
            ("job", j.id.into()),
            ("tube", j.info.tube.clone().into()),
            ("outcome", outcome.into()),
            ("exit", fin.and_then(|f| f.code()).into()),
            ("signal", fin.and_then(|f| f.signal()).into()),
            (
                "duration_s",
                fin.map(|f| (f.duration.as_secs_f64() * 1000.0).round() / 1000.0)
                    .into(),
            ),
            ("attempt", j.info.reserves.into()),
        ];
        if outcome == "released" {
            fields.push(("delay", delay.into()));
        }
        if outcome != "deleted" {
            fields.push(("reason", reason.into()));
        }
        fields.push((
            "timed_out",
            fin.filter(|f| f.timed_out).map(|_| true).into(),
        ));
        fields.push(("error", fin.and_then(|f| f.spawn_error.clone()).into()));
        fields.push(("stderr", tail.into()));
        fields.push(("note", note.or(j.note).map(Value::from).into()));
        self.log.job("job", fields);
        let ran = fin.map(|f| f.duration);
        self.metric(|m| m.job(outcome, ran));
    }

    fn update_running(&self) {
        let n = self.jobs.values().filter(|j| j.running()).count();
        self.metric(|m| m.set_running(n));
    }

    fn metric(&self, f: impl FnOnce(&mut Metrics)) {
        if let Some(m) = &self.metrics {
            if let Ok(mut m) = m.lock() {
                f(&mut m);
            }
        }
    }
}

/// What to do with a job whose COMMAND ended with `fin`.
fn decide(cfg: &Config, j: &Job, fin: &Finished) -> Action {
    if j.stopping {
        return Action::Release(0, "shutdown");
    }
    if !fin.timed_out {
        match fin.code() {
            Some(0) => return Action::Delete,
            Some(c) if cfg.bury_on.contains(&c) => return Action::Bury("bury-on"),
            _ => {}
        }
    }
    if j.info.reserves >= cfg.max_attempts {
        return Action::Bury("max-attempts");
    }
    let why = if fin.timed_out {
        "max-runtime"
    } else if fin.spawn_error.is_some() {
        "spawn-failed"
    } else {
        "failed"
    };
    Action::Release(cfg.backoff.delay(j.info.reserves), why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn cfg() -> Config {
        Config {
            target: crate::conn::Target::plain(""),
            tubes: vec!["t".into()],
            concurrency: 1,
            max_attempts: 3,
            backoff: super::super::Backoff::Exp { base: 2, cap: 5 },
            bury_on: vec![65],
            max_runtime: None,
            grace: Duration::ZERO,
            json: false,
            metrics: None,
            program: "true".into(),
            args: vec![],
        }
    }

    fn ended(raw: i32, timed_out: bool) -> Finished {
        Finished {
            status: Some(ExitStatus::from_raw(raw)),
            spawn_error: None,
            timed_out,
            stderr_tail: vec![],
            duration: Duration::ZERO,
        }
    }

    fn job(reserves: u64) -> Job {
        let mut j = Job::new(1, b"x".to_vec(), 1);
        j.info.reserves = reserves;
        j
    }

    #[test]
    fn outcomes() {
        let c = cfg();
        let act = |j: &Job, f: &Finished| format!("{:?}", decide(&c, j, f));
        let exit = |code: i32| ended(code << 8, false);
        assert_eq!(act(&job(1), &exit(0)), "Delete");
        assert_eq!(act(&job(1), &exit(65)), "Bury(\"bury-on\")");
        assert_eq!(act(&job(1), &exit(1)), "Release(2, \"failed\")");
        assert_eq!(act(&job(2), &exit(1)), "Release(4, \"failed\")");
        assert_eq!(act(&job(3), &exit(1)), "Bury(\"max-attempts\")");
        // Killed by a signal, or stopped by --max-runtime (whatever its exit code).
        assert_eq!(act(&job(1), &ended(9, false)), "Release(2, \"failed\")");
        assert_eq!(act(&job(2), &ended(0, true)), "Release(4, \"max-runtime\")");
        assert_eq!(act(&job(3), &ended(15, true)), "Bury(\"max-attempts\")");
        // Stopped for shutdown: released at once, whatever happened.
        let mut j = job(3);
        j.stopping = true;
        assert_eq!(act(&j, &exit(1)), "Release(0, \"shutdown\")");
    }

    #[test]
    fn touches_at_half_the_ttr() {
        let mut j = job(1);
        let t0 = j.touched_at;
        assert_eq!(j.touch_due() - t0, Duration::from_millis(500));
        j.info.ttr = 60;
        assert_eq!(j.touch_due() - t0, Duration::from_secs(30));
    }
}
