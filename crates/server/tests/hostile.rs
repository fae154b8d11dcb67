//! Robustness against hostile or careless clients, and the resource limits: bounded memory
//! per connection (endless lines, trickled huge bodies, pipelining without reading, many
//! reservations, slow readers), `--max-connections`, file-descriptor exhaustion,
//! `--max-jobs` / `--max-memory`, large jobs next to latency-sensitive clients, and `-u`.
//!
//! Memory is the server's resident set (VmRSS from /proc/<pid>/status); CPU time comes from
//! /proc/<pid>/stat. Bounds are generous (several times what was measured) so the tests
//! do not flake on a loaded machine, yet orders of magnitude below what the failures they
//! guard against would show (hundreds of MB, seconds of stall, a spinning core).
//!
//! The tests run one at a time (see `serial`): they measure latency and memory, and the
//! machine may have only two cores. Figures are printed; see them with
//! `cargo test --test hostile -- --nocapture`.
//!
//! The `-u` tests need root and a user `nobody`; without them they fail (they are never
//! skipped) with a "cannot run: ..." message saying what to provide.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// One test at a time: latency and memory figures must not depend on what the other tests
/// in this binary are doing.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A raw TCP connection to `s` with timeouts, for writing and reading bulk bytes.
fn raw(s: &Server, timeout: Duration) -> TcpStream {
    let t = TcpStream::connect(("127.0.0.1", s.port())).expect("connect");
    t.set_nodelay(true).unwrap();
    t.set_read_timeout(Some(timeout)).unwrap();
    t.set_write_timeout(Some(timeout)).unwrap();
    t
}

/// Reads exactly `n` bytes.
fn read_n(t: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    t.read_exact(&mut v)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    v
}

/// The longest one probe round trip may take while another client floods, streams or
/// hoards. Generous on purpose: those tests are about a client not being blocked or
/// starved, not about speed, and a loaded two-core CI machine can hold a thread up for a
/// while. A probe blocked until the other client's operation ends is caught however fast
/// that operation is by `MIN_DURING` (see `assert_not_blocked`).
const NOT_BLOCKED: Duration = Duration::from_secs(2);

/// The fewest probe round trips that must complete while another client's operation is in
/// progress. A probe the server holds until that operation ends completes at most one in
/// that time (the one in flight when it is released); a served one completes one every
/// millisecond or so.
const MIN_DURING: usize = 3;

/// Latency figures of a series of round trips.
#[derive(Debug, Clone, Copy)]
struct Lat {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// How many round trips completed within the window given to `Probe::finish_during`.
    during: Option<usize>,
}

impl Lat {
    fn of(mut v: Vec<Duration>) -> Lat {
        assert!(!v.is_empty(), "no latency samples");
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Lat {
            n: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: *v.last().unwrap(),
            during: None,
        }
    }
}

impl std::fmt::Display for Lat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} round trips, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.n,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )?;
        if let Some(n) = self.during {
            write!(f, ", {n} completed during the other client's operation")?;
        }
        Ok(())
    }
}

/// Fails unless the probe (`lat`, from `Probe::finish_during` over the window of `what`)
/// kept being served while `what` went on: no round trip took `NOT_BLOCKED` or longer,
/// and at least `MIN_DURING` of them completed within the window, so a server that held
/// the probe until `what` was over fails even when `what` took less than `NOT_BLOCKED`.
#[track_caller]
fn assert_not_blocked(lat: &Lat, what: &str) {
    assert!(
        lat.max < NOT_BLOCKED,
        "{what} stalled another client for {:?} ({lat})",
        lat.max
    );
    let during = lat.during.expect("figures from Probe::finish_during");
    assert!(
        during >= MIN_DURING,
        "only {during} of another client's round trips completed while {what} went on \
         (at least {MIN_DURING} expected): was it blocked until the end? ({lat})"
    );
}

/// A well-behaved client on its own connection and tube, doing put + reserve + delete
/// round trips (one every millisecond or so) until stopped, timing each.
struct Probe {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    /// Each round trip's duration and the moment it completed.
    h: JoinHandle<Vec<(Duration, Instant)>>,
}

impl Probe {
    fn start(s: &Server) -> Probe {
        let mut c = s.conn();
        assert_eq!(c.cmd("use probe"), "USING probe");
        assert_eq!(c.cmd("watch probe"), "WATCHING 2");
        assert_eq!(c.cmd("ignore default"), "WATCHING 1");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (st, dn) = (stop.clone(), done.clone());
        let h = std::thread::spawn(move || {
            let mut v = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let id = c.put(0, 0, 60, b"probe");
                let (got, body) = c.reserve_cmd("reserve-with-timeout 5");
                assert_eq!((got, &body[..]), (id, &b"probe"[..]));
                assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
                let end = Instant::now();
                v.push((end - t0, end));
                dn.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            v
        });
        let p = Probe { stop, done, h };
        p.wait_for(5);
        p
    }

