//! sprout's own commands over the wire: every reply, bad arguments, `--strict` (which
//! answers them as beanstalkd 1.13 does), and what a restart keeps.

mod common;

use std::time::Duration;

use common::*;

fn yaml_ids(c: &mut Conn, line: &str) -> Vec<u64> {
    c.list(line)
        .iter()
        .map(|s| s.parse().expect("an id"))
        .collect()
}

/// The same bad lines, each answered BAD_FORMAT.
fn bad_format(c: &mut Conn, lines: &[&str]) {
    for l in lines {
        assert_eq!(c.cmd(l), "BAD_FORMAT", "{l:?}");
    }
}

#[test]
fn flush_tube_over_the_wire() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut w = s.conn();
    assert_eq!(c.cmd("use emails"), "USING emails");
    assert_eq!(w.cmd("watch emails"), "WATCHING 2");
    let held = c.put(0, 0, 60, b"held");
    assert_eq!(w.reserve().0, held);
    for i in 0..100u32 {
        c.put(i, u32::from(i % 10 == 0), 60, b"x");
    }
    assert_eq!(c.cmd("flush-tube emails"), "FLUSHED 100");
    assert_eq!(c.stat("stats-tube emails", "current-jobs-ready"), "0");
    assert_eq!(c.stat("stats-tube emails", "current-jobs-reserved"), "1");
    assert_eq!(
        c.cmd(&format!("delete {held}")),
        "NOT_FOUND",
        "not the caller's"
    );
    assert_eq!(w.cmd(&format!("delete {held}")), "DELETED");
    assert_eq!(c.cmd("flush-tube emails"), "FLUSHED 0");
    assert_eq!(c.cmd("flush-tube no-such-tube"), "FLUSHED 0");
    bad_format(
        &mut c,
        &[
            "flush-tube",
            "flush-tube ",
            "flush-tube -bad",
            "flush-tube a b",
            &format!("flush-tube {}", "x".repeat(201)),
        ],
    );
}

#[test]
fn list_jobs_over_the_wire() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use t"), "USING t");
    let a = c.put(5, 0, 60, b"a");
    let b = c.put(5, 0, 60, b"b");
    let d = c.put(5, 100, 60, b"d");
    assert_eq!(yaml_ids(&mut c, "list-jobs t ready 0 10"), vec![a, b]);
    assert_eq!(
        yaml_ids(&mut c, &format!("list-jobs t ready {a} 10")),
        vec![b]
    );
    assert_eq!(yaml_ids(&mut c, "list-jobs t ready 0 1"), vec![a]);
    assert_eq!(yaml_ids(&mut c, "list-jobs t delayed 0 1000"), vec![d]);
    assert!(yaml_ids(&mut c, "list-jobs t buried 0 5").is_empty());
    assert!(yaml_ids(&mut c, "list-jobs t reserved 0 5").is_empty());
    assert!(yaml_ids(&mut c, "list-jobs nothing-here ready 0 5").is_empty());
    // The exact bytes: a YAML list like list-tubes'.
    c.send(b"list-jobs t ready 0 10\r\n");
    let head = c.line();
    let want = format!("---\n- {a}\n- {b}\n");
    assert_eq!(head, format!("OK {}", want.len()));
    assert_eq!(c.exact(want.len() + 2), format!("{want}\r\n").into_bytes());
    bad_format(
        &mut c,
        &[
            "list-jobs",
            "list-jobs t",
            "list-jobs t ready",
            "list-jobs t ready 0",
            "list-jobs t ready 0 0",
            "list-jobs t ready 0 1001",
            "list-jobs t asleep 0 10",
            "list-jobs t ready -1 10",
            "list-jobs t ready 0 10 extra",
        ],
    );
}

