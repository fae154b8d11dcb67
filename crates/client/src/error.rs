//! The one error type of the client.

use std::fmt;
use std::io;

use crate::ServerError;

/// Everything that can go wrong talking to the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error reply ([`ServerError`]): `NOT_FOUND`,
    /// `TIMED_OUT`, `JOB_TOO_BIG`, ...
    Server(ServerError),
    /// The server answered with a valid reply that is not one of the command's: `command`
    /// was answered `reply` (its first line).
    Unexpected {
        /// The command, as on the wire (`"delete"`).
        command: &'static str,
        /// The reply's first line.
        reply: String,
    },
    /// The server sent bytes that are not a reply (not the protocol, or a broken reply).
    /// The connection cannot be used any more.
    Protocol(String),
    /// Connecting, reading or writing failed (including a closed connection, as
    /// [`io::ErrorKind::UnexpectedEof`], and time-outs, as [`io::ErrorKind::TimedOut`]).
    Io(io::Error),
    /// An argument cannot be sent: a tube name, key or token that is not one word of the
    /// allowed characters, or a TLS setting (file, name) that cannot be used.
    Invalid(String),
}

impl Error {
    /// The server's error reply, if this is one.
    pub fn server(&self) -> Option<ServerError> {
        match self {
            Error::Server(e) => Some(*e),
            _ => None,
        }
    }

    /// Whether the server lacks the command sent (see [`ServerError::is_unsupported`]).
    pub fn is_unsupported(&self) -> bool {
        self.server().is_some_and(ServerError::is_unsupported)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(e) => write!(f, "server replied {e}"),
            Error::Unexpected { command, reply } => {
                write!(f, "unexpected reply to {command}: {reply}")
            }
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Io(e) => e.fmt(f),
            Error::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<ServerError> for Error {
    fn from(e: ServerError) -> Error {
        Error::Server(e)
    }
}

/// For callers that speak `io::Result`: an I/O error as it is; a closed connection
/// stays `UnexpectedEof`; bytes that are not the protocol are `InvalidData`; anything else
/// `Other`, with this error's message.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::Protocol(_) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            Error::Invalid(_) => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            other => io::Error::other(other.to_string()),
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