    /// Waits (bounded) until `n` more round trips have completed.
    fn wait_for(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        wait_until("probe round trips", || {
            self.done.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(self) -> Lat {
        self.finish_all().0
    }

    /// `finish`, also counting the round trips that completed between `from` and `to`
    /// (another client's operation).
    fn finish_during(self, from: Instant, to: Instant) -> Lat {
        let (mut lat, ends) = self.finish_all();
        lat.during = Some(ends.iter().filter(|&&e| from < e && e <= to).count());
        lat
    }

    fn finish_all(self) -> (Lat, Vec<Instant>) {
        self.stop.store(true, Ordering::Relaxed);
        let v = self.h.join().expect("probe client failed");
        let ends = v.iter().map(|&(_, e)| e).collect();
        (Lat::of(v.into_iter().map(|(d, _)| d).collect()), ends)
    }
}

/// Highest RSS seen while `f` runs (sampled every `every`), and `f`'s result.
fn peak_rss_during<R>(pid: u32, f: impl FnOnce() -> R) -> (u64, R) {
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !st.load(Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
        peak.max(rss_bytes(pid))
    });
    let r = f();
    stop.store(true, Ordering::Relaxed);
    (sampler.join().unwrap(), r)
}

/// `n` copies of `cmd` + CRLF.
fn repeat_cmd(cmd: &str, n: usize) -> Vec<u8> {
    format!("{cmd}\r\n").repeat(n).into_bytes()
}

/// Reads `n` reply lines, each of which must be exactly `want`.
fn expect_lines(c: &mut Conn, n: usize, want: &str) {
    for i in 0..n {
        let l = c.line();
        assert_eq!(l, want, "reply {i} of {n}");
    }
}

const MB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// Bounded memory per connection
// ---------------------------------------------------------------------------------------

/// 200 MB without a line end: discarded as it arrives, one BAD_FORMAT at the CRLF, and the
/// connection goes on working; other clients are served meanwhile.
#[test]
fn endless_line_is_discarded_in_bounded_memory() {
    let _g = serial();
    let s = Server::start(&[]);
    let probe = Probe::start(&s);
    let base = rss_bytes(s.pid());
    let mut t = raw(&s, Duration::from_secs(20));
    let chunk = vec![b'x'; 64 * 1024];
    let total: u64 = 200 * MB;
    let (peak, (t0, t1)) = peak_rss_during(s.pid(), || {
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < total {
            t.write_all(&chunk).expect("send the endless line");
            sent += chunk.len() as u64;
        }
        (t0, Instant::now())
    });
    let took = t1 - t0;
    t.write_all(b"\r\nlist-tube-used\r\n").unwrap();
    assert_eq!(read_n(&mut t, 12), b"BAD_FORMAT\r\n");
    assert_eq!(read_n(&mut t, 15), b"USING default\r\n");
    let lat = probe.finish_during(t0, t1);
    let growth = peak.saturating_sub(base);
    println!(
        "endless line: 200 MB in {took:.2?}; RSS {:.1} MB -> peak {:.1} MB (+{:.2} MB); \
         other client: {lat}",
        mib(base),
        mib(peak),
        mib(growth)
    );
    assert!(
        growth < 8 * MB,
        "RSS grew {:.1} MB while discarding a 200 MB line",
        mib(growth)
    );
    // Other clients are served meanwhile: round trips complete during the flood, and
    // none waits until it is over (the bound on single stalls is
    // greedy_client_does_not_starve_others_on_one_worker's).
    assert!(
        lat.max < took + Duration::from_secs(1),
        "other client stalled beyond the flood: {lat}"
    );
    let during = lat.during.unwrap();
    assert!(
        during >= MIN_DURING,
        "only {during} round trips of another client completed during the flood: {lat}"
    );
}

/// `put` announcing 1e9 bytes, then 1 MB trickled: the server holds about what arrived,
/// not what was announced, and gives it back when the client goes away.
#[test]
fn trickled_huge_body_holds_only_what_arrived() {
    let _g = serial();
    let s = Server::start(&["-z", "1073741824"]);
    let mut c = s.conn();
    let base = rss_bytes(s.pid());
    let mut t = raw(&s, Duration::from_secs(5));
    t.write_all(b"put 0 0 60 1000000000\r\n").unwrap();
    let chunk = vec![b'b'; 4096];
    let sent = 256 * chunk.len() as u64;
    for _ in 0..256 {
        t.write_all(&chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // The server has read everything once the socket's receive queue is empty; poll RSS
    // until it stops changing.
    let mut held = rss_bytes(s.pid());
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = rss_bytes(s.pid());
        if now == held {
            break;
        }
        held = now;
    }
    let growth = held.saturating_sub(base);
    assert_eq!(
        c.cmd("list-tube-used"),
        "USING default",
        "others still served"
    );
    drop(t);
    let mut after = rss_bytes(s.pid());
    let freed = Instant::now() + Duration::from_secs(5);
    while after > base + sent / 2 && Instant::now() < freed {
        std::thread::sleep(Duration::from_millis(10));
        after = rss_bytes(s.pid());
    }
    println!(
        "trickled body: sent {:.1} MB of an announced 1e9; RSS {:.1} MB -> {:.1} MB \
         (+{:.2} MB); after close {:.1} MB",
        mib(sent),
        mib(base),
        mib(held),
        mib(growth),
        mib(after)
    );
    assert!(
        growth < sent + 8 * MB,
        "RSS grew {:.1} MB for {:.1} MB received of an announced 1e9 bytes",
        mib(growth),
        mib(sent)
    );
    assert!(
        after <= base + sent / 2,
        "RSS still {:.1} MB above start after the connection closed",
        mib(after.saturating_sub(base))
    );
    let st = c.yaml("stats");
    assert_eq!(st["current-jobs-ready"], "0", "no job from a cut-off body");
}

/// A million commands pipelined by a client that does not read its replies: the server
/// stops reading once 256 KiB of replies are queued, its memory stays flat, others are
/// served, and every reply arrives once the client reads.
#[test]
fn pipelining_without_reading_replies_is_bounded() {
    let _g = serial();
    const N: usize = 1_000_000;
    const REPLY: &[u8] = b"USING default\r\n";
    let s = Server::start(&[]);
    let base = rss_bytes(s.pid());
    let mut t = raw(&s, Duration::from_secs(60));
    let mut w = t.try_clone().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let wr = written.clone();
    let writer = std::thread::spawn(move || {
        let batch = repeat_cmd("list-tube-used", 4096);
        let mut left = N;
        while left > 0 {
            let n = left.min(4096);
            w.write_all(&batch[..n * 16]).expect("pipelined send");
            wr.fetch_add((n * 16) as u64, Ordering::Relaxed);
            left -= n;
        }
    });
    // Wait until the writer is stuck: the server has stopped reading.
    let mut last = u64::MAX;
    let mut stuck = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = written.load(Ordering::Relaxed);
        if now != last {
            last = now;
            stuck = Instant::now();
        } else if stuck.elapsed() > Duration::from_millis(300) {
            break;
        }
        assert!(Instant::now() < deadline, "writer never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        last < (N * 16) as u64,
        "the server read all {N} commands without anyone reading the replies"
    );
    // Another client, while a million commands wait on this one.
    let probe = Probe::start(&s);
    probe.wait_for(100);
    let blocked_rss = rss_bytes(s.pid());
    let lat = probe.finish();
    // Now read every reply (the writer resumes as the server does).
    let t0 = Instant::now();
    let (peak, ()) = peak_rss_during(s.pid(), || {
        let mut buf = vec![0u8; REPLY.len() * 4096];
        let mut left = N;
        while left > 0 {
            let n = left.min(4096);
            t.read_exact(&mut buf[..n * REPLY.len()])
                .unwrap_or_else(|e| panic!("reading replies, {left} to go: {e}"));
            assert!(
                buf[..n * REPLY.len()]
                    .chunks(REPLY.len())
                    .all(|r| r == REPLY),
                "unexpected reply among the pipelined ones"
            );
            left -= n;
        }
    });
    let took = t0.elapsed();
    writer.join().expect("writer");
    t.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut extra = [0u8; 1];
    let more = matches!(t.read(&mut extra), Ok(n) if n > 0);
    assert!(!more, "more replies than commands");
    println!(
        "pipelining: writer blocked after {:.1} MB of {:.1} MB; RSS {:.1} MB -> {:.1} MB \
         blocked, peak {:.1} MB while draining; {N} replies read in {took:.2?}; \
         other client: {lat}",
        mib(last),
        mib((N * 16) as u64),
        mib(base),
        mib(blocked_rss),
        mib(peak)
    );
    let growth = peak.max(blocked_rss).saturating_sub(base);
    assert!(
        growth < 64 * MB,
        "RSS grew {:.1} MB for a pipelining client",
        mib(growth)
    );
    assert!(
        lat.max < Duration::from_millis(500),
        "other client stalled: {lat}"
    );
}

/// A connection blocked in `reserve` reads at most 64 KiB ahead: a million commands
/// pipelined behind the reserve wait in the kernel, not in the server's memory, and are all
/// answered once a job arrives.
#[test]
fn blocked_reserve_reads_ahead_boundedly() {
    let _g = serial();
    const N: usize = 1_000_000;
    const REPLY: &[u8] = b"USING default\r\n";
    let s = Server::start(&[]);
    let mut p = s.conn();
    let base = rss_bytes(s.pid());
    let mut t = raw(&s, Duration::from_secs(60));
    t.write_all(b"reserve\r\n").unwrap();
    let mut w = t.try_clone().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let wr = written.clone();
    let writer = std::thread::spawn(move || {
        let batch = repeat_cmd("list-tube-used", 4096);
        let mut left = N;
        while left > 0 {
            let n = left.min(4096);
            w.write_all(&batch[..n * 16]).expect("send behind reserve");
            wr.fetch_add((n * 16) as u64, Ordering::Relaxed);
            left -= n;
        }
    });
    let mut last = u64::MAX;
    let mut stuck = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = written.load(Ordering::Relaxed);
        if now != last {
            last = now;
            stuck = Instant::now();
        } else if stuck.elapsed() > Duration::from_millis(300) {
            break;
        }
        assert!(Instant::now() < deadline, "writer never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = rss_bytes(s.pid());
    assert!(
        last < (N * 16) as u64,
        "all of it was read during the reserve"
    );
    assert_eq!(p.stat("stats", "current-waiting"), "1");
    let id = p.put(0, 0, 60, b"wake");
    let head = format!("RESERVED {id} 4\r\nwake\r\n");
    assert_eq!(read_n(&mut t, head.len()), head.as_bytes());
    let t0 = Instant::now();
    let mut buf = vec![0u8; REPLY.len() * 4096];
    let mut left = N;
    while left > 0 {
        let n = left.min(4096);
        t.read_exact(&mut buf[..n * REPLY.len()])
            .unwrap_or_else(|e| panic!("reading replies, {left} to go: {e}"));
        assert!(buf[..n * REPLY.len()]
            .chunks(REPLY.len())
            .all(|r| r == REPLY));
        left -= n;
    }
    writer.join().unwrap();
    println!(
        "blocked reserve: client blocked after sending {:.1} MB; RSS {:.1} MB -> {:.1} MB; \
         {N} replies after the job came, in {:.2?}",
        mib(last),
        mib(base),
        mib(held),
        t0.elapsed()
    );
    assert!(
        held.saturating_sub(base) < 8 * MB,
        "RSS grew {:.1} MB behind a blocked reserve",
        mib(held.saturating_sub(base))
    );
}

/// Idle connections keep no buffers: a thousand of them, each having sent a command,
/// cost a few KiB each.
#[test]
fn idle_connections_are_cheap() {
    let _g = serial();
    const N: usize = 1000;
    let s = Server::start(&[]);
    let mut c = s.conn();
    let base = rss_bytes(s.pid());
    let conns: Vec<Conn> = (0..N)
        .map(|_| {
            let mut c = s.conn();
            assert_eq!(c.cmd("list-tube-used"), "USING default");
            c
        })
        .collect();
    assert_eq!(c.stat("stats", "current-connections"), (N + 1).to_string());
    let held = rss_bytes(s.pid());
    let per = held.saturating_sub(base) / N as u64;
    drop(conns);
    wait_until("connections closed", || {
        c.stat("stats", "current-connections") == "1"
    });
    let after = rss_bytes(s.pid());
    println!(
        "idle connections: {N} cost {:.2} MB ({per} B each); RSS after closing them \
         {:.1} MB (start {:.1} MB)",
        mib(held.saturating_sub(base)),
        mib(after),
        mib(base)
    );
    assert!(per < 32 * 1024, "{per} B per idle connection");
}

/// Ten thousand jobs reserved by one connection: little memory per reservation, and
/// deleting them all (in the worst order for a list) or dropping the connection is fast.
#[test]
fn ten_thousand_reservations_are_cheap() {
    let _g = serial();
    const N: usize = 10_000;
    let s = Server::start(&[]);
    let mut p = s.conn();
    let mut puts = Vec::new();
    for i in 0..N {
        let body = format!("job-{i:05}");
        puts.extend_from_slice(format!("put 100 0 120 {}\r\n{body}\r\n", body.len()).as_bytes());
    }
    let put_all = |p: &mut Conn| -> Vec<u64> {
        p.send(&puts);
        (0..N)
            .map(|_| {
                let l = p.line();
                l.strip_prefix("INSERTED ")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("put: {l}"))
            })
            .collect()
    };
    let ids = put_all(&mut p);
    let mut c = s.conn();
    let base = rss_bytes(s.pid());
    let t0 = Instant::now();
    c.send(&repeat_cmd("reserve-with-timeout 0", N));
    let mut got = Vec::with_capacity(N);
    for _ in 0..N {
        let head = c.line();
        got.push(c.job_data(&head, "RESERVED").0);
    }
    let reserve_took = t0.elapsed();
    let held = rss_bytes(s.pid());
    assert_eq!(got, ids, "reserved in priority/id order");
    let st = p.yaml("stats");
    assert_eq!(st["current-jobs-reserved"], N.to_string());
    // Delete newest first: quadratic if reservations were a list searched from the front.
    let mut dels = Vec::new();
    for id in got.iter().rev() {
        dels.extend_from_slice(format!("delete {id}\r\n").as_bytes());
    }
    let t0 = Instant::now();
    c.send(&dels);
    expect_lines(&mut c, N, "DELETED");
    let delete_took = t0.elapsed();
    assert_eq!(p.stat("stats", "current-jobs-reserved"), "0");

    // Another ten thousand, reserved and abandoned: the hang-up returns them all.
    put_all(&mut p);
    let mut d = s.conn();
    d.send(&repeat_cmd("reserve-with-timeout 0", N));
    for _ in 0..N {
        let head = d.line();
        d.job_data(&head, "RESERVED");
    }
    let t0 = Instant::now();
    drop(d);
    wait_until("abandoned reservations back to ready", || {
        p.stat("stats", "current-jobs-ready") == N.to_string()
    });
    let release_took = t0.elapsed();
    let per = held.saturating_sub(base) as f64 / N as f64;
    println!(
        "10k reservations: reserve {reserve_took:.2?}, RSS +{:.2} MB ({per:.0} B per \
         reservation, reply buffers included); delete 10k {delete_took:.2?}; hang-up \
         returns 10k in {release_took:.2?}",
        mib(held.saturating_sub(base))
    );
    assert!(
        held.saturating_sub(base) < 8 * MB,
        "RSS grew {:.1} MB for {N} reservations",
        mib(held.saturating_sub(base))
    );
    assert!(
        reserve_took < Duration::from_secs(2),
        "reserving {N}: {reserve_took:?}"
    );
    assert!(
        delete_took < Duration::from_secs(1),
        "deleting {N}: {delete_took:?}"
    );
    assert!(
        release_took < Duration::from_secs(1),
        "hang-up with {N} reserved: {release_took:?}"
    );
}

/// A client that asks for many 64 KB bodies and never reads them holds at most the reply
/// queue's high-water mark, stops being served, and does not slow anyone else down.
#[test]
fn slow_reader_of_big_replies_does_not_block_others() {
    let _g = serial();
    const PEEKS: usize = 4000;
    let s = Server::start(&["-z", "70000"]);
    let mut c = s.conn();
    let body = vec![b'q'; 65536];
    let id = c.put(0, 0, 60, &body);
    let probe = Probe::start(&s);
    let base = rss_bytes(s.pid());
    let mut slow = raw(&s, Duration::from_secs(5));
    // 32 KB of commands asking for 256 MB of replies; fits in the socket buffers.
    slow.write_all(&repeat_cmd(&format!("peek {id}"), PEEKS))
        .unwrap();
    probe.wait_for(300);
    let lat = probe.finish();
    let held = rss_bytes(s.pid());
    let peeks: usize = c.stat("stats", "cmd-peek").parse().unwrap();
    // The slow client still gets correct replies when it finally reads.
    let head = format!("FOUND {id} 65536\r\n");
    for _ in 0..3 {
        assert_eq!(read_n(&mut slow, head.len()), head.as_bytes());
        assert_eq!(read_n(&mut slow, 65538)[..65536], body[..]);
    }
    drop(slow);
    println!(
        "slow reader: {peeks} of {PEEKS} peeks answered while it does not read; RSS {:.1} MB \
         -> {:.1} MB; other client: {lat}",
        mib(base),
        mib(held)
    );
    assert!(
        peeks < PEEKS / 2,
        "server produced {peeks} 64 KB replies for a client that reads none"
    );
    assert!(
        held.saturating_sub(base) < 16 * MB,
        "RSS grew {:.1} MB for a client that does not read",
        mib(held.saturating_sub(base))
    );
    assert!(
        lat.max < Duration::from_millis(500),
        "other client stalled: {lat}"
    );
    assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
}

/// The reply queue holds at most its 256 KiB high-water mark plus one reply: clients that
/// peek a 20 MB job again and again without reading cost one copy of it each, not one per
/// peek (replies copy the body, so that copy is the per-connection cost of a big job).
#[test]
fn slow_readers_of_a_large_job_hold_one_reply_each() {
    let _g = serial();
    const SIZE: usize = 20_000_000;
    const READERS: usize = 3;
    let s = Server::start(&["-z", "30000000"]);
    let mut c = s.conn();
    c.set_timeout(Duration::from_secs(20));
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let id = c.put(0, 0, 60, &body);
    let base = rss_bytes(s.pid());
    let mut readers: Vec<TcpStream> = (0..READERS)
        .map(|_| {
            let mut t = raw(&s, Duration::from_secs(20));
            t.write_all(&repeat_cmd(&format!("peek {id}"), 5)).unwrap();
            t
        })
        .collect();
    // Wait for the server to settle: RSS unchanged for 300 ms (bounded).
    let mut held = rss_bytes(s.pid());
    let mut same = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while same.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = rss_bytes(s.pid());
        if now != held {
            held = now;
            same = Instant::now();
        }
    }
    let growth = held.saturating_sub(base);
    assert_eq!(
        c.cmd("list-tube-used"),
        "USING default",
        "others still served"
    );
    let head = format!("FOUND {id} {SIZE}\r\n");
    assert_eq!(read_n(&mut readers[0], head.len()), head.as_bytes());
    assert!(read_n(&mut readers[0], SIZE + 2)[..SIZE] == body[..]);
    drop(readers);
    println!(
        "{READERS} clients peeking a 20 MB job 5 times each without reading: RSS +{:.1} MB",
        mib(growth)
    );
    assert!(
        growth < (READERS as u64) * (SIZE as u64 + 4 * MB),
        "RSS grew {:.1} MB: more than one 20 MB reply per connection",
        mib(growth)
    );
}

// ---------------------------------------------------------------------------------------
// Connection and descriptor limits
// ---------------------------------------------------------------------------------------

/// Connects and checks the server answers; None if it closed the connection instead.
fn served(s: &Server) -> Option<Conn> {
    let mut c = s.conn();
    c.try_send(b"list-tube-used\r\n").ok()?;
    match c.try_line() {
        Ok(l) => {
            assert_eq!(l, "USING default");
            Some(c)
        }
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ),
                "refused connection: expected EOF or reset, got {e}"
            );
            None
        }
    }
}

