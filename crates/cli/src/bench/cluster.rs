//! `sprout bench --cluster`: put, cycle and pubsub at 1 (pubsub: 2), 10 and 100 connections
//! against beanstalkd, single-node sproutd and a 3-node sproutd cluster on loopback, through
//! its leader and through a follower, in one run (a fresh server or cluster per
//! measurement, the order turned round by round); then the failover time over N kills of
//! the leader.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::compare::{self, free_port, median, progress, Server, TempDir};
use super::{connect, run, tls, Measurement, Workload};
use crate::conn::Target;

/// How long a cluster gets to elect a leader, or a restarted node to catch up.
const FORM: Duration = Duration::from_secs(30);

/// Nodes in the benchmarked cluster.
const NODES: usize = 3;

/// What a measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum System {
    /// beanstalkd as it is run by default: no binlog.
    Beanstalkd,
    /// beanstalkd with `-b -f 0`: fsync before every acknowledgement.
    BeanstalkdSync,
    /// sproutd with `-b -f 0`: the durability of the cluster, on one node.
    Sproutd,
    /// The clients on the cluster's leader.
    Leader,
    /// The clients on one of its followers.
    Follower,
}

const SYSTEMS: [System; 5] = [
    System::Beanstalkd,
    System::BeanstalkdSync,
    System::Sproutd,
    System::Leader,
    System::Follower,
];

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Beanstalkd => "beanstalkd",
            System::BeanstalkdSync => "beanstalkd -b -f0",
            System::Sproutd => "sproutd -b -f0",
            System::Leader => "cluster leader",
            System::Follower => "cluster follower",
        }
    }
}

/// The cluster suite: put and cycle at 1, 10 and 100 connections, pubsub at 2 (one
/// producer, one consumer), 10 and 100.
pub fn suite(secs: f64) -> Vec<compare::Case> {
    let mut v = Vec::new();
    for w in [Workload::Put, Workload::Cycle, Workload::Pubsub] {
        let one = if w == Workload::Pubsub { 2 } else { 1 };
        for conns in [one, 10, 100] {
            v.push(tls::case(w, conns, secs));
        }
    }
    v
}

pub struct ClusterOpts {
    pub beanstalkd: String,
    pub sproutd: String,
    pub server_args: Vec<String>,
    pub rounds: usize,
    pub cases: Vec<compare::Case>,
    /// Kills of the leader to time (0: none).
    pub failovers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: compare::Case,
    /// Per system, in [`SYSTEMS`] order, the measurements of each round.
    pub runs: Vec<(System, Vec<Measurement>)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Failover {
    /// Per kill: from the kill -9 of the leader to the first put acknowledged on a
    /// surviving node that was sent after the kill, in milliseconds.
    pub served_again_ms: Vec<f64>,
    /// Per kill: from the kill to a new leader known by every survivor, in milliseconds.
    pub new_leader_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub rounds: usize,
    pub nodes: usize,
    pub beanstalkd: String,
    pub sproutd: String,
    pub results: Vec<CaseResult>,
    pub failover: Failover,
}

/// Cluster nodes on loopback, each with its own data directory; killed (SIGKILL) on drop.
pub(crate) struct Cluster {
    bin: String,
    args: Vec<String>,
    dir: TempDir,
    list: String,
    pub(crate) ports: Vec<u16>,
    pub(crate) nodes: Vec<Option<Server>>,
}

impl Cluster {
    pub(crate) fn start(bin: &str, args: &[String], n: usize) -> io::Result<Cluster> {
        let mut list = Vec::new();
        for i in 0..n {
            list.push(format!("{}=127.0.0.1:{}", i + 1, free_port()?));
        }
        let mut c = Cluster {
            bin: bin.to_string(),
            args: args.to_vec(),
            dir: TempDir::new()?,
            list: list.join(","),
            ports: (0..n).map(|_| free_port()).collect::<io::Result<_>>()?,
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.start_node(i)?;
        }
        Ok(c)
    }

    /// Starts node `i` (0-based) on its data directory; returns once it listens.
    pub(crate) fn start_node(&mut self, i: usize) -> io::Result<()> {
        let mut a = self.args.clone();
        a.extend([
            "-p".to_string(),
            self.ports[i].to_string(),
            "-b".to_string(),
            self.dir.0.join(format!("n{}", i + 1)).display().to_string(),
            "--node-id".to_string(),
            (i + 1).to_string(),
            "--cluster".to_string(),
            self.list.clone(),
        ]);
        self.nodes[i] = Some(compare::start_on(&self.bin, &a, None)?);
        Ok(())
    }

    /// kill -9 of node `i`.
    pub(crate) fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub(crate) fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// The live nodes' `stats` (None for a node that does not answer).
    async fn stats(&self) -> Vec<Option<sprout_client::Stats>> {
        let mut v = Vec::new();
        for i in 0..self.nodes.len() {
            let s = match &self.nodes[i] {
                None => None,
                Some(_) => {
                    let ask = async {
                        let mut c = connect(&Target::plain(&self.addr(i))).await.ok()?;
                        c.stats().await.ok()
                    };
                    tokio::time::timeout(Duration::from_secs(2), ask)
                        .await
                        .ok()
                        .flatten()
                }
            };
            v.push(s);
        }
        v
    }

