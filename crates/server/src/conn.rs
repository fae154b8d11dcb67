//! One client connection: read bytes, decode events, run them on the engine, write replies.
//! Pipelined commands are answered in order and their replies written together; a blocked
//! reserve stops command processing (as in beanstalkd) while the socket is still watched
//! for a hang-up.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use std::pin::Pin;
use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

use tokio::sync::futures::Notified;
use tokio::sync::{oneshot, watch};

use super::{Delivered, Shared, Unauthenticated};
use crate::access::{self, Access, Rights, Verdict};
use crate::tls::TlsSock;
use sprout_engine::{ConnId, Input, JobId, NewPut, Output, Reveal};
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Command, Decoder, Event, LineError, Reply};
use sprout_storage::{Acked, NewJob, SyncPolicy, Ticket};

/// Stop decoding more commands once this many reply bytes are queued; write them first.
const OUT_HIGH: usize = 256 * 1024;
/// Bytes read per read call while reading lines.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes a connection may read before it yields to other connections.
const YIELD_EVERY: usize = 256 * 1024;
/// Largest read-ahead while a connection is blocked in reserve.
const WAIT_READ_LIMIT: usize = 64 * 1024;

pub(crate) enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsSock>),
}

impl Sock {
    /// Who is at the other end, for `-V`'s connection lines.
    fn peer(&self) -> String {
        let tcp = match self {
            Sock::Tcp(s) => s,
            Sock::Tls(s) => s.tcp(),
            Sock::Unix(_) => return "a unix socket".to_string(),
        };
        match tcp.peer_addr() {
            Ok(a) => a.to_string(),
            Err(e) => format!("an unknown peer ({e})"),
        }
    }

    async fn ready(&self, i: Interest) -> io::Result<Ready> {
        match self {
            Sock::Tcp(s) => s.ready(i).await,
            Sock::Unix(s) => s.ready(i).await,
            Sock::Tls(s) => s.ready(i).await,
        }
    }