/// Like `served`, retrying (bounded) while a just-closed connection is still counted.
fn served_soon(s: &Server) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = served(s) {
            return c;
        }
        assert!(Instant::now() < deadline, "connection refused for 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn max_connections_refuses_extra_connections_cleanly() {
    let _g = serial();
    const N: usize = 5;
    let s = Server::start(&["--max-connections", &N.to_string()]);
    let mut conns: Vec<Conn> = (0..N).map(|_| served_soon(&s)).collect();
    for _ in 0..3 {
        let t0 = Instant::now();
        assert!(served(&s).is_none(), "connection {} was served", N + 1);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "refusal took {took:?}");
    }
    for c in &mut conns {
        assert_eq!(c.cmd("list-tube-used"), "USING default");
    }
    let st = conns[0].yaml("stats");
    assert_eq!(st["current-connections"], N.to_string());
    drop(conns.pop());
    conns.push(served_soon(&s));
    assert!(served(&s).is_none(), "limit holds after a reconnect");
    let cur: usize = conns[0]
        .stat("stats", "current-connections")
        .parse()
        .unwrap();
    assert!(cur <= N, "current-connections {cur} > {N}");
}

/// With RLIMIT_NOFILE at 64 and more clients than that: the accept loop neither dies nor
/// spins, the connections it has keep working, the rest wait in the backlog and are served
/// once descriptors free up, and the log says what happened.
#[test]
fn fd_exhaustion_neither_hangs_nor_spins() {
    let _g = serial();
    const CLIENTS: usize = 100;
    let dir = TempDir::new("fds");
    let log = dir.join("stderr");
    let s = Server::start_with(&[], |cmd| {
        cmd.stderr(std::fs::File::create(&log).unwrap());
        // SAFETY: only async-signal-safe setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let mut socks: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let t = raw(&s, Duration::from_secs(5));
            t.set_nonblocking(true).unwrap();
            t
        })
        .collect();
    for t in &mut socks {
        t.write_all(b"list-tube-used\r\n").unwrap();
    }
    // Collect replies until no more arrive for half a second.
    let mut got = vec![Vec::new(); CLIENTS];
    let poll = |socks: &mut [TcpStream], got: &mut [Vec<u8>]| -> bool {
        let mut progress = false;
        let mut buf = [0u8; 64];
        for (t, g) in socks.iter_mut().zip(got.iter_mut()) {
            match t.read(&mut buf) {
                Ok(0) => panic!("server closed a connection"),
                Ok(n) => {
                    g.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        progress
    };
    let mut quiet = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while quiet.elapsed() < Duration::from_millis(500) {
        if poll(&mut socks, &mut got) {
            quiet = Instant::now();
        }
        assert!(Instant::now() < deadline, "replies kept trickling in");
        std::thread::sleep(Duration::from_millis(5));
    }
    let done: Vec<usize> = (0..CLIENTS)
        .filter(|&i| got[i] == b"USING default\r\n")
        .collect();
    assert!(
        (0..CLIENTS).all(|i| got[i].is_empty() || got[i] == b"USING default\r\n"),
        "odd replies"
    );
    let waiting = CLIENTS - done.len();
    assert!(
        waiting > 0,
        "all {CLIENTS} served: the descriptor limit did not bite"
    );
    assert!(done.len() >= 20, "only {} connections served", done.len());
    // Not spinning on the pending connections.
    let cpu0 = cpu_time(s.pid());
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(s.pid()) - cpu0;
    assert!(s_alive(&s), "sproutd died");
    // Existing connections still work.
    let first = done[0];
    socks[first].set_nonblocking(false).unwrap();
    socks[first].write_all(b"list-tube-used\r\n").unwrap();
    assert_eq!(read_n(&mut socks[first], 15), b"USING default\r\n");
    socks[first].set_nonblocking(true).unwrap();
    // Free descriptors: close most of the served connections; the waiting ones get in.
    let close: Vec<usize> = done.iter().copied().skip(1).collect();
    for &i in &close {
        socks[i].shutdown(Shutdown::Both).unwrap();
    }
    let t0 = Instant::now();
    wait_until("waiting connections served", || {
        let mut open: Vec<(usize, &mut TcpStream)> = socks
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| !close.contains(i))
            .collect();
        let mut buf = [0u8; 64];
        for (i, t) in open.iter_mut() {
            if let Ok(n) = t.read(&mut buf) {
                got[*i].extend_from_slice(&buf[..n]);
            }
        }
        (0..CLIENTS)
            .filter(|i| !close.contains(i))
            .all(|i| got[i] == b"USING default\r\n")
    });
    let recovered = t0.elapsed();
    let mut c = served_soon(&s);
    let cur: usize = c.stat("stats", "current-connections").parse().unwrap();
    assert_eq!(cur, CLIENTS - close.len() + 1);
    let text = std::fs::read_to_string(&log).unwrap();
    let emfile = text.matches("Too many open files").count();
    println!(
        "fd exhaustion (RLIMIT_NOFILE 64): {} of {CLIENTS} served, {waiting} waited; CPU \
         {cpu:.2?} in 1 s while refusing; all served {recovered:.2?} after closing {}; {emfile} \
         log lines about EMFILE",
        done.len(),
        close.len()
    );
    assert!(
        cpu < Duration::from_millis(300),
        "sproutd used {cpu:?} of CPU in 1 s while out of descriptors"
    );
    assert!(
        emfile > 0,
        "the log does not say accept failed with EMFILE:\n{text}"
    );
}

fn s_alive(s: &Server) -> bool {
    std::fs::metadata(format!("/proc/{}/status", s.pid())).is_ok()
        && !std::fs::read_to_string(format!("/proc/{}/status", s.pid()))
            .unwrap_or_default()
            .contains("State:\tZ")
}

// ---------------------------------------------------------------------------------------
// --max-jobs, --max-memory
// ---------------------------------------------------------------------------------------

/// The stats that a refused put must leave alone.
fn job_stats(c: &mut Conn) -> Vec<(String, String)> {
    let st = c.yaml("stats");
    let tube = c.yaml("stats-tube default");
    let mut v: Vec<(String, String)> = [
        "current-jobs-urgent",
        "current-jobs-ready",
        "current-jobs-reserved",
        "current-jobs-delayed",
        "current-jobs-buried",
        "total-jobs",
    ]
    .iter()
    .map(|k| (k.to_string(), st[*k].clone()))
    .collect();
    for k in ["current-jobs-ready", "total-jobs", "current-jobs-urgent"] {
        v.push((format!("tube {k}"), tube[k].clone()));
    }
    v
}

#[test]
fn max_jobs_answers_out_of_memory() {
    let _g = serial();
    let s = Server::start(&["--max-jobs", "10"]);
    let mut c = s.conn();
    let ids: Vec<u64> = (0..10).map(|i| c.put(0, 0, 60, &[b'a' + i])).collect();
    let before = job_stats(&mut c);
    let puts: u64 = c.stat("stats", "cmd-put").parse().unwrap();
    assert_eq!(c.put_raw(0, 0, 60, b"eleven"), "OUT_OF_MEMORY");
    // Pipelined: all refused, in order, and the connection stays in sync.
    c.send(b"put 0 0 60 1\r\nx\r\nput 0 0 60 1\r\ny\r\nlist-tube-used\r\n");
    assert_eq!(c.line(), "OUT_OF_MEMORY");
    assert_eq!(c.line(), "OUT_OF_MEMORY");
    assert_eq!(c.line(), "USING default");
    assert_eq!(
        job_stats(&mut c),
        before,
        "a refused put changed the job stats"
    );
    let after: u64 = c.stat("stats", "cmd-put").parse().unwrap();
    assert_eq!(
        after,
        puts + 3,
        "cmd-put counts put commands, as in beanstalkd"
    );
    // Existing jobs are fine: reserve, release, bury, kick, peek, delete.
    let (id, body) = c.reserve();
    assert_eq!((id, body), (ids[0], b"a".to_vec()));
    assert_eq!(c.cmd(&format!("bury {id} 0")), "BURIED");
    assert_eq!(c.cmd("kick 1"), "KICKED 1");
    assert_eq!(c.peek(&format!("peek {}", ids[9])), (ids[9], b"j".to_vec()));
    assert_eq!(c.put_raw(0, 0, 60, b"z"), "OUT_OF_MEMORY");
    assert_eq!(c.cmd(&format!("delete {}", ids[3])), "DELETED");
    let n = c.put(0, 0, 60, b"room again");
    assert_eq!(c.put_raw(0, 0, 60, b"z"), "OUT_OF_MEMORY");
    assert_eq!(c.cmd(&format!("delete {n}")), "DELETED");
    assert_eq!(c.cmd(&format!("delete {}", ids[4])), "DELETED");
    c.put(0, 0, 60, b"one");
    c.put(0, 0, 60, b"two");
    assert_eq!(c.put_raw(0, 0, 60, b"z"), "OUT_OF_MEMORY");
    assert_eq!(c.stat("stats", "current-jobs-ready"), "10");
}

#[test]
fn max_memory_answers_out_of_memory() {
    let _g = serial();
    let s = Server::start(&["--max-memory", "1000"]);
    let mut c = s.conn();
    let ids: Vec<u64> = (0..10).map(|_| c.put(0, 0, 60, &[b'm'; 100])).collect();
    let before = job_stats(&mut c);
    assert_eq!(c.put_raw(0, 0, 60, b"1"), "OUT_OF_MEMORY", "1 byte over");
    assert_eq!(
        job_stats(&mut c),
        before,
        "a refused put changed the job stats"
    );
    // Only body bytes count: an empty body still fits.
    let empty = c.put(0, 0, 60, b"");
    assert_eq!(c.cmd(&format!("delete {empty}")), "DELETED");
    // Reserving, burying and releasing do not change the accounting.
    let (id, _) = c.reserve();
    assert_eq!(c.cmd(&format!("release {id} 0 0")), "RELEASED");
    let (id, _) = c.reserve();
    assert_eq!(c.cmd(&format!("bury {id} 0")), "BURIED");
    assert_eq!(c.put_raw(0, 0, 60, b"1"), "OUT_OF_MEMORY");
    // Deleting the buried job frees its 100 bytes: 100 fit, 101 do not.
    assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
    assert_eq!(c.put_raw(0, 0, 60, &[b'n'; 101]), "OUT_OF_MEMORY");
    let n = c.put(0, 0, 60, &[b'n'; 100]);
    assert_eq!(c.put_raw(0, 0, 60, b"1"), "OUT_OF_MEMORY");
    for id in ids.iter().skip(2).chain([&n]) {
        assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
    }
    // 100 bytes in use: nine more 100-byte jobs fit, then nothing.
    assert_eq!(c.stat("stats", "current-jobs-ready"), "1");
    for _ in 0..9 {
        c.put(0, 0, 60, &[b'o'; 100]);
    }
    assert_eq!(c.put_raw(0, 0, 60, b"1"), "OUT_OF_MEMORY");
}

/// A put that cannot fit should be refused without its body being buffered, as beanstalkd
/// does (it decides OUT_OF_MEMORY at the header and skips the body).
#[test]
fn refused_put_body_is_not_buffered() {
    let _g = serial();
    let s = Server::start(&["--max-memory", "1048576", "-z", "200000000"]);
    let base = rss_bytes(s.pid());
    let mut t = raw(&s, Duration::from_secs(20));
    t.write_all(b"put 0 0 60 100000000\r\n").unwrap();
    let chunk = vec![b'r'; 1 << 20];
    let (peak, ()) = peak_rss_during(s.pid(), || {
        for _ in 0..100 {
            t.write_all(&chunk[..1_000_000]).unwrap();
        }
        t.write_all(b"\r\n").unwrap();
    });
    assert_eq!(read_n(&mut t, 15), b"OUT_OF_MEMORY\r\n");
    println!(
        "refused 100 MB put under --max-memory 1 MiB: RSS +{:.1} MB",
        mib(peak.saturating_sub(base))
    );
    assert!(
        peak.saturating_sub(base) < 16 * MB,
        "buffered {:.1} MB of a put that was always going to be refused",
        mib(peak.saturating_sub(base))
    );
}

/// Without --max-jobs / --max-memory nothing is refused.
#[test]
fn defaults_are_unlimited() {
    let _g = serial();
    const N: usize = 300_000;
    const BATCH: usize = 10_000;
    let s = Server::start(&[]);
    let mut c = s.conn();
    let batch = repeat_cmd("put 0 0 60 20\r\nxxxxxxxxxxxxxxxxxxxx", BATCH);
    let t0 = Instant::now();
    for _ in 0..N / BATCH {
        c.send(&batch);
        for _ in 0..BATCH {
            let l = c.line();
            assert!(l.starts_with("INSERTED "), "put: {l}");
        }
    }
    let took = t0.elapsed();
    assert_eq!(c.stat("stats", "current-jobs-ready"), N.to_string());
    println!(
        "defaults: {N} puts of 20 bytes in {took:.2?}; RSS {:.1} MB",
        mib(rss_bytes(s.pid()))
    );
}

// ---------------------------------------------------------------------------------------
// Large jobs
// ---------------------------------------------------------------------------------------

/// Makes sproutd run on CPU 0 only, so it runs one event-loop thread (as on a one-CPU
/// machine or container).
fn pin_to_one_cpu(cmd: &mut std::process::Command) {
    // SAFETY: only async-signal-safe sched_setaffinity between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One client streams a 100 MB body (1 MiB writes, as fast as the socket takes them)
/// while the probe does put/reserve/delete round trips; returns the probe's figures after
/// checking the big job comes back intact (length and CRC-32C).
fn stream_100mb_body(s: &Server) -> Lat {
    const SIZE: usize = 100_000_000;
    const CHUNK: usize = 1 << 20;
    // A 1 MiB pseudo-random block; chunk k is the block with k in its first 8 bytes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let block: Vec<u8> = (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let chunks: Vec<Vec<u8>> = (0..SIZE.div_ceil(CHUNK))
        .map(|k| {
            let mut c = block.clone();
            c[..8].copy_from_slice(&(k as u64).to_le_bytes());
            c.truncate(CHUNK.min(SIZE - k * CHUNK));
            c
        })
        .collect();
    let crc = chunks
        .iter()
        .fold(0u32, |crc, c| crc32c::crc32c_append(crc, c));

    let mut big = s.conn();
    big.set_timeout(Duration::from_secs(30));
    assert_eq!(big.cmd("use big"), "USING big");
    let probe = Probe::start(s);
    let base = rss_bytes(s.pid());
    let (peak, (reply, t0, t1)) = peak_rss_during(s.pid(), || {
        let t0 = Instant::now();
        big.send(format!("put 0 0 600 {SIZE}\r\n").as_bytes());
        for c in &chunks {
            big.send(c);
        }
        big.send(b"\r\n");
        let reply = big.line();
        (reply, t0, Instant::now())
    });
    let stream = t1 - t0;
    let lat = probe.finish_during(t0, t1);
    // Only a stall that outlasts the stream fails here; the bound on single stalls is
    // large_body_stream_does_not_stall_others'.
    assert!(
        lat.max < stream + Duration::from_secs(1),
        "round trips stalled beyond the 100 MB stream: {lat}"
    );
    assert!(reply.starts_with("INSERTED "), "big put: {reply}");
    drop(chunks);
    println!(
        "100 MB body streamed in {stream:.2?} (RSS {:.0} MB -> peak {:.0} MB); other client \
         meanwhile: {lat}",
        mib(base),
        mib(peak)
    );
    let during = lat.during.unwrap();
    assert!(
        during >= MIN_DURING,
        "only {during} round trips of another client completed during the stream: {lat}"
    );
    // The job is intact.
    let mut w = s.conn();
    w.set_timeout(Duration::from_secs(30));
    assert_eq!(w.cmd("watch big"), "WATCHING 2");
    assert_eq!(w.cmd("ignore default"), "WATCHING 1");
    let t0 = Instant::now();
    let (id, data) = w.reserve();
    let took = t0.elapsed();
    assert_eq!(data.len(), SIZE, "length of the 100 MB job");
    assert!(crc32c::crc32c(&data) == crc, "100 MB job body changed");
    assert_eq!(w.cmd(&format!("delete {id}")), "DELETED");
    println!("100 MB job reserved back in {took:.2?}, CRC-32C ok");
    lat
}

/// -z up to 200 MB: a 100 MB job streams in and comes back intact, and other clients keep
/// being served meanwhile (with a loose bound on single stalls; see the test below).
#[test]
fn large_body_streams_in_intact_while_others_are_served() {
    let _g = serial();
    let s = Server::start(&["-z", "200000000"]);
    stream_100mb_body(&s);
}

/// No round trip of another client waits for a streaming 100 MB body (a few milliseconds
/// here; the bound is `NOT_BLOCKED`, as these tests are about blocking, not speed).
#[test]
fn large_body_stream_does_not_stall_others() {
    let _g = serial();
    let s = Server::start(&["-z", "200000000"]);
    let lat = stream_100mb_body(&s);
    assert_not_blocked(&lat, "a 100 MB body streaming in");
}

#[test]
fn greedy_client_does_not_starve_others_on_one_worker() {
    let _g = serial();
    let s = Server::start_with(&["-z", "200000000"], pin_to_one_cpu);
    let probe = Probe::start(&s);
    let mut t = raw(&s, Duration::from_secs(30));
    let chunk = vec![b'x'; 64 * 1024];
    let t0 = Instant::now();
    for _ in 0..3200 {
        t.write_all(&chunk).unwrap();
    }
    let t1 = Instant::now();
    t.write_all(b"\r\n").unwrap();
    assert_eq!(read_n(&mut t, 12), b"BAD_FORMAT\r\n");
    let took = t0.elapsed();
    let lat = probe.finish_during(t0, t1);
    println!("one worker, 200 MB endless line in {took:.2?}: other client {lat}");
    assert_not_blocked(&lat, "one client's 200 MB endless line");
    let lat = stream_100mb_body(&s);
    assert_not_blocked(&lat, "one client's 100 MB body");
}

// ---------------------------------------------------------------------------------------
// -u USER
// ---------------------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: geteuid has no side effects.
    unsafe { libc::geteuid() == 0 }
}

fn nobody() -> Option<(u32, u32)> {
    let name = std::ffi::CString::new("nobody").unwrap();
    // SAFETY: getpwnam returns NULL or a pointer to static storage read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null passwd entry.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// What every `-u` test needs: to run as root, and a user `nobody` to switch to. Fails the
/// test (see `cannot_run`) when either is missing; returns nobody's uid and gid.
fn root_and_nobody() -> (u32, u32) {
    require(
        "-u tests must run as root (effective uid 0): run them as root, e.g. \
         `sudo -E cargo test -p sproutd --test hostile flag_u`, or in a root container",
        is_root(),
    );
    nobody().unwrap_or_else(|| {
        cannot_run(
            "-u tests switch to the user `nobody`, which this machine does not have: \
             add it (e.g. `useradd --system --no-create-home --shell /usr/sbin/nologin nobody`)",
        )
    })
}

/// A privileged port (< 1024) that nothing listens on now (this process is root). Only
/// root can bind it, so a server serving there bound it before it dropped privileges.
fn free_privileged_port() -> u16 {
    (1..1024)
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .unwrap_or_else(|| cannot_run("every port below 1024 on 127.0.0.1 is taken"))
}

/// `Uid:` / `Gid:` / `Groups:` values of every thread of `pid`.
fn thread_ids(pid: u32) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let st = std::fs::read_to_string(e.unwrap().path().join("status")).unwrap();
        let get = |k: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        v.push((get("Uid:"), get("Gid:"), get("Groups:")));
    }
    v
}

#[test]
fn flag_u_drops_privileges_after_binding() {
    let _g = serial();
    let (uid, gid) = root_and_nobody();
    // A unix socket in a root-owned directory nobody cannot write: created before the drop.
    let dir = TempDir::new("su");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let sock = dir.join("s");
    let s = Server::start_unix(&sock, &["-u", "nobody"]);
    let want = (
        format!("{uid} {uid} {uid} {uid}"),
        format!("{gid} {gid} {gid} {gid}"),
    );
    let ids = thread_ids(s.pid());
    for (u, g, _) in &ids {
        assert_eq!((u, g), (&want.0, &want.1), "thread Uid/Gid");
    }
    println!(
        "-u nobody: {} threads all Uid {} / Gid {}; Groups: {:?}",
        ids.len(),
        ids[0].0,
        ids[0].1,
        ids[0].2
    );
    // The socket was made while still root.
    assert_eq!(std::fs::metadata(&sock).unwrap().uid(), 0);
    let mut c = s.conn();
    c.put(0, 0, 60, b"as nobody");

    // A port < 1024: only root can bind it, so serving there proves the bind came first.
    let port = free_privileged_port();
    let mut cmd = sproutd();
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-u", "nobody"]);
    let s = Server::launch(cmd, Addr::Tcp(port))
        .unwrap_or_else(|st| panic!("sproutd -p {port} -u nobody did not start: {st}"));
    let ids = thread_ids(s.pid());
    assert!(ids.iter().all(|(u, g, _)| (u, g) == (&want.0, &want.1)));
    println!(
        "-p {port} -u nobody: serving, {} threads as nobody",
        ids.len()
    );
}

/// `-u` should leave no trace of the starting user's groups.
#[test]
fn flag_u_drops_supplementary_groups() {
    let _g = serial();
    let (_, gid) = root_and_nobody();
    let s = Server::start_with(&["-u", "nobody"], |cmd| {
        // SAFETY: only async-signal-safe setgroups between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let groups: [libc::gid_t; 3] = [0, 4, 27];
                if libc::setgroups(3, groups.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    for (u, g, groups) in thread_ids(s.pid()) {
        println!("-u nobody started with groups 0 4 27: Uid {u}, Gid {g}, Groups {groups:?}");
        assert!(
            groups
                .split_whitespace()
                .all(|x| x == gid.to_string() || x == "65534"),
            "supplementary groups kept after -u nobody: {groups:?}"
        );
    }
}

/// beanstalkd opens the binlog after dropping privileges: a directory the user cannot
/// write is an error at startup, with a message that says which file.
#[test]
fn flag_u_opens_the_binlog_as_the_user() {
    let _g = serial();
    let (uid, gid) = root_and_nobody();
    let dir = TempDir::new("su-b");
    let wal = dir.join("wal");
    std::fs::create_dir(&wal).unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&wal, PermissionsExt::from_mode(0o755)).unwrap();
    let port = free_port().to_string();
    let (st, _, err) = run_to_exit(&[
        "-l",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        "nobody",
        "-b",
        wal.to_str().unwrap(),
    ]);
    println!(
        "-u nobody -b <root-owned dir>: {st}; stderr: {}",
        err.trim()
    );
    assert_eq!(st.code(), Some(10), "exit status (beanstalkd: 10)");
    assert!(
        err.contains("failed to lock wal dir") && err.contains("Permission denied"),
        "unclear error: {err}"
    );
    assert!(
        err.contains(wal.to_str().unwrap()),
        "error names the dir: {err}"
    );

    // Owned by nobody: works, and the files it writes are nobody's.
    std::os::unix::fs::chown(&wal, Some(uid), Some(gid)).unwrap();
    let s = Server::start(&["-u", "nobody", "-b", wal.to_str().unwrap()]);
    let mut c = s.conn();
    c.put(0, 0, 60, b"logged as nobody");
    for e in std::fs::read_dir(&wal).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} owned by {}:{}",
            e.path().display(),
            m.uid(),
            m.gid()
        );
    }
}
