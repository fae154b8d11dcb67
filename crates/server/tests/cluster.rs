//! Cluster mode: three sproutd processes on loopback form a cluster from the same
//! `--cluster` list; clients on any node are served; after kill -9 of the leader the
//! others go on, with every acknowledged put; the killed node catches up when restarted
//! and its clients' reservations come back. Every wait is a bounded poll.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

/// How long a cluster gets to elect a leader, or a node to catch up.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

struct Cluster {
    dir: TempDir,
    ports: Vec<u16>,
    list: String,
    nodes: Vec<Option<Server>>,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let list = (0..n)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir: TempDir::new("cluster"),
            ports,
            list,
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("n{}", i + 1))
    }

    /// Starts node `i` (0-based) without waiting for it.
    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(&format!("log{}", i + 1)))
            .unwrap();
        let child = sproutd()
            .args(["-l", "127.0.0.1", "-p", &self.ports[i].to_string()])
            .arg("-b")
            .arg(self.data(i))
            .args(["--node-id", &(i + 1).to_string(), "--cluster", &self.list])
            .stderr(log)
            .spawn()
            .expect("spawn sproutd");
        self.nodes[i] = Some(Server {
            child,
            addr: Addr::Tcp(self.ports[i]),
            startup: Duration::ZERO,
        });
    }

    fn kill(&mut self, i: usize) {
        let mut s = self.nodes[i].take().expect("node running");
        s.signal(libc::SIGKILL);
        s.wait_exit(Duration::from_secs(10));
    }

    fn conn(&self, i: usize) -> Conn {
        Conn::try_connect(&Addr::Tcp(self.ports[i])).expect("connect")
    }

    /// `stats` of node `i`, or None if it does not answer within a second.
    fn stats(&self, i: usize) -> Option<HashMap<String, String>> {
        let mut c = Conn::try_connect(&Addr::Tcp(self.ports[i])).ok()?;
        c.set_timeout(Duration::from_secs(1));
        c.try_yaml("stats").ok()
    }

    /// Polls node `i`'s stats until `f` holds; panics after FORM_TIMEOUT with the
    /// node's logs.
    fn wait(&self, i: usize, what: &str, f: impl Fn(&HashMap<String, String>) -> bool) {
        let end = Instant::now() + FORM_TIMEOUT;
        loop {
            if self.stats(i).is_some_and(|s| f(&s)) {
                return;
            }
            if Instant::now() >= end {
                let logs = std::fs::read_to_string(self.dir.join(&format!("log{}", i + 1)))
                    .unwrap_or_default();
                panic!("node {}: timed out waiting for {what}\n{logs}", i + 1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node names the same leader; returns its index.
    fn leader(&self) -> usize {
        let end = Instant::now() + FORM_TIMEOUT;
        loop {
            let seen: Vec<u64> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].is_some())
                .map(|i| {
                    self.stats(i)
                        .and_then(|s| s["cluster-leader-id"].parse().ok())
                        .unwrap_or(0)
                })
                .collect();
            if seen[0] != 0 && seen.iter().all(|&l| l == seen[0]) {
                let l = seen[0] as usize - 1;
                if self.nodes[l].is_some() {
                    return l;
                }
            }
            assert!(Instant::now() < end, "no agreed leader: {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn stat(s: &HashMap<String, String>, k: &str) -> u64 {
    s[k].parse().unwrap()
}

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

    // Puts through a follower, reserve and delete through the leader.
    let mut on_f = cl.conn(f);
    let mut on_l = cl.conn(l);
    let mut ids = Vec::new();
    for k in 0..20 {
        ids.push(on_f.put(0, 0, 120, format!("job {k}").as_bytes()));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
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
    eprintln!(
        "reservation of the dead node's client back after {:?}",
        killed.elapsed()
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
