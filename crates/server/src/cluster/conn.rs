//! A client connection in cluster mode: each command goes through the log, and its reply
//! is what applying it here gave. Pipelined commands are sent on without waiting for the
//! ones before them (a node's items are applied in the order it sent them, so the answers
//! come in order), up to a reserve, which may wait: the commands after it are read once it
//! is answered, as on one node.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sprout_engine::{ConnId, Input};
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Command, Decoder, Event, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::hub::{Answer, Hub};
use super::item::Item;

/// How long `stats` waits for a leader to appear before it is answered from this node's
/// own state.
const LEADER_WAIT: Duration = Duration::from_secs(2);

/// sprout's `cluster-status`, answered by the node (see `cluster_status`).
const CLUSTER_STATUS: &[u8] = b"cluster-status\r\n";

/// How long a command may wait for its entry to be committed (a node cut off from the
/// majority): then the connection is closed, since whether it will still be applied is
/// unknown.
pub(crate) const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for a request's answer; None if it did not come within [`COMMIT_TIMEOUT`].
async fn answer(hub: &Hub, req: u64, rx: oneshot::Receiver<Answer>) -> Option<Answer> {
    match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
        Ok(Ok(a)) => Some(a),
        Ok(Err(_)) => {
            tracing::info!("request dropped (a snapshot was installed): closing the connection");
            None
        }
        Err(_) => {
            hub.forget(req);
            tracing::warn!("no commit within {COMMIT_TIMEOUT:?}: closing the connection");
            None
        }
    }
}

struct Conn<R, W> {
    hub: Arc<Hub>,
    id: ConnId,
    rd: R,
    wr: W,
    inp: BytesMut,
    out: BytesMut,
    decoder: Decoder,
    put: Option<(PutHeader, Option<String>)>,
    /// Requests sent, in order, whose answers are not encoded yet.
    pending: VecDeque<(u64, oneshot::Receiver<Answer>)>,
    /// The session's `Connect`, sent at accept, until its answer is needed (the first
    /// command that goes to the log): a node cut off from the majority still answers
    /// `stats` on a new connection.
    connect: Option<(u64, oneshot::Receiver<Answer>)>,
}

/// At most this many commands of one connection in flight.
const MAX_PENDING: usize = 1024;

enum Next {
    Continue,
    Close,
}

pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(sock: S, hub: Arc<Hub>) {
    let connect = hub.request(|req| Item::Connect { req });
    let (rd, wr) = tokio::io::split(sock);
    let cfg = &hub.shared.config;
    let decoder = if cfg.strict {
        Decoder::strict(cfg.max_job_size)
    } else {
        Decoder::new(cfg.max_job_size)
    };
    let mut c = Conn {
        hub: hub.clone(),
        id: 0,
        rd,
        wr,
        inp: BytesMut::with_capacity(16 * 1024),
        out: BytesMut::new(),
        decoder,
        put: None,
        pending: VecDeque::new(),
        connect: Some(connect),
    };
    // With a leader, the session begins before anything is read (commands of different
    // connections are then logged in the order they arrive); without one, only once a
    // command needs it.
    if hub.leaderless() || c.session().await {
        let _ = c.run().await;
    }
    let id = match c.connect.take() {
        None => c.id,
        Some((req, mut rx)) => {
            // Its answer may be on the way: once forgotten, it either is here, or the hub
            // ends the session itself when it applies the Connect.
            hub.forget(req);
            match rx.try_recv() {
                Ok(Answer::Conn(id)) => id,
                _ => return,
            }
        }
    };
    hub.submit(Item::Disconnect { conn: id });
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Conn<R, W> {
    /// The session's id, once its Connect is applied; false if it never was (within
    /// [`COMMIT_TIMEOUT`]): the connection closes.
    async fn session(&mut self) -> bool {
        let Some((req, rx)) = self.connect.take() else {
            return true;
        };
        match answer(&self.hub, req, rx).await {
            Some(Answer::Conn(id)) => {
                self.id = id;
                true
            }
            _ => false,
        }
    }

    async fn run(&mut self) -> std::io::Result<()> {
        loop {
            loop {
                if self.pending.len() >= MAX_PENDING || self.at_cluster_status() {
                    if let Next::Close = self.settle().await? {
                        return self.flush().await;
                    }
                }
                if self.cluster_status() {
                    continue;
                }
                let Some(ev) = self.decoder.decode(&mut self.inp) else {
                    break;
                };
                if let Next::Close = self.on_event(ev).await? {
                    self.settle().await?;
                    return self.flush().await;
                }
            }
            if let Next::Close = self.settle().await? {
                return self.flush().await;
            }
            self.flush().await?;
            if self.rd.read_buf(&mut self.inp).await? == 0 {
                return Ok(());
            }
        }
    }

    /// `cluster-status` at the head of the input: answered here (a cluster node's own
    /// view, not logged). Other nodes and `--strict` answer it UNKNOWN_COMMAND.
    fn cluster_status(&mut self) -> bool {
        if !self.pending.is_empty() || !self.at_cluster_status() {
            return false;
        }
        let _ = self.inp.split_to(CLUSTER_STATUS.len());
        let y = super::status_yaml(&self.hub);
        self.out
            .extend_from_slice(format!("OK {}\r\n{y}\r\n", y.len()).as_bytes());
        true
    }

    fn at_cluster_status(&self) -> bool {
        !self.hub.shared.config.strict
            && !self.decoder.in_body()
            && self.inp.starts_with(CLUSTER_STATUS)
    }

    /// Encodes the answers of the requests in flight, in order (waiting for each); Close if
    /// one says the connection must close.
    async fn settle(&mut self) -> std::io::Result<Next> {
        while let Some((req, rx)) = self.pending.pop_front() {
            let next = match answer(&self.hub, req, rx).await {
                Some(Answer::Reply(r)) => {
                    self.encode(r);
                    Next::Continue
                }
                Some(Answer::Wait(rx)) => self.wait(rx).await?,
                Some(Answer::Conn(_) | Answer::Cancelled(_) | Answer::Gone) | None => Next::Close,
            };
            if let Next::Close = next {
                for (req, _) in self.pending.drain(..) {
                    self.hub.forget(req);
                }
                return Ok(Next::Close);
            }
        }
        Ok(Next::Continue)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    fn encode(&mut self, mut r: Reply) {
        if let Reply::Stats(s) = &mut r {
            s.draining = self.hub.draining.load(std::sync::atomic::Ordering::Relaxed);
            r.encode(&mut self.out, &self.hub.shared.process_stats());
        } else {
            r.encode(&mut self.out, &Default::default());
        }
    }

    /// Sends an item; its answer is encoded in turn (at once, and the ones before it, if
    /// it `may_wait`).
    async fn ask(
        &mut self,
        may_wait: bool,
        make: impl FnOnce(u64) -> Item,
    ) -> std::io::Result<Next> {
        self.pending.push_back(self.hub.request(make));
        if may_wait {
            return self.settle().await;
        }
        Ok(Next::Continue)
    }

    /// A reserve waits for its job; a client that hangs up meanwhile stops waiting.
    async fn wait(&mut self, mut rx: oneshot::Receiver<Reply>) -> std::io::Result<Next> {
        self.flush().await?;
        loop {
            tokio::select! {
                r = &mut rx => {
                    return Ok(match r {
                        Ok(r) => {
                            self.encode(r);
                            Next::Continue
                        }
                        Err(_) => Next::Close,
                    });
                }
                n = self.rd.read_buf(&mut self.inp) => {
                    if n? == 0 {
                        return self.hang_up(rx).await;
                    }
                }
            }
        }
    }

    /// The client half-closed while blocked in reserve: TIMED_OUT (unless a job came
    /// first), then close.
    async fn hang_up(&mut self, mut rx: oneshot::Receiver<Reply>) -> std::io::Result<Next> {
        let conn = self.id;
        let (req, ans) = self.hub.request(|req| Item::CancelWait { req, conn });
        let reply = match answer(&self.hub, req, ans).await {
            Some(Answer::Cancelled(true)) => Reply::TimedOut,
            Some(_) => rx.try_recv().unwrap_or(Reply::TimedOut),
            None => return Ok(Next::Close),
        };
        self.encode(reply);
        Ok(Next::Close)
    }

    /// A membership command: carried out by the leader (through it, from a follower),
    /// answered once done; nothing of it is logged as a command.
    async fn membership(&mut self, cmd: Command) -> std::io::Result<Next> {
        use sprout_cluster::net::{Admin, AdminError};
        if let Next::Close = self.settle().await? {
            return Ok(Next::Close);
        }
        self.flush().await?;
        let (admin, done) = match cmd {
            Command::ClusterAdd { id, addr } => (Admin::Add { id, addr }, Reply::Added),
            Command::ClusterRemove(id) => (Admin::Remove { id }, Reply::Removed),
            Command::ClusterTransferLeader(id) => (Admin::Transfer { id }, Reply::Transferred),
            _ => return Ok(Next::Continue),
        };
        let reply = match self.hub.node.get() {
            None => Reply::ClusterError("node starting".into()),
            Some(node) => match node.admin(admin).await {
                Ok(()) => done,
                Err(AdminError::NotFound) => Reply::NotFound,
                Err(AdminError::Failed(why)) => Reply::ClusterError(why),
            },
        };
        self.encode(reply);
        Ok(Next::Continue)
    }

    async fn on_event(&mut self, ev: Event) -> std::io::Result<Next> {
        let ev = match ev {
            Event::Command(cmd) if cmd.is_membership() => return self.membership(cmd).await,
            ev => ev,
        };
        let draining = self.hub.draining.load(std::sync::atomic::Ordering::Relaxed);
        // Without a leader for a while (cut off from the majority), `stats` is answered
        // from this node's state (not counted), so that it can say so.
        let local_stats = matches!(ev, Event::Command(Command::Stats))
            && self.hub.leaderless()
            && !self.hub.leader_within(LEADER_WAIT).await;
        let logged = match &ev {
            Event::Command(Command::Stats) => !local_stats,
            Event::Command(c) => *c != Command::Quit,
            Event::Put(_) | Event::PutUnique(..) => true,
            Event::Body(_) => !draining,
            _ => false,
        };
        if logged && !self.session().await {
            return Ok(Next::Close);
        }
        let conn = self.id;
        // A reply made here follows those of the commands before it.
        if !logged {
            if let Next::Close = self.settle().await? {
                return Ok(Next::Close);
            }
        }
        match ev {
            Event::Command(Command::Quit) => return Ok(Next::Close),
            Event::Command(Command::Stats) if local_stats => {
                let s = self.hub.shared.lock().engine.stats();
                self.encode(Reply::Stats(Box::new(s)));
            }
            Event::Command(cmd) => {
                let may_wait = matches!(
                    cmd,
                    Command::Reserve
                        | Command::ReserveWithTimeout(_)
                        | Command::ReserveBatch { .. }
                );
                let line = cmd.line();
                return self
                    .ask(may_wait, |req| Item::Command { req, conn, line })
                    .await;
            }
            Event::Put(h) => {
                self.hub.submit(Item::TakeId { conn });
                self.put = Some((h, None));
            }
            Event::PutUnique(key, h) => {
                self.hub.submit(Item::TakeId { conn });
                self.put = Some((h, Some(key)));
            }
            Event::Body(body) => {
                if self.put.is_some() && draining {
                    self.put = None;
                    self.encode(Reply::Draining);
                } else if let Some((header, key)) = self.put.take() {
                    return self
                        .ask(false, |req| Item::Put {
                            req,
                            conn,
                            header,
                            key,
                            body,
                        })
                        .await;
                }
            }
            Event::BodySkipped => self.encode(Reply::OutOfMemory),
            Event::ExpectedCrlf => {
                self.put = None;
                self.encode(Reply::ExpectedCrlf);
            }
            Event::Error(e) => {
                let (count, reply) = crate::conn::line_error(e);
                match count {
                    Some(Input::CountPut) => self.hub.submit(Item::CountPut),
                    Some(Input::CountPauseTube) => self.hub.submit(Item::CountPauseTube),
                    _ => {}
                }
                if let Some(r) = reply {
                    self.encode(r);
                }
            }
            Event::JobTooBig => self.encode(Reply::JobTooBig),
            Event::Auth(_) => self.encode(Reply::UnknownCommand),
        }
        Ok(Next::Continue)
    }
}
