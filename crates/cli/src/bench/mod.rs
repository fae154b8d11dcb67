//! `sprout bench`: a load generator for any beanstalkd-protocol server; `--compare`,
//! which runs the same workloads against beanstalkd and sproutd in one run; and `--tls`,
//! which runs them against the TLS and the plain listener of one sproutd; `--cluster`, which
//! runs them against beanstalkd, one sproutd and a 3-node cluster and times failovers.

pub mod cluster;
pub mod compare;
pub(crate) mod proc;
pub mod tls;

use std::io;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;

use sprout_client::{Client, Error, PutOutcome, ServerError};

use crate::conn::Target;

/// How long connecting (with the TLS handshake and `auth`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A connection to `t`, through the `sprout-client` crate (its buffers are reused for
/// every command and reply: nothing is allocated per command but a reserved job's body).
async fn connect(t: &Target) -> io::Result<Client> {
    Ok(t.connector(CONNECT_TIMEOUT).connect().await?)
}

/// The id of an `INSERTED` job; `BURIED` (out of memory) is an error here.
fn inserted(o: PutOutcome) -> io::Result<u64> {
    match o {
        PutOutcome::Inserted(id) => Ok(id),
        other => Err(bad(format!("expected INSERTED, got {other:?}"))),
    }
}

/// A reserve with a timeout: `None` when it timed out.
fn reserved_or_timeout(
    r: sprout_client::Result<sprout_client::Job>,
) -> io::Result<Option<sprout_client::Job>> {
    match r {
        Ok(j) => Ok(Some(j)),
        Err(Error::Server(ServerError::TimedOut)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `want`, or an error naming what came instead.
fn expect_str(got: String, want: &str) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(bad(format!("expected {want}, got {got:?}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Each connection puts jobs, one at a time.
    Put,
    /// Each connection does put, reserve, delete round trips.
    Cycle,
    /// Half the connections put, half reserve+delete; latency is put sent → RESERVED read.
    Pubsub,
    /// Each connection sends `depth` puts at once, then `depth` deletes.
    Pipeline,
    /// A backlog of `jobs` jobs is reserved and deleted by the connections.
    Drain,
    /// `jobs` jobs are put; reports the server's RSS per job.
    Fill,
    /// `conns` idle connections are opened; reports the server's RSS per connection.
    Idle,
    /// Each connection puts a job and deletes it by id (no reserve).
    PutDelete,
    /// --compare only: `jobs` jobs are put, the server is stopped and restarted on its
    /// binlog; reports the time until it answers with every job back.
    Recover,
    /// Each connection, over and over: connect, the TLS handshake (a full one: no session
    /// resumption) when TLS is on, `auth` with a token, one command, close.
    Handshake,
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub conns: usize,
    pub depth: usize,
    pub size: usize,
    pub tubes: usize,
    /// Extra tubes, each holding one buried job, created before the run.
    pub extra_tubes: usize,
    pub secs: f64,
    pub jobs: u64,
    /// pipeline: busy-poll for replies instead of sleeping until they arrive.
    pub spin: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            conns: 1,
            depth: 16,
            size: 100,
            tubes: 1,
            extra_tubes: 0,
            secs: 5.0,
            jobs: 100_000,
            spin: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Server CPU time (user+system, all threads) per operation.
    pub server_cpu_us_per_op: Option<f64>,
    pub server_rss_kb: Option<u64>,
    /// Fill: RSS growth per job; Idle: per connection.
    pub rss_bytes_per_item: Option<f64>,
    /// With a binlog: bytes of the binlog directory per live job after the run.
    pub(crate) disk_bytes_per_job: Option<f64>,
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 100 s with 3 significant digits; values are in ns.
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).unwrap_or_else(|_| {
        // The bounds above are valid constants; fall back to an auto-resizing one.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

fn body(size: usize, stamp: Option<u64>) -> Vec<u8> {
    let mut b = match stamp {
        Some(t) => format!("{t:016x}").into_bytes(),
        None => Vec::new(),
    };
    b.resize(size.max(b.len()), b'x');
    b
}

struct Totals {
    ops: AtomicU64,
    errors: AtomicU64,
    /// Pubsub: jobs put and not yet reserved. Producers hold back while this is at the
    /// limit, so latency measures the server, not a growing backlog.
    outstanding: AtomicI64,
    room: Notify,
}

/// Runs one workload against the server at `target` (whose pid, if known, is measured).
pub async fn run(
    target: &Target,
    pid: Option<u32>,
    w: Workload,
    p: &Params,
    progress: &indicatif::ProgressBar,
) -> io::Result<Measurement> {
    if p.extra_tubes > 0 {
        make_extra_tubes(target, p.extra_tubes).await?;
    }
    match w {
        Workload::Fill => return fill(target, pid, p, progress).await,
        Workload::Idle => return idle(target, pid, p, progress).await,
        _ => {}
    }
    if w == Workload::Drain {
        prefill(target, p.jobs, p.size, progress).await?;
    }
    let target = if w == Workload::Handshake {
        target.without_resumption()
    } else {
        target.clone()
    };
    let totals = Arc::new(Totals {
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        outstanding: AtomicI64::new(0),
        room: Notify::new(),
    });
    // Every connection is made (TLS handshake and auth included) before the clock starts,
    // so that the run measures the workload, not the connecting; only the handshake
    // workload connects inside it.
    let mut clients = Vec::new();
    if w != Workload::Handshake {
        for _ in 0..p.conns.max(1) {
            clients.push(connect(&target).await?);
        }
    }
    let mut clients = clients.into_iter();
    let base = Instant::now();
    let deadline = base + Duration::from_secs_f64(p.secs);
    let cpu0 = pid.and_then(proc::cpu_ns);
    let mut tasks = Vec::new();
    for i in 0..p.conns.max(1) {
        let target = target.clone();
        let p = p.clone();
        let totals = totals.clone();
        let client = clients.next();
        tasks.push(tokio::spawn(async move {
            let mut h = hist();
            let r = conn_loop(client, &target, w, i, &p, base, deadline, &totals, &mut h).await;
            if let Err(e) = &r {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("bench: connection {i}: {e}");
            }
            h
        }));
    }
    let ticker = {
        let progress = progress.clone();
        let totals = totals.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.set_position(base.elapsed().as_millis() as u64);
                progress.set_message(format!("{} ops", totals.ops.load(Ordering::Relaxed)));
            }
        })
    };
    let mut h = hist();
    for t in tasks {
        match t.await {
            Ok(th) => {
                let _ = h.add(th);
            }
            Err(e) => return Err(bad(format!("worker failed: {e}"))),
        }
    }
    ticker.abort();
    let secs = base.elapsed().as_secs_f64().min(p.secs.max(0.001));
    let ops = totals.ops.load(Ordering::Relaxed);
    let cpu1 = pid.and_then(proc::cpu_ns);
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Measurement {
        ops,
        secs,
        ops_per_sec: ops as f64 / secs,
        errors: totals.errors.load(Ordering::Relaxed),
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: h.max() as f64 / 1000.0,
        server_cpu_us_per_op: match (cpu0, cpu1) {
            (Some(a), Some(b)) if ops > 0 => Some((b - a) as f64 / 1000.0 / ops as f64),
            _ => None,
        },
        server_rss_kb: pid.and_then(proc::rss_kb),
        rss_bytes_per_item: None,
        disk_bytes_per_job: None,
    })
}

#[allow(clippy::too_many_arguments)]
async fn conn_loop(
    client: Option<Client>,
    target: &Target,
    w: Workload,
    i: usize,
    p: &Params,
    base: Instant,
    deadline: Instant,
    totals: &Totals,
    h: &mut Histogram<u64>,
) -> io::Result<()> {
    let record = |h: &mut Histogram<u64>, t0: Instant| {
        let _ = h.record((t0.elapsed().as_nanos() as u64).max(1000));
    };
    if w == Workload::Handshake {
        while Instant::now() < deadline {
            let t0 = Instant::now();
            let mut c = connect(target).await?;
            expect_str(c.list_tube_used().await?, "default")?;
            record(h, t0);
            totals.ops.fetch_add(1, Ordering::Relaxed);
            // Closing is not timed; a close_notify that cannot be sent is no error here.
            let _ = c.into_split().0.shutdown().await;
        }
        return Ok(());
    }
    let mut c = match client {
        Some(c) => c,
        None => connect(target).await?,
    };
    let tube = format!("bench{}", i % p.tubes.max(1));
    let plain = body(p.size, None);
    match w {
        Workload::Put => {
            c.use_tube(&tube).await?;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                inserted(c.put(0, 0, 60, &plain).await?)?;
                record(h, t0);
                totals.ops.fetch_add(1, Ordering::Relaxed);
            }
        }
        Workload::PutDelete => {
            c.use_tube(&tube).await?;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let id = inserted(c.put(0, 0, 60, &plain).await?)?;
                c.delete(id).await?;
                record(h, t0);
                totals.ops.fetch_add(2, Ordering::Relaxed);
            }
        }
        Workload::Cycle => {
            c.use_tube(&tube).await?;
            c.watch(&tube).await?;
            c.ignore("default").await?;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                inserted(c.put(0, 0, 60, &plain).await?)?;
                let id = c.reserve().await?.id;
                c.delete(id).await?;
                record(h, t0);
                totals.ops.fetch_add(3, Ordering::Relaxed);
            }
        }
        Workload::Pubsub => {
            if i.is_multiple_of(2) {
                c.use_tube(&tube).await?;
                // At most two jobs per consumer wait in the queue.
                let limit = 2 * (p.conns / 2).max(1) as i64;
                while Instant::now() < deadline {
                    if totals.outstanding.load(Ordering::Acquire) >= limit {
                        let wait = totals.room.notified();
                        let _ = tokio::time::timeout(Duration::from_millis(5), wait).await;
                        continue;
                    }
                    totals.outstanding.fetch_add(1, Ordering::AcqRel);
                    let b = body(p.size, Some(base.elapsed().as_nanos() as u64));
                    inserted(c.put(0, 0, 60, &b).await?)?;
                }
            } else {
                for t in 0..p.tubes.max(1) {
                    c.watch(&format!("bench{t}")).await?;
                }
                c.ignore("default").await?;
                while Instant::now() < deadline {
                    let Some(job) = reserved_or_timeout(c.reserve_with_timeout(1).await)? else {
                        continue;
                    };
                    let (id, b) = (job.id, job.body);
                    let stamp = std::str::from_utf8(&b[..16.min(b.len())])
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| bad("job body without a timestamp".into()))?;
                    let now = base.elapsed().as_nanos() as u64;
                    let _ = h.record(now.saturating_sub(stamp).max(1000));
                    totals.outstanding.fetch_sub(1, Ordering::AcqRel);
                    totals.room.notify_waiters();
                    c.delete(id).await?;
                    totals.ops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Workload::Pipeline => {
            // A sliding window: up to `depth` commands in flight. Each INSERTED id is
            // deleted by a later command; latency is per command, send to reply.
            c.use_tube(&tube).await?;
            let (tx, rx) = c.parts();
            let d = p.depth.max(1);
            let mut to_delete: std::collections::VecDeque<u64> = Default::default();
            let mut sent: std::collections::VecDeque<(bool, Instant)> = Default::default();
            let mut stopping = false;
            loop {
                if !stopping && Instant::now() >= deadline {
                    stopping = true;
                }
                // Refill in bursts (once half the window is free), so that commands
                // and replies travel in batches rather than one packet each.
                let refill = sent.len() <= d / 2;
                while refill && !stopping && sent.len() < d {
                    if let Some(id) = to_delete.pop_front() {
                        tx.delete(id)?;
                        sent.push_back((false, Instant::now()));
                    } else {
                        tx.put(0, 0, 60, &plain)?;
                        sent.push_back((true, Instant::now()));
                    }
                }
                tx.flush().await?;
                if sent.is_empty() {
                    break;
                }
                // Read one reply, then every reply already buffered, before refilling.
                while let Some((is_put, t0)) = sent.pop_front() {
                    if p.spin {
                        // Busy-polls (yielding to the runtime, which then polls for I/O
                        // without sleeping) up to 1 ms, then sleeps as usual (a server
                        // that stalls).
                        let t0 = Instant::now();
                        while !rx.try_fill().await? && t0.elapsed() < Duration::from_millis(1) {
                            tokio::task::yield_now().await;
                        }
                    }
                    if is_put {
                        to_delete.push_back(inserted(rx.recv_put().await?)?);
                    } else {
                        rx.recv_delete().await?;
                    }
                    record(h, t0);
                    totals.ops.fetch_add(1, Ordering::Relaxed);
                    if !rx.has_buffered_reply() {
                        break;
                    }
                }
            }
        }
        Workload::Drain => {
            c.watch("bench0").await?;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let Some(job) = reserved_or_timeout(c.reserve_with_timeout(0).await)? else {
                    break;
                };
                c.delete(job.id).await?;
                record(h, t0);
                totals.ops.fetch_add(1, Ordering::Relaxed);
            }
        }
        Workload::Fill | Workload::Idle | Workload::Recover | Workload::Handshake => {}
    }
    Ok(())
}

async fn make_extra_tubes(target: &Target, n: usize) -> io::Result<()> {
    let mut c = connect(target).await?;
    let (tx, rx) = c.parts();
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        for t in chunk {
            tx.use_tube(&format!("extra{t}"))?;
            tx.put(0, 0, 60, b"x")?;
        }
        tx.flush().await?;
        for _ in chunk {
            rx.recv_use_tube().await?;
            inserted(rx.recv_put().await?)?;
        }
    }
    Ok(())
}

