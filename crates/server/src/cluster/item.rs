//! What a node puts in the Raft log: engine inputs of its connections, tagged with the
//! local request waiting for the answer, in a small binary form.

use bytes::Bytes;
use sprout_engine::ConnId;
use sprout_protocol::command::PutHeader;

/// One logged input. `req` names the request waiting on the node it came from (0: none).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A client connected; the session's id is taken at apply.
    Connect { req: u64 },
    /// The client went away.
    Disconnect { conn: ConnId },
    /// A command other than put, as its protocol line.
    Command {
        req: u64,
        conn: ConnId,
        line: String,
    },
    /// `put` or `put-unique` with its body (its id was taken by the `TakeId` before it).
    Put {
        req: u64,
        conn: ConnId,
        header: PutHeader,
        key: Option<String>,
        body: Bytes,
    },
    /// A put refused after its numbers parsed (counted, as beanstalkd does).
    CountPut,
    /// A pause-tube refused for its tube name (counted).
    CountPauseTube,
    /// A client blocked in reserve hung up.
    CancelWait { req: u64, conn: ConnId },
    /// A put header: its id is taken now, as on one node (whether its body comes or not);
    /// the session's next `Put` gets it.
    TakeId { conn: ConnId },
    /// Time passed (proposed by the leader when a deadline is due).
    Tick,
    /// A node restarted (or was found gone): its sessions end.
    NodeReset { node: u64 },
}

fn u64s(out: &mut Vec<u8>, vals: &[u64]) {
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads an encoded item back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

impl Item {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Item::Connect { req } => {
                o.push(1);
                u64s(&mut o, &[*req]);
            }
            Item::Disconnect { conn } => {
                o.push(2);
                u64s(&mut o, &[*conn]);
            }
            Item::Command { req, conn, line } => {
                o.push(3);
                u64s(&mut o, &[*req, *conn]);
                bytes(&mut o, line.as_bytes());
            }
            Item::Put {
                req,
                conn,
                header: h,
                key,
                body,
            } => {
                o.push(4);
                let (pri, delay, ttr, n) = (h.pri, h.delay, h.ttr, h.bytes);
                u64s(
                    &mut o,
                    &[*req, *conn, pri.into(), delay.into(), ttr.into(), n.into()],
                );
                match key {
                    Some(k) => {
                        o.push(1);
                        bytes(&mut o, k.as_bytes());
                    }
                    None => o.push(0),
                }
                bytes(&mut o, body);
            }
            Item::CountPut => o.push(5),
            Item::CountPauseTube => o.push(6),
            Item::CancelWait { req, conn } => {
                o.push(7);
                u64s(&mut o, &[*req, *conn]);
            }
            Item::TakeId { conn } => {
                o.push(10);
                u64s(&mut o, &[*conn]);
            }
            Item::Tick => o.push(8),
            Item::NodeReset { node } => {
                o.push(9);
                u64s(&mut o, &[*node]);
            }
        }
        o
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Item> {
        let (&tag, rest) = b.split_first()?;
        let mut r = Reader(rest);
        let item = match tag {
            1 => Item::Connect { req: r.u64()? },
            2 => Item::Disconnect { conn: r.u64()? },
            3 => Item::Command {
                req: r.u64()?,
                conn: r.u64()?,
                line: r.string()?,
            },
            4 => {
                let (req, conn) = (r.u64()?, r.u64()?);
                let header = PutHeader {
                    pri: r.u32()?,
                    delay: r.u32()?,
                    ttr: r.u32()?,
                    bytes: r.u32()?,
                };
                let key = match r.take(1)? {
                    [0] => None,
                    _ => Some(r.string()?),
                };
                Item::Put {
                    req,
                    conn,
                    header,
                    key,
                    body: Bytes::copy_from_slice(r.bytes()?),
                }
            }
            5 => Item::CountPut,
            6 => Item::CountPauseTube,
            7 => Item::CancelWait {
                req: r.u64()?,
                conn: r.u64()?,
            },
            10 => Item::TakeId { conn: r.u64()? },
            8 => Item::Tick,
            9 => Item::NodeReset { node: r.u64()? },
            _ => return None,
        };
        r.0.is_empty().then_some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_read_back_as_themselves() {
        let h = PutHeader {
            pri: 1,
            delay: 2,
            ttr: 3,
            bytes: 4,
        };
        for item in [
            Item::Connect { req: 7 },
            Item::Disconnect { conn: 8 },
            Item::Command {
                req: 9,
                conn: 10,
                line: "use a-tube".into(),
            },
            Item::Put {
                req: 11,
                conn: 12,
                header: h,
                key: None,
                body: Bytes::from_static(b"body\r\n\0\xff"),
            },
            Item::Put {
                req: 13,
                conn: 14,
                header: h,
                key: Some("k".into()),
                body: Bytes::new(),
            },
            Item::CountPut,
            Item::CountPauseTube,
            Item::CancelWait { req: 16, conn: 15 },
            Item::TakeId { conn: 17 },
            Item::Tick,
            Item::NodeReset { node: 3 },
        ] {
            assert_eq!(Item::decode(&item.encode()), Some(item));
        }
        assert_eq!(Item::decode(&[]), None);
        assert_eq!(Item::decode(&[3, 1]), None);
    }
}
