//! Replies: what the server can answer, and how a reply is cut off the bytes received.

use std::fmt;

use crate::Error;

/// The longest reply line accepted (beanstalkd's are under 100 bytes; sproutd's too).
pub(crate) const MAX_LINE: usize = 4096;
/// The most jobs one `RESERVED_BATCH` may announce (sproutd's own limit).
pub const MAX_BATCH: u64 = 1000;

/// A job as `reserve`, `peek` and friends hand it out: its id and its body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Job {
    /// The job's id.
    pub id: u64,
    /// The job's body, without the trailing CRLF.
    pub body: Vec<u8>,
}

/// An error reply of the server: the command was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerError {
    /// `OUT_OF_MEMORY`: the server could not take (or log) the change.
    OutOfMemory,
    /// `INTERNAL_ERROR`: a bug or a failed write in the server.
    InternalError,
    /// `BAD_FORMAT`: the command line was malformed (or the server lacks the command and
    /// read it as another's prefix, as beanstalkd does with `reserve-batch`).
    BadFormat,
    /// `UNKNOWN_COMMAND`: the server has no such command (beanstalkd and `sproutd
    /// --strict` answer this to sproutd's own commands, and to `auth`).
    UnknownCommand,
    /// `EXPECTED_CRLF`: a job body was not followed by CRLF.
    ExpectedCrlf,
    /// `JOB_TOO_BIG`: the body is longer than the server's `max-job-size`.
    JobTooBig,
    /// `DRAINING`: the server takes no new jobs.
    Draining,
    /// `NOT_FOUND`: no such job or tube (or one the user may not see).
    NotFound,
    /// `TIMED_OUT`: a reserve with a timeout found no job in time.
    TimedOut,
    /// `DEADLINE_SOON`: a job reserved by this connection is about to time out.
    DeadlineSoon,
    /// `NOT_IGNORED`: `ignore` of the last watched tube.
    NotIgnored,
    /// `PERMISSION_DENIED`: the authenticated user may not run this command here.
    PermissionDenied,
    /// `UNAUTHORIZED`: a wrong token, or a command before `auth` on a token listener;
    /// the server closes the connection after it.
    Unauthorized,
}

impl ServerError {
    const ALL: [ServerError; 13] = [
        ServerError::OutOfMemory,
        ServerError::InternalError,
        ServerError::BadFormat,
        ServerError::UnknownCommand,
        ServerError::ExpectedCrlf,
        ServerError::JobTooBig,
        ServerError::Draining,
        ServerError::NotFound,
        ServerError::TimedOut,
        ServerError::DeadlineSoon,
        ServerError::NotIgnored,
        ServerError::PermissionDenied,
        ServerError::Unauthorized,
    ];

