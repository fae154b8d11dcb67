//! Cluster membership: `cluster-add` (a new node, started on an empty directory, waits
//! without forming a cluster of its own, then catches up with every job and votes),
//! `cluster-remove` (a follower; the leader itself, answered by it, after which the others
//! elect a new leader and serve their clients), `cluster-transfer-leader` (every node then
//! names the target; puts meanwhile all succeed), a restart that takes its membership from
//! the log rather than from `--cluster`, and the error replies (unknown id, bad format, a
//! single server, `--strict`). Every wait is a bounded poll; the times measured are
//! printed (`--nocapture`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::*;

/// A connection that waits long enough for a membership change (adding a node waits for
/// it to catch up).
fn admin(cl: &Cluster, i: usize) -> Conn {
    let mut c = cl.conn(i);
    c.set_timeout(Duration::from_secs(60));
    c
}

/// The ids in a `cluster-status`'s `members`.
fn members(s: &HashMap<String, String>) -> Vec<u64> {
    s["members"]
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// Polls (`cluster-status`, answered at once) until the running nodes `among` all name
/// one leader, itself one of them;
/// returns its index. Panics after FORM_TIMEOUT.
fn leader_among(cl: &Cluster, among: &[usize]) -> usize {
    let end = Instant::now() + FORM_TIMEOUT;
    loop {
        let seen: Vec<u64> = among
            .iter()
            .map(|&i| {
                cl.status(i)
                    .and_then(|s| s["leader-id"].parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        if seen[0] != 0
            && seen.iter().all(|&l| l == seen[0])
            && among.contains(&(seen[0] as usize - 1))
        {
            return seen[0] as usize - 1;
        }
        assert!(
            Instant::now() < end,
            "no agreed leader among {among:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn add_a_node_then_remove_a_follower_and_the_leader() {
    let mut cl = Cluster::new(3);
    let l = cl.leader();
    let mut c = cl.conn(l);
    for k in 0..50 {
        c.put(0, 0, 120, format!("job {k}").as_bytes());
    }

    // A fourth node on an empty directory, its --cluster naming the three and itself:
    // the cluster exists, so it forms none of its own and waits to be added.
    let (n, peer) = cl.add_node();
    std::thread::sleep(Duration::from_secs(2));
    let s = cl.status(n).expect("cluster-status of the new node");
    assert_eq!(s["members"], "", "{s:?}");
    assert_ne!(s["role"], "leader", "{s:?}");
    assert!(cl.log(n).contains("sprout cluster add"), "{}", cl.log(n));

    // Added through a follower (handed to the leader over the peer network).
    let f = (0..3).find(|&i| i != l).unwrap();
    let t = Instant::now();
    assert_eq!(admin(&cl, f).cmd(&format!("cluster-add 4 {peer}")), "ADDED");
    println!("cluster-add answered after {:?}", t.elapsed());
    cl.wait(n, "the new node has every job", |s| {
        stat(s, "current-jobs-ready") == 50 && stat(s, "cluster-leader-id") == l as u64 + 1
    });
    println!("node 4 caught up {:?} after cluster-add", t.elapsed());
    for i in [l, n] {
        let s = cl.status(i).unwrap();
        assert_eq!(members(&s), [1, 2, 3, 4], "node {}: {s:?}", i + 1);
        assert_eq!(s["member-4-voter"], "true", "{s:?}");
        assert_eq!(s["member-4-addr"], peer, "{s:?}");
    }
    // Adding it again: nothing to do.
    assert_eq!(admin(&cl, l).cmd(&format!("cluster-add 4 {peer}")), "ADDED");
    // Its clients are served like any follower's.
    let mut on_n = cl.conn(n);
    let id = on_n.put(0, 0, 120, b"from node 4");
    cl.wait(l, "the put through node 4", |s| {
        stat(s, "current-jobs-ready") == 51
    });

    // Remove a follower other than the new node.
    let gone = (0..3).find(|&i| i != l && i != f).unwrap();
    assert_eq!(
        admin(&cl, l).cmd(&format!("cluster-remove {}", gone + 1)),
        "REMOVED"
    );
    let s = cl.status(l).unwrap();
    let mut want: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&x| x != gone as u64 + 1)
        .collect();
    assert_eq!(members(&s), want, "{s:?}");
    cl.kill(gone);

    // Remove the leader, asked of the leader itself: it answers, steps down, and the two
    // others elect a new leader and serve their clients.
    let t = Instant::now();
    assert_eq!(
        admin(&cl, l).cmd(&format!("cluster-remove {}", l + 1)),
        "REMOVED"
    );
    let answered = t.elapsed();
    let rest = [f, n];
    let nl = leader_among(&cl, &rest);
    println!(
        "cluster-remove of the leader answered after {answered:?}; new leader (node {}) \
         agreed after {:?}",
        nl + 1,
        t.elapsed()
    );
    want.retain(|&x| x != l as u64 + 1);
    for i in rest {
        cl.wait(i, "the membership without the old leader", |_| {
            cl.status(i).is_some_and(|s| members(&s) == want)
        });
    }
    // The removed leader leads no more. (Removed as a follower, once it had handed over,
    // it may not learn that it was: it then calls elections, which the members, with a
    // leader and a longer log, refuse.) It answers once it knows it has no leader.
    let end = Instant::now() + FORM_TIMEOUT;
    let s = loop {
        if let Some(s) = cl.status(l) {
            break s;
        }
        assert!(Instant::now() < end, "node {}: no cluster-status", l + 1);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(s["role"], "leader", "{s:?}");
    assert_eq!(s["leader-id"], "0", "{s:?}");
    for i in rest {
        let mut c = cl.conn(i);
        let (got, _) = c.reserve();
        assert_eq!(c.cmd(&format!("delete {got}")), "DELETED");
        c.put(0, 0, 120, format!("after, on node {}", i + 1).as_bytes());
    }
    assert_eq!(cl.conn(n).peek(&format!("peek {id}")).1, b"from node 4");

    // A restart takes the membership from the log, not from --cluster (which still names
    // all four).
    let stats_before = cl.stats(f).unwrap();
    cl.kill(f);
    cl.start(f);
    let nl = leader_among(&cl, &rest);
    assert!(rest.contains(&nl));
    cl.wait(f, "the jobs back after the restart", |s| {
        s["current-jobs-ready"] == stats_before["current-jobs-ready"]
    });
    let s = cl.status(f).unwrap();
    assert_eq!(members(&s), want, "{s:?}");
}

#[test]
fn transfer_leadership_and_errors() {
    let cl = Cluster::new(3);
    let l = cl.leader();
    let others: Vec<usize> = (0..3).filter(|&i| i != l).collect();
    let (to, via) = (others[0], others[1]);

    // Puts on a follower go on during the transfer: each one succeeds.
    let port = cl.ports[via];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let putter = std::thread::spawn(move || {
        let mut c = Conn::try_connect(&Addr::Tcp(port)).unwrap();
        c.set_timeout(Duration::from_secs(15));
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            c.put(0, 0, 120, b"during");
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(200));

    let t = Instant::now();
    assert_eq!(
        admin(&cl, via).cmd(&format!("cluster-transfer-leader {}", to + 1)),
        "TRANSFERRED"
    );
    let answered = t.elapsed();
    for i in 0..3 {
        cl.wait(i, "the target named leader", |s| {
            stat(s, "cluster-leader-id") == to as u64 + 1
        });
    }
    println!(
        "cluster-transfer-leader answered after {answered:?}; every node names node {} \
         after {:?}",
        to + 1,
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let puts = putter
        .join()
        .expect("every put during the transfer succeeded");
    assert!(puts > 0);
    cl.wait(l, "every put applied", |s| {
        stat(s, "current-jobs-ready") == puts
    });
    // To the leader itself: nothing to do.
    assert_eq!(
        admin(&cl, l).cmd(&format!("cluster-transfer-leader {}", to + 1)),
        "TRANSFERRED"
    );
    // And back, asked of the leader.
    assert_eq!(
        admin(&cl, to).cmd(&format!("cluster-transfer-leader {}", l + 1)),
        "TRANSFERRED"
    );
    assert_eq!(cl.leader(), l);

    // Errors.
    let mut c = admin(&cl, via);
    assert_eq!(c.cmd("cluster-remove 9"), "NOT_FOUND");
    assert_eq!(c.cmd("cluster-transfer-leader 9"), "NOT_FOUND");
    for bad in [
        "cluster-add 4",
        "cluster-add 0 127.0.0.1:7000",
        "cluster-add 4 127.0.0.1",
        "cluster-add 4 127.0.0.1:99999",
        "cluster-add 4 127.0.0.1:7000 x",
        "cluster-add x 127.0.0.1:7000",
        "cluster-remove",
        "cluster-remove 0",
        "cluster-remove x",
        "cluster-remove 2 3",
        "cluster-transfer-leader",
        "cluster-transfer-leader -1",
    ] {
        assert_eq!(c.cmd(bad), "BAD_FORMAT", "{bad}");
    }
    // A member's id with another address.
    let r = c.cmd("cluster-add 2 127.0.0.1:1");
    assert!(r.starts_with("CLUSTER_ERROR node 2 is a member"), "{r}");
    // The connection is still good.
    assert_eq!(c.cmd("use t"), "USING t");
    let s = cl.status(l).unwrap();
    assert_eq!(members(&s), [1, 2, 3]);
}

#[test]
fn a_single_server_has_no_membership_commands() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(
        c.cmd("cluster-add 4 127.0.0.1:7000"),
        "CLUSTER_ERROR not a cluster node"
    );
    assert_eq!(
        c.cmd("cluster-remove 2"),
        "CLUSTER_ERROR not a cluster node"
    );
    assert_eq!(
        c.cmd("cluster-transfer-leader 2"),
        "CLUSTER_ERROR not a cluster node"
    );
    assert_eq!(c.cmd("cluster-remove x"), "BAD_FORMAT");
    let s = Server::start(&["--strict"]);
    let mut c = s.conn();
    for line in [
        "cluster-add 4 127.0.0.1:7000",
        "cluster-remove 2",
        "cluster-transfer-leader 2",
    ] {
        assert_eq!(c.cmd(line), "UNKNOWN_COMMAND", "{line}");
    }
}
