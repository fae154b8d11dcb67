//! The peer network: Raft's RPCs (append-entries, vote, install-snapshot), `propose`
//! (a follower hands a batch to the leader), `probe` (a node on an empty directory asks
//! whether the cluster exists) and the membership commands (`admin`: a node hands one to
//! the leader; `hold` and `elect`: the leader's side of a leadership transfer) over TCP on the `--cluster` address, one
//! request and its response at a time per connection, each a frame (see `codec`) of JSON.
//! A connection opens with a [`Hello`]: the caller's id and its cluster's identity; a node
//! closes a connection from another cluster (a member list with no member in common).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{codec, Batch, NodeId, TypeConfig};

/// The first frame on every peer connection, from the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The caller's node id.
    pub from: NodeId,
    /// The caller's [`cluster_id`]: one hash per member of its `--cluster` list.
    pub cluster: Vec<u64>,
}

impl Hello {
    /// Whether the two nodes' `--cluster` lists name a common member (the same id at the
    /// same address): nodes of one cluster always do, even when a list grew by
    /// `cluster add` or one member was replaced; two clusters that reach each other through
    /// a wrong or reused address do not.
    pub fn same_cluster(&self, other: &Hello) -> bool {
        self.cluster.iter().any(|h| other.cluster.contains(h))
    }
}

/// A cluster's identity as a node knows it: a hash (64-bit FNV-1a) of each `ID=ADDR` of its
/// member list, in id order.
pub fn cluster_id(members: &BTreeMap<NodeId, String>) -> Vec<u64> {
    members
        .iter()
        .map(|(i, a)| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in format!("{i}={a}").bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(Chunk),
    Propose(Batch),
    /// Does the peer belong to an established cluster (see `Node::established`)? A node
    /// started on an empty directory asks before it initializes anything.
    Probe,
    /// A membership change, for the leader to carry out.
    Admin(Admin),
    /// From a leader handing over leadership: start no election for this many
    /// milliseconds (0: elections allowed again).
    Hold(u64),
    /// From a leader handing over leadership to this node: start an election now.
    Elect,
}

/// A membership change (`cluster-add`, `cluster-remove`, `cluster-transfer-leader`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admin {
    /// Add the node as a learner, wait until it has caught up, then make it a voter.
    Add { id: NodeId, addr: String },
    /// Take the node out of the membership (the leader too: it steps down).
    Remove { id: NodeId },
    /// Hand leadership to the node (a voter).
    Transfer { id: NodeId },
}

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminError {
    /// No such member.
    NotFound,
    /// Anything else, in words (one line).
    Failed(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::NotFound => f.write_str("no such member"),
            AdminError::Failed(why) => f.write_str(why),
        }
    }
}

/// Bytes as a hex string: a snapshot's bytes are binary, and JSON's array of numbers would
/// take up to four bytes per byte and be slow to read.
pub(crate) struct Hex(pub(crate) Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = String::with_capacity(self.0.len() * 2);
        for &b in &self.0 {
            t.push(DIGITS[(b >> 4) as usize] as char);
            t.push(DIGITS[(b & 15) as usize] as char);
        }
        s.serialize_str(&t)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = String::deserialize(d)?;
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(serde::de::Error::custom("not a hex digit")),
        };
        if t.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        t.as_bytes()
            .chunks(2)
            .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
            .collect::<Result<Vec<u8>, _>>()
            .map(Hex)
    }
}

/// An install-snapshot request on the wire (its data in hex).
#[derive(Serialize, Deserialize)]
pub(crate) struct Chunk {
    vote: openraft::Vote<NodeId>,
    meta: openraft::SnapshotMeta<NodeId, BasicNode>,
    offset: u64,
    data: Hex,
    done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for Chunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Chunk {
        Chunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: Hex(r.data),
            done: r.done,
        }
    }
}

impl From<Chunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: Chunk) -> Self {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data.0,
            done: c.done,
        }
    }
}

type SnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(SnapshotResult),
    /// The leader committed the batch, or why not.
    Propose(Result<(), String>),
    Probe(bool),
    Admin(Result<(), AdminError>),
    /// `Hold` and `Elect` taken.
    Done,
}

pub(crate) async fn write_frame<T: Serialize>(s: &mut TcpStream, v: &T) -> io::Result<()> {
    let mut buf = Vec::new();
    codec::frame(&codec::json(v), &mut buf);
    s.write_all(&buf).await
}

pub(crate) async fn read_frame<T: for<'de> Deserialize<'de>>(s: &mut TcpStream) -> io::Result<T> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await?;
    let (len, crc) = codec::header(h)?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    codec::check(&body, crc)?;
    serde_json::from_slice(&body).map_err(codec::invalid)
}

