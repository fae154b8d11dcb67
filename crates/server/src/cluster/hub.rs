//! Where this node's connections meet the log: requests go out as items (through the
//! node's proposer), and every committed item is applied here, on every node, to the
//! engine, in log order. Answers for this node's requests and deliveries for its sessions
//! are routed to their connection tasks; what belongs to other nodes' clients is dropped
//! (their own node applies the same item and answers them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rustc_hash::FxHashMap;
use sprout_cluster::{Apply, Node, NodeId};
use sprout_engine::{ConnId, Effects, Input, Output};
use sprout_protocol::Reply;
use tokio::sync::{oneshot, Notify};

use super::item::Item;
use crate::{Shared, State};

/// The answer to one request, computed when its item is applied.
#[derive(Debug)]
pub(crate) enum Answer {
    Conn(ConnId),
    Reply(Reply),
    /// The session waits for a job: its reply comes on this channel.
    Wait(oneshot::Receiver<Reply>),
    /// `CancelWait`: whether the session was still waiting (else its reply was sent).
    Cancelled(bool),
    /// The session no longer exists (its node was reset): the connection closes.
    Gone,
}

#[derive(Default)]
struct Routes {
    /// This node's requests waiting for their items to be applied.
    pending: FxHashMap<u64, oneshot::Sender<Answer>>,
    /// This node's sessions waiting in reserve.
    waiters: FxHashMap<ConnId, oneshot::Sender<Reply>>,
    /// Every session of the cluster and the node it is on (replicated state: the same on
    /// every node).
    owners: BTreeMap<ConnId, NodeId>,
    /// The id each session's last put header took, for its put (replicated state).
    headers: BTreeMap<ConnId, u64>,
    /// The engine's time: the largest stamp applied so far.
    now: u64,
    /// This node's ticks applied.
    ticks_applied: u64,
    fx: Effects,
}

pub(crate) struct Hub {
    pub(crate) shared: Arc<Shared>,
    pub(crate) me: NodeId,
    routes: Mutex<Routes>,
    next_req: AtomicU64,
    /// The first request id of this run (earlier runs' are below).
    base: u64,
    pub(crate) node: OnceLock<Arc<Node>>,
    /// Woken after each applied item.
    pub(crate) applied: Notify,
    /// Drain mode (SIGUSR1): this node's clients' puts answer DRAINING. Node-local, so
    /// decided here, before anything is logged, not by the engine.
    pub(crate) draining: std::sync::atomic::AtomicBool,
}

