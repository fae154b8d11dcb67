//! The connection: a [`Sender`] that encodes commands into a buffer, a [`Receiver`] that
//! reads replies, and the [`Client`] that pairs them for one-command-at-a-time use.

use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::conn::{ReadHalf, Stream, WriteHalf};
use crate::reply::{self, Job, Response};
use crate::stats::{self, Stats};
use crate::{Connector, Error, Result};

/// The longest tube name (and `put-unique` key) the server takes.
pub const MAX_NAME: usize = 200;

/// What the read buffer starts with; it grows to fit the largest reply.
const READ_BUF: usize = 64 * 1024;

/// Checks a tube name (or a `put-unique` key) the way the server does: 1 to
/// [`MAX_NAME`] bytes of `A-Z a-z 0-9 - + / ; . $ _ ( )`, not starting with `-`. So a
/// name can never carry a second command onto the line.
///
/// ```
/// assert!(sprout_client::check_name("emails.high").is_ok());
/// assert!(sprout_client::check_name("a b").is_err());
/// ```
pub fn check_name(s: &str) -> Result<()> {
    let ok_byte = |b: u8| b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b);
    if s.is_empty() || s.len() > MAX_NAME || s.starts_with('-') || !s.bytes().all(ok_byte) {
        return Err(Error::Invalid(format!(
            "invalid name {s:?}: 1 to {MAX_NAME} of A-Z a-z 0-9 - + / ; . $ _ ( ), not \
             starting with '-'"
        )));
    }
    Ok(())
}

/// The reply to `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PutOutcome {
    /// `INSERTED <id>`.
    Inserted(u64),
    /// `BURIED <id>`: inserted, but buried because the server ran short of memory.
    Buried(u64),
}

impl PutOutcome {
    /// The new job's id, either way.
    pub fn id(self) -> u64 {
        match self {
            PutOutcome::Inserted(id) | PutOutcome::Buried(id) => id,
        }
    }
}

/// The reply to `put-unique`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UniqueOutcome {
    /// `INSERTED <id>`: a new job.
    Inserted(u64),
    /// `BURIED <id>`: a new job, buried for lack of memory.
    Buried(u64),
    /// `EXISTS <id>`: a job with this key exists; nothing was added.
    Exists(u64),
}

impl UniqueOutcome {
    /// The job's id: the new one, or the one that has the key.
    pub fn id(self) -> u64 {
        match self {
            UniqueOutcome::Inserted(id) | UniqueOutcome::Buried(id) | UniqueOutcome::Exists(id) => {
                id
            }
        }
    }
}

/// The reply to `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseOutcome {
    /// `RELEASED`.
    Released,
    /// `BURIED`: the server ran short of memory and buried the job instead.
    Buried,
}

/// A job state, for `list-jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Ready to be reserved.
    Ready,
    /// Waiting for its delay.
    Delayed,
    /// Buried.
    Buried,
    /// Reserved by a worker.
    Reserved,
}

impl JobState {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Delayed => "delayed",
            JobState::Buried => "buried",
            JobState::Reserved => "reserved",
        }
    }
}

/// The writing side of a connection: each method appends one command to a buffer (kept
/// and reused); [`Sender::flush`] writes them all. Nothing is sent before `flush`, so any
/// number of commands can be pipelined; their replies come back in order, read by the
/// [`Receiver`]'s `recv_*` method of the same name.
///
/// A method fails only for an argument that cannot be sent ([`Error::Invalid`]: a tube
/// name, key or token that is not one word of the allowed characters); the others always
/// succeed, and return a `Result` so that every command reads the same.
pub struct Sender {
    w: WriteHalf,
    buf: Vec<u8>,
}

/// Appends `fmt` + CRLF to the buffer.
macro_rules! line {
    ($s:expr, $($fmt:tt)*) => {{
        // Writing to a Vec cannot fail.
        let _ = write!($s.buf, $($fmt)*);
        $s.buf.extend_from_slice(b"\r\n");
    }};
}

