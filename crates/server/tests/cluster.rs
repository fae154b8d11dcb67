//! Cluster mode: three sproutd processes on loopback form a cluster from the same
//! `--cluster` list; clients on any node are served; after kill -9 of the leader the
//! others go on, with every acknowledged put; the killed node catches up when restarted
//! and its clients' reservations come back. Every wait is a bounded poll.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::web::Client;
use common::*;

#[test]
fn three_nodes_serve_clients_on_any_node_and_survive_the_leader() {
    let mut cl = Cluster::new(3);
    let l = cl.leader();
    let f = (l + 1) % 3;
    let other = (l + 2) % 3;
    let s = cl.stats(l).unwrap();
    assert_eq!(s["cluster-role"], "leader");
    assert_eq!(stat(&s, "cluster-node-id"), l as u64 + 1);
    assert!(stat(&s, "cluster-term") >= 1);
    assert!(stat(&s, "cluster-commit-index") >= 1);
    assert_eq!(cl.stats(f).unwrap()["cluster-role"], "follower");
    let m = cl.metrics(l);
    for line in [
        "sprout_cluster_role{role=\"leader\"} 1",
        "sprout_cluster_role{role=\"follower\"} 0",
        &format!("sprout_cluster_node_id {}", l + 1),
        &format!("sprout_cluster_leader_id {}", l + 1),
    ] {
        assert!(m.lines().any(|x| x == line), "no {line:?} in\n{m}");
    }
    assert!(!m.contains("sprout_cluster_leader_changes_total 0"), "{m}");
    // The leader knows how far behind each follower is; followers do not say.
    for other in [f, other] {
        let series = format!(
            "sprout_cluster_member_lag_entries{{member=\"{}\"}} ",
            other + 1
        );
        assert!(
            m.lines().any(|x| x.starts_with(&series)),
            "no {series:?} in\n{m}"
        );
    }
    assert!(!cl.metrics(f).contains("sprout_cluster_member_lag_entries"));
    assert!(cl
        .metrics(f)
        .contains("sprout_cluster_role{role=\"follower\"} 1"));
    // cluster-status: the node's view, with the members (and their progress, on the
    // leader).
    let y = cl.conn(l).yaml("cluster-status");
    assert_eq!(y["role"], "leader");
    assert_eq!(y["members"], "1,2,3");
    assert_eq!(y[&format!("member-{}-voter", f + 1)], "true");
    assert!(y.contains_key(&format!("member-{}-lag", f + 1)), "{y:?}");
    let y = cl.conn(f).yaml("cluster-status");
    assert_eq!(y["role"], "follower");
    assert_eq!(y["leader-id"], (l + 1).to_string());
    assert!(y[&format!("member-{}-addr", l + 1)].starts_with("127.0.0.1:"));

    // Puts through a follower, reserve and delete through the leader.
    let mut on_f = cl.conn(f);
    let mut on_l = cl.conn(l);
    let mut ids = Vec::new();
    for k in 0..20 {
        ids.push(on_f.put(0, 0, 120, format!("job {k}").as_bytes()));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    // The follower timed its batches from proposal to commit (the 20 puts, one after the
    // other, were 20 batches at least).
    let m = cl.metrics(f);
    let count = |m: &str, series: &str| -> u64 {
        let line = m.lines().find(|l| l.starts_with(series));
        line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    let batches = count(&m, "sprout_cluster_replication_latency_seconds_count ");
    assert!(batches >= 20, "{batches} batches\n{m}");
    assert_eq!(
        count(
            &m,
            "sprout_cluster_replication_latency_seconds_bucket{le=\"+Inf\"} "
        ),
        batches
    );
    assert!(m.contains("# TYPE sprout_cluster_replication_latency_seconds histogram"));
    let (id, body) = on_l.reserve();
    assert_eq!((id, body.as_slice()), (ids[0], &b"job 0"[..]));
    assert_eq!(on_l.cmd(&format!("delete {id}")), "DELETED");
    // A reservation held by a client of the leader, which is about to die.
    let (held, _) = on_l.reserve();
    assert_eq!(held, ids[1]);
    // A waiting reserve on the follower, served by a put through the other node.
    on_f.send(b"use other\r\nwatch other\r\nignore default\r\n");
    assert_eq!(on_f.line(), "USING other");
    assert_eq!(on_f.line(), "WATCHING 2");
    assert_eq!(on_f.line(), "WATCHING 1");
    let mut on_o = cl.conn(other);
    assert_eq!(on_o.cmd("use other"), "USING other");
    on_f.send(b"reserve-with-timeout 20\r\n");
    let pid = on_o.put(0, 0, 120, b"for the waiting worker");
    let head = on_f.line();
    let (got, body) = on_f.job_data(&head, "RESERVED");
    assert_eq!(
        (got, body.as_slice()),
        (pid, &b"for the waiting worker"[..])
    );
    assert_eq!(on_f.cmd(&format!("delete {pid}")), "DELETED");
    assert_eq!(on_f.cmd("use default"), "USING default");
    for i in 0..3 {
        cl.wait(i, "18 ready, 1 reserved", |s| {
            stat(s, "current-jobs-ready") == 18 && stat(s, "current-jobs-reserved") == 1
        });
    }

    // kill -9 of the leader: the client on the follower keeps its connection and is
    // served again once the others elect a new leader.
    cl.kill(l);
    let killed = Instant::now();
    on_f.set_timeout(Duration::from_secs(30));
    let after = on_f.put(0, 0, 120, b"after the leader died");
    let failover = killed.elapsed();
    eprintln!("served again {failover:?} after kill -9 of the leader");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    assert!(after > *ids.last().unwrap());
    let nl = cl.leader();
    assert_ne!(nl, l);
    // No acknowledged put lost: every job but the deleted ones, on both survivors.
    for i in [f, other] {
        let mut c = cl.conn(i);
        for &j in ids[1..].iter().chain([&after]) {
            let (got, _) = c.peek(&format!("peek {j}"));
            assert_eq!(got, j);
        }
        assert_eq!(c.cmd(&format!("peek {}", ids[0])), "NOT_FOUND");
        assert_eq!(c.cmd(&format!("peek {pid}")), "NOT_FOUND");
    }

    // The dead node's client held a job: the leader ends the sessions of a node silent
    // for 5 s, and the job is ready again.
    cl.wait(nl, "the dead client's reservation back", |s| {
        stat(s, "current-jobs-reserved") == 0
    });
    let back = killed.elapsed();
    eprintln!("reservation of the dead node's client back after {back:?}");
    // The bound COMPAT.md states: 5 s of silence counted from the new leader's election
    // (plus the ticker's second and a margin for a loaded machine).
    assert!(
        back < failover + Duration::from_secs(9),
        "the dead node's reservation came back {back:?} after the kill (failover {failover:?})"
    );
    assert_eq!(
        cl.conn(nl).yaml(&format!("stats-job {held}"))["state"],
        "ready"
    );

    // The killed node restarts and catches up.
    cl.start(l);
    cl.wait(l, "the restarted node caught up", |s| {
        stat(s, "current-jobs-ready") == 20 && stat(s, "current-jobs-reserved") == 0
    });
    let mut c = cl.conn(l);
    assert_eq!(c.peek(&format!("peek {after}")).1, b"after the leader died");
    for i in 0..3 {
        cl.wait(i, "the same jobs everywhere", |s| {
            stat(s, "current-jobs-ready") == 20 && stat(s, "total-jobs") == 22
        });
    }
}

#[test]
fn cluster_flags_are_checked_and_single_node_stats_unchanged() {
    let (st, _, err) = run_to_exit(&["--node-id", "1", "--cluster", "1=127.0.0.1:1"]);
    assert_eq!(st.code(), Some(5));
    assert!(err.contains("--cluster needs -b"), "{err}");
    let (st, _, err) = run_to_exit(&["-b", "/tmp", "--node-id", "4", "--cluster", "1=127.0.0.1:1"]);
    assert_eq!(st.code(), Some(5));
    assert!(err.contains("--node-id 4 is not in --cluster"), "{err}");
    let (st, _, err) = run_to_exit(&["-b", "/tmp", "--node-id", "1", "--cluster", "1=nowhere"]);
    assert_eq!(st.code(), Some(5));
    assert!(err.contains("not ID=HOST:PORT"), "{err}");
    let (st, _, err) = run_to_exit(&["-b", "/tmp", "--cluster-bind", "127.0.0.1:1"]);
    assert_eq!(st.code(), Some(5));
    assert!(err.contains("--cluster-bind needs --cluster"), "{err}");
    let (st, _, err) = run_to_exit(&[
        "-b",
        "/tmp",
        "--node-id",
        "1",
        "--cluster",
        "1=127.0.0.1:1",
        "--cluster-bind",
        "nowhere",
    ]);
    assert_eq!(st.code(), Some(5));
    assert!(err.contains("--cluster-bind: not HOST:PORT"), "{err}");
    let s = Server::start(&[]);
    let stats = s.conn().yaml("stats");
    assert!(
        !stats.keys().any(|k| k.starts_with("cluster-")),
        "{stats:?}"
    );
}

#[test]
fn delays_ttrs_and_reserve_timeouts_fire_from_the_leaders_ticks() {
    let cl = Cluster::new(3);
    let l = cl.leader();
    let f = (l + 1) % 3;
    let mut on_f = cl.conn(f);
    let mut on_l = cl.conn(l);
    // A reserve that times out, on a follower.
    let t = Instant::now();
    assert_eq!(on_f.cmd("reserve-with-timeout 1"), "TIMED_OUT");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    // A delayed job becomes ready for a worker waiting on the leader.
    let id = on_f.put(0, 1, 1, b"later");
    let t = Instant::now();
    let (got, _) = on_l.reserve_cmd("reserve-with-timeout 10");
    assert_eq!(got, id);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    // Its TTR (1 s) runs out: it is ready again, for the follower's worker.
    let (again, _) = on_f.reserve_cmd("reserve-with-timeout 10");
    assert_eq!(again, id);
    let s = on_f.yaml(&format!("stats-job {id}"));
    assert_eq!((s["reserves"].as_str(), s["timeouts"].as_str()), ("2", "1"));
    assert_eq!(on_l.cmd(&format!("delete {id}")), "NOT_FOUND");
    assert_eq!(on_f.cmd(&format!("delete {id}")), "DELETED");
}

/// What the clients of the fault test saw, per job id.
#[derive(Default)]
struct Ledger {
    /// Puts answered INSERTED: id -> body.
    acked: HashMap<u64, Vec<u8>>,
    /// Deletes answered DELETED, and when the answer came.
    deleted: HashMap<u64, Instant>,
    /// Deletes sent whose reply never came (the connection died): applied or not.
    maybe_deleted: std::collections::HashSet<u64>,
    /// Every delivery (reservation) of a job.
    holds: Vec<Hold>,
    /// The latest time a put was sent that was then acknowledged.
    latest_acked_sent: Option<Instant>,
    puts_unknown: u64,
    deliveries: u64,
    releases: u64,
    violations: Vec<String>,
}

/// One reservation of a job by a worker.
struct Hold {
    id: u64,
    /// Which worker connection (worker number, connection number).
    worker: (usize, u64),
    /// The reserve was sent, and its RESERVED read.
    sent: Instant,
    got: Instant,
    ttr: Duration,
    /// When the worker sent the delete or release that ended it, if that command was
    /// answered (the connection, and with it the reservation, lived until then). None: the
    /// connection broke first, and the reservation ended at a time the worker cannot know.
    end: Option<Instant>,
}

/// The TTR of the fault test's jobs, and the margin the hold check allows at its end.
const FAULT_TTR: u64 = 5;
const TTR_MARGIN: Duration = Duration::from_secs(1);

/// Runs `session` on a connection to `port`, and again on a new one whenever it returns
/// (the connection broke), until `stop`.
fn client(port: u16, stop: &AtomicBool, mut session: impl FnMut(&mut Conn)) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = Conn::try_connect(&Addr::Tcp(port)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        c.set_timeout(Duration::from_secs(15));
        session(&mut c);
    }
}

fn producer(port: u16, node: usize, stop: &AtomicBool, ledger: &std::sync::Mutex<Ledger>) {
    let mut k = 0u64;
    client(port, stop, |c| {
        while !stop.load(Ordering::Relaxed) {
            k += 1;
            let body = format!("n{node}-{k}").into_bytes();
            let mut m = format!("put 0 0 {FAULT_TTR} {}\r\n", body.len()).into_bytes();
            m.extend_from_slice(&body);
            m.extend_from_slice(b"\r\n");
            let sent = Instant::now();
            let r = c.try_send(&m).and_then(|()| c.try_line());
            let mut l = ledger.lock().unwrap();
            match r.as_deref().map(|r| r.strip_prefix("INSERTED ")) {
                Ok(Some(id)) => {
                    let id: u64 = id.parse().unwrap();
                    l.latest_acked_sent = l.latest_acked_sent.max(Some(sent));
                    if let Some(old) = l.acked.insert(id, body.clone()) {
                        l.violations.push(format!(
                            "id {id} given to {} and {}",
                            show(&old),
                            show(&body)
                        ));
                    }
                }
                Ok(None) => {
                    l.violations.push(format!("put answered {r:?}"));
                }
                Err(_) => {
                    l.puts_unknown += 1;
                    return;
                }
            }
        }
    });
}

/// Reserves, holds the job a little (up to 100 ms), then deletes it (or, one time in
/// eight, releases it), recording each hold in the ledger.
fn worker(port: u16, me: usize, seed: u64, stop: &AtomicBool, ledger: &std::sync::Mutex<Ledger>) {
    let mut rng = Rng::new(seed);
    let mut conns = 0u64;
    client(port, stop, |c| {
        conns += 1;
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let head = match c
                .try_send(b"reserve-with-timeout 1\r\n")
                .and_then(|()| c.try_line())
            {
                Ok(h) => h,
                Err(_) => return,
            };
            if head == "TIMED_OUT" {
                continue;
            }
            let f: Vec<&str> = head.split(' ').collect();
            assert_eq!(f[0], "RESERVED", "{head}");
            let id: u64 = f[1].parse().unwrap();
            let Ok(body) = c.try_exact(f[2].parse::<usize>().unwrap() + 2) else {
                return;
            };
            let got = Instant::now();
            {
                let mut l = ledger.lock().unwrap();
                l.deliveries += 1;
                if let Some(&t) = l.deleted.get(&id) {
                    if t < sent {
                        l.violations.push(format!(
                            "job {id} delivered after its delete was acknowledged"
                        ));
                    }
                }
                let wrong = l.acked.get(&id).filter(|b| b[..] != body[..body.len() - 2]);
                if let Some(b) = wrong {
                    let v = format!("job {id}: body {} delivered, {} put", show(&body), show(b));
                    l.violations.push(v);
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(100)));
            let release = rng.below(8) == 0;
            let cmd = if release {
                format!("release {id} 0 0\r\n")
            } else {
                format!("delete {id}\r\n")
            };
            let end = Instant::now();
            let r = c.try_send(cmd.as_bytes()).and_then(|()| c.try_line());
            let mut l = ledger.lock().unwrap();
            l.holds.push(Hold {
                id,
                worker: (me, conns),
                sent,
                got,
                ttr: Duration::from_secs(FAULT_TTR),
                end: r.is_ok().then_some(end),
            });
            match r.as_deref() {
                Ok("DELETED") => {
                    l.deleted.insert(id, Instant::now());
                }
                Ok("RELEASED") => l.releases += 1,
                // Its TTR ran out, or its node's sessions were ended, and another worker
                // took it (the hold check says whether that was too early).
                Ok("NOT_FOUND") => {}
                Ok(other) => l.violations.push(format!("{} {id}: {other}", cmd.trim())),
                Err(_) => {
                    if !release {
                        l.maybe_deleted.insert(id);
                    }
                    return;
                }
            }
        }
    });
}