    /// The reply as on the wire, e.g. `"NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerError::OutOfMemory => "OUT_OF_MEMORY",
            ServerError::InternalError => "INTERNAL_ERROR",
            ServerError::BadFormat => "BAD_FORMAT",
            ServerError::UnknownCommand => "UNKNOWN_COMMAND",
            ServerError::ExpectedCrlf => "EXPECTED_CRLF",
            ServerError::JobTooBig => "JOB_TOO_BIG",
            ServerError::Draining => "DRAINING",
            ServerError::NotFound => "NOT_FOUND",
            ServerError::TimedOut => "TIMED_OUT",
            ServerError::DeadlineSoon => "DEADLINE_SOON",
            ServerError::NotIgnored => "NOT_IGNORED",
            ServerError::PermissionDenied => "PERMISSION_DENIED",
            ServerError::Unauthorized => "UNAUTHORIZED",
        }
    }

    fn from_word(w: &[u8]) -> Option<ServerError> {
        ServerError::ALL
            .into_iter()
            .find(|e| e.as_str().as_bytes() == w)
    }

    /// Whether this is the answer of a server that lacks the command sent
    /// (`UNKNOWN_COMMAND`, or `BAD_FORMAT`, which beanstalkd gives to some of sproutd's
    /// commands). Meaningful only for a command sent with valid arguments.
    pub fn is_unsupported(self) -> bool {
        matches!(self, ServerError::UnknownCommand | ServerError::BadFormat)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reply of the server, whatever the command: what [`Receiver::recv`] returns.
/// Replies describe themselves, so they can be read without knowing what was sent.
///
/// [`Receiver::recv`]: crate::Receiver::recv
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// `INSERTED <id>` (`put`, `put-unique`).
    Inserted(u64),
    /// `BURIED <id>` (`put`, `put-unique`: inserted, but buried for lack of memory).
    BuriedId(u64),
    /// `BURIED` (`bury`; `release` when the server ran out of memory).
    Buried,
    /// `EXISTS <id>` (`put-unique` of a key in use: the job that has it).
    Exists(u64),
    /// `USING <tube>` (`use`, `list-tube-used`).
    Using(String),
    /// `RESERVED <id> <bytes>` and the body.
    Reserved(Job),
    /// `RESERVED_BATCH <k>` and k `RESERVED` replies (`reserve-batch`).
    ReservedBatch(Vec<Job>),
    /// `DELETED`.
    Deleted,
    /// `RELEASED`.
    Released,
    /// `TOUCHED`.
    Touched,
    /// `WATCHING <count>` (`watch`, `ignore`).
    Watching(u64),
    /// `FOUND <id> <bytes>` and the body (`peek*`).
    Found(Job),
    /// `KICKED <count>` (`kick`).
    Kicked(u64),
    /// `KICKED` (`kick-job`).
    KickedJob,
    /// `OK <bytes>` and its data: YAML (`stats*`, `list-*`, reading `tube-policy`).
    Data(Vec<u8>),
    /// `OK` (setting a `tube-policy`).
    Ok,
    /// `PAUSED`.
    Paused,
    /// `FLUSHED <count>` (`flush-tube`).
    Flushed(u64),
    /// `REPRIORITIZED`.
    Reprioritized,
    /// `MOVED` (`move-job`).
    Moved,
    /// `AUTHENTICATED` (`auth`).
    Authenticated,
    /// `ADDED` (`cluster-add`).
    Added,
    /// `REMOVED` (`cluster-remove`).
    Removed,
    /// `TRANSFERRED` (`cluster-transfer-leader`).
    Transferred,
    /// `CLUSTER_ERROR <reason>`: a membership command not carried out (not a cluster
    /// node, no leader, a change in progress, ...).
    ClusterError(String),
    /// An error reply.
    Error(ServerError),
}

impl Response {
    /// The error, if this is an error reply.
    pub fn error(&self) -> Option<ServerError> {
        match self {
            Response::Error(e) => Some(*e),
            _ => None,
        }
    }
}

/// The reply's first line, as the server sent it (data left out).
impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Inserted(id) => write!(f, "INSERTED {id}"),
            Response::BuriedId(id) => write!(f, "BURIED {id}"),
            Response::Buried => f.write_str("BURIED"),
            Response::Exists(id) => write!(f, "EXISTS {id}"),
            Response::Using(t) => write!(f, "USING {t}"),
            Response::Reserved(j) => write!(f, "RESERVED {} {}", j.id, j.body.len()),
            Response::ReservedBatch(jobs) => write!(f, "RESERVED_BATCH {}", jobs.len()),
            Response::Deleted => f.write_str("DELETED"),
            Response::Released => f.write_str("RELEASED"),
            Response::Touched => f.write_str("TOUCHED"),
            Response::Watching(n) => write!(f, "WATCHING {n}"),
            Response::Found(j) => write!(f, "FOUND {} {}", j.id, j.body.len()),
            Response::Kicked(n) => write!(f, "KICKED {n}"),
            Response::KickedJob => f.write_str("KICKED"),
            Response::Data(d) => write!(f, "OK {}", d.len()),
            Response::Ok => f.write_str("OK"),
            Response::Paused => f.write_str("PAUSED"),
            Response::Flushed(n) => write!(f, "FLUSHED {n}"),
            Response::Reprioritized => f.write_str("REPRIORITIZED"),
            Response::Moved => f.write_str("MOVED"),
            Response::Authenticated => f.write_str("AUTHENTICATED"),
            Response::Added => f.write_str("ADDED"),
            Response::Removed => f.write_str("REMOVED"),
            Response::Transferred => f.write_str("TRANSFERRED"),
            Response::ClusterError(why) => write!(f, "CLUSTER_ERROR {why}"),
            Response::Error(e) => f.write_str(e.as_str()),
        }
    }
}

