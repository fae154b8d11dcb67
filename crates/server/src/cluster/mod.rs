//! Cluster mode (`--cluster`): the engine is replicated through the Raft log of
//! `sprout-cluster`. Every input of every node's connections is proposed to the leader,
//! committed (a majority has it on disk) and then applied on every node in log order
//! (`hub`); a reply is what applying it on the client's own node gave, so a follower
//! serves its clients the same as the leader does. Time comes from the log: the leader
//! stamps each entry with its clock and proposes a tick when the engine's next deadline
//! is due. The single-node path (`conn.rs`, `Shared::step`) is not used here.

mod conn;
mod hub;
mod item;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sprout_cluster::node::Options;
use sprout_cluster::{Node, NodeId};
use sprout_protocol::reply::{ClusterStats, LatencyHist};

use crate::listen::{Accepted, Listener};
use crate::Shared;
use hub::{App, Hub};
use item::Item;

/// `stats`'s cluster fields.
fn cluster_stats(hub: &Hub) -> ClusterStats {
    match hub.node.get() {
        Some(n) => {
            let s = n.status();
            let l = n.replication_latency();
            ClusterStats {
                node_id: s.id,
                role: s.role.name(),
                leader_id: s.leader,
                term: s.term,
                commit_index: s.commit,
                applied_index: s.applied,
                leader_changes: s.leader_changes,
                member_lag: n
                    .members()
                    .iter()
                    .filter(|m| m.id != s.id)
                    .filter_map(|m| Some((m.id, s.last_log.saturating_sub(m.matched?))))
                    .collect(),
                replication_latency: LatencyHist {
                    bounds_us: &sprout_cluster::latency::BOUNDS_US,
                    buckets: l.buckets.to_vec(),
                    count: l.count,
                    sum_us: l.sum_us,
                },
            }
        }
        None => ClusterStats {
            node_id: hub.me,
            role: "learner",
            ..Default::default()
        },
    }
}

/// `cluster-status` (sprout's own command, cluster nodes only, off with `--strict`): this
/// node's view of the cluster as flat YAML; answered by the node itself, nothing is logged.
fn status_yaml(hub: &Hub) -> String {
    use std::fmt::Write as _;
    let mut y = String::from("---\n");
    let Some(node) = hub.node.get() else {
        return y;
    };
    let s = node.status();
    let _ = write!(
        y,
        "node-id: {}\nrole: {}\nleader-id: {}\nterm: {}\ncommit-index: {}\n\
         applied-index: {}\nlast-log-index: {}\nleader-changes: {}\n",
        s.id,
        s.role.name(),
        s.leader,
        s.term,
        s.commit,
        s.applied,
        s.last_log,
        s.leader_changes
    );
    let members = node.members();
    let ids: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
    let _ = writeln!(y, "members: \"{}\"", ids.join(","));
    for m in members {
        let id = m.id;
        let _ = writeln!(y, "member-{id}-addr: \"{}\"", m.addr);
        let _ = writeln!(y, "member-{id}-voter: {}", m.voter);
        if let Some(at) = m.matched {
            let _ = writeln!(y, "member-{id}-matched-index: {at}");
            let _ = writeln!(y, "member-{id}-lag: {}", s.last_log.saturating_sub(at));
        }
    }
    y
}

/// A member that has not answered the leader for this long is taken for gone: the leader
/// ends its sessions (their reserved jobs come back ready, their waiting reserves stop
/// taking jobs). A node that was only cut off finds its connections' sessions gone and
/// closes them.
pub(crate) const NODE_GONE_AFTER: Duration = Duration::from_secs(5);