/// Two workers held one job at once: a reservation made after another worker's began
/// (its RESERVED read) and before that one certainly ended (its delete or release sent,
/// or its TTR, less a margin, run out), where that worker's connection lived on to have
/// its next command answered.
fn double_holds(holds: &[Hold]) -> Vec<String> {
    let mut by_id: HashMap<u64, Vec<&Hold>> = HashMap::new();
    for h in holds {
        by_id.entry(h.id).or_default().push(h);
    }
    let mut out = Vec::new();
    for (id, hs) in by_id {
        for a in &hs {
            let Some(end) = a.end else { continue };
            let until = end.min(a.sent + a.ttr - TTR_MARGIN);
            for b in &hs {
                if b.worker != a.worker && b.sent > a.got && b.got < until {
                    out.push(format!(
                        "job {id} held by worker {:?} (reserved at {:?}, ended at {:?}) and \
                         reserved by worker {:?} at {:?} (times from the first reserve)",
                        a.worker,
                        a.got - a.sent,
                        end - a.sent,
                        b.worker,
                        b.got - a.sent
                    ));
                }
            }
        }
    }
    out
}

/// The faults of the fault test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    /// kill -9 of the leader, restart.
    KillLeader,
    /// kill -9 of a random node (of up to a minority of nodes at once), restart.
    KillRandom,
    /// kill -9 of a random node, its data directory wiped, restart.
    Wipe,
    /// The leader cut off from every other node through the relay, then healed.
    IsolateLeader,
    /// One direction between the leader and a follower cut, then healed.
    OneWay,
}

