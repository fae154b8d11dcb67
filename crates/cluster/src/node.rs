//! One node of the cluster: the Raft instance over the log and state machine, the peer
//! listener, and the proposer that batches this node's items into entries and hands them
//! to the leader (itself, or the leader's `propose` over the network).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesResponse, VoteResponse};
use openraft::{BasicNode, ServerState};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::latency::{Latencies, Recorder};
use crate::log::LogStore;
use crate::net::{self, Admin, AdminError, Contacts, Hello, Network, Peer, Request, Response};
use crate::sm::{Apply, StateMachine};
use crate::{Batch, NodeId, Payload, Raft};

/// A node's role, as `stats` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
        }
    }
}

/// Where the node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    /// 0: unknown.
    pub leader: NodeId,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_log: u64,
    /// Times this node has seen a new leader (the first one included).
    pub leader_changes: u64,
}

/// A member of the cluster as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// On the leader: the last entry known to be in the member's log (None elsewhere, or
    /// not known yet).
    pub matched: Option<u64>,
}

/// The clock the leader stamps batches with (nanoseconds since the Unix epoch).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// How the node runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// At most this many items in one entry.
    pub max_batch: usize,
    /// A snapshot is built once this many entries were applied since the last one (0:
    /// never; the log is then kept whole).
    pub snapshot_entries: u64,
    /// Entries a snapshot covers that stay in the log (a follower a little behind catches
    /// up from them rather than from the snapshot).
    pub keep_entries: u64,
    /// Where the peer listener binds (None: this node's address in the member list). The
    /// listed address is still the one peers connect to (a NAT, a proxy, a test's relay).
    pub bind: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            heartbeat_ms: 50,
            election_min_ms: 300,
            election_max_ms: 450,
            max_batch: 4096,
            snapshot_entries: 10_000,
            keep_entries: 1_000,
            bind: None,
        }
    }
}

pub struct Node {
    pub raft: Raft,
    id: NodeId,
    submit: mpsc::UnboundedSender<Payload>,
    committed: Arc<AtomicU64>,
    clock: Clock,
    contacts: Arc<Contacts>,
    leader_changes: Arc<AtomicU64>,
    /// The term this node last saw itself lead in, since when silence counts, and when
    /// [`Node::silent_peers`] last looked.
    leading: std::sync::Mutex<Option<(u64, Instant, Instant)>>,
    /// Proposal to commit, per batch this node proposed.
    latency: Recorder,
    /// Started on an empty directory, and no leader has reached it since: it grants no
    /// vote and starts no election (see [`Node::start`]).
    fresh: AtomicBool,
    /// One membership change at a time (on the leader).
    changing: tokio::sync::Mutex<()>,
    /// While this leader hands over leadership: it commits nothing and sends no
    /// heartbeats, so that the followers' leases run out and the target can be elected.
    transferring: AtomicBool,
    /// Counts `Hold`s: a hold ends elections' pause only if no later one came.
    holds: AtomicU64,
    /// How long a follower refuses votes after it last heard from its leader (openraft's
    /// leader lease: the longest election timeout), plus a heartbeat and a margin.
    lease: Duration,
    /// What this node sends first on its peer connections (and expects of its peers').
    hello: Hello,
}

/// How long a node being added may take to catch up before `cluster-add` gives up (it is
/// left a learner).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a leadership transfer may take before it is given up.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// A gap this long between two calls of [`Node::silent_peers`] (made about once a second)
/// is taken for a stall of this node: the peers' silence is then counted from its end.
const SELF_STALL: Duration = Duration::from_secs(2);
/// A reason in `CLUSTER_ERROR` is one line of at most this many bytes.
const MAX_REASON: usize = 200;

fn failed(e: impl std::fmt::Display) -> AdminError {
    let mut s: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    AdminError::Failed(s)
}

