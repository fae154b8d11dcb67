//! End-to-end tests of `sprout work`: a real sproutd (or beanstalkd) per test, the real
//! sprout binary as the worker, small shell scripts as its COMMAND, and the worker's JSON
//! log read back to see what it did.
//!
//! Every wait is a bounded poll of a condition (the scripts wait on purpose where a test
//! needs a job to be running); every process has a deadline and dies with its test.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

const SPROUT: &str = env!("CARGO_BIN_EXE_sprout");
const BEANSTALKD: &str = "/usr/bin/beanstalkd";

/// Polls `f` every 10 ms until it returns Some; panics after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({timeout:?}) waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn addr_of(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Writes an executable `/bin/sh` script.
fn script(dir: &TempDir, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// A running `sprout work`; its stderr (the log) goes to a file. Killed on drop, and its
/// COMMANDs with it (they die with their worker).
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// `sprout -a ADDR work --log-format json ARGS`, with `OUT` set to `dir` for the
    /// scripts.
    fn start(addr: &str, dir: &TempDir, args: &[&str]) -> Worker {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.join(&format!("worker{n}.log"));
        let child = Command::new(SPROUT)
            .args(["-a", addr, "work", "--log-format", "json"])
            .args(args)
            .env("OUT", dir.path())
            .env_remove("SPROUT_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sprout work");
        Worker { child, log }
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every complete log line, parsed.
    fn records(&self) -> Vec<Value> {
        let text = self.text();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// The records with `"event": event`.
    fn events(&self, event: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// The end-of-job records of job `id`.
    fn ends(&self, id: u64) -> Vec<Value> {
        self.events("job")
            .into_iter()
            .filter(|r| r["job"] == id)
            .collect()
    }

    /// Waits until job `id` has ended with `outcome` (`n` times in all); returns its
    /// end records.
    fn wait_outcome(&self, id: u64, outcome: &str, n: usize, timeout: Duration) -> Vec<Value> {
        poll(
            &format!("job {id} {outcome} x{n}; log:\n{}", self.text()),
            timeout,
            || {
                let ends = self.ends(id);
                (ends.iter().filter(|r| r["outcome"] == outcome).count() >= n).then_some(ends)
            },
        )
    }

    fn wait_event(&self, event: &str, timeout: Duration) -> Value {
        poll(
            &format!("event {event}; log:\n{}", self.text()),
            timeout,
            || self.events(event).into_iter().next(),
        )
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill(worker, {sig})");
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let st = wait_exit(&mut self.child, timeout);
        st.unwrap_or_else(|| {
            panic!(
                "worker did not exit within {timeout:?}; log:\n{}",
                self.text()
            )
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's connection: the client crate's blocking front, with the shorthands the
/// tests use.
struct Q(sprout_client::blocking::Client);

impl Q {
    fn connect(addr: &Addr) -> sprout_client::Result<Q> {
        let a = match addr {
            Addr::Tcp(p) => format!("127.0.0.1:{p}"),
            Addr::Unix(p) => format!("unix:{}", p.display()),
        };
        sprout_client::blocking::Client::connect(&a).map(Q)
    }

    /// `put`; the new job's id.
    fn put(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> u64 {
        let r = self.0.run(async |c| c.put(pri, delay, ttr, body).await);
        r.expect("put").id()
    }

    /// A command line; the first line of its reply.
    fn cmd(&mut self, line: &str) -> String {
        let r = self.0.run(async |c| c.command(line).await);
        r.expect(line).to_string()
    }

    /// `stats` as a map.
    fn stats(&mut self) -> HashMap<String, String> {
        map(self.0.run(async |c| c.stats().await).expect("stats"))
    }
}

fn map(st: sprout_client::Stats) -> HashMap<String, String> {
    st.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A connection that uses and watches `tube` only.
fn conn_on(addr: &Addr, tube: &str) -> Q {
    let mut c = Q::connect(addr).expect("connect");
    c.0.run(async |c| {
        c.use_tube(tube).await?;
        assert_eq!(c.watch(tube).await?, 2);
        assert_eq!(c.ignore("default").await?, 1);
        Ok(())
    })
    .expect("use and watch");
    c
}

/// `stats-job id` as a map, or None if the job is gone.
fn job_stats(c: &mut Q, id: u64) -> Option<HashMap<String, String>> {
    match c.0.run(async |c| c.stats_job(id).await) {
        Ok(st) => Some(map(st)),
        Err(sprout_client::Error::Server(sprout_client::ServerError::NotFound)) => None,
        Err(e) => panic!("stats-job {id}: {e}"),
    }
}

fn assert_clean_exit(st: ExitStatus, w: &Worker) {
    assert_eq!(st.code(), Some(0), "worker exit; log:\n{}", w.text());
    assert!(
        !w.events("stopped").is_empty(),
        "no stopped record:\n{}",
        w.text()
    );
}

const T: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------

#[test]
fn success_deletes_the_job_with_its_counters_in_the_environment() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wok");
    let mut c = conn_on(&s.addr, "emails");
    let id = c.put(7, 0, 60, b"hello");
    let cmd = script(
        &dir,
        "ok.sh",
        r#"cat > "$OUT/body.$SPROUT_JOB_ID"
env | grep '^SPROUT_' | sort > "$OUT/env.$SPROUT_JOB_ID"
echo "to stdout"
echo "to stderr" >&2"#,
    );
    let mport = free_port();
    let maddr = addr_of(mport);
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &["--tube", "emails", "--metrics", &maddr, "--", &cmd],
    );
    let ends = w.wait_outcome(id, "deleted", 1, T);
    assert_eq!(ends.len(), 1);
    let e = &ends[0];
    assert_eq!(e["tube"], "emails");
    assert_eq!(e["exit"], 0);
    assert_eq!(e["attempt"], 1);
    assert!(e["duration_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(fs::read(dir.join(&format!("body.{id}"))).unwrap(), b"hello");
    let env = fs::read_to_string(dir.join(&format!("env.{id}"))).unwrap();
    let want = format!(
        "SPROUT_AGE=0\nSPROUT_JOB_ID={id}\nSPROUT_PRI=7\nSPROUT_RELEASES=0\nSPROUT_RESERVES=1\n\
         SPROUT_TIMEOUTS=0\nSPROUT_TUBE=emails\n"
    );
    assert_eq!(env, want);
    let out = w.records();
    for (stream, line) in [("stdout", "to stdout"), ("stderr", "to stderr")] {
        assert!(
            out.iter()
                .any(|r| r["job"] == id && r["stream"] == stream && r["line"] == line),
            "no {stream} line in the log:\n{}",
            w.text()
        );
    }
    assert_eq!(c.cmd(&format!("peek {id}")), "NOT_FOUND");
    assert_eq!(
        w.events("reserve-mode")[0]["msg"],
        "reserving with reserve-batch"
    );

    // The metrics endpoint.
    let mut http = TcpStream::connect(("127.0.0.1", mport)).expect("connect to --metrics");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    http.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    for want in [
        "sprout_worker_jobs_total{outcome=\"deleted\"} 1\n",
        "sprout_worker_jobs_total{outcome=\"buried\"} 0\n",
        "sprout_worker_running_jobs 0\n",
        "sprout_worker_job_duration_seconds_count 1\n",
        "sprout_worker_connected 1\n",
    ] {
        assert!(page.contains(want), "no {want:?} in:\n{page}");
    }

    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn failures_are_retried_with_growing_delays_then_buried() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wfail");
    let mut c = conn_on(&s.addr, "flaky");
    let id = c.put(5, 0, 60, b"x");
    let cmd = script(
        &dir,
        "fail.sh",
        r#"date +%s.%N >> "$OUT/runs"
echo "attempt $SPROUT_RESERVES failed" >&2
exit 3"#,
    );
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &[
            "--tube",
            "flaky",
            "--max-attempts",
            "3",
            "--backoff",
            "exp:1,10",
            "--",
            &cmd,
        ],
    );
    let ends = w.wait_outcome(id, "buried", 1, Duration::from_secs(20));
    let summary: Vec<(String, i64, Value)> = ends
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["attempt"].as_i64().unwrap(),
                e["delay"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("released".into(), 1, Value::from(1)),
            ("released".into(), 2, Value::from(2)),
            ("buried".into(), 3, Value::Null),
        ],
        "log:\n{}",
        w.text()
    );
    let last = &ends[2];
    assert_eq!(last["exit"], 3);
    assert_eq!(last["reason"], "max-attempts");
    assert_eq!(last["stderr"], "attempt 3 failed");
    assert_eq!(ends[0]["reason"], "failed");

    // The retries came after their delays: at least 1 s, then at least 2 s.
    let runs: Vec<f64> = fs::read_to_string(dir.join("runs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(runs.len(), 3);
    let (g1, g2) = (runs[1] - runs[0], runs[2] - runs[1]);
    assert!(g1 >= 0.95 && g2 >= 1.95 && g2 > g1, "gaps {g1:.3} {g2:.3}");

    let st = job_stats(&mut c, id).unwrap();
    assert_eq!(
        (
            st["state"].as_str(),
            st["reserves"].as_str(),
            st["releases"].as_str(),
            st["buries"].as_str(),
            st["pri"].as_str()
        ),
        ("buried", "3", "2", "1", "5")
    );
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn bury_on_buries_at_once_and_text_log() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wbury");
    let mut c = conn_on(&s.addr, "codes");
    let seven = c.put(0, 0, 60, b"7");
    let eight = c.put(0, 0, 60, b"8");
    let cmd = script(
        &dir,
        "code.sh",
        r#"code=$(cat); echo "exiting $code" >&2; exit $code"#,
    );
    let log = dir.join("text.log");
    let mut child = Command::new(SPROUT)
        .args(["-a", &addr_of(s.port()), "work", "--tube", "codes"])
        .args(["--bury-on", "7", "9", "--backoff", "fixed:60", "--", &cmd])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = || fs::read_to_string(&log).unwrap_or_default();
    poll("both jobs ended", T, || {
        let t = text();
        (t.contains(&format!("job={seven} tube=codes outcome=buried"))
            && t.contains(&format!("job={eight} tube=codes outcome=released")))
        .then_some(())
    });
    let t = text();
    let line = |id: u64| {
        t.lines()
            .find(|l| l.contains(&format!("job={id} tube=codes outcome=")))
            .unwrap()
            .to_string()
    };
    let l7 = line(seven);
    assert!(
        l7.contains("exit=7") && l7.contains("attempt=1") && l7.contains("reason=bury-on"),
        "{l7}"
    );
    assert!(l7.contains(r#"stderr="exiting 7""#), "{l7}");
    let l8 = line(eight);
    assert!(l8.contains("exit=8") && l8.contains("delay=60"), "{l8}");
    assert!(
        t.contains(&format!("job={seven} stderr: exiting 7")),
        "output line with the job id:\n{t}"
    );
    let st7 = job_stats(&mut c, seven).unwrap();
    assert_eq!(
        (st7["state"].as_str(), st7["reserves"].as_str()),
        ("buried", "1")
    );
    let st8 = job_stats(&mut c, eight).unwrap();
    assert_eq!(
        (st8["state"].as_str(), st8["releases"].as_str()),
        ("delayed", "1")
    );
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("worker exits");
    assert_eq!(st.code(), Some(0), "{}", text());
}

#[test]
fn long_job_is_touched_and_never_delivered_twice() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wlong");
    let mut c = conn_on(&s.addr, "long");
    // TTR 2 s, and the job runs 6 s: three times its TTR.
    let id = c.put(0, 0, 2, b"slow");
    let cmd = script(&dir, "slow.sh", r#"echo run >> "$OUT/runs"; sleep 6"#);
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &["--tube", "long", "--concurrency", "2", "--", &cmd],
    );
    w.wait_event("start", T);
    // A second worker watching the tube the whole time gets nothing.
    let mut other = conn_on(&s.addr, "long");
    let mut polls = 0;
    while w.ends(id).is_empty() {
        assert_eq!(
            other.cmd("reserve-with-timeout 1"),
            "TIMED_OUT",
            "second worker got it"
        );
        if let Some(st) = job_stats(&mut c, id) {
            assert_eq!(st["timeouts"], "0", "the TTR ran out");
            assert_eq!(st["reserves"], "1");
        }
        polls += 1;
        assert!(polls < 30, "job did not end; log:\n{}", w.text());
    }
    let e = &w.ends(id)[0];
    assert_eq!(e["outcome"], "deleted", "log:\n{}", w.text());
    assert!(e["duration_s"].as_f64().unwrap() >= 6.0);
    assert_eq!(fs::read_to_string(dir.join("runs")).unwrap(), "run\n");
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn max_runtime_stops_the_command_and_releases_the_job() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wmaxrt");
    let mut c = conn_on(&s.addr, "rt");
    let polite = c.put(0, 0, 60, b"polite");
    let stubborn = c.put(0, 0, 60, b"stubborn");
    // The stubborn one ignores SIGTERM (its sleep inherits that), so only SIGKILL ends it.
    let cmd = script(
        &dir,
        "rt.sh",
        r#"body=$(cat)
if [ "$body" = stubborn ]; then trap '' TERM; fi
sleep 30"#,
    );
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &[
            "--tube",
            "rt",
            "--concurrency",
            "2",
            "--max-runtime",
            "1",
            "--grace",
            "1",
            "--backoff",
            "fixed:60",
            "--",
            &cmd,
        ],
    );
    let p = w.wait_outcome(polite, "released", 1, T).remove(0);
    let k = w.wait_outcome(stubborn, "released", 1, T).remove(0);
    assert_eq!(
        (&p["signal"], &p["timed_out"]),
        (&Value::from(15), &Value::from(true))
    );
    assert_eq!(
        (&k["signal"], &k["timed_out"]),
        (&Value::from(9), &Value::from(true))
    );
    for (e, lo, hi) in [(&p, 1.0, 5.0), (&k, 2.0, 6.0)] {
        let d = e["duration_s"].as_f64().unwrap();
        assert!((lo..hi).contains(&d), "duration {d} not in {lo}..{hi}: {e}");
        assert_eq!(e["reason"], "max-runtime");
        assert_eq!(e["delay"], 60);
    }
    for id in [polite, stubborn] {
        let st = job_stats(&mut c, id).unwrap();
        assert_eq!(
            (st["state"].as_str(), st["releases"].as_str()),
            ("delayed", "1")
        );
    }
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn sigterm_lets_a_running_job_finish_and_takes_no_more() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wterm");
    let mut c = conn_on(&s.addr, "q");
    let first = c.put(0, 0, 60, b"first");
    let second = c.put(0, 0, 60, b"second");
    // Runs until the test creates `go` (bounded: 10 s).
    let cmd = script(
        &dir,
        "wait.sh",
        r#"touch "$OUT/started.$SPROUT_JOB_ID"
i=0
while [ ! -e "$OUT/go" ]; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done"#,
    );
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &["--tube", "q", "--grace", "20", "--", &cmd],
    );
    poll("first job started", T, || {
        dir.join(&format!("started.{first}")).exists().then_some(())
    });
    w.signal(libc::SIGTERM);
    w.wait_event("shutdown", T);
    fs::write(dir.join("go"), b"").unwrap();
    let st = w.wait_exit(T);
    assert_clean_exit(st, &w);
    assert_eq!(w.ends(first)[0]["outcome"], "deleted", "log:\n{}", w.text());
    assert!(w.ends(second).is_empty());
    let st = job_stats(&mut c, second).unwrap();
    assert_eq!(
        (st["state"].as_str(), st["reserves"].as_str()),
        ("ready", "0")
    );
}

#[test]
fn sigterm_releases_a_job_that_outlives_grace_and_a_second_signal_is_at_once() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wgrace");
    let mut c = conn_on(&s.addr, "g");
    let id = c.put(0, 0, 60, b"long");
    let cmd = script(
        &dir,
        "sleep.sh",
        r#"touch "$OUT/started.$SPROUT_JOB_ID"; sleep 30"#,
    );
    let started = |n: u64| {
        let p = dir.join(&format!("started.{id}"));
        poll("job started", T, || {
            (fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("started."))
                .count() as u64
                >= n
                && p.exists())
            .then_some(())
        })
    };
    let addr = addr_of(s.port());

    // Grace of 1 s: the job is stopped and released (delay 0) after it.
    let mut w = Worker::start(&addr, &dir, &["--tube", "g", "--grace", "1", "--", &cmd]);
    started(1);
    let t0 = Instant::now();
    w.signal(libc::SIGTERM);
    let st = w.wait_exit(T);
    let took = t0.elapsed();
    assert_clean_exit(st, &w);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let e = w.wait_outcome(id, "released", 1, T).remove(0);
    assert_eq!(
        (&e["reason"], &e["delay"]),
        (&Value::from("shutdown"), &Value::from(0))
    );
    let st = job_stats(&mut c, id).unwrap();
    assert_eq!(
        (
            st["state"].as_str(),
            st["reserves"].as_str(),
            st["releases"].as_str()
        ),
        ("ready", "1", "1")
    );

    // Grace of 30 s, but a second signal: stopped at once, still released.
    fs::remove_file(dir.join(&format!("started.{id}"))).unwrap();
    let mut w = Worker::start(&addr, &dir, &["--tube", "g", "--grace", "30", "--", &cmd]);
    started(1);
    w.signal(libc::SIGTERM);
    w.wait_event("shutdown", T);
    let t0 = Instant::now();
    w.signal(libc::SIGINT);
    let st = w.wait_exit(T);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_clean_exit(st, &w);
    let e = w.wait_outcome(id, "released", 1, T).remove(0);
    assert_eq!(
        (&e["signal"], &e["delay"]),
        (&Value::from(9), &Value::from(0))
    );
    let st = job_stats(&mut c, id).unwrap();
    assert_eq!(
        (st["state"].as_str(), st["releases"].as_str()),
        ("ready", "2")
    );
}

#[test]
fn server_restart_mid_run_reconnects_and_nothing_is_deleted_twice() {
    let dir = TempDir::new("wrestart");
    let wal = dir.join("wal");
    fs::create_dir(&wal).unwrap();
    let wal_s = wal.display().to_string();
    let mut s = Server::start(&["-b", &wal_s]);
    let port = s.port();
    let mut c = conn_on(&s.addr, "r");
    let n = 24u64;
    let ids: Vec<u64> = (0..n)
        .map(|i| c.put(0, 0, 60, format!("job-{i}").as_bytes()))
        .collect();
    drop(c);
    // Jobs run 0.2 s; once `hold` exists, new ones wait for `release` (bounded: 15 s).
    let cmd = script(
        &dir,
        "r.sh",
        r#"echo "$SPROUT_JOB_ID" >> "$OUT/runs"
if [ -e "$OUT/hold" ]; then
  touch "$OUT/held.$SPROUT_JOB_ID"
  i=0
  while [ ! -e "$OUT/release" ]; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.05; done
else
  sleep 0.2
fi"#,
    );
    let mut w = Worker::start(
        &addr_of(port),
        &dir,
        &["--tube", "r", "--concurrency", "3", "--", &cmd],
    );
    poll("some jobs done", T, || {
        (w.events("job").len() >= 4).then_some(())
    });
    fs::write(dir.join("hold"), b"").unwrap();
    let held = |dir: &TempDir| -> Vec<u64> {
        fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("held.").map(|id| id.parse().unwrap())
            })
            .collect()
    };
    poll("3 jobs held", T, || (held(&dir).len() == 3).then_some(()));
    let held = held(&dir);
    // Killed with those 3 running, then restarted on the same port from its log.
    s.child.kill().unwrap();
    s.wait_exit(Duration::from_secs(5));
    let lost = w.wait_event("connection-lost", T);
    assert_eq!(lost["running"], 3, "{lost}");
    let s2 = poll("sproutd restarted on its port", T, || {
        let mut cmd = sproutd();
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-b", &wal_s]);
        Server::launch(cmd, Addr::Tcp(port)).ok()
    });
    w.wait_event("reconnected", T);
    fs::remove_file(dir.join("hold")).unwrap();
    fs::write(dir.join("release"), b"").unwrap();
    // The worker carries on until the queue is empty.
    let mut c = Q::connect(&s2.addr).expect("connect");
    poll(
        &format!("queue drained; log:\n{}", w.text()),
        Duration::from_secs(30),
        || {
            let st = c.stats();
            ["ready", "reserved", "delayed", "buried"]
                .iter()
                .all(|k| st[&format!("current-jobs-{k}")] == "0")
                .then_some(())
        },
    );
    // Every job was deleted, and reported deleted exactly once; or, if its delete was in
    // flight when the server died, reported abandoned (never deleted twice, never
    // reported done without a DELETED).
    for id in &ids {
        let ends = w.ends(*id);
        let deleted = ends.iter().filter(|e| e["outcome"] == "deleted").count();
        let unsure = ends.iter().any(|e| {
            e["outcome"] == "abandoned"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("probably done"))
        });
        assert!(
            deleted == 1 || (deleted == 0 && unsure),
            "job {id}: {ends:?}\nlog:\n{}",
            w.text()
        );
    }
    // The 3 COMMANDs that outlived the connection: their jobs were reserved again
    // (reserve-job) and then deleted, each ran once.
    let mut reclaimed: Vec<u64> = w
        .events("reclaimed")
        .iter()
        .map(|r| r["job"].as_u64().unwrap())
        .collect();
    reclaimed.sort();
    let mut held = held;
    held.sort();
    assert_eq!(reclaimed, held, "log:\n{}", w.text());
    let runs = fs::read_to_string(dir.join("runs")).unwrap();
    for id in &held {
        assert_eq!(runs.lines().filter(|l| *l == id.to_string()).count(), 1);
    }
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn concurrency_n_runs_n_at_once_and_no_more() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wconc");
    let mut c = conn_on(&s.addr, "par");
    let ids: Vec<u64> = (0..6).map(|_| c.put(0, 0, 60, b"x")).collect();
    // Each job counts the jobs running with it, then waits (bounded) until 4 have run
    // at the same time.
    let cmd = script(
        &dir,
        "par.sh",
        r#"mkdir "$OUT/slot.$SPROUT_JOB_ID"
ls -d "$OUT"/slot.* | wc -l > "$OUT/seen.$SPROUT_JOB_ID"
touch "$OUT/ran.$SPROUT_JOB_ID"
i=0
while [ "$(ls "$OUT" | grep -c '^ran\.')" -lt 4 ]; do
  i=$((i+1)); [ $i -gt 200 ] && { rmdir "$OUT/slot.$SPROUT_JOB_ID"; exit 1; }
  sleep 0.05
done
rmdir "$OUT/slot.$SPROUT_JOB_ID""#,
    );
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &["--tube", "par", "--concurrency", "4", "--", &cmd],
    );
    for id in &ids {
        let e = w.wait_outcome(*id, "deleted", 1, T);
        assert_eq!(e[0]["attempt"], 1, "job {id} failed first: {e:?}");
    }
    let seen: Vec<u64> = ids
        .iter()
        .map(|id| {
            fs::read_to_string(dir.join(&format!("seen.{id}")))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        seen.iter().all(|&n| n <= 4),
        "more than 4 at once: {seen:?}"
    );
    assert!(seen.contains(&4), "never 4 at once: {seen:?}");
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn any_bytes_reach_stdin_intact() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wbytes");
    let mut c = conn_on(&s.addr, "bin");
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(b"\r\n\r\nline\r\n\n\r");
    body.extend((0..=255u8).rev());
    let mut rng = Rng::new(7);
    let big: Vec<u8> = (0..65_000).map(|_| rng.next() as u8).collect();
    let a = c.put(0, 0, 60, &body);
    let b = c.put(0, 0, 60, &big);
    let e = c.put(0, 0, 60, b"");
    let cmd = script(
        &dir,
        "cat.sh",
        r#"cat > "$OUT/body.$SPROUT_JOB_ID"; printf 'odd \001\033[31m\377 bytes\r\n'"#,
    );
    let mut w = Worker::start(&addr_of(s.port()), &dir, &["--tube", "bin", "--", &cmd]);
    for (id, want) in [(a, &body), (b, &big), (e, &Vec::new())] {
        w.wait_outcome(id, "deleted", 1, T);
        let got = fs::read(dir.join(&format!("body.{id}"))).unwrap();
        assert!(
            got == *want,
            "job {id}: body of {} bytes came as {}",
            want.len(),
            got.len()
        );
    }
    // The odd output line is in the log, lossily decoded, and the log still parses.
    assert!(w
        .records()
        .iter()
        .any(|r| r["job"] == a && r["line"] == "odd \u{1}\u{1b}[31m\u{fffd} bytes"));
    let st = w.stop();
    assert_clean_exit(st, &w);
}

/// beanstalkd on a free port; killed on drop.
struct Beanstalkd {
    child: Child,
    port: u16,
}

impl Beanstalkd {
    fn start() -> Beanstalkd {
        require(
            &format!("{BEANSTALKD} (install beanstalkd 1.12 or later)"),
            Path::new(BEANSTALKD).exists(),
        );
        let port = free_port();
        let child = Command::new(BEANSTALKD)
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn beanstalkd");
        poll("beanstalkd listening", T, || {
            Q::connect(&Addr::Tcp(port)).ok()
        });
        Beanstalkd { child, port }
    }
}

impl Drop for Beanstalkd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn works_against_beanstalkd_without_reserve_batch() {
    let b = Beanstalkd::start();
    let dir = TempDir::new("wbeans");
    let addr = Addr::Tcp(b.port);
    let mut c = conn_on(&addr, "bk");
    let ok: Vec<u64> = (0..3)
        .map(|i| c.put(0, 0, 60, format!("ok{i}").as_bytes()))
        .collect();
    let bad = c.put(0, 0, 60, b"bad");
    // TTR 1 s, running 2.5 s: touched inside beanstalkd's one-second safety margin.
    let slow = c.put(0, 0, 1, b"slow");
    let cmd = script(
        &dir,
        "bk.sh",
        r#"body=$(cat)
echo "$SPROUT_JOB_ID" >> "$OUT/runs"
case "$body" in
  bad) exit 4 ;;
  slow) sleep 2.5 ;;
esac"#,
    );
    let mut w = Worker::start(
        &addr_of(b.port),
        &dir,
        &[
            "--tube",
            "bk",
            "--concurrency",
            "2",
            "--bury-on",
            "4",
            "--",
            &cmd,
        ],
    );
    for id in ok.iter().chain([&slow]) {
        w.wait_outcome(*id, "deleted", 1, T);
    }
    w.wait_outcome(bad, "buried", 1, T);
    let modes: Vec<Value> = w
        .events("reserve-mode")
        .iter()
        .map(|r| r["msg"].clone())
        .collect();
    assert_eq!(
        modes,
        [Value::from(
            "the server has no reserve-batch: reserving with reserve-with-timeout"
        )]
    );
    let runs = fs::read_to_string(dir.join("runs")).unwrap();
    assert_eq!(
        runs.lines().filter(|l| *l == slow.to_string()).count(),
        1,
        "the slow job ran twice: {runs}"
    );
    assert!(w.events("policy-mismatch").is_empty());
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn tube_policy_disagreement_is_logged() {
    let s = Server::start(&[]);
    let dir = TempDir::new("wpolicy");
    let mut c = Q::connect(&s.addr).expect("connect");
    assert_eq!(c.cmd("tube-policy pol max-reserves 2"), "OK");
    let mut w = Worker::start(
        &addr_of(s.port()),
        &dir,
        &["--tube", "pol", "--max-attempts", "5", "--", "true"],
    );
    let e = w.wait_event("policy-mismatch", T);
    assert_eq!(
        (&e["max_reserves"], &e["max_attempts"]),
        (&Value::from(2), &Value::from(5))
    );
    let st = w.stop();
    assert_clean_exit(st, &w);
}

#[test]
fn exit_codes_for_bad_usage_and_an_unreachable_server() {
    let dir = TempDir::new("wusage");
    let s = Server::start(&[]);
    let a = addr_of(s.port());
    let run = |args: &[&str]| {
        let out = Command::new(SPROUT)
            .args(["-a", &a, "work"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (args, msg) in [
        (&["--", "true"][..], "--tube"),
        (&["--tube", "t"][..], "no COMMAND"),
        (
            &["--tube", "t", "--backoff", "lin:3", "--", "true"][..],
            "--backoff",
        ),
        (
            &["--tube", "t", "--concurrency", "0", "--", "true"][..],
            "--concurrency",
        ),
        (
            &["--tube", "t", "--bury-on", "x", "--", "true"][..],
            "--bury-on",
        ),
        (
            &["--tube", "t", "--log-format", "xml", "--", "true"][..],
            "--log-format",
        ),
        (
            &["--tube", "bad!name", "--", "true"][..],
            "invalid tube name",
        ),
        (&["--tube", "t", "--", "/no/such/command"][..], "not found"),
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().to_string();
    let (code, err) = run(&["--tube", "t", "--metrics", &taken, "--", "true"]);
    assert_eq!(code, Some(1), "{err}");
    let dead = addr_of(free_port());
    let out = Command::new(SPROUT)
        .args(["-a", &dead, "work", "--tube", "t", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("cannot connect to {dead}")), "{err}");
    drop(dir);
}