impl Sender {
    /// Writes every queued command, then flushes (TLS sends its last record).
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.w.flush().await?;
        Ok(())
    }

    /// The bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Closes the writing side (TLS: with `close_notify`), after writing what is queued.
    pub async fn shutdown(&mut self) -> Result<()> {
        self.flush().await?;
        self.w.shutdown().await?;
        Ok(())
    }

    /// A raw command line (CRLF added), for commands without a method here. An error if
    /// the line holds CR or LF. Its reply is read with [`Receiver::recv`].
    pub fn command(&mut self, line: &str) -> Result<()> {
        if line.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(Error::Invalid(format!("{line:?}: more than one line")));
        }
        line!(self, "{line}");
        Ok(())
    }

    fn put_body(&mut self, body: &[u8]) {
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// `put <pri> <delay> <ttr> <bytes>` and the body: a job for the used tube.
    pub fn put(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> Result<()> {
        line!(self, "put {pri} {delay} {ttr} {}", body.len());
        self.put_body(body);
        Ok(())
    }

    /// `use <tube>`: where `put` puts jobs.
    pub fn use_tube(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "use {tube}");
        Ok(())
    }

    /// `reserve`: waits for a job from the watched tubes.
    pub fn reserve(&mut self) -> Result<()> {
        line!(self, "reserve");
        Ok(())
    }

    /// `reserve-with-timeout <seconds>`.
    pub fn reserve_with_timeout(&mut self, secs: u32) -> Result<()> {
        line!(self, "reserve-with-timeout {secs}");
        Ok(())
    }

    /// `reserve-job <id>`: reserves this job, whatever its state.
    pub fn reserve_job(&mut self, id: u64) -> Result<()> {
        line!(self, "reserve-job {id}");
        Ok(())
    }

    /// `delete <id>`.
    pub fn delete(&mut self, id: u64) -> Result<()> {
        line!(self, "delete {id}");
        Ok(())
    }

    /// `release <id> <pri> <delay>`: gives a reserved job back.
    pub fn release(&mut self, id: u64, pri: u32, delay: u32) -> Result<()> {
        line!(self, "release {id} {pri} {delay}");
        Ok(())
    }

    /// `bury <id> <pri>`.
    pub fn bury(&mut self, id: u64, pri: u32) -> Result<()> {
        line!(self, "bury {id} {pri}");
        Ok(())
    }

    /// `touch <id>`: more time for a reserved job.
    pub fn touch(&mut self, id: u64) -> Result<()> {
        line!(self, "touch {id}");
        Ok(())
    }

    /// `watch <tube>`.
    pub fn watch(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "watch {tube}");
        Ok(())
    }

    /// `ignore <tube>`.
    pub fn ignore(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "ignore {tube}");
        Ok(())
    }

    /// `peek <id>`.
    pub fn peek(&mut self, id: u64) -> Result<()> {
        line!(self, "peek {id}");
        Ok(())
    }

    /// `peek-ready`: the next ready job of the used tube.
    pub fn peek_ready(&mut self) -> Result<()> {
        line!(self, "peek-ready");
        Ok(())
    }

    /// `peek-delayed`: the delayed job of the used tube with the shortest delay left.
    pub fn peek_delayed(&mut self) -> Result<()> {
        line!(self, "peek-delayed");
        Ok(())
    }

    /// `peek-buried`: the next buried job of the used tube.
    pub fn peek_buried(&mut self) -> Result<()> {
        line!(self, "peek-buried");
        Ok(())
    }

    /// `kick <bound>`: up to `bound` buried (or else delayed) jobs of the used tube.
    pub fn kick(&mut self, bound: u32) -> Result<()> {
        line!(self, "kick {bound}");
        Ok(())
    }

    /// `kick-job <id>`.
    pub fn kick_job(&mut self, id: u64) -> Result<()> {
        line!(self, "kick-job {id}");
        Ok(())
    }

    /// `stats-job <id>`.
    pub fn stats_job(&mut self, id: u64) -> Result<()> {
        line!(self, "stats-job {id}");
        Ok(())
    }

    /// `stats-tube <tube>`.
    pub fn stats_tube(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "stats-tube {tube}");
        Ok(())
    }

    /// `stats`.
    pub fn stats(&mut self) -> Result<()> {
        line!(self, "stats");
        Ok(())
    }

    /// `list-tubes`.
    pub fn list_tubes(&mut self) -> Result<()> {
        line!(self, "list-tubes");
        Ok(())
    }

    /// `list-tube-used`.
    pub fn list_tube_used(&mut self) -> Result<()> {
        line!(self, "list-tube-used");
        Ok(())
    }

    /// `list-tubes-watched`.
    pub fn list_tubes_watched(&mut self) -> Result<()> {
        line!(self, "list-tubes-watched");
        Ok(())
    }

    /// `pause-tube <tube> <seconds>`.
    pub fn pause_tube(&mut self, tube: &str, secs: u32) -> Result<()> {
        check_name(tube)?;
        line!(self, "pause-tube {tube} {secs}");
        Ok(())
    }

    /// `quit`: the server closes the connection (there is no reply).
    pub fn quit(&mut self) -> Result<()> {
        line!(self, "quit");
        Ok(())
    }

    /// `flush-tube <tube>` (sproutd): deletes every job of the tube but reserved ones.
    pub fn flush_tube(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "flush-tube {tube}");
        Ok(())
    }

    /// `reserve-batch <max> <timeout>` (sproutd): up to `max` jobs at once.
    pub fn reserve_batch(&mut self, max: u32, timeout: u32) -> Result<()> {
        line!(self, "reserve-batch {max} {timeout}");
        Ok(())
    }

    /// `list-jobs <tube> <state> <after> <limit>` (sproutd): ids of a tube's jobs in one
    /// state, above `after`, at most `limit`.
    pub fn list_jobs(&mut self, tube: &str, state: JobState, after: u64, limit: u32) -> Result<()> {
        check_name(tube)?;
        line!(self, "list-jobs {tube} {} {after} {limit}", state.as_str());
        Ok(())
    }

    /// `put-unique <key> <pri> <delay> <ttr> <bytes>` and the body (sproutd): a job,
    /// unless one with this key exists. Only for a server known to have it: another
    /// would read the body as a command.
    pub fn put_unique(
        &mut self,
        key: &str,
        pri: u32,
        delay: u32,
        ttr: u32,
        body: &[u8],
    ) -> Result<()> {
        check_name(key)?;
        line!(self, "put-unique {key} {pri} {delay} {ttr} {}", body.len());
        self.put_body(body);
        Ok(())
    }

    /// `reprioritize <id> <pri>` (sproutd).
    pub fn reprioritize(&mut self, id: u64, pri: u32) -> Result<()> {
        line!(self, "reprioritize {id} {pri}");
        Ok(())
    }

    /// `move-job <id> <tube>` (sproutd): moves a ready, delayed or buried job.
    pub fn move_job(&mut self, id: u64, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "move-job {id} {tube}");
        Ok(())
    }

    /// `tube-policy <tube>` (sproutd): reads a tube's policy.
    pub fn tube_policy(&mut self, tube: &str) -> Result<()> {
        check_name(tube)?;
        line!(self, "tube-policy {tube}");
        Ok(())
    }

    /// `tube-policy <tube> <key> <value>` (sproutd): sets one policy setting
    /// (`max-reserves N`, `on-exhaust bury|delete|tube:NAME`,
    /// `retry-backoff none|fixed:S|exp:BASE,CAP`, `max-ready N`).
    pub fn set_tube_policy(&mut self, tube: &str, key: &str, value: &str) -> Result<()> {
        check_name(tube)?;
        for w in [key, value] {
            if w.is_empty() || !w.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Invalid(format!("{w:?}: not one word")));
            }
        }
        line!(self, "tube-policy {tube} {key} {value}");
        Ok(())
    }

    /// `auth <token>` (sproutd's token listeners).
    pub fn auth(&mut self, token: &str) -> Result<()> {
        crate::conn::check_token(token)?;
        line!(self, "auth {token}");
        Ok(())
    }
}