#[test]
fn reprioritize_and_move_job_over_the_wire() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut w = s.conn();
    let a = c.put(5, 0, 60, b"a");
    let b = c.put(6, 0, 60, b"b");
    assert_eq!(c.cmd(&format!("reprioritize {b} 1")), "REPRIORITIZED");
    assert_eq!(c.peek("peek-ready").0, b);
    assert_eq!(c.cmd(&format!("reprioritize {b} 1")), "REPRIORITIZED");
    assert_eq!(c.cmd("reprioritize 999 1"), "NOT_FOUND");
    assert_eq!(c.cmd(&format!("move-job {a} other")), "MOVED");
    let st = c.yaml(&format!("stats-job {a}"));
    assert_eq!(
        (st["tube"].as_str(), st["state"].as_str()),
        ("other", "ready")
    );
    assert_eq!(w.reserve().0, b);
    assert_eq!(
        c.cmd(&format!("move-job {b} other")),
        "NOT_FOUND",
        "held by w"
    );
    assert_eq!(
        c.cmd(&format!("reprioritize {b} 3")),
        "NOT_FOUND",
        "held by w"
    );
    assert_eq!(w.cmd(&format!("move-job {b} other")), "MOVED");
    assert_eq!(w.cmd(&format!("reprioritize {b} 3")), "REPRIORITIZED");
    assert_eq!(c.cmd("move-job 999 other"), "NOT_FOUND");
    bad_format(
        &mut c,
        &[
            "reprioritize",
            "reprioritize 1",
            "reprioritize x 1",
            "reprioritize 1 4294967296",
            "reprioritize 1 2 3",
            "move-job",
            "move-job 1",
            "move-job 1 -bad",
            "move-job x t",
            "move-job 1 t u",
        ],
    );
}

/// `--strict`: sprout's own commands answer exactly as beanstalkd 1.13 answers those
/// lines (it does not know them), and everything else is unchanged.
#[test]
fn strict_turns_the_extensions_off() {
    let s = Server::start(&["--strict"]);
    let mut c = s.conn();
    for (line, want) in [
        ("flush-tube t", "UNKNOWN_COMMAND"),
        ("list-jobs t ready 0 10", "UNKNOWN_COMMAND"),
        ("reprioritize 1 1", "UNKNOWN_COMMAND"),
        ("move-job 1 t", "UNKNOWN_COMMAND"),
        ("tube-policy t", "UNKNOWN_COMMAND"),
        // beanstalkd matches `reserve` as a prefix, then finds trailing bytes.
        ("reserve-batch 2 0", "BAD_FORMAT"),
        ("put-unique k 0 0 60 1", "UNKNOWN_COMMAND"),
    ] {
        assert_eq!(c.cmd(line), want, "{line}");
    }
    let id = c.put(0, 0, 60, b"x");
    assert_eq!(c.peek("peek-ready").0, id);
}

/// A flush and a move survive restarts: after SIGKILL the flushed jobs stay gone (the
/// reserved one comes back ready, as reserved jobs do) and the moved job is in its new
/// tube; the same after compaction has rewritten the log.
#[test]
fn flush_and_move_survive_a_restart() {
    let dir = TempDir::new("ext-restart");
    let d = dir.path().to_str().unwrap().to_string();
    let flags = ["-b", d.as_str(), "-s", "65536", "-f", "0"];
    let s = Server::start(&flags);
    let mut c = s.conn();
    let mut w = s.conn();
    assert_eq!(c.cmd("use t"), "USING t");
    assert_eq!(w.cmd("watch t"), "WATCHING 2");
    assert_eq!(w.cmd("ignore default"), "WATCHING 1");
    let held = c.put(0, 0, 60, b"held");
    assert_eq!(w.reserve().0, held);
    let flushed: Vec<u64> = (0..50).map(|_| c.put(1, 0, 60, b"gone")).collect();
    let moved = c.put(1, 0, 60, b"moved");
    assert_eq!(c.cmd(&format!("move-job {moved} kept")), "MOVED");
    assert_eq!(c.cmd("flush-tube t"), "FLUSHED 50");
    let after = c.put(1, 0, 60, b"after");
    drop((c, w));
    let mut s = s;
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10));
    let s = Server::start(&flags);
    let mut c = s.conn();
    for id in &flushed {
        assert_eq!(
            c.cmd(&format!("peek {id}")),
            "NOT_FOUND",
            "flushed job {id}"
        );
    }
    let st = c.yaml(&format!("stats-job {held}"));
    assert_eq!((st["tube"].as_str(), st["state"].as_str()), ("t", "ready"));
    let st = c.yaml(&format!("stats-job {moved}"));
    assert_eq!(st["tube"], "kept");
    assert_eq!(c.peek(&format!("peek {after}")).1, b"after");
    assert_eq!(c.stat("stats", "current-jobs-ready"), "3");
}

