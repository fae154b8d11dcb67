//! The worker's connection, through the `sprout-client` crate: connect (TCP or unix
//! socket, TLS, `auth`), set it up (watch the tubes, read their policies), then split it:
//! a task reads every reply with the [`Receiver`] and hands it to the event loop, while
//! the loop writes the commands with the [`Sender`]. Replies are self-describing, so the
//! reader needs no knowledge of what was sent.

use std::io;
use std::time::Duration;

use sprout_client::{Receiver, Response, Sender, Stats};

use crate::conn::Target;

/// How long connecting may take (per address; then the TLS handshake and `auth`).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a command (beyond a reserve's own timeout)
/// before the connection is considered dead.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Reader = Receiver;
pub(super) type Writer = Sender;

/// One reply, as the event loop looks at it: its first line, the data of `OK`/`FOUND`,
/// and the jobs of `RESERVED` (one) or `RESERVED_BATCH` (k).
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

    fn from(r: Response) -> Reply {
        let head = r.to_string();
        let (data, jobs) = match r {
            Response::Found(j) => (Some(j.body), vec![]),
            Response::Data(d) => (Some(d), vec![]),
            Response::Reserved(j) => (None, vec![(j.id, j.body)]),
            Response::ReservedBatch(js) => (None, js.into_iter().map(|j| (j.id, j.body)).collect()),
            _ => (None, vec![]),
        };
        Reply { head, data, jobs }
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
    Io(sprout_client::Error),
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

impl From<sprout_client::Error> for SessionError {
    fn from(e: sprout_client::Error) -> Self {
        SessionError::Io(e)
    }
}

/// Reads one reply.
pub(super) async fn read_reply(rd: &mut Reader) -> io::Result<Reply> {
    Ok(Reply::from(rd.recv().await?))
}

/// Sends `line` and reads the reply, for the setup (before the reader task runs).
async fn call(c: &mut sprout_client::Client, line: &str) -> sprout_client::Result<Reply> {
    tokio::time::timeout(REPLY_TIMEOUT, c.command(line))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply to {line:?} within {REPLY_TIMEOUT:?}"),
            )
            .into())
        })
        .map(Reply::from)
}

/// Connects and sets up a worker's connection: watches `tubes` (and ignores `default`
/// unless it is one of them); with `policies`, also asks for each tube's policy.
pub(super) async fn open(
    target: &Target,
    tubes: &[String],
    policies: bool,
) -> Result<Session, SessionError> {
    let mut c = target.connector(CONNECT_TIMEOUT).connect().await?;
    for t in tubes {
        let r = call(&mut c, &format!("watch {t}")).await?;
        if r.word() != "WATCHING" {
            return Err(SessionError::Refused(format!(
                "watch {t}: server replied {}",
                r.head
            )));
        }
    }
    if !tubes.iter().any(|t| t == "default") {
        let r = call(&mut c, "ignore default").await?;
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
            let r = call(&mut c, &format!("tube-policy {t}")).await?;
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
    let (wr, rd) = c.into_split();
    Ok(Session {
        reader: rd,
        writer: wr,
        policies: found,
    })
}

/// The keys of a `tube-policy` YAML reply that the worker looks at. A policy that is all
/// defaults (`max-reserves: 0`, `retry-backoff: none`) comes out as `Policy::default()`.
fn parse_policy(data: &[u8]) -> Policy {
    let st = Stats::parse(data);
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
