//! Nothing is seen before it is durable: sproutd run inside the test process with its log
//! on a [`FaultIo`], so that the test can hold the writer's fsync or fill the disk through
//! the segment-I/O trait (no root, no tmpfs), and check what clients see meanwhile.

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sprout_storage::{recover, FaultIo};
use sproutd::config::{parse_args, Parsed};
use sproutd::{listen, persist, run_until, start_maintenance, Clock, Shared};

/// A sproutd running on a thread of this process, listening on a unix socket, its log on a
/// `FaultIo`. Stopped (as by SIGTERM) on drop.
struct InProcess {
    addr: Addr,
    io: Arc<FaultIo>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<i32>>,
}

impl InProcess {
    fn start(dir: &Path, sock: PathBuf, flags: &[&str]) -> InProcess {
        let io = FaultIo::new(dir);
        Self::start_with(dir, sock, flags, io)
    }

    fn start_with(dir: &Path, sock: PathBuf, flags: &[&str], io: Arc<FaultIo>) -> InProcess {
        let mut args: Vec<String> = vec![
            "sproutd".into(),
            "-l".into(),
            format!("unix:{}", sock.display()),
            "-b".into(),
            dir.display().to_string(),
        ];
        args.extend(flags.iter().map(|s| s.to_string()));
        let Parsed::Run(cfg) = parse_args(args) else {
            panic!("bad flags {flags:?}");
        };
        let cfg = *cfg;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let seg_io = io.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = listen::open(&cfg).expect("listen");
                let clock = Clock::new();
                let (engine, binlog) =
                    persist::open_with_io(&cfg, clock.now(), Box::new(seg_io)).expect("open log");
                let shared = Arc::new(Shared::with_engine_and_log(
                    cfg,
                    engine,
                    Some(binlog),
                    clock,
                ));
                start_maintenance(shared.clone());
                ready_tx.send(()).unwrap();
                run_until(listener, shared, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        ready_rx
            .recv_timeout(READY_TIMEOUT)
            .expect("in-process sproutd did not start");
        InProcess {
            addr: Addr::Unix(sock),
            io,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn conn(&self) -> Conn {
        Conn::try_connect(&self.addr).expect("connect to in-process sproutd")
    }

    /// Stops the server as SIGTERM would (the log is synced) and waits for it.
    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            assert_eq!(t.join().expect("server thread"), 0);
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Release any held sync first, or the shutdown would wait for it forever.
        self.io.release_syncs();
        self.io.set_space(None);
        self.io.set_fail_writes(false);
        if !std::thread::panicking() {
            self.halt();
        } else if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Nothing arrives on `c` for `d`: the server is holding its reply.
fn silent_for(c: &mut Conn, d: Duration, what: &str) {
    c.set_timeout(d);
    match c.try_line() {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(line) => panic!("{what}: got {line:?} while the log was not durable"),
        Err(e) => panic!("{what}: {e}"),
    }
    c.set_timeout(IO_TIMEOUT);
}

/// With `-f 0`, a worker blocked in `reserve` gets a job only once the job's put is synced:
/// while the fsync is held, neither the producer's INSERTED nor the worker's RESERVED may
/// leave, nor may a `peek` show the job; once it is released, both arrive.
#[test]
fn reserve_waits_until_the_put_is_synced() {
    let dir = TempDir::new("durable-reserve");
    let srv = InProcess::start(dir.path(), dir.join("s.sock"), &["-f", "0"]);
    let mut w = srv.conn();
    // A first job, synced, so that the segment exists and the id is known.
    let mut p = srv.conn();
    let first = p.put(0, 0, 60, b"first");
    assert_eq!(w.reserve().0, first);
    assert_eq!(w.cmd(&format!("delete {first}")), "DELETED");

    w.send(b"reserve-with-timeout 10\r\n");
    // The worker is registered as waiting before the put is sent.
    let mut o = srv.conn();
    wait_until("worker waiting", || {
        o.stat("stats", "current-waiting") == "1"
    });
    srv.io.hold_syncs();
    p.send(b"put 0 0 60 6\r\nsecond\r\n");
    assert!(
        srv.io.wait_held(Duration::from_secs(5)),
        "the put's sync never started"
    );
    silent_for(&mut w, Duration::from_millis(400), "worker");
    silent_for(&mut p, Duration::from_millis(100), "producer");
    // The job is not visible to anyone either.
    let next = first + 1;
    assert_eq!(o.cmd(&format!("peek {next}")), "NOT_FOUND");
    assert_eq!(o.stat("stats-tube default", "current-jobs-ready"), "0");

    let syncs = srv.io.syncs();
    srv.io.release_syncs();
    let line = w.line();
    let (id, body) = w.job_data(&line, "RESERVED");
    assert_eq!((id, &body[..]), (next, &b"second"[..]));
    assert_eq!(p.line(), format!("INSERTED {next}"));
    assert!(
        srv.io.syncs() > syncs,
        "replies left before a sync completed"
    );
    srv.stop();
}

/// A released or kicked job is shown to the next worker only once its change is durable.
#[test]
fn reserve_of_a_released_job_waits_for_the_release() {
    let dir = TempDir::new("durable-release");
    let srv = InProcess::start(dir.path(), dir.join("s.sock"), &["-f", "0"]);
    let mut a = srv.conn();
    let mut b = srv.conn();
    let id = a.put(5, 0, 60, b"job");
    assert_eq!(a.reserve().0, id);
    b.send(b"reserve-with-timeout 10\r\n");
    let mut o = srv.conn();
    wait_until("b waiting", || o.stat("stats", "current-waiting") == "1");
    srv.io.hold_syncs();
    a.send(format!("release {id} 5 0\r\n").as_bytes());
    assert!(srv.io.wait_held(Duration::from_secs(5)));
    silent_for(&mut b, Duration::from_millis(400), "second worker");
    silent_for(&mut a, Duration::from_millis(100), "releasing worker");
    srv.io.release_syncs();
    assert_eq!(a.line(), "RELEASED");
    let line = b.line();
    assert_eq!(b.job_data(&line, "RESERVED").0, id);
    srv.stop();
}

/// The disk fills up (through the segment-I/O trait: no root, no tmpfs). A refused put
/// says OUT_OF_MEMORY and leaves no job, now or after a restart; other changes are
/// refused while reads keep working; once space is back, puts work again by themselves.
#[test]
fn disk_full_without_root() {
    const SEG: u64 = 16384;
    let dir = TempDir::new("durable-full");
    let srv = InProcess::start(
        dir.path(),
        dir.join("s.sock"),
        &["-f", "0", "-s", &SEG.to_string()],
    );
    let mut c = srv.conn();
    assert_eq!(c.cmd("use full"), "USING full");
    let mut acked = std::collections::BTreeMap::new();
    let mut refused = Vec::new();
    let body = |n: usize| format!("{n:06}-{}", "x".repeat(993)).into_bytes();
    // Room for the current segment and three more.
    srv.io.set_space(Some(3 * SEG));
    let mut n = 0;
    loop {
        let b = body(n);
        n += 1;
        let r = c.put_raw(1, 0, 60, &b);
        match r.strip_prefix("INSERTED ") {
            Some(id) => {
                acked.insert(id.parse::<u64>().unwrap(), b);
            }
            None => {
                assert_eq!(r, "OUT_OF_MEMORY");
                refused.push(b);
                break;
            }
        }
        assert!(n < 1000, "the disk never filled up");
    }
    assert!(acked.len() > 20, "only {} jobs fitted", acked.len());
    assert_eq!(c.put_raw(1, 0, 60, &body(n)), "OUT_OF_MEMORY");
    // Reads work; the refused job is nowhere; changes are refused.
    let (&first, b) = acked.iter().next().unwrap();
    assert_eq!(c.peek(&format!("peek {first}")).1, *b);
    assert_eq!(
        c.stat("stats-tube full", "current-jobs-ready"),
        acked.len().to_string()
    );
    let refused_id = acked.keys().max().unwrap() + 1;
    assert_eq!(c.cmd(&format!("peek {refused_id}")), "NOT_FOUND");
    assert_eq!(c.cmd(&format!("delete {first}")), "INTERNAL_ERROR");
    assert_eq!(c.peek(&format!("peek {first}")).1, *b);

    // Space comes back: puts succeed again without a restart.
    srv.io.set_space(None);
    let t = Instant::now();
    loop {
        let b = body(n);
        n += 1;
        if let Some(id) = c.put_raw(1, 0, 60, &b).strip_prefix("INSERTED ") {
            acked.insert(id.parse().unwrap(), b);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "puts still refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.cmd(&format!("delete {first}")), "DELETED");
    acked.remove(&first);
    drop(c);
    srv.stop();

    // What the log holds: every acknowledged job, no refused one.
    let rec = recover::recover(dir.path(), false).expect("recover");
    let got: std::collections::BTreeMap<u64, Vec<u8>> =
        rec.jobs.iter().map(|j| (j.id, j.body.to_vec())).collect();
    assert_eq!(got, acked, "the log holds exactly the acknowledged jobs");
    assert!(
        rec.next_id > refused_id,
        "the refused put's id would be reused"
    );
}
