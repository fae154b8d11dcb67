//! `sprout`: the admin CLI and the load generator. They talk the beanstalkd protocol to any
//! server (sproutd or beanstalkd) and know nothing of the server's internals; only
//! `sprout binlog` reads a log directory, through the storage crate.
//!
//! - [`conn`]: how every subcommand connects: TCP or unix socket, TLS, the token.
//! - [`cli`]: the admin subcommands.
//! - [`bench`]: `sprout bench`, the load generator, `--compare` and `--tls`.
//! - [`work`]: `sprout work`, a worker that runs a command for each job.
//! - [`token`]: `sprout token new`.

pub mod bench;
pub mod cli;
pub mod conn;
pub mod token;
pub mod work;
