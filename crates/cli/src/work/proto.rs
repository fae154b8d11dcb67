//! The worker's connection: connect (TCP or unix socket), set it up (watch the tubes,
//! read their policies), then a task reads every reply and hands it to the event loop,
//! while the loop writes the commands. Replies are self-describing (`RESERVED`, `FOUND`
//! and `OK` carry their length; `RESERVED_BATCH <k>` is followed by k `RESERVED`), so
//! the reader needs no knowledge of what was sent.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::conn::{self, AsyncStream, Target};

/// How long connecting may take (per address; then the TLS handshake and `auth`).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a command (beyond a reserve's own timeout)
/// before the connection is considered dead.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most jobs a `RESERVED_BATCH` may announce (the server's own limit).
const MAX_BATCH: u64 = 1000;

pub(super) type Reader = BufReader<Box<dyn AsyncRead + Send + Unpin>>;
pub(super) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One reply: its first line, the data of `OK`/`FOUND`, and the jobs of `RESERVED` (one)
/// or `RESERVED_BATCH` (k).
#[derive(Debug, Default)]
pub(super) struct Reply {
    pub head: String,
    pub data: Option<Vec<u8>>,
    pub jobs: Vec<(u64, Vec<u8>)>,
}

impl Reply {
    pub(super) fn word(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }
}

/// A tube's policy, as far as the worker cares (`tube-policy <tube>` on sproutd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Policy {
    pub max_reserves: u64,
    pub on_exhaust: String,
    pub retry_backoff: String,
}

/// A connection, set up.
pub(super) struct Session {
    pub reader: Reader,
    pub writer: Writer,
    /// Per watched tube, its policy when it has one. `None` when the server has no
    /// tube policies (beanstalkd, sproutd --strict) or they were not asked for.
    pub policies: Option<Vec<(String, Policy)>>,
}

/// Why a session could not be opened.
#[derive(Debug)]
pub(super) enum SessionError {
    /// Connecting or talking failed.
    Io(io::Error),
    /// The server answered the setup with an error.
    Refused(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Io(e) => e.fmt(f),
            SessionError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        SessionError::Io(e)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Connects to `target` (TLS and `auth` included). A plain socket is split into its
/// owned halves; TLS, which reads and writes one session, through `tokio::io::split`.
async fn connect(target: &Target) -> io::Result<(Reader, Writer)> {
    fn halves(
        r: impl AsyncRead + Send + Unpin + 'static,
        w: impl AsyncWrite + Send + Unpin + 'static,
    ) -> (Reader, Writer) {
        (
            BufReader::with_capacity(64 * 1024, Box::new(r)),
            Box::new(w),
        )
    }
    Ok(match conn::connect_async(target, CONNECT_TIMEOUT).await? {
        AsyncStream::Tcp(s) => {
            let (r, w) = s.into_split();
            halves(r, w)
        }
        AsyncStream::Unix(s) => {
            let (r, w) = s.into_split();
            halves(r, w)
        }
        tls @ AsyncStream::Tls(_) => {
            let (r, w) = tokio::io::split(tls);
            halves(r, w)
        }
    })
}

/// Reads one reply.
pub(super) async fn read_reply(rd: &mut Reader) -> io::Result<Reply> {
    let head = read_line(rd).await?;
    let w: Vec<&str> = head.split(' ').collect();
    let mut reply = Reply::default();
    match (w[0], w.len()) {
        ("OK", 2) => reply.data = Some(read_data(rd, w[1]).await?),
        ("FOUND", 3) => reply.data = Some(read_data(rd, w[2]).await?),
        ("RESERVED", 3) => {
            let id = parse_id(w[1])?;
            reply.jobs.push((id, read_data(rd, w[2]).await?));
        }
        ("RESERVED_BATCH", 2) => {
            let k: u64 = w[1]
                .parse()
                .ok()
                .filter(|&k| k <= MAX_BATCH)
                .ok_or_else(|| invalid(format!("bad reply {head:?}")))?;
            for _ in 0..k {
                let line = read_line(rd).await?;
                let v: Vec<&str> = line.split(' ').collect();
                if v.len() != 3 || v[0] != "RESERVED" {
                    return Err(invalid(format!(
                        "expected RESERVED in a batch, got {line:?}"
                    )));
                }
                let id = parse_id(v[1])?;
                reply.jobs.push((id, read_data(rd, v[2]).await?));
            }
        }
        _ => {}
    }
    reply.head = head;
    Ok(reply)
}

fn parse_id(s: &str) -> io::Result<u64> {
    s.parse().map_err(|_| invalid(format!("bad job id {s:?}")))
}

async fn read_line(rd: &mut Reader) -> io::Result<String> {
    let mut line = Vec::new();
    // Reply lines are short: a longer one means this is not a beanstalkd server.
    (&mut *rd).take(4096).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid(format!(
            "reply line not terminated by CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| invalid("reply is not text".into()))
}

async fn read_data(rd: &mut Reader, len: &str) -> io::Result<Vec<u8>> {
    let n: u64 = len
        .parse()
        .map_err(|_| invalid(format!("bad data length {len:?}")))?;
    let mut data = Vec::new();
    // `take` + `read_to_end` grows the buffer as data comes, so a bogus length cannot
    // make us allocate it up front.
    (&mut *rd)
        .take(n.saturating_add(2))
        .read_to_end(&mut data)
        .await?;
    if data.len() as u64 != n.saturating_add(2) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed in the middle of a reply",
        ));
    }
    if !data.ends_with(b"\r\n") {
        return Err(invalid("data not followed by CRLF".into()));
    }
    data.truncate(data.len() - 2);
    Ok(data)
}

/// Sends `line` + CRLF and reads the reply, for the setup (before the reader task runs).
async fn call(rd: &mut Reader, wr: &mut Writer, line: &str) -> io::Result<Reply> {
    let exchange = async {
        wr.write_all(format!("{line}\r\n").as_bytes()).await?;
        read_reply(rd).await
    };
    tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply to {line:?} within {REPLY_TIMEOUT:?}"),
            ))
        })
}

