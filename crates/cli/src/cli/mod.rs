//! The `sprout` admin CLI: subcommands that talk the beanstalkd protocol to any server
//! (sproutd or beanstalkd) over TCP or a unix socket.
//!
//! - [`client`]: a blocking protocol client, and the CLI's error type with exit codes
//!   (2: the server cannot be reached or the connection failed; 1: the server answered
//!   with an error, or a local problem).
//! - [`yaml`]: the `stats`/`list-tubes` YAML, and its conversion to typed JSON.
//! - [`text`]: terminal-safe body rendering, tables, number formatting.
//! - [`cmds`], [`tubes`], [`top`]: the subcommands; [`ext`]: those built on sproutd's own
//!   commands (`jobs`, `policy`, `move`); [`cluster`]: `cluster status`, from a cluster
//!   node's `cluster-status`, and `cluster add`, `remove`, `transfer-leader`.

pub mod client;
pub mod cluster;
pub mod cmds;
pub mod ext;
pub mod text;
pub mod top;
pub mod tubes;
pub(crate) mod yaml;