/// A flush of many jobs answers at once and the memory goes back soon after (freed a few
/// thousand jobs at a time, between other commands).
#[test]
fn flush_of_many_jobs_is_quick_and_frees_them() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use bulk"), "USING bulk");
    let body = vec![b'x'; 1000];
    let n = 20_000;
    let mut batch = Vec::new();
    for _ in 0..n {
        batch.extend_from_slice(format!("put 0 0 60 {}\r\n", body.len()).as_bytes());
        batch.extend_from_slice(&body);
        batch.extend_from_slice(b"\r\n");
    }
    c.send(&batch);
    for _ in 0..n {
        assert!(c.line().starts_with("INSERTED "));
    }
    let rss_full = rss_bytes(s.pid());
    assert_eq!(c.cmd("flush-tube bulk"), format!("FLUSHED {n}"));
    assert_eq!(c.stat("stats", "current-jobs-ready"), "0");
    assert_eq!(c.cmd("use default"), "USING default");
    // Freed in the background: the tube disappears once its jobs are freed.
    wait_until("flushed jobs freed", || {
        !c.list("list-tubes").contains(&"bulk".to_string())
    });
    println!(
        "flush of {n} jobs of 1000 B: RSS {:.1} MiB before, {:.1} MiB after freeing",
        mib(rss_full),
        mib(rss_bytes(s.pid()))
    );
}

/// `RESERVED_BATCH <k>` then k `RESERVED` replies, in reserve order.
fn read_batch(c: &mut Conn) -> Vec<(u64, Vec<u8>)> {
    let head = c.line();
    let k: usize = head
        .strip_prefix("RESERVED_BATCH ")
        .unwrap_or_else(|| panic!("reserve-batch: {head}"))
        .parse()
        .unwrap();
    (0..k)
        .map(|_| {
            let line = c.line();
            c.job_data(&line, "RESERVED")
        })
        .collect()
}

#[test]
fn reserve_batch_over_the_wire() {
    let s = Server::start(&[]);
    let mut p = s.conn();
    let mut w = s.conn();
    let ids: Vec<u64> = (0..5).map(|i| p.put(10 - i, 0, 60, b"job")).collect();
    w.send(b"reserve-batch 3 0\r\n");
    let got = read_batch(&mut w);
    // Highest priority (lowest number) first, as reserve would take them.
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![ids[4], ids[3], ids[2]]
    );
    assert!(got.iter().all(|g| g.1 == b"job"));
    w.send(b"reserve-batch 1000 0\r\n");
    assert_eq!(read_batch(&mut w).len(), 2);
    assert_eq!(w.cmd("reserve-batch 5 0"), "TIMED_OUT");
    // Waiting: the first job to arrive wakes it.
    w.send(b"reserve-batch 5 10\r\n");
    let mut o = s.conn();
    wait_until("worker waiting", || {
        o.stat("stats", "current-waiting") == "1"
    });
    let late = p.put(0, 0, 60, b"late");
    assert_eq!(read_batch(&mut w), vec![(late, b"late".to_vec())]);
    bad_format(
        &mut p,
        &[
            "reserve-batch",
            "reserve-batch 5",
            "reserve-batch 0 1",
            "reserve-batch 1001 1",
            "reserve-batch 5 -1",
            "reserve-batch 5 2147483648",
            "reserve-batch 5 1 x",
        ],
    );
}