/// The reading side of a connection: [`Receiver::recv`] reads any reply; each `recv_*`
/// method reads the reply of the command of the same name and checks it. Replies are read
/// into one buffer, reused, so reading one allocates only what it returns (a body, a
/// name, a list).
pub struct Receiver {
    r: ReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

fn closed(mid_reply: bool) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        if mid_reply {
            "connection closed in the middle of a reply"
        } else {
            "connection closed by the server"
        },
    ))
}

impl Receiver {
    /// Reads the next reply, whatever it is. An error reply is `Ok(Response::Error(_))`
    /// here; an `Err` is a broken connection or bytes that are not the protocol.
    pub async fn recv(&mut self) -> Result<Response> {
        loop {
            if self.start < self.end {
                if let Some((r, n)) = reply::parse(&self.buf[self.start..self.end])? {
                    self.start += n;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    return Ok(r);
                }
            }
            self.make_room();
            let n = self.r.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(closed(self.start < self.end));
            }
            self.end += n;
        }
    }

    /// Moves what is left to the front, and grows the buffer when it is full.
    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }

    /// Whether a reply line is already here, so that `recv` will not wait for it (though
    /// it may for the data that follows).
    pub fn has_buffered_reply(&self) -> bool {
        reply::has_line(&self.buf[self.start..self.end])
    }

    /// True if anything is buffered; otherwise takes what the socket already holds,
    /// without waiting, and says whether that was anything. For callers that poll instead
    /// of sleeping until a reply comes.
    pub async fn try_fill(&mut self) -> Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        self.make_room();
        let Receiver { r, buf, end, .. } = self;
        let got = poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf[*end..]);
            match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(Some(rb.filled().len()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Ready(Ok(None)),
            }
        })
        .await?;
        match got {
            Some(0) => return Err(closed(self.start < self.end)),
            Some(n) => self.end += n,
            None => {}
        }
        Ok(self.start < self.end)
    }

    /// The next reply, `f`'s value for it; an error reply is [`Error::Server`], one `f`
    /// does not take [`Error::Unexpected`].
    async fn expect<T>(
        &mut self,
        command: &'static str,
        f: impl FnOnce(Response) -> Result<T, Response>,
    ) -> Result<T> {
        match self.recv().await? {
            Response::Error(e) => Err(Error::Server(e)),
            r => f(r).map_err(|r| Error::Unexpected {
                command,
                reply: r.to_string(),
            }),
        }
    }

    async fn unit(&mut self, command: &'static str, want: Response) -> Result<()> {
        self.expect(command, |r| if r == want { Ok(()) } else { Err(r) })
            .await
    }

    async fn job(&mut self, command: &'static str) -> Result<Job> {
        self.expect(command, |r| match r {
            Response::Reserved(j) => Ok(j),
            r => Err(r),
        })
        .await
    }

    async fn found(&mut self, command: &'static str) -> Result<Job> {
        self.expect(command, |r| match r {
            Response::Found(j) => Ok(j),
            r => Err(r),
        })
        .await
    }

    async fn data(&mut self, command: &'static str) -> Result<Vec<u8>> {
        self.expect(command, |r| match r {
            Response::Data(d) => Ok(d),
            r => Err(r),
        })
        .await
    }

    async fn count(&mut self, command: &'static str) -> Result<u64> {
        self.expect(command, |r| match r {
            Response::Watching(n) | Response::Kicked(n) | Response::Flushed(n) => Ok(n),
            r => Err(r),
        })
        .await
    }

    async fn using(&mut self, command: &'static str) -> Result<String> {
        self.expect(command, |r| match r {
            Response::Using(t) => Ok(t),
            r => Err(r),
        })
        .await
    }

    /// The reply to `put`.
    pub async fn recv_put(&mut self) -> Result<PutOutcome> {
        self.expect("put", |r| match r {
            Response::Inserted(id) => Ok(PutOutcome::Inserted(id)),
            Response::BuriedId(id) => Ok(PutOutcome::Buried(id)),
            r => Err(r),
        })
        .await
    }

    /// The reply to `use`: the tube now used.
    pub async fn recv_use_tube(&mut self) -> Result<String> {
        self.using("use").await
    }

    /// The reply to `reserve`: the job.
    pub async fn recv_reserve(&mut self) -> Result<Job> {
        self.job("reserve").await
    }

    /// The reply to `reserve-with-timeout`: the job, or `TIMED_OUT`.
    pub async fn recv_reserve_with_timeout(&mut self) -> Result<Job> {
        self.job("reserve-with-timeout").await
    }

    /// The reply to `reserve-job`.
    pub async fn recv_reserve_job(&mut self) -> Result<Job> {
        self.job("reserve-job").await
    }

    /// The reply to `delete`.
    pub async fn recv_delete(&mut self) -> Result<()> {
        self.unit("delete", Response::Deleted).await
    }

    /// The reply to `release`.
    pub async fn recv_release(&mut self) -> Result<ReleaseOutcome> {
        self.expect("release", |r| match r {
            Response::Released => Ok(ReleaseOutcome::Released),
            Response::Buried => Ok(ReleaseOutcome::Buried),
            r => Err(r),
        })
        .await
    }

    /// The reply to `bury`.
    pub async fn recv_bury(&mut self) -> Result<()> {
        self.unit("bury", Response::Buried).await
    }

    /// The reply to `touch`.
    pub async fn recv_touch(&mut self) -> Result<()> {
        self.unit("touch", Response::Touched).await
    }

    /// The reply to `watch`: how many tubes are watched now.
    pub async fn recv_watch(&mut self) -> Result<u64> {
        self.count("watch").await
    }

    /// The reply to `ignore`: how many tubes are watched now.
    pub async fn recv_ignore(&mut self) -> Result<u64> {
        self.count("ignore").await
    }

    /// The reply to `peek`.
    pub async fn recv_peek(&mut self) -> Result<Job> {
        self.found("peek").await
    }

    /// The reply to `peek-ready`.
    pub async fn recv_peek_ready(&mut self) -> Result<Job> {
        self.found("peek-ready").await
    }

    /// The reply to `peek-delayed`.
    pub async fn recv_peek_delayed(&mut self) -> Result<Job> {
        self.found("peek-delayed").await
    }

    /// The reply to `peek-buried`.
    pub async fn recv_peek_buried(&mut self) -> Result<Job> {
        self.found("peek-buried").await
    }

    /// The reply to `kick`: how many jobs were kicked.
    pub async fn recv_kick(&mut self) -> Result<u64> {
        self.count("kick").await
    }

    /// The reply to `kick-job`.
    pub async fn recv_kick_job(&mut self) -> Result<()> {
        self.unit("kick-job", Response::KickedJob).await
    }

    /// The reply to `stats-job`.
    pub async fn recv_stats_job(&mut self) -> Result<Stats> {
        Ok(Stats::parse(&self.data("stats-job").await?))
    }

    /// The reply to `stats-tube`.
    pub async fn recv_stats_tube(&mut self) -> Result<Stats> {
        Ok(Stats::parse(&self.data("stats-tube").await?))
    }

    /// The reply to `stats`.
    pub async fn recv_stats(&mut self) -> Result<Stats> {
        Ok(Stats::parse(&self.data("stats").await?))
    }

    /// The reply to `list-tubes`.
    pub async fn recv_list_tubes(&mut self) -> Result<Vec<String>> {
        Ok(stats::parse_list(&self.data("list-tubes").await?))
    }

    /// The reply to `list-tube-used`.
    pub async fn recv_list_tube_used(&mut self) -> Result<String> {
        self.using("list-tube-used").await
    }

    /// The reply to `list-tubes-watched`.
    pub async fn recv_list_tubes_watched(&mut self) -> Result<Vec<String>> {
        Ok(stats::parse_list(&self.data("list-tubes-watched").await?))
    }

    /// The reply to `pause-tube`.
    pub async fn recv_pause_tube(&mut self) -> Result<()> {
        self.unit("pause-tube", Response::Paused).await
    }

    /// The reply to `flush-tube`: how many jobs were deleted.
    pub async fn recv_flush_tube(&mut self) -> Result<u64> {
        self.count("flush-tube").await
    }

    /// The reply to `reserve-batch`: one to `max` jobs.
    pub async fn recv_reserve_batch(&mut self) -> Result<Vec<Job>> {
        self.expect("reserve-batch", |r| match r {
            Response::ReservedBatch(jobs) => Ok(jobs),
            r => Err(r),
        })
        .await
    }

    /// The reply to `list-jobs`: the ids.
    pub async fn recv_list_jobs(&mut self) -> Result<Vec<u64>> {
        Ok(stats::parse_ids(&self.data("list-jobs").await?))
    }

    /// The reply to `put-unique`.
    pub async fn recv_put_unique(&mut self) -> Result<UniqueOutcome> {
        self.expect("put-unique", |r| match r {
            Response::Inserted(id) => Ok(UniqueOutcome::Inserted(id)),
            Response::BuriedId(id) => Ok(UniqueOutcome::Buried(id)),
            Response::Exists(id) => Ok(UniqueOutcome::Exists(id)),
            r => Err(r),
        })
        .await
    }

    /// The reply to `reprioritize`.
    pub async fn recv_reprioritize(&mut self) -> Result<()> {
        self.unit("reprioritize", Response::Reprioritized).await
    }

    /// The reply to `move-job`.
    pub async fn recv_move_job(&mut self) -> Result<()> {
        self.unit("move-job", Response::Moved).await
    }

    /// The reply to reading `tube-policy`: the policy's settings.
    pub async fn recv_tube_policy(&mut self) -> Result<Stats> {
        Ok(Stats::parse(&self.data("tube-policy").await?))
    }

    /// The reply to setting `tube-policy`.
    pub async fn recv_set_tube_policy(&mut self) -> Result<()> {
        self.unit("tube-policy", Response::Ok).await
    }

    /// The reply to `auth`.
    pub async fn recv_auth(&mut self) -> Result<()> {
        self.unit("auth", Response::Authenticated).await
    }
}