fn bad(what: &str, line: &[u8]) -> Error {
    Error::Protocol(format!("{what}: {:?}", String::from_utf8_lossy(line)))
}

/// The first line in `buf`, without its CRLF, and the length taken with the CRLF; `None`
/// when it has not all arrived.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Error> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some((&window[..i - 1], i + 1))),
        Some(i) => Err(bad(
            "reply line not terminated by CRLF",
            &window[..i.min(64)],
        )),
        None if buf.len() >= MAX_LINE => Err(bad("reply line too long", &window[..64])),
        None => Ok(None),
    }
}

/// A decimal number, as the server writes them (digits only).
fn number(w: &[u8], line: &[u8]) -> Result<u64, Error> {
    if w.is_empty() || w.len() > 20 || !w.iter().all(u8::is_ascii_digit) {
        return Err(bad("bad number in reply", line));
    }
    std::str::from_utf8(w)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad number in reply", line))
}

/// `<bytes>` + CRLF of data at `buf[at..]`: the data and the end, or `None` if it has not
/// all arrived.
fn data(
    buf: &[u8],
    at: usize,
    len: u64,
    head: &[u8],
    copy: bool,
) -> Result<Option<(Vec<u8>, usize)>, Error> {
    let len = usize::try_from(len).map_err(|_| bad("data too long", head))?;
    let end = at.checked_add(len).and_then(|e| e.checked_add(2));
    let end = end.ok_or_else(|| bad("data too long", head))?;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(bad("data not followed by CRLF", head));
    }
    let d = if copy {
        buf[at..end - 2].to_vec()
    } else {
        Vec::new()
    };
    Ok(Some((d, end)))
}

/// `RESERVED <id> <bytes>` / `FOUND <id> <bytes>` at `buf[at..]` (its head already split
/// into words): the job and the end of its data.
fn job(
    buf: &[u8],
    at: usize,
    w: &[&[u8]],
    head: &[u8],
    copy: bool,
) -> Result<Option<(Job, usize)>, Error> {
    let id = number(w[1], head)?;
    let len = number(w[2], head)?;
    Ok(data(buf, at, len, head, copy)?.map(|(body, end)| (Job { id, body }, end)))
}

/// Cuts one reply off the front of `buf`: the reply and the bytes it took, `Ok(None)` when
/// it has not all arrived, or a [`Error::Protocol`] for bytes that are no reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Response, usize)>, Error> {
    parse_with(buf, true)
}