#[test]
fn put_unique_over_the_wire() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    c.send(b"put-unique order-7 0 0 60 5\r\nhello\r\n");
    let first = c.line();
    let id: u64 = first.strip_prefix("INSERTED ").unwrap().parse().unwrap();
    c.send(b"put-unique order-7 0 0 60 5\r\nworld\r\n");
    assert_eq!(c.line(), format!("EXISTS {id}"));
    assert_eq!(
        c.peek(&format!("peek {id}")).1,
        b"hello",
        "the first body stays"
    );
    assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
    c.send(b"put-unique order-7 0 0 60 5\r\nagain\r\n");
    assert!(c.line().starts_with("INSERTED "));
    // Too big: the body is skipped, as for put.
    let big = vec![b'x'; 70_000];
    let mut m = format!("put-unique k 0 0 60 {}\r\n", big.len()).into_bytes();
    m.extend_from_slice(&big);
    m.extend_from_slice(b"\r\n");
    c.send(&m);
    assert_eq!(c.line(), "JOB_TOO_BIG");
    bad_format(
        &mut c,
        &[
            "put-unique",
            "put-unique k",
            "put-unique -k 0 0 60 1",
            "put-unique k 0 0 60",
            "put-unique k x 0 60 1",
        ],
    );
    assert_eq!(c.stat("stats-tube default", "current-jobs-ready"), "1");
}

/// Keys survive a restart (the key record follows the job's full record), and a key is
/// free again after its job's delete.
#[test]
fn put_unique_keys_survive_a_restart() {
    let dir = TempDir::new("ext-keys");
    let d = dir.path().to_str().unwrap().to_string();
    let flags = ["-b", d.as_str(), "-f", "0"];
    let s = Server::start(&flags);
    let mut c = s.conn();
    c.send(b"put-unique a 0 0 60 1\r\nA\r\n");
    let a: u64 = c.line().strip_prefix("INSERTED ").unwrap().parse().unwrap();
    c.send(b"put-unique b 0 0 60 1\r\nB\r\n");
    let b: u64 = c.line().strip_prefix("INSERTED ").unwrap().parse().unwrap();
    assert_eq!(c.cmd(&format!("delete {b}")), "DELETED");
    drop(c);
    let mut s = s;
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10));
    let s = Server::start(&flags);
    let mut c = s.conn();
    c.send(b"put-unique a 0 0 60 1\r\nX\r\n");
    assert_eq!(c.line(), format!("EXISTS {a}"));
    c.send(b"put-unique b 0 0 60 1\r\nY\r\n");
    assert!(c.line().starts_with("INSERTED "));
}

#[test]
fn tube_policy_over_the_wire() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut w = s.conn();
    assert_eq!(c.cmd("tube-policy jobs max-reserves 2"), "OK");
    assert_eq!(c.cmd("tube-policy jobs on-exhaust tube:jobs-dead"), "OK");
    assert_eq!(c.cmd("tube-policy jobs retry-backoff exp:1,4"), "OK");
    assert_eq!(c.cmd("tube-policy jobs max-ready 1000"), "OK");
    c.send(b"tube-policy jobs\r\n");
    let head = c.line();
    let want = "---\nmax-reserves: 2\non-exhaust: tube:jobs-dead\nretry-backoff: exp:1,4\nmax-ready: 1000\n";
    assert_eq!(head, format!("OK {}", want.len()));
    assert_eq!(c.exact(want.len() + 2), format!("{want}\r\n").into_bytes());
    let st = c.yaml("stats-tube jobs");
    assert_eq!(st["max-reserves"], "2");
    assert_eq!(st["on-exhaust"], "tube:jobs-dead");
    assert_eq!(st["retry-backoff"], "exp:1,4");
    assert_eq!(st["dead-lettered"], "0");
    // A tube without a policy shows none of it.
    assert!(!c.yaml("stats-tube default").contains_key("max-reserves"));
    assert_eq!(c.cmd("use jobs"), "USING jobs");
    assert_eq!(w.cmd("watch jobs"), "WATCHING 2");
    let id = c.put(0, 0, 60, b"flaky");
    // Two failures: retried after a backoff, then dead-lettered.
    assert_eq!(w.reserve().0, id);
    assert_eq!(w.cmd(&format!("release {id} 0 0")), "RELEASED");
    assert_eq!(c.yaml(&format!("stats-job {id}"))["state"], "delayed");
    assert_eq!(c.cmd(&format!("kick-job {id}")), "KICKED");
    assert_eq!(w.reserve().0, id);
    assert_eq!(w.cmd(&format!("release {id} 0 0")), "RELEASED");
    let st = c.yaml(&format!("stats-job {id}"));
    assert_eq!(st["tube"], "jobs-dead");
    assert_eq!(st["state"], "ready");
    assert_eq!(st["origin-tube"], "jobs");
    assert_eq!(c.stat("stats-tube jobs", "dead-lettered"), "1");
    assert_eq!(c.cmd("tube-policy nothing"), "NOT_FOUND");
    bad_format(
        &mut c,
        &[
            "tube-policy",
            "tube-policy jobs max-reserves",
            "tube-policy jobs max-reserves x",
            "tube-policy jobs max-reserves -1",
            "tube-policy jobs max-tries 3",
            "tube-policy jobs on-exhaust burn",
            "tube-policy jobs on-exhaust tube:",
            "tube-policy jobs on-exhaust tube:-x",
            "tube-policy jobs retry-backoff exp:0,5",
            "tube-policy jobs retry-backoff exp:5,1",
            "tube-policy jobs retry-backoff exp:5",
            "tube-policy jobs retry-backoff fixed:",
            "tube-policy jobs retry-backoff linear",
            "tube-policy jobs max-ready 1 2",
        ],
    );
}

