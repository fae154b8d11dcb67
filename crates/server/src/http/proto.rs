//! The dashboard's commands: sent over the protocol on an in-process connection (a unix
//! socket pair served by `conn::serve`, exactly like a client's), so that each action is
//! the protocol command it mirrors: the same access checks, counters, log records, and a
//! reply that waits for the log as a connection's does.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::access::Access;
use crate::Shared;

/// One reply: its line, and its data for `OK`, `FOUND` and `RESERVED`.
pub(crate) struct Reply {
    pub(crate) line: String,
    pub(crate) data: Vec<u8>,
}

impl Reply {
    /// The `key: value` lines of a YAML dictionary reply (`stats-job`, `stats-tube`).
    pub(crate) fn dict(&self) -> Vec<(String, String)> {
        String::from_utf8_lossy(&self.data)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// The items of a YAML list reply (`list-jobs`).
    pub(crate) fn list(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.data)
            .lines()
            .filter_map(|l| l.strip_prefix("- ").map(str::to_string))
            .collect()
    }
}

/// A protocol connection of the dashboard, with the session's rights.
pub(crate) struct Proto {
    r: BufReader<UnixStream>,
}

impl Proto {
    pub(crate) fn open(shared: &Arc<Shared>, access: Access) -> io::Result<Proto> {
        let (ours, theirs) = UnixStream::pair()?;
        if !shared.config.cluster.is_empty() {
            // A cluster node: the command goes through the Raft log like a client's (the
            // local engine only applies what the log commits). Access control is not
            // applied in cluster mode yet (COMPAT.md); the dashboard still checks `admin`.
            let serve = shared.cluster_conn.get().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "the cluster node is starting")
            })?;
            serve(theirs);
        } else {
            let id = crate::register(shared);
            let shared = shared.clone();
            tokio::spawn(async move {
                crate::conn::serve(crate::conn::Sock::Unix(theirs), shared, id, access).await
            });
        }
        Ok(Proto {
            r: BufReader::new(ours),
        })
    }

    /// Sends commands (each a line, with its body if it has one) in one write.
    pub(crate) async fn send(&mut self, cmds: &[(&str, Option<&[u8]>)]) -> io::Result<()> {
        let mut out = Vec::new();
        for (line, body) in cmds {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(b) = body {
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
        }
        self.r.get_mut().write_all(&out).await
    }

    /// Reads the next reply.
    pub(crate) async fn reply(&mut self) -> io::Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let mut data = Vec::new();
        let mut words = line.split(' ');
        let head = words.next().unwrap_or("");
        // `OK` alone (tube-policy's setting) has no data.
        let size = words.next_back().and_then(|n| n.parse::<usize>().ok());
        if let (true, Some(n)) = (matches!(head, "OK" | "FOUND" | "RESERVED"), size) {
            data.resize(n + 2, 0);
            self.r.read_exact(&mut data).await?;
            data.truncate(n);
        }
        Ok(Reply { line, data })
    }

    /// One command and its reply.
    pub(crate) async fn cmd(&mut self, line: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        self.send(&[(line, body)]).await?;
        self.reply().await
    }
}