/// [`parse`]; without `copy`, data is checked but not copied (left empty).
fn parse_with(buf: &[u8], copy: bool) -> Result<Option<(Response, usize)>, Error> {
    let Some((head, at)) = line(buf)? else {
        return Ok(None);
    };
    if let Some(why) = head.strip_prefix(b"CLUSTER_ERROR ") {
        let why = String::from_utf8_lossy(why).into_owned();
        return Ok(Some((Response::ClusterError(why), at)));
    }
    let mut words = [&[][..]; 4];
    let mut n = 0;
    for w in head.split(|&b| b == b' ') {
        if n == words.len() {
            return Err(bad("unexpected reply", head));
        }
        words[n] = w;
        n += 1;
    }
    let w = &words[..n];
    let done = |r: Response| Ok(Some((r, at)));
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| bad("reply is not text", head))
    };
    match (w[0], n) {
        (b"INSERTED", 2) => done(Response::Inserted(number(w[1], head)?)),
        (b"BURIED", 2) => done(Response::BuriedId(number(w[1], head)?)),
        (b"BURIED", 1) => done(Response::Buried),
        (b"EXISTS", 2) => done(Response::Exists(number(w[1], head)?)),
        (b"USING", 2) => done(Response::Using(utf8(w[1])?)),
        (b"DELETED", 1) => done(Response::Deleted),
        (b"RELEASED", 1) => done(Response::Released),
        (b"TOUCHED", 1) => done(Response::Touched),
        (b"WATCHING", 2) => done(Response::Watching(number(w[1], head)?)),
        (b"KICKED", 2) => done(Response::Kicked(number(w[1], head)?)),
        (b"KICKED", 1) => done(Response::KickedJob),
        (b"OK", 1) => done(Response::Ok),
        (b"PAUSED", 1) => done(Response::Paused),
        (b"FLUSHED", 2) => done(Response::Flushed(number(w[1], head)?)),
        (b"REPRIORITIZED", 1) => done(Response::Reprioritized),
        (b"MOVED", 1) => done(Response::Moved),
        (b"AUTHENTICATED", 1) => done(Response::Authenticated),
        (b"ADDED", 1) => done(Response::Added),
        (b"REMOVED", 1) => done(Response::Removed),
        (b"TRANSFERRED", 1) => done(Response::Transferred),
        (b"RESERVED", 3) => {
            Ok(job(buf, at, w, head, copy)?.map(|(j, e)| (Response::Reserved(j), e)))
        }
        (b"FOUND", 3) => Ok(job(buf, at, w, head, copy)?.map(|(j, e)| (Response::Found(j), e))),
        (b"OK", 2) => {
            let len = number(w[1], head)?;
            Ok(data(buf, at, len, head, copy)?.map(|(d, e)| (Response::Data(d), e)))
        }
        (b"RESERVED_BATCH", 2) => {
            let k = number(w[1], head)?;
            // Checked whole before any body is copied: a batch arrives in many reads.
            if batch(buf, at, k, head, false)?.is_none() {
                return Ok(None);
            }
            batch(buf, at, k, head, copy)
        }
        (word, 1) => match ServerError::from_word(word) {
            Some(e) => done(Response::Error(e)),
            None => Err(bad("unexpected reply", head)),
        },
        _ => Err(bad("unexpected reply", head)),
    }
}

/// The k `RESERVED` replies of a `RESERVED_BATCH <k>` at `buf[at..]`.
fn batch(
    buf: &[u8],
    mut at: usize,
    k: u64,
    head: &[u8],
    copy: bool,
) -> Result<Option<(Response, usize)>, Error> {
    if k > MAX_BATCH {
        return Err(bad("batch too large", head));
    }
    let mut jobs = Vec::with_capacity(k as usize);
    for _ in 0..k {
        let Some((r, len)) = parse_with(&buf[at..], copy)? else {
            return Ok(None);
        };
        match r {
            Response::Reserved(j) => jobs.push(j),
            other => {
                return Err(Error::Protocol(format!(
                    "expected RESERVED in a batch, got {other}"
                )))
            }
        }
        at += len;
    }
    Ok(Some((Response::ReservedBatch(jobs), at)))
}

