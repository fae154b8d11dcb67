//! A blocking front to the async [`Client`](crate::Client), for programs and tests that
//! are not async: it owns a current-thread tokio runtime and runs each exchange on it.

use std::time::Duration;

use crate::{Connector, Error, Result};

/// A connection driven from blocking code. Any async method of the [`crate::Client`] runs
/// through [`Client::run`], pipelines included, with a time limit.
///
/// ```no_run
/// use sprout_client::blocking::Client;
///
/// # fn main() -> Result<(), sprout_client::Error> {
/// let mut c = Client::connect("127.0.0.1:11300")?;
/// let id = c.run(async |c| c.put(0, 0, 60, b"hello").await)?.id();
/// let job = c.run(async |c| c.peek(id).await)?;
/// assert_eq!(job.body, b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    c: crate::Client,
    limit: Duration,
}

/// How long one [`Client::run`] may take unless [`Client::set_limit`] says otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects to `addr`, plain (see [`Client::connect_with`]).
    pub fn connect(addr: &str) -> Result<Client> {
        Client::connect_with(&Connector::new(addr))
    }

    /// Connects as `c` says (TLS, token, time limit).
    pub fn connect_with(c: &Connector) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = rt.block_on(c.connect())?;
        Ok(Client {
            rt,
            c: client,
            limit: DEFAULT_LIMIT,
        })
    }

    /// How long one [`Client::run`] may take before it fails with
    /// [`std::io::ErrorKind::TimedOut`] (the connection should then be dropped: a reply
    /// may still come).
    pub fn set_limit(&mut self, limit: Duration) {
        self.limit = limit;
    }

    /// Runs `f` on the async client and waits for it, at most the time limit.
    pub fn run<T>(&mut self, f: impl AsyncFnOnce(&mut crate::Client) -> Result<T>) -> Result<T> {
        let limit = self.limit;
        let c = &mut self.c;
        self.rt
            .block_on(async move { tokio::time::timeout(limit, f(c)).await })
            .unwrap_or_else(|_| {
                Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply within {limit:?}"),
                )))
            })
    }
}
