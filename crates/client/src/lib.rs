//! An async client for [beanstalkd](https://beanstalkd.github.io/) and sproutd, a
//! beanstalkd-compatible work-queue server, on [tokio].
//!
//! - Every beanstalkd 1.13 command, and sproutd's own (`reserve-batch`, `put-unique`,
//!   `list-jobs`, `flush-tube`, `reprioritize`, `move-job`, `tube-policy`, `auth`), as a
//!   method of [`Client`] with a typed reply ([`PutOutcome`], [`Job`], [`Stats`], ...).
//! - One error type, [`Error`]: an error reply of the server is
//!   [`Error::Server`] with a [`ServerError`] (`NOT_FOUND`, `TIMED_OUT`, ...), apart
//!   from broken connections ([`Error::Io`]) and bytes that are not the protocol
//!   ([`Error::Protocol`], never a panic).
//! - Pipelining: queue any number of commands on the [`Sender`], write them at once
//!   with [`Sender::flush`], read the replies in order from the [`Receiver`]. Both can
//!   live in different tasks ([`Client::into_split`]).
//! - TCP (`host:port`, port 11300 by default) and unix sockets (`unix:/path`); TLS with
//!   rustls (ring provider), a CA file and a client certificate ([`Tls`]); `auth` with a
//!   token on connecting ([`Connector`]).
//! - A blocking front for code that is not async: [`blocking::Client`].
//!
//! # Example
//!
//! ```no_run
//! use sprout_client::{Client, Error, ServerError};
//!
//! # async fn run() -> Result<(), Error> {
//! let mut c = Client::connect("127.0.0.1:11300").await?;
//!
//! // A producer.
//! c.use_tube("emails").await?;
//! let id = c.put(0, 0, 60, b"to: a@example.com").await?.id();
//!
//! // A worker.
//! c.watch("emails").await?;
//! match c.reserve_with_timeout(5).await {
//!     Ok(job) => {
//!         assert_eq!(job.id, id);
//!         c.delete(job.id).await?;
//!     }
//!     Err(Error::Server(ServerError::TimedOut)) => println!("no job"),
//!     Err(e) => return Err(e),
//! }
//!
//! // Stats, as a map.
//! let st = c.stats_tube("emails").await?;
//! println!("{} ready", st.num("current-jobs-ready"));
//! # Ok(()) }
//! ```
//!
//! Over TLS, with a token:
//!
//! ```no_run
//! use sprout_client::{Connector, Tls};
//!
//! # async fn run() -> Result<(), sprout_client::Error> {
//! let tls = Tls::builder().ca_file("ca.pem")?.build()?;
//! let mut c = Connector::new("queue.example.com:11400")
//!     .tls(tls)
//!     .token("s3cret-token")?
//!     .connect()
//!     .await?;
//! c.put(0, 0, 60, b"hello").await?;
//! # Ok(()) }
//! ```
//!
//! Pipelined, with a reply of any kind read as a [`Response`]:
//!
//! ```no_run
//! use sprout_client::{Client, Response};
//!
//! # async fn run() -> Result<(), sprout_client::Error> {
//! let mut c = Client::connect("unix:/run/sproutd.sock").await?;
//! let (tx, rx) = c.parts();
//! tx.use_tube("a")?;
//! tx.put(0, 0, 60, b"one")?;
//! tx.put(0, 0, 60, b"two")?;
//! tx.flush().await?;
//! assert_eq!(rx.recv_use_tube().await?, "a");
//! for _ in 0..2 {
//!     match rx.recv().await? {
//!         Response::Inserted(id) => println!("job {id}"),
//!         other => println!("{other}"),
//!     }
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs, missing_debug_implementations)]

pub mod blocking;
mod client;
mod conn;
mod error;
mod reply;
mod stats;

pub use client::{
    check_name, Client, JobState, PutOutcome, Receiver, ReleaseOutcome, Sender, UniqueOutcome,
    MAX_NAME,
};
pub use conn::{check_token, Connector, Tls, TlsBuilder, DEFAULT_PORT, DEFAULT_TIMEOUT, MAX_TOKEN};
pub use error::{Error, Result};
pub use reply::{parse, Job, Response, ServerError, MAX_BATCH};
pub use stats::{parse_list, Stats};

/// The rustls crate this client is built with, for [`Tls::from_config`].
pub use rustls;
