//! sprout: a work-queue server that speaks the beanstalkd protocol.
//!
//! Layers (see ARCHITECTURE.md):
//! - [`protocol`]: command-line parsing, byte framing, reply formatting. No I/O.
//! - [`engine`]: the queue as a synchronous state machine; time is passed in.
//! - [`server`]: tokio I/O, connections, timers, signals and configuration.

pub mod bench;
pub mod cli;
pub mod engine;
pub mod protocol;
pub mod server;
pub mod storage;