/// One connection to a beanstalkd or sproutd server.
///
/// Each command method sends one command and reads its reply. To pipeline, queue
/// commands on the [`Sender`] and read their replies from the [`Receiver`] (both from
/// [`Client::parts`], or [`Client::into_split`] for two tasks):
///
/// ```no_run
/// # async fn run() -> Result<(), sprout_client::Error> {
/// let mut c = sprout_client::Client::connect("127.0.0.1:11300").await?;
/// let (tx, rx) = c.parts();
/// for i in 0..100u32 {
///     tx.put(i, 0, 60, b"job")?;
/// }
/// tx.flush().await?; // one write for all 100
/// for _ in 0..100 {
///     rx.recv_put().await?;
/// }
/// # Ok(()) }
/// ```
pub struct Client {
    tx: Sender,
    rx: Receiver,
}

/// The one-command methods of [`Client`]: each queues the command on the [`Sender`],
/// flushes, and reads the reply with the [`Receiver`]'s `recv_` method of the same name.
macro_rules! commands {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty = $recv:ident;)*) => {
        impl Client {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$out> {
                    self.tx.$name($($arg),*)?;
                    self.tx.flush().await?;
                    self.rx.$recv().await
                }
            )*
        }
    };
}

commands! {
    /// `put`: a job with priority `pri` (0 is most urgent), `delay` and `ttr` in
    /// seconds, in the used tube.
    fn put(pri: u32, delay: u32, ttr: u32, body: &[u8]) -> PutOutcome = recv_put;
    /// `use`: the tube `put` puts jobs in; returns its name.
    fn use_tube(tube: &str) -> String = recv_use_tube;
    /// `reserve`: waits as long as it takes for a job from the watched tubes.
    /// `DEADLINE_SOON` is [`ServerError::DeadlineSoon`](crate::ServerError).
    fn reserve() -> Job = recv_reserve;
    /// `reserve-with-timeout`: waits up to `secs` seconds; `TIMED_OUT` is
    /// [`ServerError::TimedOut`](crate::ServerError).
    fn reserve_with_timeout(secs: u32) -> Job = recv_reserve_with_timeout;
    /// `reserve-job`: reserves the job with this id.
    fn reserve_job(id: u64) -> Job = recv_reserve_job;
    /// `delete`.
    fn delete(id: u64) -> () = recv_delete;
    /// `release`: gives a reserved job back, with a new priority and a delay.
    fn release(id: u64, pri: u32, delay: u32) -> ReleaseOutcome = recv_release;
    /// `bury`.
    fn bury(id: u64, pri: u32) -> () = recv_bury;
    /// `touch`: restarts a reserved job's time-to-run.
    fn touch(id: u64) -> () = recv_touch;
    /// `watch`: returns how many tubes are watched.
    fn watch(tube: &str) -> u64 = recv_watch;
    /// `ignore`: returns how many tubes are watched; ignoring the last one is
    /// [`ServerError::NotIgnored`](crate::ServerError).
    fn ignore(tube: &str) -> u64 = recv_ignore;
    /// `peek`.
    fn peek(id: u64) -> Job = recv_peek;
    /// `peek-ready`.
    fn peek_ready() -> Job = recv_peek_ready;
    /// `peek-delayed`.
    fn peek_delayed() -> Job = recv_peek_delayed;
    /// `peek-buried`.
    fn peek_buried() -> Job = recv_peek_buried;
    /// `kick`: returns how many jobs were kicked.
    fn kick(bound: u32) -> u64 = recv_kick;
    /// `kick-job`.
    fn kick_job(id: u64) -> () = recv_kick_job;
    /// `stats-job`.
    fn stats_job(id: u64) -> Stats = recv_stats_job;
    /// `stats-tube`.
    fn stats_tube(tube: &str) -> Stats = recv_stats_tube;
    /// `stats`.
    fn stats() -> Stats = recv_stats;
    /// `list-tubes`.
    fn list_tubes() -> Vec<String> = recv_list_tubes;
    /// `list-tube-used`.
    fn list_tube_used() -> String = recv_list_tube_used;
    /// `list-tubes-watched`.
    fn list_tubes_watched() -> Vec<String> = recv_list_tubes_watched;
    /// `pause-tube`: no reserves from the tube for `secs` seconds.
    fn pause_tube(tube: &str, secs: u32) -> () = recv_pause_tube;
    /// `flush-tube` (sproutd): returns how many jobs were deleted.
    fn flush_tube(tube: &str) -> u64 = recv_flush_tube;
    /// `reserve-batch` (sproutd): 1 to `max` jobs, waiting up to `timeout` seconds.
    fn reserve_batch(max: u32, timeout: u32) -> Vec<Job> = recv_reserve_batch;
    /// `list-jobs` (sproutd): ids of the tube's jobs in `state` above `after`, at most
    /// `limit` of them, in order.
    fn list_jobs(tube: &str, state: JobState, after: u64, limit: u32) -> Vec<u64> = recv_list_jobs;
    /// `put-unique` (sproutd): a job unless one with `key` exists.
    fn put_unique(key: &str, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> UniqueOutcome = recv_put_unique;
    /// `reprioritize` (sproutd).
    fn reprioritize(id: u64, pri: u32) -> () = recv_reprioritize;
    /// `move-job` (sproutd).
    fn move_job(id: u64, tube: &str) -> () = recv_move_job;
    /// `tube-policy <tube>` (sproutd): the tube's policy.
    fn tube_policy(tube: &str) -> Stats = recv_tube_policy;
    /// `tube-policy <tube> <key> <value>` (sproutd): sets one setting.
    fn set_tube_policy(tube: &str, key: &str, value: &str) -> () = recv_set_tube_policy;
    /// `auth` (sproutd's token listeners; [`Connector::token`] sends it on connecting).
    fn auth(token: &str) -> () = recv_auth;
}

impl Client {
    pub(crate) fn new(s: Stream) -> Client {
        let (r, w) = s.split();
        Client {
            tx: Sender {
                w,
                buf: Vec::with_capacity(4096),
            },
            rx: Receiver {
                r,
                buf: vec![0; READ_BUF],
                start: 0,
                end: 0,
            },
        }
    }

    /// Connects to `addr` (`HOST:PORT`, `HOST`, or `unix:/path`), plain, no token. See
    /// [`Connector`] for TLS, tokens and a time limit.
    pub async fn connect(addr: &str) -> Result<Client> {
        Connector::new(addr).connect().await
    }

    /// Sends a raw command line and reads its reply, whatever it is (an error reply is
    /// `Ok(Response::Error(_))`).
    pub async fn command(&mut self, line: &str) -> Result<Response> {
        self.tx.command(line)?;
        self.tx.flush().await?;
        self.rx.recv().await
    }

    /// The two sides, to pipeline: queue commands on the sender, flush, read the replies.
    pub fn parts(&mut self) -> (&mut Sender, &mut Receiver) {
        (&mut self.tx, &mut self.rx)
    }

    /// The two sides, owned, for use from two tasks.
    pub fn into_split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// `quit`, and closes the connection.
    pub async fn quit(mut self) -> Result<()> {
        self.tx.quit()?;
        self.tx.shutdown().await
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("queued", &self.buf.len())
            .finish()
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("buffered", &(self.end - self.start))
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}
