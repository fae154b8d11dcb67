//! The beanstalkd wire protocol: commands, replies and framing, with no I/O.

pub mod command;
pub(crate) mod frame;
pub mod parse;
pub mod reply;
mod unparse;

pub use command::{Backoff, Command, Exhaust, ListState, PolicySet};
pub use frame::{Decoder, Event};
pub use parse::{parse_line, parse_line_with, LineError};
pub use reply::Reply;

/// Longest command line beanstalkd accepts, CRLF included.
pub(crate) const LINE_MAX: usize = 224;
/// Longest tube name in bytes.
pub const MAX_TUBE_NAME: usize = 200;
/// Default `-z`.
pub const DEFAULT_MAX_JOB_SIZE: u32 = 65535;
/// Largest `-z` beanstalkd allows.
pub const MAX_JOB_SIZE_LIMIT: u32 = 1_073_741_824;