/// Policies and where a dead-lettered job came from survive restarts, and a policy file
/// sets policies at startup.
#[test]
fn policies_survive_a_restart_and_come_from_a_file() {
    let dir = TempDir::new("ext-policy");
    let d = dir.path().to_str().unwrap().to_string();
    let flags = ["-b", d.as_str(), "-f", "0"];
    let s = Server::start(&flags);
    let mut c = s.conn();
    assert_eq!(c.cmd("tube-policy p max-reserves 1"), "OK");
    assert_eq!(c.cmd("tube-policy p on-exhaust tube:p-dead"), "OK");
    assert_eq!(c.cmd("use p"), "USING p");
    let id = c.put(0, 0, 60, b"x");
    assert_eq!(c.cmd("watch p"), "WATCHING 2");
    assert_eq!(c.reserve().0, id);
    assert_eq!(c.cmd(&format!("release {id} 0 0")), "RELEASED");
    assert_eq!(c.yaml(&format!("stats-job {id}"))["tube"], "p-dead");
    assert_eq!(c.cmd("tube-policy q max-ready 3"), "OK");
    drop(c);
    let mut s = s;
    s.signal(libc::SIGKILL);
    s.wait_exit(Duration::from_secs(10));
    let policies = dir.join("policies");
    std::fs::write(
        &policies,
        "# set at startup\nr retry-backoff fixed:5\n\nq max-ready 4\n",
    )
    .unwrap();
    let mut with_file = flags.to_vec();
    let pf = policies.to_str().unwrap().to_string();
    with_file.extend(["--policy-file", pf.as_str()]);
    let s = Server::start(&with_file);
    let mut c = s.conn();
    assert_eq!(c.stat("stats-tube p", "max-reserves"), "1");
    assert_eq!(c.stat("stats-tube p", "on-exhaust"), "tube:p-dead");
    assert_eq!(c.yaml(&format!("stats-job {id}"))["origin-tube"], "p");
    assert_eq!(c.stat("stats-tube r", "retry-backoff"), "fixed:5");
    assert_eq!(
        c.stat("stats-tube q", "max-ready"),
        "4",
        "the file wins over the log"
    );
    drop(c);
    // A bad line stops startup, naming it.
    std::fs::write(&policies, "q max-ready x\n").unwrap();
    let (st, _, err) = run_to_exit(&["-l", "127.0.0.1", "-p", "0", "--policy-file", &pf]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(err.contains("policies:1"), "{err}");
}