/// Puts `jobs` jobs of `size` bytes in tube bench0.
pub(crate) async fn prefill(
    target: &Target,
    jobs: u64,
    size: usize,
    progress: &indicatif::ProgressBar,
) -> io::Result<()> {
    let mut c = connect(target).await?;
    c.use_tube("bench0").await?;
    let (tx, rx) = c.parts();
    let b = body(size, None);
    let mut done = 0;
    while done < jobs {
        let n = (jobs - done).min(1000);
        for _ in 0..n {
            tx.put(0, 0, 600, &b)?;
        }
        tx.flush().await?;
        for _ in 0..n {
            inserted(rx.recv_put().await?)?;
        }
        done += n;
        progress.set_message(format!("prefill {done}/{jobs}"));
    }
    Ok(())
}

/// `current-jobs-ready` of tube bench0.
pub(crate) async fn ready_jobs(target: &Target) -> io::Result<Option<u64>> {
    let mut c = connect(target).await?;
    match c.stats_tube("bench0").await {
        Ok(st) => Ok(st
            .get("current-jobs-ready")
            .and_then(|v| v.parse::<u64>().ok())),
        Err(Error::Server(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn fill(
    target: &Target,
    pid: Option<u32>,
    p: &Params,
    progress: &indicatif::ProgressBar,
) -> io::Result<Measurement> {
    let rss0 = pid.and_then(proc::rss_kb);
    let cpu0 = pid.and_then(proc::cpu_ns);
    let t0 = Instant::now();
    prefill(target, p.jobs, p.size, progress).await?;
    let secs = t0.elapsed().as_secs_f64();
    // Prove the server still works at this size.
    let ready = ready_jobs(target).await?;
    if ready != Some(p.jobs) {
        return Err(bad(format!(
            "expected {} ready jobs, stats says {ready:?}",
            p.jobs
        )));
    }
    let rss1 = pid.and_then(proc::rss_kb);
    let cpu1 = pid.and_then(proc::cpu_ns);
    Ok(Measurement {
        ops: p.jobs,
        secs,
        ops_per_sec: p.jobs as f64 / secs,
        server_cpu_us_per_op: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some((b - a) as f64 / 1000.0 / p.jobs as f64),
            _ => None,
        },
        server_rss_kb: rss1,
        rss_bytes_per_item: match (rss0, rss1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1024.0 / p.jobs as f64),
            _ => None,
        },
        ..Default::default()
    })
}

async fn idle(
    target: &Target,
    pid: Option<u32>,
    p: &Params,
    progress: &indicatif::ProgressBar,
) -> io::Result<Measurement> {
    proc::raise_nofile();
    let rss0 = pid.and_then(proc::rss_kb);
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(p.conns);
    for i in 0..p.conns {
        conns.push(connect(target).await?);
        if i % 500 == 0 {
            progress.set_message(format!("{i} connections"));
        }
    }
    // Every connection must be served.
    for c in conns.iter_mut() {
        let (tx, _) = c.parts();
        tx.list_tube_used()?;
        tx.flush().await?;
    }
    for c in conns.iter_mut() {
        let (_, rx) = c.parts();
        expect_str(rx.recv_list_tube_used().await?, "default")?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss1 = pid.and_then(proc::rss_kb);
    Ok(Measurement {
        ops: p.conns as u64,
        secs,
        ops_per_sec: p.conns as f64 / secs,
        server_rss_kb: rss1,
        rss_bytes_per_item: match (rss0, rss1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1024.0 / p.conns as f64),
            _ => None,
        },
        ..Default::default()
    })
}
