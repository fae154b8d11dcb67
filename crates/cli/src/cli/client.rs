//! A small blocking beanstalkd-protocol client for the admin CLI: one connection, one
//! command at a time (or a small batch), timeouts on every read and write.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use super::yaml::Stats;
use crate::conn::{self, AuthError, Stream, Target};

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

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

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

pub(crate) struct Client {
    rd: BufReader<Stream>,
    addr: String,
}

impl Client {
    pub(crate) fn connect(t: &Target) -> Result<Client> {
        let addr = t.addr.clone();
        let s = conn::connect(t, CONNECT_TIMEOUT, IO_TIMEOUT).map_err(
            |err| match conn::auth_error(&err) {
                Some(a) => Error::Auth {
                    addr: addr.clone(),
                    err: a.clone(),
                },
                None => Error::Connect {
                    addr: addr.clone(),
                    err,
                },
            },
        )?;
        Ok(Client {
            rd: BufReader::with_capacity(64 * 1024, s),
            addr,
        })
    }

    /// [`Error::Unsupported`] for `cmd` (its name) answered by `reply`.
    pub(crate) fn unsupported(&self, cmd: &str, reply: &Reply) -> Error {
        Error::Unsupported {
            addr: self.addr.clone(),
            cmd: cmd.to_string(),
            reply: reply.head.clone(),
        }
    }

    fn io(&self, err: io::Error) -> Error {
        Error::Io {
            addr: self.addr.clone(),
            err,
        }
    }

    /// Writes raw bytes (one or more complete commands).
    pub(crate) fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let s = self.rd.get_mut();
        let r = s.write_all(bytes).and_then(|()| s.flush());
        r.map_err(|e| self.io(e))
    }

    /// Reads one complete reply.
    pub(crate) fn read_reply(&mut self) -> Result<Reply> {
        self.try_read_reply().map_err(|e| self.io(e))
    }

    fn try_read_reply(&mut self) -> io::Result<Reply> {
        let mut line = Vec::new();
        // Reply lines are short; a server that sends an endless line is not one we talk to.
        (&mut self.rd).take(4096).read_until(b'\n', &mut line)?;
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
        let head = String::from_utf8(line).map_err(|_| invalid("reply is not text".into()))?;
        let len = {
            let w: Vec<&str> = head.split(' ').collect();
            match (w.first().copied(), w.len()) {
                (Some("OK"), 2) => Some(w[1]),
                (Some("FOUND" | "RESERVED"), 3) => Some(w[2]),
                _ => None,
            }
        };
        let body = match len {
            None => None,
            Some(n) => {
                let n: u64 = n
                    .parse()
                    .map_err(|_| invalid(format!("bad data length in reply {head:?}")))?;
                let mut data = Vec::new();
                // `take` + `read_to_end` grows the buffer as data arrives, so a bogus
                // length cannot make us allocate it all up front.
                (&mut self.rd)
                    .take(n.saturating_add(2))
                    .read_to_end(&mut data)?;
                if data.len() as u64 != n.saturating_add(2) {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a reply",
                    ));
                }
                if !data.ends_with(b"\r\n") {
                    return Err(invalid(format!("data of {head:?} not followed by CRLF")));
                }
                data.truncate(data.len() - 2);
                Some(data)
            }
        };
        Ok(Reply { head, body })
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub(crate) fn call(&mut self, line: &str) -> Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
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
        Ok(super::yaml::parse_list(&data))
    }

    /// `use TUBE`.
    pub(crate) fn use_tube(&mut self, tube: &str) -> Result<()> {
        self.expect(&format!("use {tube}"), &format!("USING {tube}"))
    }

    /// `put`; returns the reply (INSERTED, BURIED, JOB_TOO_BIG, ...).
    pub fn put(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> Result<Reply> {
        let mut m = format!("put {pri} {delay} {ttr} {}\r\n", body.len()).into_bytes();
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
        self.send(&m)?;
        self.read_reply()
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
        let mut m = format!("put-unique {key} {pri} {delay} {ttr} {}\r\n", body.len()).into_bytes();
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
        self.send(&m)?;
        self.read_reply()
    }

    /// Sends every line in `lines` at once (in batches, so neither side's socket buffer
    /// fills up) and returns the replies in order.
    pub(crate) fn batch(&mut self, lines: &[String]) -> Result<Vec<Reply>> {
        let mut out = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(64) {
            let mut m = Vec::new();
            for l in chunk {
                m.extend_from_slice(l.as_bytes());
                m.extend_from_slice(b"\r\n");
            }
            self.send(&m)?;
            for _ in chunk {
                out.push(self.read_reply()?);
            }
        }
        Ok(out)
    }
}

/// Checks a `put-unique` key the way the server does (the rules of a tube name).
pub fn check_key(s: &str) -> std::result::Result<String, String> {
    sprout_protocol::parse::tube_name(s.as_bytes()).map_err(|_| {
        format!(
            "invalid key {s:?}: 1 to {} of A-Z a-z 0-9 - + / ; . $ _ ( ), not starting with \
             '-'",
            sprout_protocol::MAX_TUBE_NAME
        )
    })
}

/// Checks a tube name the way the server does (1..=200 name bytes, not starting with
/// '-'), so a name can never smuggle a second command onto the line.
pub fn check_tube_name(s: &str) -> std::result::Result<String, String> {
    sprout_protocol::parse::tube_name(s.as_bytes()).map_err(|_| {
        format!(
            "invalid tube name {s:?}: 1 to {} of A-Z a-z 0-9 - + / ; . $ _ ( ), not starting \
             with '-'",
            sprout_protocol::MAX_TUBE_NAME
        )
    })
}