impl Hub {
    pub(crate) fn new(shared: Arc<Shared>, me: NodeId) -> Hub {
        // Above the request ids of earlier runs of this node, whose items a restart applies
        // again from the log.
        let base = shared.clock.now();
        Hub {
            shared,
            me,
            routes: Mutex::new(Routes::default()),
            next_req: AtomicU64::new(base),
            base,
            node: OnceLock::new(),
            applied: Notify::new(),
            draining: Default::default(),
        }
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an item whose effects nobody here waits for.
    pub(crate) fn submit(&self, item: Item) {
        if let Some(n) = self.node.get() {
            n.submit(item.encode());
        }
    }

    /// Queues the item `make` builds with a new request id; the answer comes once it is
    /// committed and applied here.
    pub(crate) fn request(
        &self,
        make: impl FnOnce(u64) -> Item,
    ) -> (u64, oneshot::Receiver<Answer>) {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.routes().pending.insert(req, tx);
        self.submit(make(req));
        (req, rx)
    }

    /// Gives up on a request (its connection closes).
    pub(crate) fn forget(&self, req: u64) {
        self.routes().pending.remove(&req);
    }

    /// True while this node knows no leader (an election, or cut off from the majority).
    pub(crate) fn leaderless(&self) -> bool {
        self.node.get().is_none_or(|n| n.status().leader == 0)
    }

    /// Waits up to `within` for this node to know a leader; true if it does.
    pub(crate) async fn leader_within(&self, within: std::time::Duration) -> bool {
        let Some(n) = self.node.get() else {
            return false;
        };
        let mut m = n.raft.metrics();
        let known = async {
            while n.status().leader == 0 {
                if m.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(within, known).await.unwrap_or(false)
    }

    /// Ticks of this node applied so far.
    pub(crate) fn ticks_applied(&self) -> u64 {
        self.routes().ticks_applied
    }

    /// Applies one engine input and routes its deliveries.
    fn step(&self, st: &mut State, r: &mut Routes, input: Input) -> Output {
        st.engine.apply(r.now, input, &mut r.fx);
        for d in r.fx.deliveries.drain(..) {
            if r.owners.get(&d.conn) != Some(&self.me) {
                continue;
            }
            if let Some(tx) = r.waiters.remove(&d.conn) {
                // A task that is gone submits its disconnect, which returns the job.
                let _ = tx.send(d.reply);
            }
        }
        std::mem::take(&mut r.fx.output)
    }

    /// A put header: its id is taken (and `cmd-put` counted).
    fn take_id(&self, st: &mut State, r: &mut Routes, conn: ConnId) -> u64 {
        match self.step(st, r, Input::PutHeader(conn)) {
            Output::Job(id) => id,
            o => unreachable!("a put header gave {o:?}"),
        }
    }

    fn answer(&self, r: &mut Routes, origin: NodeId, req: u64, a: Answer) {
        if origin == self.me {
            if let Some(tx) = r.pending.remove(&req) {
                let _ = tx.send(a);
            }
        }
    }

    /// Applies one committed item.
    fn apply(&self, now: u64, origin: NodeId, item: Item) {
        let mut st = self.shared.lock();
        let st = &mut *st;
        let mut guard = self.routes();
        let r = &mut *guard;
        r.now = r.now.max(now);
        match item {
            Item::Connect { req } => {
                let Output::Conn(c) = self.step(st, r, Input::Connect) else {
                    unreachable!("connect gives a session")
                };
                r.owners.insert(c, origin);
                if origin == self.me && req >= self.base && !r.pending.contains_key(&req) {
                    // Its connection closed before the session began: end it.
                    self.submit(Item::Disconnect { conn: c });
                }
                self.answer(r, origin, req, Answer::Conn(c));
            }
            Item::Disconnect { conn } => {
                r.headers.remove(&conn);
                if r.owners.remove(&conn).is_some() {
                    self.step(st, r, Input::Disconnect(conn));
                }
                r.waiters.remove(&conn);
            }
            Item::Command { req, conn, line } => {
                if !r.owners.contains_key(&conn) {
                    self.answer(r, origin, req, Answer::Gone);
                    return;
                }
                let Ok(cmd) = sprout_protocol::parse_line(line.as_bytes(), u32::MAX) else {
                    tracing::error!("logged command does not parse: {line}");
                    self.answer(r, origin, req, Answer::Reply(Reply::InternalError));
                    return;
                };
                let a = match self.step(st, r, Input::Command(conn, cmd)) {
                    Output::Reply(reply) => Answer::Reply(reply),
                    Output::Wait if origin == self.me => {
                        let (tx, rx) = oneshot::channel();
                        r.waiters.insert(conn, tx);
                        Answer::Wait(rx)
                    }
                    _ => return,
                };
                self.answer(r, origin, req, a);
            }
            Item::Put {
                req,
                conn,
                header,
                key,
                body,
            } => {
                if !r.owners.contains_key(&conn) {
                    self.answer(r, origin, req, Answer::Gone);
                    return;
                }
                let id = match r.headers.remove(&conn) {
                    Some(id) => id,
                    None => self.take_id(st, r, conn),
                };
                let admitted =
                    st.engine
                        .put_admit_key(conn, id, header, body, key.as_deref(), r.now);
                let reply = match admitted {
                    Ok(p) => match self.step(st, r, Input::Put(p)) {
                        Output::Reply(reply) => reply,
                        o => unreachable!("put gave {o:?}"),
                    },
                    Err(reply) => reply,
                };
                self.answer(r, origin, req, Answer::Reply(reply));
            }
            Item::CountPut => {
                self.step(st, r, Input::CountPut);
            }
            Item::CountPauseTube => {
                self.step(st, r, Input::CountPauseTube);
            }
            Item::CancelWait { req, conn } => {
                let mut cancelled = false;
                if r.owners.contains_key(&conn) {
                    cancelled =
                        self.step(st, r, Input::CancelWait(conn)) == Output::Cancelled(true);
                }
                if cancelled {
                    r.waiters.remove(&conn);
                }
                self.answer(r, origin, req, Answer::Cancelled(cancelled));
            }
            Item::TakeId { conn } => {
                if r.owners.contains_key(&conn) {
                    let id = self.take_id(st, r, conn);
                    r.headers.insert(conn, id);
                }
            }
            Item::Tick => {
                self.step(st, r, Input::Tick);
                if origin == self.me {
                    r.ticks_applied += 1;
                }
            }
            Item::NodeReset { node } => {
                let gone: Vec<ConnId> = r
                    .owners
                    .iter()
                    .filter(|(_, &n)| n == node)
                    .map(|(&c, _)| c)
                    .collect();
                if !gone.is_empty() {
                    tracing::info!("node {node}: {} sessions end", gone.len());
                }
                for c in gone {
                    r.owners.remove(&c);
                    r.headers.remove(&c);
                    r.waiters.remove(&c);
                    self.step(st, r, Input::Disconnect(c));
                }
            }
        }
    }
}

/// The state machine's application: the hub.
pub(crate) struct App(pub(crate) Arc<Hub>);

impl Apply for App {
    fn apply(&mut self, index: u64, now: u64, origin: NodeId, item: &[u8]) {
        match Item::decode(item) {
            // A leader's decision ([`Node::decide`]) ends sessions, nothing else.
            Some(i) if origin & sprout_cluster::DECISION != 0 => match i {
                Item::NodeReset { .. } => self.0.apply(now, origin, i),
                _ => tracing::error!("entry {index}: a decision of another kind"),
            },
            Some(i) => self.0.apply(now, origin, i),
            None => tracing::error!("entry {index}: an item that does not decode"),
        }
        self.0.applied.notify_waiters();
    }

    fn snapshot(&mut self) -> Vec<u8> {
        let hub = &self.0;
        let st = hub.shared.lock();
        let r = hub.routes();
        let mut out = Vec::new();
        let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
        put(r.now);
        for m in [&r.owners, &r.headers] {
            put(m.len() as u64);
            for (&k, &v) in m {
                put(k);
                put(v);
            }
        }
        out.extend_from_slice(&st.engine.snapshot());
        out
    }

    /// The replicated state (the engine, the sessions' nodes and put ids, the time) is the
    /// snapshot's. What this node was waiting for, from entries the snapshot covers, will
    /// never be applied here: its requests in flight and its reserves waiting are dropped,
    /// so those connections close (and their tasks end their sessions through the log,
    /// which returns their reservations). Its idle connections go on.
    fn restore(&mut self, b: &[u8]) -> Result<(), String> {
        let hub = &self.0;
        let bad = || "snapshot: malformed routing state".to_string();
        let mut at = 0;
        let mut get = || -> Result<u64, String> {
            let v = b.get(at..at + 8).ok_or_else(bad)?;
            at += 8;
            Ok(u64::from_le_bytes(v.try_into().map_err(|_| bad())?))
        };
        let now = get()?;
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        for m in &mut maps {
            let n = get()?;
            for _ in 0..n {
                let k = get()?;
                m.insert(k, get()?);
            }
        }
        let [owners, headers] = maps;
        let mut st = hub.shared.lock();
        let mut r = hub.routes();
        st.engine.restore_snapshot(&b[at..])?;
        r.owners = owners;
        r.headers = headers;
        r.now = now;
        let dropped = r.pending.len() + r.waiters.len();
        if dropped > 0 {
            tracing::warn!(
                "snapshot installed: {dropped} requests and waits of this node's clients \
                 dropped (their connections close)"
            );
        }
        r.pending.clear();
        r.waiters.clear();
        // Ticks this node proposed may be inside the snapshot: the ticker must not wait
        // for them to be applied.
        r.ticks_applied += 1 << 32;
        drop((r, st));
        hub.applied.notify_waiters();
        Ok(())
    }
}
