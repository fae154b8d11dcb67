//! A cluster of sproutd processes on loopback for the cluster tests: start, kill and
//! restart nodes, read their stats, wait for an agreed leader.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

/// How long a cluster gets to elect a leader, or a node to catch up.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub dir: TempDir,
    pub ports: Vec<u16>,
    /// Each node's `--http` port (the dashboard and `/metrics`).
    pub metrics: Vec<u16>,
    pub list: String,
    pub nodes: Vec<Option<Server>>,
    /// Environment variables every node is started with.
    pub env: Vec<(String, String)>,
    /// With a relay between the peer ports (see `with_relay`): the relay, whose ports are
    /// the addresses in `list`, and where each node's peer listener binds.
    pub relay: Option<super::relay::Relay>,
    pub binds: Vec<u16>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::with_env(n, &[])
    }

    /// A cluster whose nodes run with these environment variables.
    pub fn with_env(n: usize, env: &[(&str, &str)]) -> Cluster {
        let peers: Vec<u16> = (0..n).map(|_| free_port()).collect();
        Cluster::started(&peers, env, None, Vec::new())
    }

    /// Starts a node per peer port (the addresses of `--cluster`); `relay` and `binds`: see
    /// [`Cluster::with_relay`].
    fn started(
        peers: &[u16],
        env: &[(&str, &str)],
        relay: Option<super::relay::Relay>,
        binds: Vec<u16>,
    ) -> Cluster {
        let n = peers.len();
        let list = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir: TempDir::new("cluster"),
            ports: (0..n).map(|_| free_port()).collect(),
            metrics: (0..n).map(|_| free_port()).collect(),
            list,
            nodes: (0..n).map(|_| None).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            relay,
            binds,
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    pub fn data(&self, i: usize) -> PathBuf {
        self.dir.join(&format!("n{}", i + 1))
    }

    /// Starts node `i` (0-based) without waiting for it.
    pub fn start(&mut self, i: usize) {
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
            // The dashboard, with /metrics beside it.
            .args(["--http", &format!("127.0.0.1:{}", self.metrics[i])])
            .args(
                self.binds
                    .get(i)
                    .map(|p| ["--cluster-bind".to_string(), format!("127.0.0.1:{p}")])
                    .into_iter()
                    .flatten(),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stderr(log)
            .spawn()
            .expect("spawn sproutd");
        self.nodes[i] = Some(Server {
            child,
            addr: Addr::Tcp(self.ports[i]),
            startup: Duration::ZERO,
        });
    }

    /// Node `i`'s `/metrics` text.
    pub fn metrics(&self, i: usize) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics[i])).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Node `i`'s log (its stderr, all runs).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(&format!("log{}", i + 1))).unwrap_or_default()
    }

    /// The size of the file `name` in node `i`'s Raft directory (0 if there is none).
    pub fn raft_file(&self, i: usize, name: &str) -> u64 {
        std::fs::metadata(self.data(i).join("raft").join(name)).map_or(0, |m| m.len())
    }

    pub fn kill(&mut self, i: usize) {
        let mut s = self.nodes[i].take().expect("node running");
        s.signal(libc::SIGKILL);
        s.wait_exit(Duration::from_secs(10));
    }

    pub fn conn(&self, i: usize) -> Conn {
        Conn::try_connect(&Addr::Tcp(self.ports[i])).expect("connect")
    }

    /// `stats` of node `i`, or None if it does not answer within 5 s (a node without a
    /// leader answers from its own state after 2 s).
    pub fn stats(&self, i: usize) -> Option<HashMap<String, String>> {
        let mut c = Conn::try_connect(&Addr::Tcp(self.ports[i])).ok()?;
        c.set_timeout(Duration::from_secs(5));
        c.try_yaml("stats").ok()
    }

    /// Polls node `i`'s stats until `f` holds; panics after FORM_TIMEOUT with the
    /// node's logs.
    pub fn wait(&self, i: usize, what: &str, f: impl Fn(&HashMap<String, String>) -> bool) {
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
    pub fn leader(&self) -> usize {
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
            if Instant::now() >= end {
                // The end of the log of each running node, for the failure's story.
                let mut logs = String::new();
                for i in (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()) {
                    let log = self.log(i);
                    let tail = &log[log.len().saturating_sub(4000)..];
                    let tail = tail.get(tail.find('\n').unwrap_or(0)..).unwrap_or(tail);
                    logs += &format!("--- node {} (its log's end):{tail}\n", i + 1);
                }
                panic!("no agreed leader: {seen:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn stat(s: &HashMap<String, String>, k: &str) -> u64 {
    s[k].parse().unwrap()
}

impl Cluster {
    /// A new node (the next id) started on an empty directory with `--cluster` listing
    /// every node so far and itself, not waited for; its index and its peer address (for
    /// `cluster-add`). The nodes started before keep the list they were started with.
    pub fn add_node(&mut self) -> (usize, String) {
        let i = self.nodes.len();
        let peer = format!("127.0.0.1:{}", free_port());
        self.list = format!("{},{}={peer}", self.list, i + 1);
        self.ports.push(free_port());
        self.metrics.push(free_port());
        self.nodes.push(None);
        self.start(i);
        (i, peer)
    }

    /// Node `i`'s `cluster-status`, or None if it does not answer.
    pub fn status(&self, i: usize) -> Option<HashMap<String, String>> {
        let mut c = Conn::try_connect(&Addr::Tcp(self.ports[i])).ok()?;
        c.try_yaml("cluster-status").ok()
    }

    /// A cluster whose peer connections all pass through a fault-injecting relay
    /// (`cl.relay`): the addresses in `--cluster` are the relay's, and each node's peer
    /// listener binds elsewhere (`--cluster-bind`).
    pub fn with_relay(n: usize, env: &[(&str, &str)]) -> Cluster {
        let binds: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let relay = super::relay::Relay::new(&binds);
        let peers = relay.ports.clone();
        Cluster::started(&peers, env, Some(relay), binds)
    }

    /// The relay (panics without one).
    pub fn relay(&self) -> &super::relay::Relay {
        self.relay.as_ref().expect("a cluster made with_relay")
    }

    /// Removes node `i`'s data directory (the node must be down): it restarts as a member
    /// that lost its state.
    pub fn wipe(&self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {} is running", i + 1);
        let _ = std::fs::remove_dir_all(self.data(i));
    }

    /// The leader as the running nodes see it, if every running node that names one names
    /// the same running node and at least `quorum` nodes name it; None otherwise (no
    /// waiting, no panic).
    pub fn agreed_leader(&self, quorum: usize) -> Option<usize> {
        let seen: Vec<u64> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .filter_map(|i| self.stats(i)?["cluster-leader-id"].parse().ok())
            .filter(|&l: &u64| l != 0)
            .collect();
        let l = *seen.first()?;
        (seen.len() >= quorum && seen.iter().all(|&x| x == l))
            .then(|| l as usize - 1)
            .filter(|&l| self.nodes[l].is_some())
    }
}