/// openraft's refusal of a membership change, in a few words where it is a usual one.
fn change_error(
    e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> AdminError {
    use openraft::error::{ChangeMembershipError as C, ClientWriteError as W, RaftError};
    match e {
        RaftError::APIError(W::ForwardToLeader(_)) => failed("not the leader (it changed)"),
        RaftError::APIError(W::ChangeMembershipError(C::InProgress(_))) => {
            failed("a membership change is in progress")
        }
        e => failed(e),
    }
}

impl Node {
    /// Opens the log and the last snapshot under `dir`, starts Raft and the peer listener
    /// on this node's address in `members`.
    ///
    /// A node whose directory is empty (no log, no vote, no snapshot) may be new, or may
    /// have lost its data (a wiped or replaced disk) while the cluster lives on. It asks
    /// every peer whether it belongs to an established cluster (one that elected a leader):
    ///
    /// - if one says so, this node is a member that lost its state, or a new node not yet
    ///   added (`Admin::Add`): it initializes nothing and waits for the leader to bring it
    ///   up to date (entries, or a snapshot when the log it needs was purged);
    /// - once every peer has said no, this is a first start: it initializes the cluster
    ///   with `members` (every node does, with the same list, giving the same first entry).
    ///
    /// Until a leader's append or snapshot reaches it, or it initializes, a node on an
    /// empty directory grants no vote and starts no election: it may have voted before it
    /// lost its data, in a term it no longer knows, and must not vote twice in that term.
    /// Once a leader reached it, it votes only in terms after that leader's, which covers
    /// every term it voted in before, unless it voted in a later term than that leader's
    /// (an election still going on when it was wiped and restarted): see ARCHITECTURE.md.
    pub async fn start<A: Apply>(
        id: NodeId,
        members: &BTreeMap<NodeId, String>,
        dir: &Path,
        app: A,
        clock: Clock,
        opts: Options,
    ) -> io::Result<Arc<Node>> {
        let Some(addr) = members.get(&id) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("node {id} is not in the member list"),
            ));
        };
        let listener = TcpListener::bind(opts.bind.as_deref().unwrap_or(addr)).await?;
        let hello = Hello {
            from: id,
            cluster: net::cluster_id(members),
        };
        let config = openraft::Config {
            cluster_name: "sprout".into(),
            heartbeat_interval: opts.heartbeat_ms,
            election_timeout_min: opts.election_min_ms,
            election_timeout_max: opts.election_max_ms,
            snapshot_policy: if opts.snapshot_entries == 0 {
                openraft::SnapshotPolicy::Never
            } else {
                openraft::SnapshotPolicy::LogsSinceLast(opts.snapshot_entries)
            },
            max_in_snapshot_log_to_keep: opts.keep_entries,
            purge_batch_size: 256,
            // A chunk is sent, received and (the last one) installed within this: bounded
            // chunks, and time for the install of a large state on a loaded node.
            snapshot_max_chunk_size: 1 << 20,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(io::Error::other)?);
        let mut log = LogStore::open(dir)?;
        let committed = log.committed();
        let sm = StateMachine::open(app, dir)?;
        let fresh = {
            use openraft::storage::RaftLogStorage;
            let st = log.get_log_state().await.map_err(io::Error::other)?;
            st.last_log_id.is_none()
                && log.read_vote().await.map_err(io::Error::other)?.is_none()
                && !sm.has_snapshot()
        };
        let contacts = Arc::new(Contacts::default());
        let network = Network {
            contacts: contacts.clone(),
            hello: hello.clone(),
        };
        let raft = Raft::new(id, config, network, log, sm)
            .await
            .map_err(io::Error::other)?;
        if fresh {
            raft.runtime_config().elect(false);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let node = Arc::new(Node {
            raft,
            id,
            submit: tx,
            committed,
            clock,
            contacts,
            leader_changes: Arc::default(),
            leading: std::sync::Mutex::new(None),
            latency: Recorder::default(),
            fresh: AtomicBool::new(fresh),
            changing: tokio::sync::Mutex::new(()),
            transferring: AtomicBool::new(false),
            holds: AtomicU64::new(0),
            lease: Duration::from_millis(opts.election_max_ms + opts.heartbeat_ms + 100),
            hello,
        });
        tokio::spawn(count_leaders(
            node.raft.metrics(),
            node.leader_changes.clone(),
        ));
        tokio::spawn(serve(listener, node.clone()));
        tokio::spawn(proposer(node.clone(), rx, opts.max_batch));
        if fresh {
            tokio::spawn(bootstrap(node.clone(), members.clone()));
        }
        Ok(node)
    }

    /// Whether this node belongs to an established cluster: it has entries beyond the
    /// first (a leader appended them), a snapshot, applied entries, or a vote a leader
    /// committed.
    pub fn established(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.last_log_index.unwrap_or(0) > 0
            || m.snapshot.is_some()
            || m.last_applied.is_some()
            || m.vote.committed
    }

    /// True while this node started on an empty directory and no leader has reached it
    /// (it grants no vote then).
    pub fn is_fresh(&self) -> bool {
        self.fresh.load(Ordering::Relaxed)
    }

    /// A leader reached this node, or it initialized the cluster: it votes again.
    fn settled(&self, why: &str) {
        if self.fresh.swap(false, Ordering::Relaxed) {
            tracing::info!("node {}: {why}; votes and elections allowed", self.id);
            self.raft.runtime_config().elect(true);
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Queues an item for the log; it is applied (on every node) once committed.
    pub fn submit(&self, item: Vec<u8>) {
        let _ = self.submit.send(Payload(item));
    }

    /// A decision of this node as leader (to end the sessions of a member it has not heard
    /// from): committed by this node in its own log and term, or not at all. Unlike
    /// [`Node::submit`] it is never forwarded or retried elsewhere: a leader cut off from
    /// the majority takes the others for silent, and its decision must die with its term,
    /// not reach the new leader once the partition heals. Not a leader: dropped.
    /// While this node still leads in the term it decided in, a commit that failed without
    /// appending (a leadership transfer under way) is tried again.
    pub fn decide(self: &Arc<Self>, item: Vec<u8>) {
        let term = self.leader_term();
        if term.is_none() {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let batch = Batch {
                now: 0,
                origin: crate::DECISION | node.id,
                // Decisions are never proposed through the proposer's retries, so they
                // skip the sequence check.
                seq: 0,
                items: vec![Payload(item)],
            };
            while let Err(e) = node.commit(batch.clone()).await {
                if node.leader_term() != term {
                    tracing::info!("node {}: a decision as leader dropped: {e}", node.id);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// The current term, if this node leads in it.
    fn leader_term(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner | ServerState::Shutdown => Role::Learner,
        };
        // A leader cut off from the majority does not know it is deposed: it says it has
        // no leader once no majority has answered it for a while.
        let cut_off = role == Role::Leader && m.millis_since_quorum_ack.is_some_and(|ms| ms > 2000);
        // A node outside the membership (removed, or not added yet) has no leader to serve
        // its clients.
        let outside = m
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_none();
        Status {
            id: self.id,
            role,
            leader: if cut_off || outside {
                0
            } else {
                m.current_leader.unwrap_or(0)
            },
            term: m.current_term,
            commit: self.committed.load(Ordering::Relaxed),
            applied: m.last_applied.map_or(0, |l| l.index),
            last_log: m.last_log_index.unwrap_or(0),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
        }
    }

    /// How long this node's batches took from proposal to commit.
    pub fn replication_latency(&self) -> Latencies {
        self.latency.get()
    }

    /// The members in the membership this node has, by id.
    pub fn members(&self) -> Vec<Member> {
        let m = self.raft.metrics().borrow().clone();
        let ms = m.membership_config.membership();
        let voters: Vec<NodeId> = ms.voter_ids().collect();
        ms.nodes()
            .map(|(&id, n)| Member {
                id,
                addr: n.addr.clone(),
                voter: voters.contains(&id),
                matched: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map(|l| l.index),
            })
            .collect()
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// On the leader: the members that have not answered it for `silent` (counted from
    /// when it became leader at the earliest, and from the end of a stall of its own: see
    /// [`SELF_STALL`]). Empty on other nodes. Meant to be called about once a second.
    pub fn silent_peers(&self, silent: Duration) -> Vec<NodeId> {
        let m = self.raft.metrics().borrow().clone();
        let mut leading = self.leading.lock().unwrap_or_else(|p| p.into_inner());
        if m.state != ServerState::Leader {
            *leading = None;
            return Vec::new();
        }
        let now = Instant::now();
        let since = match &mut *leading {
            Some((term, since, looked)) if *term == m.current_term => {
                // Asked about every second: a longer gap means this node itself did not
                // run (a stalled process, a starved CPU), and the peers' answers it did
                // not read are no sign of their silence; it counts afresh from now.
                if now.duration_since(*looked) > SELF_STALL {
                    tracing::warn!(
                        "node {}: did not run for {:?}; peers' silence counted afresh",
                        self.id,
                        now.duration_since(*looked)
                    );
                    *since = now;
                }
                *looked = now;
                *since
            }
            _ => {
                *leading = Some((m.current_term, now, now));
                return Vec::new();
            }
        };
        m.membership_config
            .membership()
            .nodes()
            .map(|(&id, _)| id)
            .filter(|&id| id != self.id)
            .filter(|&id| {
                let last = self.contacts.last(id).map_or(since, |t| t.max(since));
                last.elapsed() >= silent
            })
            .collect()
    }

    /// The leader and its peer address, if known.
    fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let l = m.current_leader?;
        let node = m.membership_config.membership().get_node(&l)?.clone();
        Some((l, node.addr))
    }

    /// On the leader: stamps the batch with this node's clock and commits it.
    async fn commit(&self, mut b: Batch) -> Result<(), String> {
        if self.transferring.load(Ordering::Relaxed) {
            return Err("leadership is being transferred".into());
        }
        b.now = (self.clock)();
        self.raft.client_write(b).await.map_err(|e| e.to_string())?;
        // Followers learn the new commit index now rather than at the next heartbeat: a
        // follower's clients wait for it.
        let _ = self.raft.trigger().heartbeat().await;
        Ok(())
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// Whether `id` is in this node's membership (voter or learner).
    pub fn is_member(&self, id: NodeId) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let known = m.membership_config.membership().get_node(&id).is_some();
        known
    }

    /// Carries out a membership change: here if this node leads, else through the leader
    /// (over the peer network). Returns once it is done (see [`Admin`]).
    pub async fn admin(&self, a: Admin) -> Result<(), AdminError> {
        match self.leader() {
            Some((l, _)) if l == self.id => self.admin_here(a).await,
            Some((l, addr)) => {
                let ttl = CATCH_UP_TIMEOUT + Duration::from_secs(30);
                match Peer::new(l, addr, self.hello.clone())
                    .call(&Request::Admin(a), ttl)
                    .await
                {
                    Ok(Response::Admin(r)) => r,
                    Ok(_) => Err(failed("leader: response of another kind")),
                    Err(e) => Err(failed(format!("leader {l}: {e}"))),
                }
            }
            None if !self.is_member(self.id) => Err(failed(
                "this node is not a member: ask one of the cluster's",
            )),
            None => Err(failed("no leader")),
        }
    }

    /// A membership change on the leader.
    async fn admin_here(&self, a: Admin) -> Result<(), AdminError> {
        if !self.is_leader() {
            return Err(failed("not the leader"));
        }
        let Ok(_one) = self.changing.try_lock() else {
            return Err(failed("a membership change is in progress"));
        };
        let m = self.raft.metrics().borrow().clone();
        let ms = m.membership_config.membership().clone();
        let voters: std::collections::BTreeSet<NodeId> = ms.voter_ids().collect();
        let node = |id: NodeId| ms.get_node(&id).cloned();
        tracing::info!("node {}: membership change {a:?}", self.id);
        match a {
            Admin::Add { id, addr } => {
                if let Some(n) = node(id) {
                    if n.addr != addr {
                        return Err(failed(format!(
                            "node {id} is a member with address {}",
                            n.addr
                        )));
                    }
                    if voters.contains(&id) {
                        return Ok(());
                    }
                }
                let r = self
                    .raft
                    .add_learner(id, BasicNode::new(&addr), false)
                    .await
                    .map_err(change_error)?;
                let at = r.log_id;
                let caught_up = self
                    .raft
                    .wait(Some(CATCH_UP_TIMEOUT))
                    .metrics(
                        |m| {
                            let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned());
                            matched.flatten().is_some_and(|l| l >= at)
                        },
                        "new member caught up",
                    )
                    .await;
                if caught_up.is_err() {
                    return Err(failed(format!(
                        "node {id} did not catch up within {CATCH_UP_TIMEOUT:?} (left a \
                         learner: remove it, or add it again once it is reachable)"
                    )));
                }
                let ids = std::collections::BTreeSet::from([id]);
                self.raft
                    .change_membership(openraft::ChangeMembers::AddVoterIds(ids), false)
                    .await
                    .map_err(change_error)?;
                Ok(())
            }
            Admin::Remove { id } => {
                if node(id).is_none() {
                    return Err(AdminError::NotFound);
                }
                if id == self.id && voters.len() > 1 {
                    // The leader itself: it hands over to the voter furthest along (one
                    // planned election rather than a race among the others), which then
                    // removes it.
                    let matched = |v: &NodeId| {
                        let r = m.replication.as_ref().and_then(|r| r.get(v).cloned());
                        r.flatten().map(|l| l.index)
                    };
                    let to = voters
                        .iter()
                        .copied()
                        .filter(|&v| v != id)
                        .max_by_key(|v| matched(v))
                        .unwrap_or(id);
                    let addr = node(to).map(|n| n.addr).unwrap_or_default();
                    self.hand_over(to, &ms).await?;
                    drop(_one);
                    return self.removed_by(to, addr).await;
                }
                let ids = std::collections::BTreeSet::from([id]);
                let change = if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(failed(format!("node {id} is the last voter")));
                    }
                    openraft::ChangeMembers::RemoveVoters(ids)
                } else {
                    openraft::ChangeMembers::RemoveNodes(ids)
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(change_error)?;
                Ok(())
            }
            Admin::Transfer { id } => {
                if id == self.id {
                    return Ok(());
                }
                if !voters.contains(&id) {
                    return match node(id) {
                        None => Err(AdminError::NotFound),
                        Some(_) => Err(failed(format!("node {id} is a learner"))),
                    };
                }
                self.hand_over(id, &ms).await
            }
        }
    }

    /// Hands leadership to the voter `id` (see [`Node::transfer`]); on every outcome this
    /// node commits and heartbeats again, and the voters held may elect again.
    async fn hand_over(
        &self,
        id: NodeId,
        ms: &openraft::Membership<NodeId, BasicNode>,
    ) -> Result<(), AdminError> {
        let addr = |v: NodeId| ms.get_node(&v).map(|n| n.addr.clone());
        let held: Vec<(NodeId, String)> = ms
            .voter_ids()
            .filter(|&v| v != id && v != self.id)
            .filter_map(|v| Some((v, addr(v)?)))
            .collect();
        let target = addr(id).unwrap_or_default();
        self.transferring.store(true, Ordering::Relaxed);
        let r = self.transfer(id, target, &held).await;
        self.transferring.store(false, Ordering::Relaxed);
        self.raft.runtime_config().heartbeat(true);
        if !self.is_fresh() {
            self.raft.runtime_config().elect(true);
        }
        for (v, addr) in held {
            let _ = Peer::new(v, addr, self.hello.clone())
                .call(&Request::Hold(0), Duration::from_secs(1))
                .await;
        }
        r
    }

    /// After this leader handed over to `to`: asks `to` to remove this node (retried
    /// for a little while, should `to` not have taken office yet).
    async fn removed_by(&self, to: NodeId, addr: String) -> Result<(), AdminError> {
        let req = Request::Admin(Admin::Remove { id: self.id });
        let mut peer = Peer::new(to, addr, self.hello.clone());
        let end = Instant::now() + TRANSFER_TIMEOUT;
        loop {
            let r = match peer.call(&req, CATCH_UP_TIMEOUT).await {
                Ok(Response::Admin(r)) => r,
                Ok(_) => Err(failed("leader: response of another kind")),
                Err(e) => Err(failed(format!("leader {to}: {e}"))),
            };
            match r {
                Err(AdminError::Failed(_)) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r,
            }
        }
    }

    /// openraft 0.9 has no leadership transfer: this leader stops committing and sending
    /// heartbeats once the target has its whole log, the other voters hold their
    /// elections, and once the followers' leases ran out the target is told to start
    /// one, which it wins (its log is the longest). Done when this node sees it lead.
    async fn transfer(
        &self,
        id: NodeId,
        target: String,
        held: &[(NodeId, String)],
    ) -> Result<(), AdminError> {
        let started = Instant::now();
        let up_to_date = self
            .raft
            .wait(Some(TRANSFER_TIMEOUT))
            .metrics(
                |m| {
                    let matched = m.replication.as_ref().and_then(|r| r.get(&id).cloned());
                    matched.flatten().map(|l| l.index) >= m.last_log_index
                },
                "transfer target caught up",
            )
            .await;
        if up_to_date.is_err() {
            return Err(failed(format!("node {id} did not catch up")));
        }
        let hold_ms = (TRANSFER_TIMEOUT + self.lease).as_millis() as u64;
        for (v, addr) in held {
            let _ = Peer::new(*v, addr.clone(), self.hello.clone())
                .call(&Request::Hold(hold_ms), Duration::from_secs(1))
                .await;
        }
        self.raft.runtime_config().elect(false);
        self.raft.runtime_config().heartbeat(false);
        tokio::time::sleep(self.lease).await;
        let mut peer = Peer::new(id, target, self.hello.clone());
        let _ = peer.call(&Request::Elect, Duration::from_secs(1)).await;
        let left = TRANSFER_TIMEOUT.saturating_sub(started.elapsed());
        let r = self
            .raft
            .wait(Some(left.max(Duration::from_secs(1))))
            .metrics(
                |m| m.current_leader == Some(id) && m.state != ServerState::Leader,
                "new leader",
            )
            .await;
        match r {
            Ok(_) => {
                tracing::info!(
                    "node {}: leadership handed to node {id} in {:?}",
                    self.id,
                    started.elapsed()
                );
                Ok(())
            }
            Err(_) => Err(failed(format!("node {id} was not elected in time"))),
        }
    }

    /// A leader handing over leadership: no election from this node for `ms` (0: again
    /// allowed, unless it is still fresh).
    fn hold(self: &Arc<Self>, ms: u64) {
        let n = self.holds.fetch_add(1, Ordering::Relaxed) + 1;
        if ms == 0 {
            if !self.is_fresh() {
                self.raft.runtime_config().elect(true);
            }
            return;
        }
        self.raft.runtime_config().elect(false);
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if node.holds.load(Ordering::Relaxed) == n && !node.is_fresh() {
                node.raft.runtime_config().elect(true);
            }
        });
    }
}

