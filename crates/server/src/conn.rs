//! One client connection: read bytes, decode events, run them on the engine, write replies.
//! Pipelined commands are answered in order and their replies written together; a blocked
//! reserve stops command processing (as in beanstalkd) while the socket is still watched
//! for a hang-up.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use std::pin::Pin;
use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

use tokio::sync::futures::Notified;
use tokio::sync::{oneshot, watch};

use super::Shared;
use sprout_engine::{ConnId, JobId, Outcome};
use sprout_protocol::command::PutHeader;
use sprout_protocol::{Command, Decoder, Event, LineError, Reply};
use sprout_storage::{Acked, Ticket};

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
}

impl Sock {
    async fn ready(&self, i: Interest) -> io::Result<Ready> {
        match self {
            Sock::Tcp(s) => s.ready(i).await,
            Sock::Unix(s) => s.ready(i).await,
        }
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
        }
    }

    async fn write_all(&self, out: &mut BytesMut) -> io::Result<()> {
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
enum Next {
    Continue,
    Wait(oneshot::Receiver<Reply>),
    Quit,
}

struct Conn {
    id: ConnId,
    shared: Arc<Shared>,
    sock: Sock,
    decoder: Decoder,
    input: BytesMut,
    out: BytesMut,
    put: Option<(JobId, PutHeader)>,
    eof: bool,
    verbose: bool,
    /// Bytes read since this task last yielded.
    read_since_yield: usize,
    /// Replies waiting for their changes to reach the log, in order.
    held: Vec<(Reply, Option<Ticket>)>,
    acked: Option<watch::Receiver<Acked>>,
}

/// Serves one connection, registered in the engine as `id` when it was accepted.
pub async fn serve(sock: Sock, shared: Arc<Shared>, id: ConnId) {
    tracing::debug!("accept {id}");
    let mut c = Conn {
        id,
        decoder: Decoder::new(shared.config.max_job_size),
        verbose: shared.config.verbosity >= 2,
        shared,
        sock,
        input: BytesMut::new(),
        out: BytesMut::new(),
        put: None,
        eof: false,
        held: Vec::new(),
        acked: None,
        read_since_yield: 0,
    };
    c.acked = c.shared.binlog.as_ref().map(|b| b.acks());
    let stop = c.shared.clone();
    let stopped = stop.stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    if let Err(e) = c.run(stopped).await {
        tracing::debug!("conn {id}: {e}");
    }
    let shared = c.shared.clone();
    let _ = shared.with_engine(|e, now, out| e.disconnect(id, now, out));
    shared.lock().waiters.remove(&id);
    tracing::debug!("close {id}");
}

impl Conn {
    async fn run(&mut self, mut stop: Pin<&mut Notified<'_>>) -> io::Result<()> {
        loop {
            // Answer everything already buffered.
            while let Some(ev) = self.decoder.decode(&mut self.input) {
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
        mut rx: oneshot::Receiver<Reply>,
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
                        Ok(reply) => self.reply(reply),
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
    async fn hang_up(&mut self, mut rx: oneshot::Receiver<Reply>) -> io::Result<bool> {
        let id = self.id;
        let cancelled = {
            let mut st = self.shared.lock();
            let c = st.engine.cancel_wait(id);
            if c {
                st.waiters.remove(&id);
            }
            c
        };
        let reply = if cancelled {
            Reply::TimedOut
        } else {
            match rx.try_recv() {
                Ok(r) => r,
                Err(_) => Reply::TimedOut,
            }
        };
        self.reply(reply);
        self.flush().await?;
        Ok(false)
    }

    /// Sends what is owed: first waits until held replies' changes are in the log.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.held.is_empty() {
            if let Some(b) = self.shared.binlog.as_ref() {
                b.wait_for_room().await;
            }
            let policy = self.shared.binlog.as_ref().map(|b| b.policy());
            let held = std::mem::take(&mut self.held);
            for (r, t) in held {
                let ok = match (t, policy, self.acked.as_mut()) {
                    (Some(t), Some(policy), Some(rx)) => {
                        let mut res = None;
                        let waited = rx
                            .wait_for(|a| {
                                res = t.check(a, policy);
                                res.is_some()
                            })
                            .await;
                        waited.is_ok() && res == Some(true)
                    }
                    _ => true,
                };
                if ok {
                    self.reply(r);
                } else if let Reply::Inserted(job) = r {
                    // Not in the log: the job must not run either (unless a worker has it).
                    let _ = self
                        .shared
                        .with_engine(|e, _, _| e.forget_unlogged_put(job));
                    self.reply(Reply::OutOfMemory);
                } else {
                    self.reply(Reply::InternalError);
                }
            }
        }
        self.sock.write_all(&mut self.out).await
    }

    /// Queues a reply; one that acknowledges a change waits for the log (see `flush`).
    fn reply_after(&mut self, r: Reply, t: Option<Ticket>) {
        let acks = matches!(
            r,
            Reply::Inserted(_)
                | Reply::Deleted
                | Reply::Released
                | Reply::Buried
                | Reply::Kicked(_)
                | Reply::KickedJob
        );
        let t = if acks { t } else { None };
        if t.is_none() && self.held.is_empty() {
            self.reply(r);
        } else {
            self.held.push((r, t));
        }
    }

    fn reply(&mut self, r: Reply) {
        if !self.held.is_empty() {
            self.held.push((r, None));
            return;
        }
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

    fn on_event(&mut self, ev: Event) -> Next {
        let id = self.id;
        match ev {
            Event::Command(Command::Quit) => return Next::Quit,
            Event::Command(cmd) => {
                if self.verbose {
                    tracing::trace!("<{id} command {}", cmd.name());
                }
                let mutates = matches!(
                    cmd,
                    Command::Delete(_)
                        | Command::Release { .. }
                        | Command::Bury { .. }
                        | Command::Kick(_)
                        | Command::KickJob(_)
                );
                if mutates && self.shared.log_failed() {
                    self.reply(Reply::InternalError);
                    return Next::Continue;
                }
                let shared = self.shared.clone();
                let mut st = shared.lock();
                let now = shared.clock.now();
                let mut out = std::mem::take(&mut st.scratch);
                let outcome = st.engine.execute(id, cmd, now, &mut out);
                let ticket = shared.persist(&mut st);
                let next = match outcome {
                    Outcome::Reply(r) => {
                        shared.finish(&mut st, now, &mut out);
                        st.scratch = out;
                        drop(st);
                        self.reply_after(r, ticket);
                        Next::Continue
                    }
                    Outcome::Wait => {
                        let (tx, rx) = oneshot::channel();
                        st.waiters.insert(id, tx);
                        shared.finish(&mut st, now, &mut out);
                        st.scratch = out;
                        Next::Wait(rx)
                    }
                };
                return next;
            }
            Event::Put(h) => {
                let (job, refuse) = {
                    let mut st = self.shared.lock();
                    let job = st.engine.put_header(id);
                    (job, st.engine.put_would_exceed(u64::from(h.bytes)))
                };
                if refuse {
                    // Over --max-jobs/--max-memory: don't hold the body only to refuse it.
                    self.decoder.skip_body();
                } else {
                    self.put = Some((job, h));
                }
            }
            Event::BodySkipped => self.reply(Reply::OutOfMemory),
            Event::Body(body) => {
                if let Some((job, h)) = self.put.take() {
                    if self.shared.log_failed() {
                        self.reply(Reply::OutOfMemory);
                    } else {
                        let (r, t) = self
                            .shared
                            .with_engine(|e, now, out| e.put_body(id, job, h, body, now, out));
                        self.reply_after(r, t);
                    }
                }
            }
            Event::ExpectedCrlf => {
                self.put = None;
                self.reply(Reply::ExpectedCrlf);
            }
            Event::Error(e) => {
                tracing::debug!("conn {id}: protocol error: {e:?}");
                match e {
                    LineError::PutTooBig(_) => self.shared.lock().engine.count_put(),
                    LineError::PutBadFormat => {
                        self.shared.lock().engine.count_put();
                        self.reply(Reply::BadFormat);
                    }
                    LineError::BadFormat => self.reply(Reply::BadFormat),
                    LineError::PauseTubeBadName => {
                        self.shared.lock().engine.count_pause_tube();
                        self.reply(Reply::BadFormat);
                    }
                    LineError::UnknownCommand => self.reply(Reply::UnknownCommand),
                }
            }
            Event::JobTooBig => self.reply(Reply::JobTooBig),
        }
        Next::Continue
    }
}