    /// Waits until every live node names the same leader, a live node that says it leads;
    /// returns its index.
    pub(crate) async fn leader(&self) -> io::Result<usize> {
        let t0 = Instant::now();
        loop {
            let st = self.stats().await;
            let ids: Vec<Option<&str>> = st
                .iter()
                .zip(&self.nodes)
                .filter(|(_, n)| n.is_some())
                .map(|(s, _)| s.as_ref().and_then(|s| s.get("cluster-leader-id")))
                .collect();
            if let Some(Some(id)) = ids.first() {
                let l = id.parse::<usize>().unwrap_or(0);
                let agreed = ids.iter().all(|x| *x == Some(id));
                let leads = l >= 1
                    && st
                        .get(l - 1)
                        .and_then(|s| s.as_ref())
                        .and_then(|s| s.get("cluster-role"))
                        == Some("leader");
                if agreed && leads {
                    return Ok(l - 1);
                }
            }
            if t0.elapsed() > FORM {
                return Err(io::Error::other(format!(
                    "the cluster has no leader after {FORM:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `i` knows the leader and has the commit index the leader had when
    /// this began (asking the nodes is itself logged: the leader's index moves on).
    async fn caught_up(&self, i: usize) -> io::Result<()> {
        let t0 = Instant::now();
        let commit = |s: &Option<sprout_client::Stats>| {
            s.as_ref()
                .and_then(|s| s.get("cluster-commit-index")?.parse::<u64>().ok())
        };
        let target = loop {
            let l = self.leader().await?;
            if let Some(c) = commit(&self.stats().await[l]) {
                break c;
            }
            if t0.elapsed() > FORM {
                return Err(io::Error::other("the leader does not answer stats"));
            }
        };
        loop {
            if commit(&self.stats().await[i]).is_some_and(|c| c >= target) {
                return Ok(());
            }
            if t0.elapsed() > FORM {
                return Err(io::Error::other(format!(
                    "node {} did not catch up in {FORM:?}",
                    i + 1
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs every case `rounds` times against each system, the order turned each round.
pub async fn compare_cluster(o: &ClusterOpts) -> io::Result<ClusterReport> {
    let mut results = Vec::new();
    for case in &o.cases {
        let mut runs: Vec<(System, Vec<Measurement>)> =
            SYSTEMS.iter().map(|&s| (s, Vec::new())).collect();
        for round in 0..o.rounds {
            let mut order: Vec<usize> = (0..SYSTEMS.len()).collect();
            order.rotate_left(round % SYSTEMS.len());
            for k in order {
                let sys = SYSTEMS[k];
                let bar = progress(case.params.secs);
                bar.set_prefix(format!(
                    "{} [{}/{}] {}",
                    case.name,
                    round + 1,
                    o.rounds,
                    sys.label()
                ));
                let m = measure(o, sys, case, &bar).await?;
                bar.finish_and_clear();
                if m.errors > 0 {
                    return Err(io::Error::other(format!(
                        "{}: {} errors against {}",
                        case.name,
                        m.errors,
                        sys.label()
                    )));
                }
                runs[k].1.push(m);
            }
        }
        results.push(CaseResult {
            case: case.clone(),
            runs,
        });
    }
    let failover = if o.failovers > 0 {
        failovers(o).await?
    } else {
        Failover::default()
    };
    Ok(ClusterReport {
        rounds: o.rounds,
        nodes: NODES,
        beanstalkd: o.beanstalkd.clone(),
        sproutd: o.sproutd.clone(),
        results,
        failover,
    })
}

async fn measure(
    o: &ClusterOpts,
    sys: System,
    case: &compare::Case,
    bar: &indicatif::ProgressBar,
) -> io::Result<Measurement> {
    let sync = ["-f".to_string(), "0".to_string()];
    let single = |bin: &str, sync_args: bool| -> io::Result<(Server, Option<TempDir>)> {
        let mut args = o.server_args.clone();
        let dir = if sync_args {
            let d = TempDir::new()?;
            args.extend(sync.iter().cloned());
            args.extend(["-b".to_string(), d.0.display().to_string()]);
            Some(d)
        } else {
            None
        };
        Ok((compare::start(bin, &args, None)?, dir))
    };
    match sys {
        System::Beanstalkd | System::BeanstalkdSync | System::Sproutd => {
            let (server, _dir) = match sys {
                System::Beanstalkd => single(&o.beanstalkd, false)?,
                System::BeanstalkdSync => single(&o.beanstalkd, true)?,
                _ => single(&o.sproutd, true)?,
            };
            let t = Target::plain(&server.addr);
            run(&t, Some(server.pid), case.workload, &case.params, bar).await
        }
        System::Leader | System::Follower => {
            let cl = Cluster::start(&o.sproutd, &o.server_args, NODES)?;
            let l = cl.leader().await?;
            let i = if sys == System::Leader {
                l
            } else {
                (l + 1) % NODES
            };
            let pid = cl.nodes[i].as_ref().map(|s| s.pid);
            run(
                &Target::plain(&cl.addr(i)),
                pid,
                case.workload,
                &case.params,
                bar,
            )
            .await
        }
    }
}

/// Sends puts one after the other on a connection to `addr`, recording when each
/// acknowledged one was sent and acknowledged; reconnects after an error.
async fn prober(addr: String, acks: Arc<Mutex<Vec<(Instant, Instant)>>>) {
    loop {
        let Ok(mut c) = connect(&Target::plain(&addr)).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            match c.put(0, 0, 60, b"failover probe").await {
                Ok(sprout_client::PutOutcome::Inserted(_)) => acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((sent, Instant::now())),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

/// Kills the leader `o.failovers` times (restarting it and waiting for it to catch up in
/// between) while clients on every other node put; times until they are served again.
async fn failovers(o: &ClusterOpts) -> io::Result<Failover> {
    let mut cl = Cluster::start(&o.sproutd, &o.server_args, NODES)?;
    let mut f = Failover::default();
    for k in 0..o.failovers {
        let l = cl.leader().await?;
        let acks = Arc::new(Mutex::new(Vec::new()));
        let probes: Vec<_> = (0..NODES)
            .filter(|&i| i != l)
            .map(|i| tokio::spawn(prober(cl.addr(i), acks.clone())))
            .collect();
        // Served before the kill.
        let t0 = Instant::now();
        while acks.lock().unwrap_or_else(|p| p.into_inner()).len() < 2 * (NODES - 1) {
            if t0.elapsed() > FORM {
                return Err(io::Error::other("no put acknowledged before the kill"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let killed = Instant::now();
        cl.kill(l);
        let mut new_leader = None;
        let served = loop {
            let first = acks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(sent, _)| *sent >= killed)
                .map(|(_, acked)| *acked)
                .min();
            if let Some(t) = first {
                break t - killed;
            }
            if new_leader.is_none() {
                // The acknowledgements carry their own times: polling here delays nothing
                // but this figure's resolution.
                if let Ok(Ok(nl)) =
                    tokio::time::timeout(Duration::from_millis(200), cl.leader()).await
                {
                    if nl != l {
                        new_leader = Some(killed.elapsed());
                    }
                }
            }
            if killed.elapsed() > FORM {
                return Err(io::Error::other(format!(
                    "kill {}: not served again within {FORM:?}",
                    k + 1
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        for p in probes {
            p.abort();
        }
        let nl = match new_leader {
            Some(d) => d,
            None => {
                cl.leader().await?;
                killed.elapsed()
            }
        };
        eprintln!(
            "bench: kill {} of the leader (node {}): served again after {:.0} ms",
            k + 1,
            l + 1,
            served.as_secs_f64() * 1000.0
        );
        f.served_again_ms.push(served.as_secs_f64() * 1000.0);
        f.new_leader_ms.push(nl.as_secs_f64() * 1000.0);
        cl.start_node(l)?;
        cl.caught_up(l).await?;
    }
    Ok(f)
}

type Metric = fn(&Measurement) -> Option<f64>;

/// The report as a table of medians: one row per case and metric, one column per system,
/// and the cluster's figures over beanstalkd's.
pub fn table(r: &ClusterReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "{:<14} {:<9}", "case", "median");
    for sys in SYSTEMS {
        let _ = write!(s, " {:>17}", sys.label());
    }
    let _ = writeln!(s, " {:>9} {:>9}", "lead/bean", "foll/bean");
    for c in &r.results {
        let metrics: [(&str, Metric); 3] = [
            ("ops/s", |m| Some(m.ops_per_sec)),
            ("p50 us", |m| Some(m.p50_us)),
            ("p99 us", |m| Some(m.p99_us)),
        ];
        for (i, (name, f)) in metrics.iter().enumerate() {
            let _ = write!(
                s,
                "{:<14} {:<9}",
                if i == 0 { c.case.name.as_str() } else { "" },
                name
            );
            let med: Vec<f64> = c
                .runs
                .iter()
                .map(|(_, ms)| median(ms.iter().filter_map(f).collect()))
                .collect();
            for v in &med {
                let _ = write!(s, " {v:>17.1}");
            }
            let bean = med[0];
            let _ = writeln!(s, " {:>9.2} {:>9.2}", med[3] / bean, med[4] / bean);
        }
    }
    let f = &r.failover;
    if !f.served_again_ms.is_empty() {
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        let _ = writeln!(
            s,
            "failover over {} kills of the leader: served again median {:.0} ms, max {:.0} ms; \
             new leader known median {:.0} ms, max {:.0} ms",
            f.served_again_ms.len(),
            median(f.served_again_ms.clone()),
            max(&f.served_again_ms),
            median(f.new_leader_ms.clone()),
            max(&f.new_leader_ms)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_cases() {
        let names: Vec<String> = suite(1.0).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "put c=1",
                "put c=10",
                "put c=100",
                "cycle c=1",
                "cycle c=10",
                "cycle c=100",
                "pubsub c=2",
                "pubsub c=10",
                "pubsub c=100"
            ]
        );
    }
}
