//! Replication for sprout on openraft: the Raft log on disk ([`log`]), the state machine
//! adapter around whatever applies committed entries ([`sm`], generic over [`Apply`]), the
//! peer network over TCP ([`net`]) and the node that ties them together ([`node`]).
//!
//! The crate knows nothing of the engine or the protocol: an entry carries opaque items,
//! stamped by the leader with its clock, tagged with the node they came from and a
//! per-node sequence number (so that a batch retried after a leader change is applied
//! once).

// openraft's traits return its (large) `StorageError`; the helpers here return it too.
#![allow(clippy::result_large_err)]

mod codec;
pub mod latency;
pub mod log;
pub mod net;
pub mod node;
pub mod sm;

pub use node::{Node, Role, Status};
pub use sm::Apply;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// Set in a batch's origin for a leader's own decision ([`Node::decide`]): proposed once,
/// by the leader that took it, and applied without the sequence check of retried batches.
pub const DECISION: NodeId = 1 << 63;

/// Opaque bytes, serialized as a JSON string that needs no escapes: a printable ASCII byte
/// (other than `"` and `\`) is its own char, any other byte `b` is the char U+0100 + `b`
/// (two bytes of UTF-8). Text bodies stay about one byte per byte, and the binary headers
/// of items (little-endian integers, mostly zero bytes) take two bytes per byte instead of
/// six (`\u0000`), with no escape to write or parse. Read back, a char below U+0100 is
/// its own byte, so entries written before this encoding (every byte as the char of its
/// value) still decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    fn plain(b: u8) -> bool {
        (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // U+0100 + b in UTF-8: 0b110001xx 0b10xxxxxx.
        let mut text = Vec::with_capacity(self.0.len() * 2);
        for &b in &self.0 {
            if Payload::plain(b) {
                text.push(b);
            } else {
                text.extend_from_slice(&[0xc4 | (b >> 6), 0x80 | (b & 0x3f)]);
            }
        }
        let text = String::from_utf8(text).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a payload string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Payload, E> {
                let mut out = Vec::with_capacity(v.len());
                let mut bytes = v.as_bytes().iter();
                while let Some(&b) = bytes.next() {
                    // Valid UTF-8: a lead byte is followed by its continuation byte.
                    let byte = match b {
                        0..0x80 => b,
                        // U+0080..U+00FF (the earlier encoding) and U+0100..U+01FF.
                        0xc2..=0xc7 => {
                            let next = bytes.next().copied().unwrap_or(0);
                            ((b & 0x03) << 6) | (next & 0x3f)
                        }
                        _ => return Err(E::custom("payload char past U+01FF")),
                    };
                    out.push(byte);
                }
                Ok(Payload(out))
            }
        }
        d.deserialize_str(Text)
    }
}

/// One log entry's application data: items from one node, in the order it submitted them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The leader's clock when it took the batch (nanoseconds since the Unix epoch).
    pub now: u64,
    /// The node whose clients sent the items.
    pub origin: NodeId,
    /// Increasing per origin (across restarts too): a batch whose sequence number is not
    /// above the last applied one of its origin is a retry, and is skipped.
    pub seq: u64,
    pub items: Vec<Payload>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch(origin {} seq {} items {})",
            self.origin,
            self.seq,
            self.items.len()
        )
    }
}

openraft::declare_raft_types!(
    /// sprout's Raft types.
    pub TypeConfig:
        D = Batch,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;

#[cfg(test)]
mod tests {
    use super::Payload;

    #[test]
    fn a_payload_round_trips_through_json_without_escapes() {
        let all: Vec<u8> = (0..=255u8).chain(*b"text \"quoted\" \\ body").collect();
        let json = serde_json::to_string(&Payload(all.clone())).unwrap();
        // One string with no escape in it: nothing for the writer or the reader to expand.
        assert!(!json[1..json.len() - 1].contains(['\\', '"']), "{json}");
        assert_eq!(
            serde_json::from_str::<Payload>(&json).unwrap(),
            Payload(all)
        );
        // Text stays one byte per byte; a zero byte takes two, not six (`\u0000`).
        assert_eq!(
            serde_json::to_string(&Payload(b"hello".to_vec())).unwrap(),
            "\"hello\""
        );
        assert_eq!(
            serde_json::to_string(&Payload(vec![0; 8])).unwrap().len(),
            2 + 16
        );
    }

    #[test]
    fn entries_of_the_earlier_encoding_still_decode() {
        // Before: every byte as the char of its value (JSON escapes for control bytes).
        let all: Vec<u8> = (0..=255u8).collect();
        let old: String = all.iter().map(|&b| b as char).collect();
        let json = serde_json::to_string(&old).unwrap();
        assert_eq!(
            serde_json::from_str::<Payload>(&json).unwrap(),
            Payload(all)
        );
        // Chars past the two ranges are refused.
        assert!(serde_json::from_str::<Payload>("\"\u{200}\"").is_err());
    }
}