/// Whether `buf` starts with a complete reply line (its data may still be on the way).
pub(crate) fn has_line(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(b: &[u8]) -> Response {
        let (r, n) = parse(b).unwrap().unwrap();
        assert_eq!(n, b.len(), "{r:?} took {n} of {}", b.len());
        r
    }

    fn job(id: u64, body: &[u8]) -> Job {
        Job {
            id,
            body: body.to_vec(),
        }
    }

    #[test]
    fn every_reply_kind() {
        let cases: Vec<(&[u8], Response)> = vec![
            (b"INSERTED 7\r\n", Response::Inserted(7)),
            (b"BURIED 8\r\n", Response::BuriedId(8)),
            (b"BURIED\r\n", Response::Buried),
            (b"EXISTS 9\r\n", Response::Exists(9)),
            (b"USING a.b\r\n", Response::Using("a.b".into())),
            (
                b"RESERVED 3 4\r\na\r\nb\r\n",
                Response::Reserved(job(3, b"a\r\nb")),
            ),
            (b"RESERVED 3 0\r\n\r\n", Response::Reserved(job(3, b""))),
            (b"DELETED\r\n", Response::Deleted),
            (b"RELEASED\r\n", Response::Released),
            (b"TOUCHED\r\n", Response::Touched),
            (b"WATCHING 2\r\n", Response::Watching(2)),
            (b"FOUND 5 1\r\nx\r\n", Response::Found(job(5, b"x"))),
            (b"KICKED 4\r\n", Response::Kicked(4)),
            (b"KICKED\r\n", Response::KickedJob),
            (b"OK 5\r\n---\n\n\r\n", Response::Data(b"---\n\n".to_vec())),
            (b"OK\r\n", Response::Ok),
            (b"PAUSED\r\n", Response::Paused),
            (b"FLUSHED 10\r\n", Response::Flushed(10)),
            (b"REPRIORITIZED\r\n", Response::Reprioritized),
            (b"MOVED\r\n", Response::Moved),
            (b"AUTHENTICATED\r\n", Response::Authenticated),
            (b"ADDED\r\n", Response::Added),
            (b"REMOVED\r\n", Response::Removed),
            (b"TRANSFERRED\r\n", Response::Transferred),
            (
                b"CLUSTER_ERROR no leader\r\n",
                Response::ClusterError("no leader".into()),
            ),
            (
                b"RESERVED_BATCH 2\r\nRESERVED 1 1\r\na\r\nRESERVED 2 2\r\nbc\r\n",
                Response::ReservedBatch(vec![job(1, b"a"), job(2, b"bc")]),
            ),
            (b"RESERVED_BATCH 0\r\n", Response::ReservedBatch(vec![])),
        ];
        for (wire, want) in cases {
            let got = one(wire);
            assert_eq!(got, want);
            // Display gives back the head line.
            let head = wire.split(|&b| b == b'\r').next().unwrap();
            assert_eq!(got.to_string().as_bytes(), head);
        }
    }

    #[test]
    fn every_error_reply() {
        for e in ServerError::ALL {
            let wire = format!("{e}\r\n");
            assert_eq!(one(wire.as_bytes()), Response::Error(e));
            assert_eq!(Response::Error(e).error(), Some(e));
        }
        assert!(ServerError::UnknownCommand.is_unsupported());
        assert!(!ServerError::NotFound.is_unsupported());
    }

    #[test]
    fn incomplete_replies_wait() {
        let full: &[u8] = b"RESERVED_BATCH 2\r\nRESERVED 1 1\r\na\r\nRESERVED 2 2\r\nbc\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        // Two replies back to back: one at a time.
        let two = b"DELETED\r\nFOUND 1 2\r\nab\r\n";
        let (r, n) = parse(two).unwrap().unwrap();
        assert_eq!((r, n), (Response::Deleted, 9));
        assert_eq!(one(&two[n..]), Response::Found(job(1, b"ab")));
    }

    #[test]
    fn bad_replies_are_protocol_errors() {
        let bad: &[&[u8]] = &[
            b"HELLO\r\n",
            b"INSERTED\r\n",
            b"INSERTED x\r\n",
            b"INSERTED -1\r\n",
            b"INSERTED 99999999999999999999999\r\n",
            b"INSERTED 1 2 3 4 5\r\n",
            b"DELETED\n",
            b"RESERVED 1 2\r\nabcd",
            b"OK 1\r\nab\r\n",
            b"USING \xff\r\n",
            b"RESERVED_BATCH 2000\r\n",
            b"RESERVED_BATCH 1\r\nDELETED\r\n",
            b"FOUND 1 18446744073709551615\r\n",
            b"",
        ];
        for b in bad {
            match parse(b) {
                Err(Error::Protocol(_)) => {}
                Ok(None) if b.is_empty() => {}
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
            }
        }
        let long = vec![b'A'; MAX_LINE + 1];
        assert!(matches!(parse(&long), Err(Error::Protocol(_))));
    }

    #[test]
    fn lines_are_found() {
        assert!(has_line(b"DELETED\r\n"));
        assert!(!has_line(b"DELETED\r"));
    }
}