/// Connects and sets up a worker's connection: watches `tubes` (and ignores `default`
/// unless it is one of them); with `policies`, also asks for each tube's policy.
pub(super) async fn open(
    target: &Target,
    tubes: &[String],
    policies: bool,
) -> Result<Session, SessionError> {
    let (mut rd, mut wr) = connect(target).await?;
    for t in tubes {
        let r = call(&mut rd, &mut wr, &format!("watch {t}")).await?;
        if r.word() != "WATCHING" {
            return Err(SessionError::Refused(format!(
                "watch {t}: server replied {}",
                r.head
            )));
        }
    }
    if !tubes.iter().any(|t| t == "default") {
        let r = call(&mut rd, &mut wr, "ignore default").await?;
        if r.word() != "WATCHING" {
            return Err(SessionError::Refused(format!(
                "ignore default: server replied {}",
                r.head
            )));
        }
    }
    let mut found = None;
    if policies {
        let mut list = Vec::new();
        let mut supported = true;
        for t in tubes {
            let r = call(&mut rd, &mut wr, &format!("tube-policy {t}")).await?;
            match (r.word(), &r.data) {
                ("OK", Some(data)) => {
                    let p = parse_policy(data);
                    if p != Policy::default() {
                        list.push((t.clone(), p));
                    }
                }
                ("NOT_FOUND", _) => {}
                // beanstalkd, or sproutd --strict: no policies.
                _ => {
                    supported = false;
                    break;
                }
            }
        }
        if supported {
            found = Some(list);
        }
    }
    Ok(Session {
        reader: rd,
        writer: wr,
        policies: found,
    })
}

/// The keys of a `tube-policy` YAML reply that the worker looks at. A policy that is all
/// defaults (`max-reserves: 0`, `retry-backoff: none`) comes out as `Policy::default()`.
fn parse_policy(data: &[u8]) -> Policy {
    let st = crate::cli::yaml::Stats::parse(data);
    let mut p = Policy {
        max_reserves: st.num("max-reserves"),
        on_exhaust: st.get("on-exhaust").unwrap_or("bury").to_string(),
        retry_backoff: st.get("retry-backoff").unwrap_or("none").to_string(),
    };
    if p.max_reserves == 0 && p.retry_backoff == "none" {
        p = Policy::default();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_yaml() {
        let p = parse_policy(
            b"---\nmax-reserves: 3\non-exhaust: tube:dead\nretry-backoff: exp:2,60\nmax-ready: 0\n",
        );
        assert_eq!(
            p,
            Policy {
                max_reserves: 3,
                on_exhaust: "tube:dead".into(),
                retry_backoff: "exp:2,60".into()
            }
        );
        let none = parse_policy(
            b"---\nmax-reserves: 0\non-exhaust: bury\nretry-backoff: none\nmax-ready: 5\n",
        );
        assert_eq!(none, Policy::default());
    }
}
