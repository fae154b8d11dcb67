//! The admin CLI's connection: the `sprout-client` crate's blocking front
//! (`sprout_client::blocking`: the async client on a current-thread runtime of its own;
//! the subcommands run one command at a time, and `top` and the output code stay plain
//! blocking code), with a time limit on every exchange; and the CLI's error type with its
//! exit codes.

use std::fmt;
use std::io;
use std::time::Duration;

use sprout_client::{Response, Stats};

use crate::conn::{self, AuthError, Target};

/// How long a connection attempt may take (per resolved address).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer one command.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit status when the server refuses the token, or wants one that was not given.
pub const EXIT_UNAUTHORIZED: u8 = 3;
/// A token listener's reply to a wrong token, or to a command before `auth`.
const UNAUTHORIZED: &str = "UNAUTHORIZED";

/// Everything that can go wrong in a CLI command, with its exit code.
#[derive(Debug)]
pub enum Error {
    /// The server could not be reached (exit 2).
    Connect { addr: String, err: io::Error },
    /// The connection failed after it was made: reset, closed, timed out, or the server
    /// sent something that is not the protocol (exit 2).
    Io { addr: String, err: io::Error },
    /// `auth` failed right after connecting: the token was refused (exit 3), or the
    /// listener takes no tokens (exit 1).
    Auth { addr: String, err: AuthError },
    /// The server answered `cmd` with an error or unexpected reply (exit 1; exit 3 for
    /// `UNAUTHORIZED`, the reply of a token listener to a connection without a token).
    Server { cmd: String, reply: String },
    /// The server does not have `cmd`, one of sproutd's own commands (beanstalkd and
    /// `sproutd --strict` answer UNKNOWN_COMMAND or BAD_FORMAT) (exit 1).
    Unsupported {
        addr: String,
        cmd: String,
        reply: String,
    },
    /// A local problem: bad argument, unreadable file, no terminal (exit 1).
    Local(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Connect { .. } | Error::Io { .. } => 2,
            Error::Auth {
                err: AuthError::Refused,
                ..
            } => EXIT_UNAUTHORIZED,
            Error::Server { reply, .. } if reply == UNAUTHORIZED => EXIT_UNAUTHORIZED,
            Error::Auth { .. }
            | Error::Server { .. }
            | Error::Unsupported { .. }
            | Error::Local(_) => 1,
        }
    }

    /// A server error for `cmd`, given its reply line.
    pub(crate) fn server(cmd: &str, reply: &str) -> Error {
        Error::Server {
            cmd: cmd.to_string(),
            reply: reply.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, err } => write!(f, "cannot connect to {addr}: {err}"),
            Error::Io { addr, err } => write!(f, "connection to {addr} failed: {err}"),
            Error::Auth { addr, err } => write!(f, "{addr}: {err}"),
            Error::Server { cmd, reply } if reply == UNAUTHORIZED => write!(
                f,
                "{cmd}: server replied {reply}: this listener wants a token first (--token \
                 or SPROUT_TOKEN)"
            ),
            Error::Server { cmd, reply } => write!(f, "{cmd}: server replied {reply}"),
            Error::Unsupported { addr, cmd, reply } => write!(
                f,
                "the server at {addr} does not support {cmd} (it replied {reply}): {cmd} is \
                 one of sproutd's own commands, which beanstalkd and sproutd --strict lack"
            ),
            Error::Local(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) type Result<T> = std::result::Result<T, Error>;

/// One reply: its first line (without CRLF) and, for `OK`, `FOUND` and `RESERVED`, its
/// data block (without the trailing CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) head: String,
    pub(crate) body: Option<Vec<u8>>,
}

impl Reply {
    /// The head's words.
    pub(crate) fn words(&self) -> Vec<&str> {
        self.head.split(' ').collect()
    }

    /// The reply of a server that does not have the command sent: UNKNOWN_COMMAND, or
    /// BAD_FORMAT (beanstalkd reads some unknown lines as a known command's prefix, e.g.
    /// `reserve-batch` as `reserve` with trailing bytes). Only meaningful for sproutd's own
    /// commands sent with valid arguments.
    pub(crate) fn unsupported(&self) -> bool {
        self.head == "UNKNOWN_COMMAND" || self.head == "BAD_FORMAT"
    }

    /// `WORD <n>` → n, when the head starts with `word`.
    pub(crate) fn number_after(&self, word: &str) -> Option<u64> {
        let w = self.words();
        if w.len() >= 2 && w[0] == word {
            w[1].parse().ok()
        } else {
            None
        }
    }
}

impl Reply {
    fn from(r: Response) -> Reply {
        let head = r.to_string();
        let body = match r {
            Response::Reserved(j) | Response::Found(j) => Some(j.body),
            Response::Data(d) => Some(d),
            _ => None,
        };
        Reply { head, body }
    }
}

pub(crate) struct Client {
    c: sprout_client::blocking::Client,
    addr: String,
}