/// Proposes a tick whenever this node leads and the engine's next deadline is due (one at
/// a time: the next once this one is applied), and ends the sessions of members silent for
/// [`NODE_GONE_AFTER`] (once per silence) and of members removed from the cluster.
async fn ticker(hub: Arc<Hub>, node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut sent = 0u64;
    let mut reset: std::collections::BTreeSet<NodeId> = Default::default();
    let mut seen = (sprout_cluster::Role::Learner, 0, 0);
    // The membership last seen, and members taken out of it whose sessions the leader is
    // to end (dropped if they come back first).
    let mut members: std::collections::BTreeSet<NodeId> = Default::default();
    let mut removed: std::collections::BTreeSet<NodeId> = Default::default();
    loop {
        let now: std::collections::BTreeSet<NodeId> = node.members().iter().map(|m| m.id).collect();
        removed.extend(members.difference(&now).filter(|&&n| n != node.id()));
        removed.retain(|n| !now.contains(n));
        members = now;
        if node.is_leader() {
            for n in std::mem::take(&mut removed) {
                tracing::info!("node {n}: removed from the cluster; ending its sessions");
                node.decide(Item::NodeReset { node: n }.encode());
            }
        }
        let st = node.status();
        if (st.role, st.leader, st.term) != seen {
            seen = (st.role, st.leader, st.term);
            tracing::info!(
                "cluster: node {} is {} in term {}, leader {}",
                st.id,
                st.role.name(),
                st.term,
                if st.leader == 0 {
                    "unknown".to_string()
                } else {
                    st.leader.to_string()
                }
            );
        }
        let silent = node.silent_peers(NODE_GONE_AFTER);
        reset.retain(|n| silent.contains(n));
        for n in silent {
            if reset.insert(n) {
                tracing::warn!("node {n}: silent for {NODE_GONE_AFTER:?}; ending its sessions");
                node.decide(Item::NodeReset { node: n }.encode());
            }
        }
        let applied = hub.applied.notified();
        tokio::pin!(applied);
        applied.as_mut().enable();
        let clock = hub.shared.clock;
        let mut wake = tokio::time::Instant::now() + Duration::from_secs(1);
        if node.is_leader() && sent <= hub.ticks_applied() {
            let next = hub.shared.lock().engine.next_wakeup();
            if let Some(at) = next {
                if at <= clock.now() {
                    hub.submit(Item::Tick);
                    sent = hub.ticks_applied() + 1;
                } else {
                    wake = wake.min(tokio::time::Instant::from_std(clock.instant(at)));
                }
            }
        }
        tokio::select! {
            _ = &mut applied => {}
            _ = tokio::time::sleep_until(wake) => {}
            r = metrics.changed() => if r.is_err() { return },
        }
    }
}

/// The node's options. `SPROUT_RAFT_SNAPSHOT_ENTRIES` (0: no snapshots) and
/// `SPROUT_RAFT_KEEP_ENTRIES` change when snapshots are built and how much log they leave:
/// for tests and measurements, not a documented setting.
fn options() -> Options {
    let mut o = Options::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = env("SPROUT_RAFT_SNAPSHOT_ENTRIES") {
        o.snapshot_entries = n;
    }
    if let Some(n) = env("SPROUT_RAFT_KEEP_ENTRIES") {
        o.keep_entries = n;
    }
    o
}

/// Runs a cluster node until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(listener: Listener, shared: Arc<Shared>) -> i32 {
    let cfg = &shared.config;
    let (Some(me), Some(dir)) = (cfg.node_id, cfg.binlog_dir.clone()) else {
        tracing::error!("cluster mode needs --node-id and -b");
        return 5;
    };
    let members: BTreeMap<NodeId, String> = cfg.cluster.iter().cloned().collect();
    let hub = Arc::new(Hub::new(shared.clone(), me));
    let clock = shared.clock;
    let node = match Node::start(
        me,
        &members,
        &dir.join("raft"),
        App(hub.clone()),
        Arc::new(move || clock.now()),
        Options {
            bind: cfg.cluster_bind.clone(),
            ..options()
        },
    )
    .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::error!("cannot start cluster node {me}: {e}");
            return 111;
        }
    };
    let _ = hub.node.set(node.clone());
    let h = hub.clone();
    let _ = shared.cluster.set(Box::new(move || cluster_stats(&h)));
    let h = hub.clone();
    let _ = shared.cluster_conn.set(Box::new(move |s| {
        tokio::spawn(conn::serve(s, h.clone()));
    }));
    // Sessions of an earlier run of this node end first (their reservations return).
    hub.submit(Item::NodeReset { node: me });
    tokio::spawn(ticker(hub.clone(), node.clone()));
    tracing::info!(
        "cluster node {me} of {}; peers on {}",
        members.len(),
        members[&me]
    );

    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return 111;
    };
    let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    else {
        return 111;
    };
    let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    else {
        return 111;
    };
    crate::notify::ready();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(Accepted::Tcp(s)) => {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(conn::serve(s, hub.clone()));
                }
                Ok(Accepted::Unix(s)) => {
                    tokio::spawn(conn::serve(s, hub.clone()));
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = usr1.recv() => {
                tracing::warn!("SIGUSR1: entering drain mode; puts on this node now answer DRAINING");
                hub.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    crate::notify::stopping();
    node.shutdown().await;
    0
}