/// Counts the leaders this node sees come in.
async fn count_leaders(
    mut m: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    n: Arc<AtomicU64>,
) {
    let mut last = (None, 0);
    loop {
        let (leader, term) = {
            let x = m.borrow_and_update();
            (x.current_leader, x.current_term)
        };
        if leader.is_some() && (leader, term) != last {
            n.fetch_add(1, Ordering::Relaxed);
            last = (leader, term);
        }
        if m.changed().await.is_err() {
            return;
        }
    }
}

/// Answers peers: Raft's RPCs and proposals.
async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(serve_peer(s, node.clone()));
            }
            Err(e) => {
                tracing::warn!("cluster accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_peer(mut s: TcpStream, node: Arc<Node>) {
    // The caller's greeting first: a peer of another cluster (another member list) is
    // turned away, and said so at most every 10 s.
    static SAID: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let hello =
        match tokio::time::timeout(Duration::from_secs(10), net::read_frame::<Hello>(&mut s)).await
        {
            Ok(Ok(h)) => h,
            _ => return,
        };
    if !hello.same_cluster(&node.hello) {
        let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *said = Some(Instant::now());
            let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::warn!(
                "node {}: peer connection from {peer} (node {}) of another cluster (a \
                 --cluster list with no member in common) refused",
                node.id,
                hello.from
            );
        }
        return;
    }
    while let Ok(req) = net::read_frame::<Request>(&mut s).await {
        let resp = match req {
            Request::Append(r) => {
                let r = node.raft.append_entries(r).await;
                if matches!(&r, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                    node.settled("a leader's append reached it");
                }
                Response::Append(r)
            }
            Request::Vote(r) if node.is_fresh() => {
                // See `Node::start`: no vote from a node that may have forgotten one.
                tracing::info!(
                    "node {}: vote for {} refused (empty directory, no leader yet)",
                    node.id,
                    r.vote
                );
                Response::Vote(Ok(VoteResponse {
                    vote: r.vote,
                    vote_granted: false,
                    last_log_id: None,
                }))
            }
            Request::Vote(r) => Response::Vote(node.raft.vote(r).await),
            Request::Snapshot(r) => {
                let r = node.raft.install_snapshot(r.into()).await;
                if r.is_ok() {
                    node.settled("a leader's snapshot reached it");
                }
                Response::Snapshot(r)
            }
            Request::Propose(b) if !node.is_member(b.origin) => {
                // A node removed (or never added) has no say in the log.
                Response::Propose(Err(format!("node {} is not a member", b.origin)))
            }
            Request::Propose(b) => Response::Propose(node.commit(b).await),
            Request::Probe => Response::Probe(node.established()),
            Request::Admin(a) => Response::Admin(node.admin_here(a).await),
            Request::Hold(ms) => {
                node.hold(ms);
                Response::Done
            }
            Request::Elect => {
                tracing::info!("node {}: asked to take over leadership", node.id);
                let _ = node.raft.trigger().elect().await;
                Response::Done
            }
        };
        if net::write_frame(&mut s, &resp).await.is_err() {
            return;
        }
    }
}

