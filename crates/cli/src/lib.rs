//! `sprout`: the admin CLI and the load generator. They talk the beanstalkd protocol to any
//! server (sproutd or beanstalkd) and know nothing of the server's internals; only
//! `sprout binlog` reads a log directory, through the storage crate.
//!
//! - [`cli`]: the admin subcommands.
//! - [`bench`]: `sprout bench`, the load generator and `--compare`.
//! - [`work`]: `sprout work`, a worker that runs a command for each job.

pub mod bench;
pub mod cli;
pub mod work;
