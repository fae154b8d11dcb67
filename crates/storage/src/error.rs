//! Why the log could not be opened or read: typed, so that the server decides what each
//! means (an exit status, a message) without parsing strings.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::record::DecodeError;

#[derive(Debug)]
pub enum Error {
    /// The directory lock could not be taken: `held`, another process holds it; else the
    /// lock file cannot be opened (no permission, no directory).
    Lock {
        path: PathBuf,
        source: io::Error,
        held: bool,
    },
    /// A segment could not be read.
    Read { path: PathBuf, source: io::Error },
    /// A file named as a segment does not start with a segment header of ours.
    NotASegment { path: PathBuf },
    /// A segment's header names another segment number than its file name.
    WrongSegment { path: PathBuf, header: u32 },
    /// A record is damaged where a crash cannot explain it (not at the end of the newest
    /// segment).
    Damaged {
        path: PathBuf,
        offset: usize,
        error: DecodeError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Lock {
                path,
                source,
                held: true,
            } => write!(
                f,
                "{}: {source} (is another sproutd or beanstalkd using this directory?)",
                path.display()
            ),
            Error::Lock { path, source, .. } => write!(f, "{}: {source}", path.display()),
            Error::Read { path, source } => write!(f, "{}: {source}", path.display()),
            Error::NotASegment { path } => {
                write!(
                    f,
                    "{}: not a sprout log segment (bad header)",
                    path.display()
                )
            }
            Error::WrongSegment { path, header } => {
                write!(f, "{}: header says segment {header}", path.display())
            }
            Error::Damaged {
                path,
                offset,
                error,
            } => write!(
                f,
                "{}: damaged record at offset {offset} ({error:?}); start with \
                 --binlog-salvage to load what is readable",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Lock { source, .. } | Error::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}