fn env_num(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|s| s.parse().ok())
}

/// Producers and workers on every node of an `n`-node cluster whose peer traffic passes
/// through a fault-injecting relay, while a seeded schedule of faults (SPROUT_FAULTS,
/// default 10; seed SPROUT_FAULT_SEED, printed) kills the leader or random nodes (kill -9)
/// and restarts them, wipes a node's directory before its restart, isolates the leader and
/// cuts one direction between two nodes. Then a per-job ledger is checked against the
/// cluster: no acknowledged put lost, no acknowledged delete undone, no id given twice, no
/// job delivered after its delete was acknowledged, no job held by two workers at once
/// within its TTR; and every node has the same jobs.
fn fault_test(n: usize) {
    let seed = env_num("SPROUT_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000
    });
    let faults = env_num("SPROUT_FAULTS").unwrap_or(10) as usize;
    eprintln!("fault test, {n} nodes: seed {seed}, {faults} faults");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut cl = Cluster::with_relay(n, &[]);
    /// On a panic, the nodes' logs are copied to /tmp/sprout-fault-N-SEED (the cluster's
    /// directory goes away with it).
    struct KeepLogs(std::path::PathBuf, usize, u64);
    impl Drop for KeepLogs {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let to = std::env::temp_dir().join(format!("sprout-fault-{}-{}", self.1, self.2));
                let _ = std::fs::create_dir_all(&to);
                for i in 1..=self.1 {
                    let log = format!("log{i}");
                    let _ = std::fs::copy(self.0.join(&log), to.join(&log));
                }
                eprintln!("the nodes' logs are in {}", to.display());
            }
        }
    }
    let _keep = KeepLogs(cl.dir.join(""), n, seed);
    cl.leader();
    let stop = AtomicBool::new(false);
    let ledger = std::sync::Mutex::new(Ledger::default());
    let mut failovers = Vec::new();
    let mut kinds: std::collections::BTreeMap<Fault, usize> = Default::default();
    // Served again: a put sent after `t0` acknowledged.
    let served = |t0: Instant, what: &str| {
        let end = Instant::now() + FORM_TIMEOUT;
        while ledger.lock().unwrap().latest_acked_sent <= Some(t0) {
            assert!(Instant::now() < end, "no put acknowledged after {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    /// Stops the clients when the fault loop ends, panicking or not (the scope waits for
    /// them).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for i in 0..n {
            let port = cl.ports[i];
            let (stop, ledger) = (&stop, &ledger);
            s.spawn(move || producer(port, i, stop, ledger));
            s.spawn(move || worker(port, i, seed + i as u64 + 1, stop, ledger));
        }
        for k in 0..faults {
            // Every kind in the first five, then at random.
            let fault = match if k < 5 { k as u64 } else { rng.below(5) } {
                0 => Fault::KillLeader,
                1 => Fault::IsolateLeader,
                2 => Fault::KillRandom,
                3 => Fault::OneWay,
                _ => Fault::Wipe,
            };
            *kinds.entry(fault).or_default() += 1;
            let l = cl.leader();
            let t = Instant::now();
            let dwell = Duration::from_millis(500 + rng.below(2000));
            let what = match fault {
                Fault::KillLeader | Fault::KillRandom | Fault::Wipe => {
                    let mut victims = vec![if fault == Fault::KillLeader {
                        l
                    } else {
                        rng.below(n as u64) as usize
                    }];
                    // With five nodes, sometimes a second one (a minority still).
                    if fault == Fault::KillRandom && n >= 5 && rng.below(2) == 0 {
                        victims.push((victims[0] + 1 + rng.below(n as u64 - 1) as usize) % n);
                    }
                    for &v in &victims {
                        cl.kill(v);
                    }
                    if fault == Fault::Wipe {
                        // Only the victim is down: the others hold a majority.
                        cl.wipe(victims[0]);
                    }
                    if victims.contains(&l) {
                        served(t, "a kill");
                        failovers.push(t.elapsed());
                        eprintln!("fault {k}: served again {:?} after it", t.elapsed());
                    }
                    std::thread::sleep(dwell);
                    for &v in &victims {
                        cl.start(v);
                    }
                    let names: Vec<String> = victims.iter().map(|v| (v + 1).to_string()).collect();
                    format!("{fault:?} node {}", names.join("+"))
                }
                Fault::IsolateLeader => {
                    cl.relay().isolate(l);
                    served(t, "the leader's isolation");
                    failovers.push(t.elapsed());
                    eprintln!("fault {k}: served again {:?} after it", t.elapsed());
                    std::thread::sleep(dwell);
                    cl.relay().heal();
                    format!("{fault:?} node {}", l + 1)
                }
                Fault::OneWay => {
                    let f = (l + 1 + rng.below(n as u64 - 1) as usize) % n;
                    let (a, b) = if rng.below(2) == 0 { (l, f) } else { (f, l) };
                    cl.relay().cut(a, b);
                    std::thread::sleep(dwell);
                    cl.relay().heal();
                    format!("{fault:?} {}->{}", a + 1, b + 1)
                }
            };
            // Every node back, with a leader, and the cluster serving.
            for i in 0..n {
                cl.wait(i, "the node back with a leader", |s| {
                    s["cluster-leader-id"] != "0"
                });
            }
            served(Instant::now(), "recovery");
            // And every node caught up with what the leader had committed by then: a node
            // restarted (or wiped) is part of the majority again only once it has the log,
            // and the next fault must find one fault's worth of nodes down, not two.
            let caught_up = |i: usize, at: u64| {
                let end = Instant::now() + FORM_TIMEOUT;
                while cl
                    .status(i)
                    .and_then(|s| s.get("applied-index")?.parse::<u64>().ok())
                    .is_none_or(|a| a < at)
                {
                    assert!(
                        Instant::now() < end,
                        "node {}: not caught up with {at}",
                        i + 1
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            let at = cl
                .status(cl.leader())
                .and_then(|s| s.get("commit-index")?.parse::<u64>().ok())
                .unwrap_or(0);
            for i in 0..n {
                caught_up(i, at);
            }
            eprintln!(
                "fault {k}: {what} at {:?}; recovered after {:?}",
                t - started,
                t.elapsed()
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    // Every node has caught up: the same jobs everywhere.
    let l = cl.leader();
    let mut c = cl.conn(l);
    c.set_timeout(Duration::from_secs(15));
    let st = c.yaml("stats");
    let (total, ready) = (stat(&st, "total-jobs"), stat(&st, "current-jobs-ready"));
    for i in 0..n {
        cl.wait(i, "all jobs applied", |s| {
            stat(s, "total-jobs") == total && stat(s, "current-jobs-ready") == ready
        });
    }
    let mut led = ledger.into_inner().unwrap();
    let double = double_holds(&led.holds);
    led.violations.extend(double.iter().cloned());
    let mut lost = 0;
    let mut resurrected = 0;
    for i in 0..n {
        // Peeks pipelined, 256 at a time (each batch is one entry or a few); again on a new
        // connection if the node closed this one (on this loaded machine a stalled leader
        // may find the others silent and end their sessions).
        let acked: Vec<(&u64, &Vec<u8>)> = led.acked.iter().collect();
        let mut found_ids = std::collections::HashSet::new();
        let mut tries = 0;
        'check: loop {
            tries += 1;
            found_ids.clear();
            let mut c = cl.conn(i);
            c.set_timeout(Duration::from_secs(15));
            for chunk in acked.chunks(256) {
                let cmds: String = chunk
                    .iter()
                    .map(|(id, _)| format!("peek {id}\r\n"))
                    .collect();
                c.send(cmds.as_bytes());
                for &(&id, body) in chunk {
                    let r = match c.try_line() {
                        Ok(r) => r,
                        Err(e) if tries < 5 => {
                            eprintln!("node {}: the check's connection broke ({e}); again", i + 1);
                            continue 'check;
                        }
                        Err(e) => panic!("node {}: {e}", i + 1),
                    };
                    if r != "NOT_FOUND" {
                        let (got, b) = c.job_data(&r, "FOUND");
                        assert_eq!((got, &b), (id, body), "job {id}");
                        found_ids.insert(id);
                    }
                }
            }
            break;
        }
        for &id in led.acked.keys() {
            let found = found_ids.contains(&id);
            if led.deleted.contains_key(&id) && found {
                resurrected += 1;
                led.violations.push(format!(
                    "node {}: job {id} found after its delete was acknowledged",
                    i + 1
                ));
            }
            if !found && !led.deleted.contains_key(&id) && !led.maybe_deleted.contains(&id) {
                // A worker may have deleted it and died before reading DELETED only if it
                // is in maybe_deleted; anything else is lost.
                lost += 1;
                led.violations
                    .push(format!("node {}: acknowledged job {id} lost", i + 1));
            }
        }
    }
    failovers.sort();
    let (relayed, dropped) = cl.relay().counts();
    eprintln!(
        "fault test, {n} nodes: seed {seed}; {faults} faults {kinds:?}; {} puts acknowledged \
         ({} unknown), {} deliveries, {} deletes acknowledged, {} releases; failover median \
         {:?} max {:?} ({} leader faults); relay: {relayed} connections, {dropped} chunks \
         dropped; {lost} lost, {resurrected} resurrected, {} double holds, {} violations; {:?}",
        led.acked.len(),
        led.puts_unknown,
        led.deliveries,
        led.deleted.len(),
        led.releases,
        failovers
            .get(failovers.len() / 2)
            .copied()
            .unwrap_or_default(),
        failovers.last().copied().unwrap_or_default(),
        failovers.len(),
        double.len(),
        led.violations.len(),
        started.elapsed()
    );
    assert!(
        led.violations.is_empty(),
        "seed {seed}: violations: {:#?}",
        &led.violations[..led.violations.len().min(20)]
    );
    assert!(
        led.acked.len() > 100,
        "too little load: {} puts",
        led.acked.len()
    );
    // Failover (guarantee 3): served again within 2 s, as a median over the leader faults
    // (kills and isolations) so that one slow election on a loaded CI machine does not
    // decide it; and no fault at all near 5 s, the call a follower's proposer would wait
    // out on a silent old leader if it did not give up on hearing of a new one.
    // (The first two faults of a run are a kill and an isolation of the leader.)
    if let (Some(&median), Some(&max)) = (failovers.get(failovers.len() / 2), failovers.last()) {
        assert!(
            median <= Duration::from_secs(2),
            "seed {seed}: failover median {median:?} over {failovers:?}"
        );
        assert!(
            max < Duration::from_millis(4500),
            "seed {seed}: a failover took {max:?} ({failovers:?})"
        );
    }
}

#[test]
fn faults_on_three_nodes_lose_no_acknowledged_job() {
    fault_test(3);
}

#[test]
fn faults_on_five_nodes_lose_no_acknowledged_job() {
    fault_test(5);
}

/// On each node but `l`, a client that puts a job and reserves it (TTR an hour).
fn hold_on_others(cl: &Cluster, l: usize) -> Vec<(Conn, u64)> {
    let mut held = Vec::new();
    for i in (0..cl.nodes.len()).filter(|&i| i != l) {
        let mut c = cl.conn(i);
        c.set_timeout(Duration::from_secs(30));
        let id = c.put(0, 0, 3600, b"held across the fault");
        let (got, body) = c.reserve_cmd("reserve-with-timeout 0");
        assert_eq!((got, &body[..]), (id, &b"held across the fault"[..]));
        held.push((c, id));
    }
    held
}

/// After the old leader `l` follows the new one, and a while more (its looks at its peers
/// are about a second apart, and a decision of its could take a moment to be applied):
/// the clients of [`hold_on_others`] kept their connections and their jobs.
fn still_held(cl: &Cluster, l: usize, held: &mut [(Conn, u64)]) {
    cl.wait(l, "the old leader to follow", |s| {
        s["cluster-role"] == "follower" && s["cluster-leader-id"] != "0"
    });
    std::thread::sleep(Duration::from_secs(3));
    for (c, id) in held {
        assert_eq!(c.cmd(&format!("touch {id}")), "TOUCHED", "job {id}");
        assert_eq!(
            c.yaml(&format!("stats-job {id}"))["state"],
            "reserved",
            "job {id}"
        );
    }
}

/// The leader frozen (SIGSTOP) for 6 s, longer than the 5 s after which a leader ends the
/// sessions of a silent node: the others elect a new leader, and when the old one runs
/// again it must not take its own stall for their silence. Clients of the other nodes keep
/// their connections and their reservations.
#[test]
fn a_leader_that_was_frozen_does_not_end_the_others_sessions() {
    let cl = Cluster::new(3);
    let l = cl.leader();
    let mut held = hold_on_others(&cl, l);
    let old = cl.nodes[l].as_ref().unwrap();
    old.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    old.signal(libc::SIGCONT);
    assert_ne!(cl.leader(), l, "a new leader while the old one was frozen");
    still_held(&cl, l, &mut held);
    assert!(
        !cl.log(l).contains("ending its sessions"),
        "the old leader ended sessions:\n{}",
        cl.log(l)
    );
}

/// The leader isolated for 7 s: it hears from no one for longer than the 5 s bound and
/// takes the others for gone, but it is the one cut off. Its decision to end their
/// sessions cannot commit in its own log (no majority), and must not be carried over to
/// the new leader once the partition heals: the others' clients keep their connections
/// and reservations.
#[test]
fn an_isolated_leaders_decisions_die_with_its_term() {
    let cl = Cluster::with_relay(3, &[]);
    let l = cl.leader();
    let mut held = hold_on_others(&cl, l);
    cl.relay().isolate(l);
    std::thread::sleep(Duration::from_secs(7));
    cl.relay().heal();
    still_held(&cl, l, &mut held);
}

/// The two followers frozen (SIGSTOP): the leader is cut off from the majority. It says so
/// in `stats` (answered from its own state), does not acknowledge a put, and closes the
/// connection after 10 s; once the followers run again, the cluster serves again and the
/// unacknowledged put was applied at most once.
#[test]
fn a_leader_cut_off_from_the_majority_stops_acknowledging_and_says_so() {
    let cl = Cluster::new(3);
    let l = cl.leader();
    let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let mut c = cl.conn(l);
    let before = c.put(0, 0, 60, b"before");
    for &f in &followers {
        cl.nodes[f].as_ref().unwrap().signal(libc::SIGSTOP);
    }
    cl.wait(l, "the leader to say it has no majority", |s| {
        s["cluster-leader-id"] == "0"
    });
    let t = Instant::now();
    c.set_timeout(Duration::from_secs(30));
    c.send(b"put 0 0 60 6\r\nduring\r\n");
    assert!(
        c.try_line().is_err(),
        "a put acknowledged without a majority"
    );
    let closed = t.elapsed();
    eprintln!("connection closed {closed:?} after the put");
    assert!(closed >= Duration::from_secs(9), "{closed:?}");
    for &f in &followers {
        cl.nodes[f].as_ref().unwrap().signal(libc::SIGCONT);
    }
    let nl = cl.leader();
    let mut c = cl.conn(nl);
    c.set_timeout(Duration::from_secs(30));
    let after = c.put(0, 0, 60, b"after");
    assert!(after > before);
    assert_eq!(c.peek(&format!("peek {before}")).1, b"before");
    let bodies: Vec<Vec<u8>> = (before..=after)
        .filter_map(|id| {
            let r = c.cmd(&format!("peek {id}"));
            (r != "NOT_FOUND").then(|| c.job_data(&r, "FOUND").1)
        })
        .collect();
    let during = bodies.iter().filter(|b| b.as_slice() == b"during").count();
    assert!(during <= 1, "{bodies:?}");
}

/// The dashboard of a follower acts through the Raft log, as its protocol clients do: a put
/// made there is on every node, a delete made there is gone from every node; `/cluster`
/// shows the node's view and the members.
#[test]
fn a_followers_dashboard_acts_through_the_log() {
    let c = Cluster::new(3);
    let l = c.leader();
    let f = (l + 1) % 3;
    let mut b = Client::new(c.metrics[f]);
    let csrf = b.csrf();
    let r = b.post(
        "/put",
        &[
            ("csrf", &csrf),
            ("tube", "dash"),
            ("pri", "7"),
            ("delay", "0"),
            ("ttr", "30"),
            ("body", "from a follower's dashboard"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let to = r.header("location").unwrap().to_string();
    assert!(to.contains("INSERTED"), "{to}");
    let id: u64 = to.rsplit("%20").next().unwrap().parse().unwrap();
    for i in 0..3 {
        c.wait(i, "the dashboard's put applied", |s| {
            stat(s, "current-jobs-ready") == 1
        });
    }
    let (pid, body) = c.conn(l).peek(&format!("peek {id}"));
    assert_eq!(
        (pid, body.as_slice()),
        (id, &b"from a follower's dashboard"[..])
    );

    let r = b.post(
        &format!("/job/{id}/delete"),
        &[("csrf", &csrf), ("confirm", "yes"), ("tube", "dash")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    for i in 0..3 {
        c.wait(i, "the dashboard's delete applied", |s| {
            stat(s, "current-jobs-ready") == 0 && stat(s, "cmd-delete") == 1
        });
    }
    assert_eq!(c.conn(l).cmd(&format!("peek {id}")), "NOT_FOUND");

    let page = b.get("/cluster");
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(text.contains("<table id=\"members\""), "{text}");
    for addr in c.list.split(',').map(|m| m.split_once('=').unwrap().1) {
        assert!(text.contains(addr), "member {addr} not on /cluster: {text}");
    }
    assert!(text.contains("follower"), "{text}");
}
