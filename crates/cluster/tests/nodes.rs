//! Three nodes in one process on loopback: items submitted on any node are applied on
//! every node, once, in the same order; after the leader stops, the others elect a new
//! one and go on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sprout_cluster::node::{Clock, Options};
use sprout_cluster::{Apply, Node, NodeId, Role};

type Log = Arc<Mutex<Vec<(NodeId, Vec<u8>)>>>;

struct Shared(Log);

impl Apply for Shared {
    fn apply(&mut self, _index: u64, _now: u64, origin: NodeId, item: &[u8]) {
        self.0.lock().unwrap().push((origin, item.to_vec()));
    }
    fn snapshot(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every few milliseconds until it holds, for at most `within`.
async fn until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_apply_the_same_items_and_survive_the_leader() {
    let members: BTreeMap<NodeId, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let base = std::env::temp_dir().join(format!("sprout-cluster-nodes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let clock: Clock = Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let mut nodes = Vec::new();
    let mut logs = Vec::new();
    for &id in members.keys() {
        let log: Log = Arc::default();
        let dir = base.join(id.to_string());
        let n = Node::start(
            id,
            &members,
            &dir,
            Shared(log.clone()),
            clock.clone(),
            Options::default(),
        )
        .await
        .unwrap();
        nodes.push(n);
        logs.push(log);
    }
    until(Duration::from_secs(20), "a leader", || {
        nodes.iter().any(|n| n.status().role == Role::Leader)
    })
    .await;
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..10 {
            n.submit(format!("{i}-{k}").into_bytes());
        }
    }
    until(Duration::from_secs(20), "30 items everywhere", || {
        logs.iter().all(|l| l.lock().unwrap().len() == 30)
    })
    .await;
    let first = logs[0].lock().unwrap().clone();
    for l in &logs[1..] {
        assert_eq!(
            *l.lock().unwrap(),
            first,
            "the same items in the same order"
        );
    }
    // Each node's items in the order it submitted them.
    for (i, n) in nodes.iter().enumerate() {
        let mine: Vec<_> = first
            .iter()
            .filter(|(o, _)| *o == n.id())
            .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
            .collect();
        let want: Vec<_> = (0..10).map(|k| format!("{i}-{k}")).collect();
        assert_eq!(mine, want);
    }

    let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
    let old = nodes[leader].id();
    nodes[leader].shutdown().await;
    let stopped = Instant::now();
    let rest: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    until(Duration::from_secs(20), "a new leader", || {
        rest.iter()
            .any(|&i| nodes[i].is_leader() && nodes[i].status().leader != old)
    })
    .await;
    eprintln!("new leader after {:?}", stopped.elapsed());
    nodes[rest[0]].submit(b"after".to_vec());
    until(Duration::from_secs(20), "the item on the survivors", || {
        rest.iter().all(|&i| logs[i].lock().unwrap().len() == 31)
    })
    .await;
    for &i in &rest {
        nodes[i].shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&base);
}