/// When each peer last answered an RPC of this node.
#[derive(Default)]
pub struct Contacts(Mutex<BTreeMap<NodeId, Instant>>);

impl Contacts {
    fn heard(&self, from: NodeId) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(from, Instant::now());
    }

    /// When `from` last answered, if ever.
    pub fn last(&self, from: NodeId) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&from)
            .copied()
    }
}

/// A connection to one peer, opened on first use and again after any error.
pub struct Peer {
    pub(crate) target: NodeId,
    pub(crate) addr: String,
    /// Sent first on each new connection.
    hello: Hello,
    conn: Option<TcpStream>,
    contacts: Option<Arc<Contacts>>,
}

/// Why a call failed: the peer could not be reached, or the exchange broke.
pub(crate) enum CallError {
    Unreachable(io::Error),
    Broken(io::Error),
}

impl CallError {
    fn rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Broken(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Broken(e) => write!(f, "{e}"),
        }
    }
}

async fn within<T>(ttl: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(ttl, f)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
}

impl Peer {
    pub(crate) fn new(target: NodeId, addr: String, hello: Hello) -> Peer {
        Peer {
            target,
            addr,
            hello,
            conn: None,
            contacts: None,
        }
    }

    pub(crate) async fn call(
        &mut self,
        req: &Request,
        ttl: Duration,
    ) -> Result<Response, CallError> {
        let (mut s, new) = match self.conn.take() {
            Some(s) => (s, false),
            None => {
                let s = within(ttl, TcpStream::connect(&self.addr))
                    .await
                    .map_err(CallError::Unreachable)?;
                let _ = s.set_nodelay(true);
                (s, true)
            }
        };
        let r = within(ttl, async {
            if new {
                write_frame(&mut s, &self.hello).await?;
            }
            write_frame(&mut s, req).await?;
            read_frame(&mut s).await
        })
        .await
        .map_err(CallError::Broken)?;
        self.conn = Some(s);
        if let Some(c) = &self.contacts {
            c.heard(self.target);
        }
        Ok(r)
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, BasicNode, E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let e = io::Error::new(io::ErrorKind::InvalidData, "response of another kind");
        RPCError::Network(NetworkError::new(&e))
    }
}

impl Peer {
    /// One RPC: the request, and the response `pick` accepts.
    async fn rpc<T, E: std::error::Error>(
        &mut self,
        req: Request,
        option: RPCOption,
        pick: fn(Response) -> Option<Result<T, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>> {
        match self.call(&req, option.hard_ttl()).await {
            Ok(r) => match pick(r) {
                Some(r) => r.map_err(|e| self.remote(e)),
                None => Err(self.unexpected()),
            },
            Err(e) => Err(e.rpc()),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Request::Append(rpc), option, |r| match r {
            Response::Append(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc(Request::Snapshot(rpc.into()), option, |r| match r {
            Response::Snapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Request::Vote(rpc), option, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}

/// Makes a [`Peer`] per replication target, at the address the membership gives; their
/// answers are noted in `contacts`.
pub struct Network {
    pub contacts: Arc<Contacts>,
    /// This node's greeting.
    pub hello: Hello,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        let mut p = Peer::new(target, node.addr.clone(), self.hello.clone());
        p.contacts = Some(self.contacts.clone());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_the_member_list() {
        let list = |l: &[(u64, &str)]| -> Hello {
            let m: BTreeMap<NodeId, String> = l.iter().map(|&(i, a)| (i, a.to_string())).collect();
            Hello {
                from: 1,
                cluster: cluster_id(&m),
            }
        };
        let a = list(&[(1, "10.0.0.1:7301"), (2, "10.0.0.2:7301")]);
        // The same list in another order, a list grown by `cluster add`, a list where one
        // member was replaced: the same cluster.
        for same in [
            list(&[(2, "10.0.0.2:7301"), (1, "10.0.0.1:7301")]),
            list(&[
                (1, "10.0.0.1:7301"),
                (2, "10.0.0.2:7301"),
                (3, "10.0.0.3:7301"),
            ]),
            list(&[(1, "10.0.0.1:7301"), (2, "10.0.0.9:7301")]),
        ] {
            assert!(a.same_cluster(&same) && same.same_cluster(&a));
        }
        // No member in common (another cluster reached through a reused address): refused.
        for other in [
            list(&[(1, "10.0.0.3:7301"), (2, "10.0.0.4:7301")]),
            list(&[(2, "10.0.0.1:7301"), (1, "10.0.0.2:7301")]),
            list(&[(3, "10.0.0.3:7301")]),
        ] {
            assert!(!a.same_cluster(&other));
        }
    }
}