/// A client error as an I/O error, for [`Error::Io`].
fn io_error(e: sprout_client::Error) -> io::Error {
    match e {
        sprout_client::Error::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl Client {
    pub(crate) fn connect(t: &Target) -> Result<Client> {
        let addr = t.addr.clone();
        let mut c = sprout_client::blocking::Client::connect_with(&t.connector(CONNECT_TIMEOUT))
            .map_err(|err| match conn::auth_failure(&err) {
                Some(a) => Error::Auth {
                    addr: addr.clone(),
                    err: a,
                },
                None => Error::Connect {
                    addr: addr.clone(),
                    err: io_error(err),
                },
            })?;
        c.set_limit(IO_TIMEOUT);
        Ok(Client { c, addr })
    }

    /// How long the server may take to answer each command from now on.
    pub(crate) fn set_limit(&mut self, limit: Duration) {
        self.c.set_limit(limit);
    }

    /// [`Error::Unsupported`] for `cmd` (its name) answered by `reply`.
    pub(crate) fn unsupported(&self, cmd: &str, reply: &Reply) -> Error {
        Error::Unsupported {
            addr: self.addr.clone(),
            cmd: cmd.to_string(),
            reply: reply.head.clone(),
        }
    }

    /// Runs one exchange on the connection, within [`IO_TIMEOUT`].
    fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut sprout_client::Client) -> sprout_client::Result<T>,
    ) -> Result<T> {
        match self.c.run(f) {
            Ok(v) => Ok(v),
            Err(sprout_client::Error::Invalid(m)) => Err(Error::Local(m)),
            Err(e) => Err(Error::Io {
                addr: self.addr.clone(),
                err: io_error(e),
            }),
        }
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub(crate) fn call(&mut self, line: &str) -> Result<Reply> {
        self.run(async |c| c.command(line).await).map(Reply::from)
    }

    /// Sends `line`; the reply must be exactly `want`, else it is a server error.
    pub(crate) fn expect(&mut self, line: &str, want: &str) -> Result<()> {
        let r = self.call(line)?;
        if r.head == want {
            Ok(())
        } else {
            Err(Error::server(line, &r.head))
        }
    }

    /// Sends a command answered with `OK <n>` + data, and returns the data.
    pub(crate) fn ok_data(&mut self, line: &str) -> Result<Vec<u8>> {
        let r = self.call(line)?;
        match r.body {
            Some(b) if r.head.starts_with("OK ") => Ok(b),
            _ => Err(Error::server(line, &r.head)),
        }
    }

    /// `stats`, `stats-tube T` or `stats-job ID`, parsed.
    pub fn stats(&mut self, line: &str) -> Result<Stats> {
        let data = self.ok_data(line)?;
        Ok(Stats::parse(&data))
    }

    /// `list-tubes` and friends, parsed.
    pub(crate) fn list(&mut self, line: &str) -> Result<Vec<String>> {
        let data = self.ok_data(line)?;
        Ok(sprout_client::parse_list(&data))
    }

    /// `use TUBE`.
    pub(crate) fn use_tube(&mut self, tube: &str) -> Result<()> {
        self.expect(&format!("use {tube}"), &format!("USING {tube}"))
    }

    /// Sends what `queue` queues and reads one reply.
    fn queued_call(
        &mut self,
        queue: impl FnOnce(&mut sprout_client::Sender) -> sprout_client::Result<()>,
    ) -> Result<Reply> {
        self.run(async |c| {
            let (tx, rx) = c.parts();
            queue(tx)?;
            tx.flush().await?;
            rx.recv().await
        })
        .map(Reply::from)
    }

    /// `put`; returns the reply (INSERTED, BURIED, JOB_TOO_BIG, ...).
    pub fn put(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> Result<Reply> {
        self.queued_call(|tx| tx.put(pri, delay, ttr, body))
    }

    /// `put-unique KEY ...` (sproutd's own command); returns the reply (INSERTED, EXISTS,
    /// BURIED, JOB_TOO_BIG, ...). Only for a server known to have it: another server would
    /// read the body as commands.
    pub fn put_unique(
        &mut self,
        key: &str,
        pri: u32,
        delay: u32,
        ttr: u32,
        body: &[u8],
    ) -> Result<Reply> {
        self.queued_call(|tx| tx.put_unique(key, pri, delay, ttr, body))
    }

    /// Sends every line in `lines` at once (in batches, so neither side's socket buffer
    /// fills up) and returns the replies in order.
    pub(crate) fn batch(&mut self, lines: &[String]) -> Result<Vec<Reply>> {
        let mut out = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(64) {
            let replies = self.run(async |c| {
                let (tx, rx) = c.parts();
                for l in chunk {
                    tx.command(l)?;
                }
                tx.flush().await?;
                let mut v = Vec::with_capacity(chunk.len());
                for _ in chunk {
                    v.push(rx.recv().await?);
                }
                Ok(v)
            })?;
            out.extend(replies.into_iter().map(Reply::from));
        }
        Ok(out)
    }
}

/// Checks a `put-unique` key the way the server does (the rules of a tube name).
pub fn check_key(s: &str) -> std::result::Result<String, String> {
    checked("key", s)
}

/// Checks a tube name the way the server does (1..=200 name bytes, not starting with
/// '-'), so a name can never smuggle a second command onto the line.
pub fn check_tube_name(s: &str) -> std::result::Result<String, String> {
    checked("tube name", s)
}

fn checked(what: &str, s: &str) -> std::result::Result<String, String> {
    match sprout_client::check_name(s) {
        Ok(()) => Ok(s.to_string()),
        Err(_) => Err(format!(
            "invalid {what} {s:?}: 1 to {} of A-Z a-z 0-9 - + / ; . $ _ ( ), not starting \
             with '-'",
            sprout_client::MAX_NAME
        )),
    }
}
