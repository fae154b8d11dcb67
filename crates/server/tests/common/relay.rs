//! A fault-injecting TCP relay between the peer (Raft) ports of a test cluster: node `j`'s
//! address in `--cluster` is the relay's port for it, and the node binds elsewhere
//! (`--cluster-bind`). Each relayed connection is known by its caller (the `from` of the
//! hello that opens every peer connection) and its target, so the relay can drop the bytes
//! of one direction between two nodes (a one-way cut), of every direction touching a node
//! (isolation), and heal. Dropped bytes vanish (no reset): the sender sees a timeout, as on
//! a real partition. Connections whose fate changes are closed when it does, so no stream
//! is left with a hole in it.
//!
//! Nodes are 0-based indices here, as in `Cluster`.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    /// Directed pairs (from, to) whose bytes are dropped.
    cut: Mutex<HashSet<(usize, usize)>>,
    /// Live relayed connections: id -> (caller, target, both sockets).
    links: Mutex<HashMap<u64, (usize, usize, TcpStream, TcpStream)>>,
    next: AtomicU64,
    stop: AtomicBool,
    /// Connections relayed, and chunks dropped.
    relayed: AtomicU64,
    dropped: AtomicU64,
}

pub struct Relay {
    inner: Arc<Inner>,
    /// The port the relay listens on for each node (its address in `--cluster`).
    pub ports: Vec<u16>,
}

impl Relay {
    /// A relay for nodes whose peer listeners are at `127.0.0.1:targets[j]`.
    pub fn new(targets: &[u16]) -> Relay {
        let inner = Arc::new(Inner::default());
        let mut ports = Vec::new();
        for (to, &target) in targets.iter().enumerate() {
            let port = super::free_port();
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            ports.push(port);
            let inner = inner.clone();
            std::thread::spawn(move || {
                for s in l.incoming() {
                    if inner.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(s) = s else { continue };
                    let inner = inner.clone();
                    std::thread::spawn(move || link(inner, s, to, target));
                }
            });
        }
        Relay { inner, ports }
    }

    /// Drops what `from` sends to `to` (requests of `from`'s connections to `to`, answers
    /// on `to`'s connections to `from`); the other direction still flows.
    pub fn cut(&self, from: usize, to: usize) {
        self.change(|c| {
            c.insert((from, to));
        });
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&self, i: usize) {
        let n = self.ports.len();
        self.change(|c| {
            for j in (0..n).filter(|&j| j != i) {
                c.insert((i, j));
                c.insert((j, i));
            }
        });
    }

    /// Every cut undone.
    pub fn heal(&self) {
        self.change(|c| c.clear());
    }

    /// (connections relayed, chunks dropped) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.inner.relayed.load(Ordering::Relaxed),
            self.inner.dropped.load(Ordering::Relaxed),
        )
    }

    /// Applies `f` to the cut set, then closes every connection between two nodes whose
    /// pair changed (its callers reconnect under the new rules).
    fn change(&self, f: impl FnOnce(&mut HashSet<(usize, usize)>)) {
        let mut cut = self.inner.cut.lock().unwrap();
        let before = cut.clone();
        f(&mut cut);
        let changed: HashSet<(usize, usize)> = before.symmetric_difference(&cut).copied().collect();
        let links = self.inner.links.lock().unwrap();
        for (a, b, x, y) in links.values() {
            if changed.contains(&(*a, *b)) || changed.contains(&(*b, *a)) {
                let _ = x.shutdown(Shutdown::Both);
                let _ = y.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        for &p in &self.ports {
            let _ = TcpStream::connect(("127.0.0.1", p));
        }
        for (_, _, x, y) in self.inner.links.lock().unwrap().values() {
            let _ = x.shutdown(Shutdown::Both);
            let _ = y.shutdown(Shutdown::Both);
        }
    }
}

/// Reads the hello frame (u32 length, u32 crc, JSON `{"from":N,...}`) that opens a peer
/// connection; returns its bytes and the caller's 0-based index.
fn hello(s: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len > 4096 {
        return None;
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    // `{"from":N,"cluster":M}` (no JSON parser: not every package including this has one).
    let text = std::str::from_utf8(&body).ok()?;
    let rest = &text[text.find("\"from\":")? + 7..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let from: usize = digits.parse().ok()?;
    let mut all = h.to_vec();
    all.extend_from_slice(&body);
    Some((all, from.checked_sub(1)?))
}

fn link(inner: Arc<Inner>, mut client: TcpStream, to: usize, target: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((first, from)) = hello(&mut client) else {
        return;
    };
    let _ = client.set_read_timeout(None);
    let Ok(server) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], target)),
        Duration::from_secs(1),
    ) else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let id = inner.next.fetch_add(1, Ordering::Relaxed);
    {
        // Registered under the cut lock: a change either sees this link or precedes it
        // (and the pipes read the new rules).
        let _cut = inner.cut.lock().unwrap();
        let mut links = inner.links.lock().unwrap();
        links.insert(
            id,
            (
                from,
                to,
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
            ),
        );
    }
    inner.relayed.fetch_add(1, Ordering::Relaxed);
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let back = {
        let inner = inner.clone();
        std::thread::spawn(move || pipe(&inner, s2, c2, (to, from), Vec::new()))
    };
    pipe(&inner, client, server, (from, to), first);
    let _ = back.join();
    inner.links.lock().unwrap().remove(&id);
}

/// Copies `src` to `dst` (after `first`), dropping what passes while `dir` is cut; closes
/// both when either side ends.
fn pipe(
    inner: &Inner,
    mut src: TcpStream,
    mut dst: TcpStream,
    dir: (usize, usize),
    first: Vec<u8>,
) {
    let mut buf = first;
    loop {
        if !buf.is_empty() {
            if inner.cut.lock().unwrap().contains(&dir) {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            } else if dst.write_all(&buf).is_err() {
                break;
            }
        }
        buf.resize(64 << 10, 0);
        match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.truncate(n),
        }
    }
    let _ = src.shutdown(Shutdown::Both);
    let _ = dst.shutdown(Shutdown::Both);
}
