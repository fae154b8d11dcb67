//! A minimal asynchronous beanstalkd-protocol client for the load generator. Every reply
//! is read completely and checked by the caller.

use std::io;

use std::future::Future;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf,
    WriteHalf,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::conn::{self, AsyncStream, Target};

/// How long connecting (with the TLS handshake and `auth`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Client`] reaches the server. The load generator is generic over it, so that a
/// plain TCP connection is driven through tokio's own socket halves, with no dispatch on
/// the connection type in the hot path.
pub(crate) trait Transport: Send + Sync + 'static {
    type R: AsyncRead + Unpin + Send + 'static;
    type W: AsyncWrite + Unpin + Send + 'static;
    /// Whether a write must be flushed (TLS buffers its last record).
    const FLUSH: bool;
    fn open(t: &Target) -> impl Future<Output = io::Result<(Self::R, Self::W)>> + Send;
}

/// Plain TCP: the socket's owned halves.
pub(crate) struct Plain;

impl Transport for Plain {
    type R = OwnedReadHalf;
    type W = OwnedWriteHalf;
    const FLUSH: bool = false;

    async fn open(t: &Target) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        match conn::connect_async(t, CONNECT_TIMEOUT).await? {
            AsyncStream::Tcp(s) => Ok(s.into_split()),
            _ => Err(bad(format!("{}: not a plain TCP address", t.addr))),
        }
    }
}

/// Anything else (TLS, a token, a unix socket): the connection layer's stream, split.
pub(crate) struct Secured;

impl Transport for Secured {
    type R = ReadHalf<AsyncStream>;
    type W = WriteHalf<AsyncStream>;
    const FLUSH: bool = true;

    async fn open(t: &Target) -> io::Result<(Self::R, Self::W)> {
        Ok(tokio::io::split(
            conn::connect_async(t, CONNECT_TIMEOUT).await?,
        ))
    }
}

/// Whether `t` is reached by [`Plain`].
pub(crate) fn is_plain(t: &Target) -> bool {
    !t.is_tls() && !t.has_token() && !t.addr.starts_with("unix:")
}

/// One reply: its first line (without CRLF) and, for replies that carry data, the data.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) head: String,
    pub(crate) body: Option<Vec<u8>>,
}

pub(crate) fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Reply {
    /// `INSERTED <id>` → id.
    pub(crate) fn inserted(&self) -> io::Result<u64> {
        self.head
            .strip_prefix("INSERTED ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("expected INSERTED, got {:?}", self.head)))
    }

    /// `RESERVED <id> <n>` + body → (id, body).
    pub(crate) fn reserved(&self) -> io::Result<(u64, &[u8])> {
        let id = self
            .head
            .strip_prefix("RESERVED ")
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok());
        match (id, &self.body) {
            (Some(id), Some(b)) => Ok((id, b)),
            _ => Err(bad(format!("expected RESERVED, got {:?}", self.head))),
        }
    }

    pub(crate) fn expect(&self, want: &str) -> io::Result<()> {
        if self.head == want {
            Ok(())
        } else {
            Err(bad(format!("expected {want}, got {:?}", self.head)))
        }
    }
}

/// One connection.
pub(crate) struct Client<T: Transport> {
    rd: BufReader<T::R>,
    wr: T::W,
    wbuf: Vec<u8>,
    line: String,
}

impl<T: Transport> Client<T> {
    pub(crate) async fn connect(t: &Target) -> io::Result<Client<T>> {
        let (r, w) = T::open(t).await?;
        Ok(Client {
            rd: BufReader::with_capacity(64 * 1024, r),
            wr: w,
            wbuf: Vec::with_capacity(4096),
            line: String::new(),
        })
    }

    /// Closes the connection (TLS: with close_notify).
    pub(crate) async fn shutdown(mut self) -> io::Result<()> {
        self.wr.shutdown().await
    }

    /// Queues a raw command line (CRLF added).
    pub(crate) fn queue(&mut self, line: &str) {
        self.wbuf.extend_from_slice(line.as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
    }

    pub(crate) fn queue_put(&mut self, pri: u32, ttr: u32, body: &[u8]) {
        use std::io::Write;
        let _ = write!(self.wbuf, "put {pri} 0 {ttr} {}\r\n", body.len());
        self.wbuf.extend_from_slice(body);
        self.wbuf.extend_from_slice(b"\r\n");
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.wr.write_all(&self.wbuf).await?;
        if T::FLUSH {
            self.wr.flush().await?;
        }
        self.wbuf.clear();
        Ok(())
    }

    /// True if a complete reply line is already buffered (reading it will not wait).
    pub(crate) fn has_buffered_line(&self) -> bool {
        self.rd.buffer().windows(2).any(|w| w == b"\r\n")
    }

    /// Busy-waits (yielding to the runtime, which then polls for I/O without sleeping)
    /// until a reply is buffered, for at most `limit`.
    pub(crate) async fn spin_for_reply(&mut self, limit: std::time::Duration) {
        use tokio::io::AsyncBufRead;
        let t0 = std::time::Instant::now();
        while self.rd.buffer().is_empty() && t0.elapsed() < limit {
            let rd = &mut self.rd;
            let got = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::pin::Pin::new(&mut *rd).poll_fill_buf(cx).is_ready())
            })
            .await;
            if got {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    pub(crate) async fn read(&mut self) -> io::Result<Reply> {
        self.line.clear();
        let n = self.rd.read_line(&mut self.line).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let head = self
            .line
            .strip_suffix("\r\n")
            .ok_or_else(|| bad(format!("reply without CRLF: {:?}", self.line)))?
            .to_string();
        let len = if let Some(rest) = head.strip_prefix("OK ") {
            Some(rest)
        } else if head.starts_with("RESERVED ") || head.starts_with("FOUND ") {
            head.rsplit(' ').next()
        } else {
            None
        };
        let body = match len {
            Some(n) => {
                let n: usize = n
                    .parse()
                    .map_err(|_| bad(format!("bad length in {head:?}")))?;
                let mut b = vec![0; n + 2];
                self.rd.read_exact(&mut b).await?;
                if b[n..] != *b"\r\n" {
                    return Err(bad(format!("data of {head:?} not followed by CRLF")));
                }
                b.truncate(n);
                Some(b)
            }
            None => None,
        };
        Ok(Reply { head, body })
    }

    /// Sends one command and reads its reply.
    pub(crate) async fn call(&mut self, line: &str) -> io::Result<Reply> {
        self.queue(line);
        self.flush().await?;
        self.read().await
    }
}