    /// Closes after a last reply: close_notify (TLS), then FIN, then what the client
    /// still sends is read and dropped for a moment (closing with unread input would
    /// reset the connection, and the client could lose the reply).
    async fn close_after_reply(&self) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Sock::Tcp(s) => s.as_raw_fd(),
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Tls(s) => {
                s.close();
                s.tcp().as_raw_fd()
            }
        };
        // SAFETY: shutdown on a descriptor this socket owns.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        let drain = async {
            let mut sink = BytesMut::with_capacity(4096);
            loop {
                if self.ready(Interest::READABLE).await.is_err() {
                    return;
                }
                sink.clear();
                match self.try_read_buf(&mut sink) {
                    Ok(0) => return,
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }

    /// Reads what is there. A read that leaves the buffer's spare room unfilled has
    /// drained the socket, so the socket's readiness is cleared with it: the next wait
    /// sleeps until new data arrives instead of a second read finding nothing (one
    /// `recvfrom` per batch of commands instead of two). Edge-triggered polling reports
    /// any data that arrives later.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let mut got = 0;
        let mut read = |r: io::Result<usize>| {
            let n = r?;
            got = n;
            if n > 0 && n < spare {
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            } else {
                Ok(n)
            }
        };
        let r = match self {
            Sock::Tcp(s) => s.try_io(Interest::READABLE, || read(s.try_read_buf(buf))),
            Sock::Unix(s) => s.try_io(Interest::READABLE, || read(s.try_read_buf(buf))),
            Sock::Tls(s) => return s.try_read_buf(buf),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            r => r,
        }
    }

    fn try_write(&self, b: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.try_write(b),
            Sock::Unix(s) => s.try_write(b),
            Sock::Tls(_) => unreachable!("TLS writes go through write_all"),
        }
    }

    async fn write_all(&self, out: &mut BytesMut) -> io::Result<()> {
        if let Sock::Tls(s) = self {
            return s.write_all(out).await;
        }
        while !out.is_empty() {
            match self.try_write(out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready(Interest::WRITABLE).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Buffers of connections gone idle, kept per thread for the next connection that needs
/// one: a request/reply round trip would otherwise free and allocate two buffers.
mod pool {
    use bytes::BytesMut;
    use std::cell::RefCell;

    /// Buffers kept per thread, and the largest kept: at most 4 MiB per thread.
    const KEEP: usize = 64;
    const MAX_CAPACITY: usize = 64 * 1024;

    thread_local! {
        static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// A cleared buffer (capacity 0 if the pool is empty).
    pub(crate) fn take() -> BytesMut {
        POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
    }

    /// Returns an empty buffer; kept unless the pool is full or the buffer is large.
    pub(crate) fn give(mut b: BytesMut) {
        b.clear();
        if b.capacity() == 0 || b.capacity() > MAX_CAPACITY {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(b);
            }
        });
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn keeps_at_most_keep_buffers_none_large_and_hands_them_back_empty() {
            for _ in 0..KEEP + 10 {
                let mut b = BytesMut::with_capacity(16 * 1024);
                b.extend_from_slice(b"left over");
                give(b);
            }
            give(BytesMut::with_capacity(MAX_CAPACITY + 1));
            let mut kept = 0;
            loop {
                let b = take();
                if b.capacity() == 0 {
                    break;
                }
                assert!(b.is_empty());
                assert!(b.capacity() <= MAX_CAPACITY);
                kept += 1;
            }
            assert_eq!(kept, KEEP);
        }
    }
}

/// What the connection does after an event.
/// What the connection does after an event.
enum Next {
    Continue,
    Wait(oneshot::Receiver<Delivered>),
    Quit,
}

/// What a queued reply waits for before it may be sent (see `sprout_storage::ack`).
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Nothing: it goes out after the replies before it.
    None,
    /// It acknowledges a change: the change must be durable (else the client is told it
    /// failed).
    Ack(Ticket),
    /// It shows state as of this log position: the watermark must reach it.
    Shows(u64),
}

/// A reply owed, in order.
enum Held {
    Reply(Reply, Hold),
    /// A put that is logged but not yet applied: once its record is durable it is applied
    /// and answered INSERTED; if the record fails, OUT_OF_MEMORY and the job never exists.
    Put(Box<NewPut>, Ticket),
}

/// Queued replies beyond which the connection stops decoding commands until they are
/// settled (pipelined puts wait for the log holding their bodies).
const HELD_MAX: usize = 1024;
const HELD_BYTES_MAX: usize = 1 << 20;

struct Conn {
    id: ConnId,
    shared: Arc<Shared>,
    sock: Sock,
    decoder: Decoder,
    input: BytesMut,
    out: BytesMut,
    /// A put whose body is being read: its id, header and `put-unique` key.
    put: Option<(JobId, PutHeader, Option<String>)>,
    eof: bool,
    verbose: bool,
    /// Bytes read since this task last yielded.
    read_since_yield: usize,
    /// Replies waiting for the log, in order.
    held: VecDeque<Held>,
    /// Puts in `held` (logged, not applied): a command must not run before they are
    /// applied, since it could depend on them.
    unapplied: usize,
    /// Body bytes of those puts.
    unapplied_bytes: usize,
    acked: Option<watch::Receiver<Acked>>,
    /// What the connection may do ([`Access::Full`] on plain listeners without
    /// `[anonymous]`: no checks).
    access: Access,
    /// Still watching `default`, which the (restricted) user cannot see: every session
    /// starts so; dropped at the first `watch` of one of its tubes.
    hidden_default: bool,
    /// The put body being skipped was refused for want of rights: PERMISSION_DENIED
    /// once it has been skipped.
    deny_body: bool,
    /// On a token listener, the user the connection authenticated as.
    token_user: Option<Arc<str>>,
}

fn decoder(shared: &Shared) -> Decoder {
    if shared.config.strict {
        Decoder::strict(shared.config.max_job_size)
    } else {
        Decoder::new(shared.config.max_job_size)
    }
}

/// Serves a connection of a token listener: nothing but `auth <token>` (or `quit`) is
/// accepted until it succeeds, within the deadline; anything else is answered
/// UNAUTHORIZED and the connection closed. The connection joins the engine (and
/// `current-connections`) only once authenticated.
pub(crate) async fn serve_token(
    sock: Sock,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    pending: Unauthenticated,
) {
    let mut decoder = decoder(&shared).with_auth();
    let mut input = BytesMut::with_capacity(1024);
    let refuse = |why: &str| {
        tracing::debug!("unauthenticated connection: {why}");
        shared.security.counters.auth_failed();
    };
    let rights = loop {
        match decoder.decode(&mut input) {
            Some(Event::Auth(token)) => match shared.security.users().by_token(&token) {
                Some(r) => break r.clone(),
                None => {
                    refuse("unknown token");
                    return unauthorized(sock).await;
                }
            },
            Some(Event::Command(Command::Quit)) => return,
            Some(_) => {
                refuse("a command before auth");
                return unauthorized(sock).await;
            }
            None => {}
        }
        let read = async {
            loop {
                sock.ready(Interest::READABLE).await?;
                input.reserve(1024);
                match sock.try_read_buf(&mut input) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        };
        match super::until_deadline_or_stop(&shared, deadline, read).await {
            Some(Ok(n)) if n > 0 => {}
            Some(_) => return,
            None if shared.stopping() => return,
            None => {
                tracing::debug!(
                    "unauthenticated connection closed after {:?}",
                    super::AUTH_TIMEOUT
                );
                shared.security.counters.unauth_timed_out();
                return;
            }
        }
    };
    drop(pending);
    let id = super::register(&shared);
    let mut out = BytesMut::new();
    Reply::Authenticated.encode(&mut out, &Default::default());
    let user = rights.user.clone();
    serve_with(
        sock,
        shared,
        id,
        Access::of(&rights),
        decoder,
        input,
        out,
        Some(user),
    )
    .await;
}

/// UNAUTHORIZED, then close.
async fn unauthorized(sock: Sock) {
    let mut out = BytesMut::new();
    Reply::Unauthorized.encode(&mut out, &Default::default());
    if tokio::time::timeout(std::time::Duration::from_secs(1), sock.write_all(&mut out))
        .await
        .is_ok()
    {
        sock.close_after_reply().await;
    }
}

/// Serves one connection, registered in the engine as `id` when it was accepted.
pub async fn serve(sock: Sock, shared: Arc<Shared>, id: ConnId, access: Access) {
    let d = decoder(&shared);
    serve_with(
        sock,
        shared,
        id,
        access,
        d,
        BytesMut::new(),
        BytesMut::new(),
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn serve_with(
    sock: Sock,
    shared: Arc<Shared>,
    id: ConnId,
    access: Access,
    decoder: Decoder,
    input: BytesMut,
    out: BytesMut,
    token_user: Option<Arc<str>>,
) {
    let over = if matches!(sock, Sock::Tls(_)) {
        "TLS"
    } else {
        "plain"
    };
    // -V: one line when a connection starts and one when it ends.
    let peer = tracing::enabled!(tracing::Level::DEBUG).then(|| sock.peer());
    if let Some(p) = &peer {
        tracing::debug!("conn {id}: accepted from {p} ({over})");
    }
    let hidden_default = match &access {
        Access::Full => false,
        Access::Restricted(r) => !r.sees("default"),
    };
    let mut c = Conn {
        id,
        decoder,
        verbose: shared.config.verbosity >= 2,
        shared,
        sock,
        input,
        out,
        put: None,
        eof: false,
        held: VecDeque::new(),
        unapplied: 0,
        unapplied_bytes: 0,
        acked: None,
        read_since_yield: 0,
        access,
        hidden_default,
        deny_body: false,
        token_user,
    };
    c.acked = c.shared.binlog.as_ref().map(|b| b.acks());
    let stop = c.shared.clone();
    let stopped = stop.stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    let ended = c.run(stopped).await;
    // Puts that are logged must be applied even though nobody reads the replies: the log
    // has them, so the engine must too.
    if c.unapplied > 0 && !c.shared.stopping() {
        c.settle().await;
    }
    if let Sock::Tls(t) = &c.sock {
        t.close();
    }
    let shared = c.shared.clone();
    shared.step(Input::Disconnect(id));
    shared.lock().waiters.remove(&id);
    if let Some(p) = &peer {
        match ended {
            Ok(()) => tracing::debug!("conn {id}: closed ({p})"),
            Err(e) => tracing::debug!("conn {id}: closed ({p}): {e}"),
        }
    }
}

impl Conn {
    async fn run(&mut self, mut stop: Pin<&mut Notified<'_>>) -> io::Result<()> {
        loop {
            // Answer everything already buffered.
            while let Some(ev) = self.decoder.decode(&mut self.input) {
                if self.unapplied > 0 && matches!(ev, Event::Command(_)) {
                    // The command may depend on the puts before it: apply them first.
                    self.settle().await;
                }
                match self.on_event(ev) {
                    Next::Continue => {}
                    Next::Quit => {
                        self.flush().await?;
                        return Ok(());
                    }
                    Next::Wait(rx) => {
                        self.flush().await?;
                        if !self.wait(rx, stop.as_mut()).await? {
                            return Ok(());
                        }
                    }
                }
                if self.out.len() >= OUT_HIGH {
                    self.flush().await?;
                } else if self.held.len() >= HELD_MAX || self.unapplied_bytes >= HELD_BYTES_MAX {
                    self.settle().await;
                }
            }
            self.flush().await?;
            if self.eof || self.shared.stopping() {
                return Ok(());
            }
            // An idle connection keeps no buffers: they go back to this thread's pool.
            if self.input.is_empty() {
                pool::give(std::mem::take(&mut self.input));
            }
            if self.out.is_empty() {
                pool::give(std::mem::take(&mut self.out));
            }
            // Read more; the buffer is only allocated once there is something to read.
            // A client that never stops sending must not keep this thread from others:
            // after every 256 KiB read, let other tasks run.
            if self.read_since_yield >= YIELD_EVERY {
                self.read_since_yield = 0;
                tokio::task::yield_now().await;
            }
            tokio::select! {
                r = self.sock.ready(Interest::READABLE) => {
                    r?;
                    let want = self
                        .decoder
                        .body_remaining(self.input.len())
                        .clamp(READ_CHUNK, 1 << 20);
                    if self.input.capacity() == 0 {
                        self.input = pool::take();
                    }
                    self.input.reserve(want);
                    match self.sock.try_read_buf(&mut self.input) {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.read_since_yield += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                _ = stop.as_mut() => return Ok(()),
            }
        }
    }

    /// Waits for a blocked reserve's reply. Returns false when the connection should close.
    async fn wait(
        &mut self,
        mut rx: oneshot::Receiver<Delivered>,
        mut stop: Pin<&mut Notified<'_>>,
    ) -> io::Result<bool> {
        loop {
            if self.eof {
                return self.hang_up(rx).await;
            }
            let can_read = self.input.len() < WAIT_READ_LIMIT;
            tokio::select! {
                r = &mut rx => {
                    match r {
                        Ok((reply, lsn)) => self.reply_showing(reply, lsn),
                        Err(_) => return Ok(false),
                    }
                    return Ok(true);
                }
                r = self.sock.ready(Interest::READABLE), if can_read => {
                    let ready = r?;
                    if ready.is_read_closed() {
                        return self.hang_up(rx).await;
                    }
                    match self.sock.try_read_buf(&mut self.input) {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.read_since_yield += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                _ = stop.as_mut() => return Ok(false),
            }
        }
    }

    /// The client half-closed while blocked in reserve: TIMED_OUT (unless a job arrived
    /// first), then close.
    async fn hang_up(&mut self, mut rx: oneshot::Receiver<Delivered>) -> io::Result<bool> {
        let id = self.id;
        let cancelled = {
            let mut st = self.shared.lock();
            let (out, _, _) = self
                .shared
                .step_with(&mut st, Input::CancelWait(id), |_, _| {});
            let c = out == Output::Cancelled(true);
            if c {
                st.waiters.remove(&id);
            }
            c
        };
        let (reply, lsn) = if cancelled {
            (Reply::TimedOut, 0)
        } else {
            rx.try_recv().unwrap_or((Reply::TimedOut, 0))
        };
        self.reply_showing(reply, lsn);
        self.flush().await?;
        Ok(false)
    }

    /// Sends what is owed, once the log allows (see `settle`).
    async fn flush(&mut self) -> io::Result<()> {
        self.settle().await;
        self.sock.write_all(&mut self.out).await
    }

    /// Encodes every held reply in order, each once the log is durable as far as it needs;
    /// applies the logged puts among them.
    async fn settle(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if let Some(b) = self.shared.binlog.as_ref() {
            b.wait_for_room().await;
        }
        let policy = self.shared.binlog.as_ref().map(|b| b.policy());
        while let Some(h) = self.held.pop_front() {
            match h {
                Held::Reply(r, Hold::None) => self.encode(r),
                Held::Reply(r, Hold::Ack(t)) => {
                    let r = if self.ticket_ok(t, policy).await {
                        r
                    } else {
                        Reply::InternalError
                    };
                    self.encode(r);
                }
                Held::Reply(r, Hold::Shows(lsn)) => {
                    if let Some(rx) = self.acked.as_mut() {
                        let _ = rx.wait_for(|a| a.covers(lsn)).await;
                    }
                    self.encode(r);
                }
                Held::Put(p, t) => {
                    self.unapplied -= 1;
                    self.unapplied_bytes -= p.body.len();
                    let id = p.id;
                    let r = if self.ticket_ok(t, policy).await {
                        let r = match self.shared.step(Input::Put(*p)).0 {
                            Output::Reply(r) => r,
                            o => unreachable!("put gave {o:?}"),
                        };
                        if !matches!(r, Reply::Inserted(_)) {
                            // Logged, but not applied (put-unique's key was taken meanwhile,
                            // or a limit reached): its id is dead.
                            if let Some(b) = self.shared.binlog.as_ref() {
                                let limit = self.shared.lock().engine.id_limit();
                                b.append_tombstone(id, limit);
                            }
                        }
                        r
                    } else {
                        // Not logged: the job never existed. Its record may still reach
                        // the disk (a write that failed late), so its id is marked dead.
                        if let Some(b) = self.shared.binlog.as_ref() {
                            let limit = self.shared.lock().engine.id_limit();
                            b.append_tombstone(id, limit);
                        }
                        Reply::OutOfMemory
                    };
                    self.encode(r);
                }
            }
        }
    }

    /// Waits until the change at `t` is durable: true, or false if it never will be.
    async fn ticket_ok(&mut self, t: Ticket, policy: Option<SyncPolicy>) -> bool {
        let (Some(policy), Some(rx)) = (policy, self.acked.as_mut()) else {
            return true;
        };
        let mut res = None;
        let waited = rx
            .wait_for(|a| {
                res = t.check(a, policy);
                res.is_some()
            })
            .await;
        waited.is_ok() && res == Some(true)
    }

    /// Queues a reply to a command: one that acknowledges a change (`t`: the command's
    /// table row says it acknowledges, and it changed something) waits for the log to hold
    /// it; one that shows state waits for the watermark to reach that state.
    fn reply_after(&mut self, r: Reply, t: Option<Ticket>, reveal: Reveal) {
        let hold = match (t, reveal) {
            (Some(t), _) => Hold::Ack(t),
            (_, Reveal::Job(lsn)) => self.shows(lsn),
            (_, Reveal::Absence) => match self.shared.binlog.as_ref() {
                Some(b) => self.shows(b.deleted_lsn()),
                None => Hold::None,
            },
            (_, Reveal::All) => match self.shared.binlog.as_ref() {
                Some(b) => self.shows(b.end()),
                None => Hold::None,
            },
            _ => Hold::None,
        };
        self.queue(r, hold);
    }

    /// A reply showing state at log position `lsn`.
    fn reply_showing(&mut self, r: Reply, lsn: u64) {
        let hold = self.shows(lsn);
        self.queue(r, hold);
    }

    /// What a reply showing state at `lsn` must wait for: nothing if the watermark is
    /// already there.
    fn shows(&mut self, lsn: u64) -> Hold {
        match self.acked.as_ref() {
            Some(rx) if lsn > 0 && !rx.borrow().covers(lsn) => Hold::Shows(lsn),
            _ => Hold::None,
        }
    }

    fn queue(&mut self, r: Reply, hold: Hold) {
        if matches!(hold, Hold::None) && self.held.is_empty() {
            self.encode(r);
        } else {
            self.held.push_back(Held::Reply(r, hold));
        }
    }

    /// Queues a reply that waits for nothing but the replies before it.
    fn reply(&mut self, r: Reply) {
        self.queue(r, Hold::None);
    }

    /// Writes a reply into the output buffer.
    fn encode(&mut self, r: Reply) {
        if self.verbose {
            tracing::trace!(">{} reply {}", self.id, r.head());
        }
        if self.out.capacity() == 0 {
            self.out = pool::take();
        }
        if matches!(r, Reply::Stats(_)) {
            let p = self.shared.process_stats();
            r.encode(&mut self.out, &p);
        } else {
            r.encode(&mut self.out, &Default::default());
        }
    }

    /// A put's body arrived: admit it; without a log apply it now, with one log it first
    /// (it is applied, and answered, once durable: see `settle`).
    fn on_put(&mut self, job: JobId, h: PutHeader, key: Option<String>, body: bytes::Bytes) {
        let id = self.id;
        if self.shared.log_failed() {
            self.reply(Reply::OutOfMemory);
            return;
        }
        let shared = self.shared.clone();
        let mut st = shared.lock();
        let now = shared.clock.now();
        let mut p = match st
            .engine
            .put_admit_key(id, job, h, body, key.as_deref(), now)
        {
            Ok(p) => p,
            Err(r) => {
                drop(st);
                self.reply(r);
                return;
            }
        };
        let Some(b) = self.shared.binlog.clone() else {
            // No log: applied at once.
            let (out, _, _) = shared.step_at(&mut st, now, Input::Put(p), |_, _| {});
            drop(st);
            if let Output::Reply(r) = out {
                self.reply(r);
            }
            return;
        };
        let name = st.engine.tube_name_of(p.tube);
        let (t, file) = b.append_put(
            &NewJob {
                id: p.id,
                pri: p.pri,
                delay: p.delay,
                ttr: p.ttr,
                created: p.created,
                deadline: p
                    .created
                    .saturating_add(u64::from(p.delay) * sprout_engine::SECOND),
                tube: &name,
                body: &p.body,
                key: p.key.as_deref(),
            },
            st.engine.id_limit(),
        );
        drop(st);
        p.tube_name = Some(name);
        p.file = file;
        p.lsn = t.lsn;
        self.unapplied += 1;
        self.unapplied_bytes += p.body.len();
        self.held.push_back(Held::Put(Box::new(p), t));
    }

    /// A `put` (or `put-unique`) header: the id is taken now (and logged first if it
    /// opens a new block of ids); the body follows.
    fn on_put_header(&mut self, h: PutHeader, key: Option<String>) {
        let shared = self.shared.clone();
        let (job, refuse) = {
            let mut st = shared.lock();
            let (out, _, _) = shared.step_with(&mut st, Input::PutHeader(self.id), |_, _| {});
            let Output::Job(job) = out else {
                unreachable!("put header gave {out:?}")
            };
            (job, st.engine.put_would_exceed(u64::from(h.bytes)))
        };
        if refuse {
            // Over --max-jobs/--max-memory: don't hold the body only to refuse it.
            self.decoder.skip_body();
        } else {
            self.put = Some((job, h, key));
        }
    }

    /// The reply (or wait) of a command that ran.
    fn answer(
        &mut self,
        info: &sprout_protocol::command::Info,
        out: Output,
        reveal: Reveal,
        ticket: Option<Ticket>,
        rx: Option<oneshot::Receiver<Delivered>>,
    ) -> Next {
        debug_assert!(
            info.reveals || reveal == Reveal::Nothing,
            "{} showed {reveal:?}",
            info.name
        );
        match (out, rx) {
            (Output::Reply(r), _) => {
                let t = ticket.filter(|_| info.acknowledges);
                self.reply_after(r, t, reveal);
                Next::Continue
            }
            (_, Some(rx)) => Next::Wait(rx),
            (o, None) => unreachable!("command gave {o:?}"),
        }
    }

    /// A command of a restricted connection: decided under the engine lock (see
    /// `access::decide`), run if allowed, its reply cut down to what the user sees.
    fn restricted(&mut self, r: &Arc<Rights>, cmd: Command) -> Next {
        let id = self.id;
        let info = cmd.info();
        let shared = self.shared.clone();
        let mut st = shared.lock();
        match access::decide(r, &st.engine, id, &cmd, self.hidden_default) {
            Verdict::Run => {}
            Verdict::Answer(reply) => {
                drop(st);
                self.reply(reply);
                return Next::Continue;
            }
            Verdict::Deny(class) => {
                drop(st);
                self.deny(r, class, info.name);
                return Next::Continue;
            }
        }
        let watch = matches!(cmd, Command::Watch(_));
        let mut rx = None;
        let (mut out, reveal, ticket) =
            shared.step_with(&mut st, Input::Command(id, cmd), |st, out| {
                if *out == Output::Wait {
                    let (tx, r) = oneshot::channel();
                    st.waiters.insert(id, tx);
                    rx = Some(r);
                }
            });
        if let Output::Reply(reply) = &mut out {
            access::filter_reply(r, &st.engine, reply);
        }
        if watch && self.hidden_default {
            // The user now watches a tube of its own: `default`, which it cannot see,
            // goes (the reply counts what is left).
            let ignore = Input::Command(id, Command::Ignore("default".into()));
            if let (Output::Reply(w @ Reply::Watching(_)), _, _) =
                shared.step_with(&mut st, ignore, |_, _| {})
            {
                out = Output::Reply(w);
            }
            self.hidden_default = false;
        }
        drop(st);
        self.answer(info, out, reveal, ticket, rx)
    }

    /// PERMISSION_DENIED, counted for the user and class.
    fn deny(&mut self, r: &Rights, class: u8, what: &str) {
        tracing::debug!(
            "conn {}: {what} denied to user {} ({} not allowed)",
            self.id,
            r.user,
            access::class_name(class)
        );
        self.shared.security.counters.deny(&r.user, class);
        self.reply(Reply::PermissionDenied);
    }

    /// A put header of a restricted connection that may not put into its used tube: the
    /// body is skipped as it arrives, then PERMISSION_DENIED. True if refused.
    fn put_refused(&mut self, h: PutHeader) -> bool {
        let Access::Restricted(r) = &self.access else {
            return false;
        };
        let r = r.clone();
        let verdict = {
            let st = self.shared.lock();
            access::decide(
                &r,
                &st.engine,
                self.id,
                &Command::Put(h),
                self.hidden_default,
            )
        };
        match verdict {
            Verdict::Run => false,
            Verdict::Deny(class) => {
                tracing::debug!("conn {}: put denied to user {}", self.id, r.user);
                self.shared.security.counters.deny(&r.user, class);
                self.decoder.skip_body();
                self.deny_body = true;
                true
            }
            Verdict::Answer(_) => unreachable!("a put is run or denied"),
        }
    }

    fn on_event(&mut self, ev: Event) -> Next {
        let id = self.id;
        match ev {
            Event::Command(Command::Quit) => return Next::Quit,
            // Membership commands are a cluster node's (cluster/conn.rs).
            Event::Command(cmd) if cmd.is_membership() => {
                self.reply(Reply::ClusterError("not a cluster node".into()));
            }
            Event::Command(cmd) => {
                if self.verbose {
                    tracing::trace!("<{id} command {}", cmd.name());
                }
                let info = cmd.info();
                if info.acknowledges && self.shared.log_failed() {
                    self.reply(Reply::InternalError);
                    return Next::Continue;
                }
                if let Access::Restricted(r) = &self.access {
                    let r = r.clone();
                    return self.restricted(&r, cmd);
                }
                let shared = self.shared.clone();
                let mut rx = None;
                let (out, reveal, ticket) = {
                    let mut st = shared.lock();
                    shared.step_with(&mut st, Input::Command(id, cmd), |st, out| {
                        if *out == Output::Wait {
                            // Registered before anything is delivered.
                            let (tx, r) = oneshot::channel();
                            st.waiters.insert(id, tx);
                            rx = Some(r);
                        }
                    })
                };
                return self.answer(info, out, reveal, ticket, rx);
            }
            Event::Put(h) => {
                if !self.put_refused(h) {
                    self.on_put_header(h, None)
                }
            }
            Event::PutUnique(key, h) => {
                if !self.put_refused(h) {
                    self.on_put_header(h, Some(key))
                }
            }
            Event::BodySkipped => {
                if std::mem::take(&mut self.deny_body) {
                    self.reply(Reply::PermissionDenied)
                } else {
                    self.reply(Reply::OutOfMemory)
                }
            }
            Event::Auth(token) => {
                // Only token listeners' decoders produce it, once authenticated: the same
                // user again is a no-op; anything else ends the connection.
                let same = self
                    .shared
                    .security
                    .users()
                    .by_token(&token)
                    .is_some_and(|r| Some(&r.user) == self.token_user.as_ref());
                if same {
                    self.reply(Reply::Authenticated);
                } else {
                    self.shared.security.counters.auth_failed();
                    self.reply(Reply::Unauthorized);
                    return Next::Quit;
                }
            }
            Event::Body(body) => {
                if let Some((job, h, key)) = self.put.take() {
                    self.on_put(job, h, key, body);
                }
            }
            Event::ExpectedCrlf => {
                self.put = None;
                self.reply(Reply::ExpectedCrlf);
            }
            Event::Error(e) => {
                tracing::debug!("conn {id}: protocol error: {e:?}");
                let (count, reply) = line_error(e);
                if let Some(input) = count {
                    self.shared.step(input);
                }
                if let Some(r) = reply {
                    self.reply(r);
                }
            }
            Event::JobTooBig => self.reply(Reply::JobTooBig),
        }
        Next::Continue
    }
}

/// What a line that is not a command is counted as (an input to apply) and answered with
/// (none for a put too big: JOB_TOO_BIG comes once its body is skipped).
pub(crate) fn line_error(e: LineError) -> (Option<Input>, Option<Reply>) {
    match e {
        LineError::PutTooBig(_) => (Some(Input::CountPut), None),
        LineError::PutBadFormat => (Some(Input::CountPut), Some(Reply::BadFormat)),
        LineError::BadFormat => (None, Some(Reply::BadFormat)),
        LineError::PauseTubeBadName => (Some(Input::CountPauseTube), Some(Reply::BadFormat)),
        LineError::UnknownCommand => (None, Some(Reply::UnknownCommand)),
    }
}