/// On a node started on an empty directory: asks the peers whether the cluster exists
/// (see [`Node::start`]) until it knows, then initializes it or waits for its leader.
async fn bootstrap(node: Arc<Node>, members: BTreeMap<NodeId, String>) {
    let mut peers: Vec<Peer> = members
        .iter()
        .filter(|(&i, _)| i != node.id)
        .map(|(&i, a)| Peer::new(i, a.clone(), node.hello.clone()))
        .collect();
    let mut said = Instant::now();
    loop {
        if !node.is_fresh() {
            return;
        }
        let mut no = 0;
        for p in &mut peers {
            match p.call(&Request::Probe, Duration::from_secs(1)).await {
                Ok(Response::Probe(true)) => {
                    tracing::warn!(
                        "node {}: empty directory, but node {} belongs to an established \
                         cluster: waiting for its leader to reach this node (a member that \
                         lost its state, or a new node once `sprout cluster add` adds it); \
                         no vote until then",
                        node.id,
                        p.target
                    );
                    return;
                }
                Ok(Response::Probe(false)) => no += 1,
                _ => {}
            }
        }
        if no == peers.len() {
            let nodes: BTreeMap<NodeId, BasicNode> = members
                .iter()
                .map(|(&i, a)| (i, BasicNode::new(a)))
                .collect();
            if let Err(e) = node.raft.initialize(nodes).await {
                tracing::info!("cluster already initialized: {e}");
            }
            node.settled("first start: the cluster is initialized");
            return;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            tracing::warn!(
                "node {}: empty directory; waiting for every peer to say whether the cluster exists ({no} of {} said no)",
                node.id,
                peers.len()
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns once this node knows of a leader other than `l` (or of none after a new term).
async fn leader_changes(node: &Node, l: NodeId) {
    let mut m = node.raft.metrics();
    loop {
        {
            let now = m.borrow_and_update();
            if now.current_leader.is_some_and(|c| c != l) {
                return;
            }
        }
        if m.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Takes this node's queued items as one batch at a time (one in flight), and retries it
/// until a leader commits it. A retry of a batch that did commit is skipped at apply (its
/// sequence number).
async fn proposer(node: Arc<Node>, mut rx: mpsc::UnboundedReceiver<Payload>, max: usize) {
    // Above every sequence number of earlier runs of this node.
    let mut seq = (node.clock)();
    let mut peer: Option<Peer> = None;
    let mut items = Vec::new();
    loop {
        if rx.recv_many(&mut items, max).await == 0 {
            return;
        }
        seq += 1;
        let batch = Batch {
            now: 0,
            origin: node.id,
            seq,
            items: std::mem::take(&mut items),
        };
        let mut since = None;
        let mut said = None;
        let proposed = Instant::now();
        loop {
            let r = match node.leader() {
                Some((l, _)) if l == node.id => node.commit(batch.clone()).await,
                Some((l, addr)) => {
                    let p = match &mut peer {
                        Some(p) if p.target == l && p.addr == addr => p,
                        _ => peer.insert(Peer::new(l, addr, node.hello.clone())),
                    };
                    // Given up as soon as this node hears of another leader: an old leader
                    // cut off from the majority may never answer, and its clients would
                    // wait out the whole timeout after a new leader was elected.
                    let req = Request::Propose(batch.clone());
                    let r = tokio::select! {
                        r = p.call(&req, Duration::from_secs(5)) => match r {
                            Ok(Response::Propose(r)) => r,
                            Ok(_) => Err("response of another kind".into()),
                            Err(e) => Err(e.to_string()),
                        },
                        () = leader_changes(&node, l) => Err(format!("node {l} is no longer the leader")),
                    };
                    if r.is_err() {
                        // The connection may be mid-request: a fresh one next time.
                        peer = None;
                    }
                    r
                }
                None => Err("no leader".into()),
            };
            match r {
                Ok(()) => {
                    node.latency.record(proposed.elapsed());
                    break;
                }
                Err(e) => {
                    // Said after a second without a leader, then every five.
                    let now = std::time::Instant::now();
                    let first = *since.get_or_insert(now);
                    let due = match said {
                        None => now.duration_since(first) >= Duration::from_secs(1),
                        Some(t) => now.duration_since(t) >= Duration::from_secs(5),
                    };
                    if due {
                        tracing::warn!("proposal {seq}: {e}; retrying");
                        said = Some(now);
                    }
                    // Wait for the leader to change or appear, a little at most.
                    let mut m = node.raft.metrics();
                    let _ = tokio::time::timeout(Duration::from_millis(50), m.changed()).await;
                }
            }
        }
    }
}
