//! sprout's log record format. Every record is framed and checksummed:
//!
//! ```text
//! segment := header record* zero-padding
//! header  := magic "SPROUTWL" (8) | format version u32 LE | segment seq u32 LE |
//!            id limit u64 LE (no id at or above it was handed out before this segment)
//! record  := len u32 LE (payload bytes, ≥ 1) | crc32c(payload) u32 LE | payload
//! payload := kind u8 | fields (all little-endian)
//!   FULL   (1): id u64 | snapshot | ttr u32 (s) | created u64 (ns) | tube_len u8 | tube |
//!               body_len u32 | body
//!   UPDATE (2): id u64 | snapshot
//!   DELETE (3): id u64
//!   IDS    (4): limit u64 (version 2): from here on, no id at or above `limit` is handed
//!               out until a later IDS record; ids are taken in blocks, and a clean
//!               shutdown writes the exact next id
//!   FLUSH  (5): 0 u64 | tube_len u8 | tube (version 2): every job of the tube not reserved
//!               at this point is deleted
//!   MOVE   (6): id u64 | tube_len u8 | tube (version 2): the job is now in this tube
//!   KEY    (7): id u64 | key_len u8 | key (version 2): the job's `put-unique` key (none
//!               if empty); follows the job's FULL record, and a MOVE
//!   ORIGIN (8): id u64 | tube_len u8 | tube (version 2): the tube a dead-lettered job came
//!               from; follows its FULL record, and the MOVE that dead-lettered it
//!   POLICY (9): 0 u64 | tube_len u8 | tube | max_reserves u32 | exhaust u8 (0 bury,
//!               1 delete, 2 tube) | exhaust_tube_len u8 | exhaust_tube | backoff u8
//!               (0 none, 1 fixed, 2 exp) | a u32 | b u32 | max_ready u64 (version 2): the
//!               tube's whole policy (all defaults: none)
//! snapshot := state u8 | pri u32 | delay u32 (s) | deadline u64 (ns) | bury_seq u64 |
//!             reserves u32 | timeouts u32 | releases u32 | buries u32 | kicks u32
//! ```
//!
//! A zero `len` is the preallocated tail: the end of the segment's data.
//!
//! Version 2 added IDS; version 1 segments (no IDS records) are read as before.

use bytes::{BufMut, Bytes};
use sprout_protocol::{Backoff, Exhaust};

pub const MAGIC: &[u8; 8] = b"SPROUTWL";
pub const VERSION: u32 = 2;
/// The oldest format version still read.
pub const OLDEST_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 24;
/// Framing bytes before a payload.
pub(crate) const FRAME_LEN: usize = 8;
const SNAPSHOT_LEN: usize = 1 + 4 + 4 + 8 + 8 + 5 * 4;
/// Size of an UPDATE record, framing included.
pub(crate) const UPDATE_LEN: usize = FRAME_LEN + 1 + 8 + SNAPSHOT_LEN;
/// Largest payload we accept when reading (a body of up to 1 GiB plus fields).
pub(crate) const MAX_PAYLOAD: usize = (1 << 30) + 1024;

/// The persistent part of a job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// 1 ready, 2 reserved, 3 buried, 4 delayed (beanstalkd's numbering).
    pub state: u8,
    pub pri: u32,
    pub delay: u32,
    pub deadline: u64,
    pub bury_seq: u64,
    pub reserves: u32,
    pub timeouts: u32,
    pub releases: u32,
    pub buries: u32,
    pub kicks: u32,
}

pub const STATE_READY: u8 = 1;
pub const STATE_RESERVED: u8 = 2;
pub const STATE_BURIED: u8 = 3;
pub const STATE_DELAYED: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Full {
        id: u64,
        snap: Snapshot,
        ttr: u32,
        created: u64,
        tube: String,
        body: Bytes,
    },
    Update {
        id: u64,
        snap: Snapshot,
    },
    Delete {
        id: u64,
    },
    /// No id at or above `limit` is handed out until the next such record.
    IdLimit {
        limit: u64,
    },
    /// Every job of the tube that is not reserved at this point is deleted.
    Flush {
        tube: String,
    },
    /// The job is now in this tube.
    Move {
        id: u64,
        tube: String,
    },
    /// The job's `put-unique` key (empty: none).
    Key {
        id: u64,
        key: String,
    },
    /// The tube a dead-lettered job came from.
    Origin {
        id: u64,
        tube: String,
    },
    /// A tube's whole policy.
    Policy {
        tube: String,
        policy: sprout_engine::Policy,
    },
}

impl Record {
    /// The job the record is about (None for an id limit).
    pub fn job_id(&self) -> Option<u64> {
        match self {
            Record::Full { id, .. }
            | Record::Update { id, .. }
            | Record::Delete { id }
            | Record::Move { id, .. }
            | Record::Key { id, .. }
            | Record::Origin { id, .. } => Some(*id),
            Record::IdLimit { .. } | Record::Flush { .. } | Record::Policy { .. } => None,
        }
    }
}

pub fn header(seq: u32, next_id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&next_id.to_le_bytes());
    h
}

/// (seq, next id) from a segment header, if it is one of ours in this version.
pub fn parse_header(h: &[u8]) -> Option<(u32, u64)> {
    if h.len() < HEADER_LEN || &h[..8] != MAGIC {
        return None;
    }
    let v = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(OLDEST_VERSION..=VERSION).contains(&v) {
        return None;
    }
    let seq = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    let mut n = [0u8; 8];
    n.copy_from_slice(&h[16..24]);
    Some((seq, u64::from_le_bytes(n)))
}

/// Size of a FULL record for this tube name and body, framing included.
pub fn full_len(tube_len: usize, body_len: usize) -> usize {
    FRAME_LEN + 1 + 8 + SNAPSHOT_LEN + 4 + 8 + 1 + tube_len + 4 + body_len
}

fn put_snapshot(out: &mut Vec<u8>, s: &Snapshot) {
    out.put_u8(s.state);
    out.put_u32_le(s.pri);
    out.put_u32_le(s.delay);
    out.put_u64_le(s.deadline);
    out.put_u64_le(s.bury_seq);
    for c in [s.reserves, s.timeouts, s.releases, s.buries, s.kicks] {
        out.put_u32_le(c);
    }
}

/// Appends one framed record to `out`; returns its length.
pub fn encode(out: &mut Vec<u8>, r: &Record) -> usize {
    match r {
        Record::Full {
            id,
            snap,
            ttr,
            created,
            tube,
            body,
        } => encode_full(out, *id, snap, *ttr, *created, tube, body),
        Record::Update { id, snap } => framed(out, |out| {
            out.put_u8(2);
            out.put_u64_le(*id);
            put_snapshot(out, snap);
        }),
        Record::Delete { id } => framed(out, |out| {
            out.put_u8(3);
            out.put_u64_le(*id);
        }),
        Record::IdLimit { limit } => framed(out, |out| {
            out.put_u8(4);
            out.put_u64_le(*limit);
        }),
        Record::Flush { tube } => framed(out, |out| named(out, 5, 0, tube)),
        Record::Move { id, tube } => framed(out, |out| named(out, 6, *id, tube)),
        Record::Key { id, key } => framed(out, |out| named(out, 7, *id, key)),
        Record::Origin { id, tube } => framed(out, |out| named(out, 8, *id, tube)),
        Record::Policy { tube, policy } => framed(out, |out| {
            named(out, 9, 0, tube);
            out.put_u32_le(policy.max_reserves);
            let (kind, dlq) = match &policy.on_exhaust {
                Exhaust::Bury => (0, ""),
                Exhaust::Delete => (1, ""),
                Exhaust::Tube(t) => (2, t.as_str()),
            };
            out.put_u8(kind);
            out.put_u8(dlq.len() as u8);
            out.extend_from_slice(dlq.as_bytes());
            let (kind, a, b) = match policy.retry_backoff {
                Backoff::None => (0, 0, 0),
                Backoff::Fixed(s) => (1, s, 0),
                Backoff::Exp { base, cap } => (2, base, cap),
            };
            out.put_u8(kind);
            out.put_u32_le(a);
            out.put_u32_le(b);
            out.put_u64_le(policy.max_ready);
        }),
    }
}

/// `encode` of a full record from borrowed parts (the hot path: no copy of the body or
/// the tube name before the one into `out`).
pub(crate) fn encode_full(
    out: &mut Vec<u8>,
    id: u64,
    snap: &Snapshot,
    ttr: u32,
    created: u64,
    tube: &str,
    body: &[u8],
) -> usize {
    framed(out, |out| {
        out.put_u8(1);
        out.put_u64_le(id);
        put_snapshot(out, snap);
        out.put_u32_le(ttr);
        out.put_u64_le(created);
        out.put_u8(tube.len() as u8);
        out.extend_from_slice(tube.as_bytes());
        out.put_u32_le(body.len() as u32);
        out.extend_from_slice(body);
    })
}

/// Appends the payload `put` writes, framed (payload length and CRC); returns the length.
/// The head the records naming a tube or key share: type, job id (0 when none), the
/// name's length and bytes.
fn named(out: &mut Vec<u8>, kind: u8, id: u64, name: &str) {
    out.put_u8(kind);
    out.put_u64_le(id);
    out.put_u8(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn framed(out: &mut Vec<u8>, put: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    put(out);
    let payload_len = out.len() - start - FRAME_LEN;
    let crc = crc32c::crc32c(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the frame announces.
    Truncated,
    /// Checksum mismatch.
    Checksum,
    /// The payload is not a valid record.
    Malformed(&'static str),
}

/// Reads a little-endian cursor.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed("short payload"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A tube name: length byte, then the name.
    fn name(&mut self) -> Result<String, DecodeError> {
        let n = self.u8()? as usize;
        let s =
            std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Malformed("tube name"))?;
        sprout_protocol::parse::tube_name(s.as_bytes())
            .map_err(|_| DecodeError::Malformed("tube name"))
    }

    fn snapshot(&mut self) -> Result<Snapshot, DecodeError> {
        let s = Snapshot {
            state: self.u8()?,
            pri: self.u32()?,
            delay: self.u32()?,
            deadline: self.u64()?,
            bury_seq: self.u64()?,
            reserves: self.u32()?,
            timeouts: self.u32()?,
            releases: self.u32()?,
            buries: self.u32()?,
            kicks: self.u32()?,
        };
        if !(STATE_READY..=STATE_DELAYED).contains(&s.state) {
            return Err(DecodeError::Malformed("bad state"));
        }
        Ok(s)
    }
}

/// The outcome of reading at one offset.
#[derive(Debug)]
pub enum Next {
    /// A record and its framed length.
    Record(Record, usize),
    /// Zero padding or the end of the data: no more records here.
    End,
    Error(DecodeError),
}

/// A cheap test, without the checksum, of whether a record could start at `buf`: its
/// framing and field lengths agree. For scanning damaged data for the next real record.
pub(crate) fn plausible(buf: &[u8]) -> bool {
    let u32_at = |o: usize| {
        buf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(len) = u32_at(0) else { return false };
    if len == 0 || len > MAX_PAYLOAD || buf.len() < FRAME_LEN + len {
        return false;
    }
    match buf[FRAME_LEN] {
        1 => {
            // kind, id, snapshot, ttr, created, then tube_len, tube, body_len, body
            let tl_at = FRAME_LEN + 1 + 8 + SNAPSHOT_LEN + 4 + 8;
            let Some(&tl) = buf.get(tl_at) else {
                return false;
            };
            let Some(bl) = u32_at(tl_at + 1 + tl as usize) else {
                return false;
            };
            len == 1 + 8 + SNAPSHOT_LEN + 4 + 8 + 1 + tl as usize + 4 + bl
        }
        2 => len == UPDATE_LEN - FRAME_LEN,
        3 | 4 => len == 1 + 8,
        9 => true,
        5..=8 => buf
            .get(FRAME_LEN + 9)
            .is_some_and(|&tl| len == 1 + 8 + 1 + tl as usize),
        _ => false,
    }
}

/// Reads the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Next {
    if buf.len() < 4 {
        return if buf.iter().all(|&b| b == 0) {
            Next::End
        } else {
            Next::Error(DecodeError::Truncated)
        };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Next::End;
    }
    if len > MAX_PAYLOAD {
        return Next::Error(DecodeError::Malformed("record length out of range"));
    }
    if buf.len() < FRAME_LEN + len {
        return Next::Error(DecodeError::Truncated);
    }
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = &buf[FRAME_LEN..FRAME_LEN + len];
    if crc32c::crc32c(payload) != crc {
        return Next::Error(DecodeError::Checksum);
    }
    match parse(payload) {
        Ok(r) => Next::Record(r, FRAME_LEN + len),
        Err(e) => Next::Error(e),
    }
}

fn parse(payload: &[u8]) -> Result<Record, DecodeError> {
    let mut c = Cur(payload);
    let kind = c.u8()?;
    let id = c.u64()?;
    if id == 0 && !matches!(kind, 4 | 5 | 9) {
        return Err(DecodeError::Malformed("job id 0"));
    }
    let r = match kind {
        1 => {
            let snap = c.snapshot()?;
            let ttr = c.u32()?;
            let created = c.u64()?;
            let tl = c.u8()? as usize;
            let tube = std::str::from_utf8(c.take(tl)?)
                .map_err(|_| DecodeError::Malformed("tube name"))?
                .to_string();
            if sprout_protocol::parse::tube_name(tube.as_bytes()).is_err() {
                return Err(DecodeError::Malformed("tube name"));
            }
            let bl = c.u32()? as usize;
            let body = Bytes::copy_from_slice(c.take(bl)?);
            Record::Full {
                id,
                snap,
                ttr,
                created,
                tube,
                body,
            }
        }
        2 => Record::Update {
            id,
            snap: c.snapshot()?,
        },
        3 => Record::Delete { id },
        4 => Record::IdLimit { limit: id },
        5 => Record::Flush { tube: c.name()? },
        6 => Record::Move {
            id,
            tube: c.name()?,
        },
        8 => Record::Origin {
            id,
            tube: c.name()?,
        },
        9 => {
            let tube = c.name()?;
            let max_reserves = c.u32()?;
            let kind = c.u8()?;
            let dlq_len = c.u8()? as usize;
            let dlq = c.take(dlq_len)?;
            let on_exhaust = match kind {
                0 => Exhaust::Bury,
                1 => Exhaust::Delete,
                2 => Exhaust::Tube(
                    sprout_protocol::parse::tube_name(dlq)
                        .map_err(|_| DecodeError::Malformed("tube name"))?,
                ),
                _ => return Err(DecodeError::Malformed("exhaust action")),
            };
            let kind = c.u8()?;
            let (a, b) = (c.u32()?, c.u32()?);
            let retry_backoff = match kind {
                0 => Backoff::None,
                1 => Backoff::Fixed(a),
                2 => Backoff::Exp { base: a, cap: b },
                _ => return Err(DecodeError::Malformed("backoff")),
            };
            let max_ready = c.u64()?;
            Record::Policy {
                tube,
                policy: sprout_engine::Policy {
                    max_reserves,
                    on_exhaust,
                    retry_backoff,
                    max_ready,
                },
            }
        }
        7 => {
            let kl = c.u8()? as usize;
            let key = std::str::from_utf8(c.take(kl)?)
                .map_err(|_| DecodeError::Malformed("key"))?
                .to_string();
            if !key.is_empty() && sprout_protocol::parse::tube_name(key.as_bytes()).is_err() {
                return Err(DecodeError::Malformed("key"));
            }
            Record::Key { id, key }
        }
        _ => return Err(DecodeError::Malformed("unknown record kind")),
    };
    if !c.0.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes in record"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            state: STATE_BURIED,
            pri: 7,
            delay: 3,
            deadline: 99,
            bury_seq: 5,
            reserves: 1,
            timeouts: 2,
            releases: 3,
            buries: 4,
            kicks: 5,
        }
    }

    #[test]
    fn round_trip() {
        let recs = vec![
            Record::Full {
                id: 1,
                snap: snap(),
                ttr: 60,
                created: 12345,
                tube: "emails".into(),
                body: Bytes::from_static(b"a\r\n\0b"),
            },
            Record::Update {
                id: 2,
                snap: snap(),
            },
            Record::Delete { id: 3 },
            Record::IdLimit { limit: 4096 },
            Record::Flush {
                tube: "emails".into(),
            },
            Record::Move {
                id: 7,
                tube: "dead".into(),
            },
            Record::Key {
                id: 8,
                key: "order-42".into(),
            },
            Record::Origin {
                id: 9,
                tube: "emails".into(),
            },
            Record::Policy {
                tube: "emails".into(),
                policy: sprout_engine::Policy {
                    max_reserves: 3,
                    on_exhaust: Exhaust::Tube("emails-dead".into()),
                    retry_backoff: Backoff::Exp { base: 2, cap: 60 },
                    max_ready: 1000,
                },
            },
        ];
        let mut buf = Vec::new();
        let lens: Vec<usize> = recs.iter().map(|r| encode(&mut buf, r)).collect();
        assert_eq!(lens[0], full_len(6, 5));
        assert_eq!(lens[1], UPDATE_LEN);
        buf.extend_from_slice(&[0; 32]);
        let mut off = 0;
        for r in &recs {
            match decode(&buf[off..]) {
                Next::Record(got, n) => {
                    assert_eq!(&got, r);
                    off += n;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(decode(&buf[off..]), Next::End));
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &Record::Update {
                id: 9,
                snap: snap(),
            },
        );
        for cut in 1..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Next::Error(DecodeError::Truncated)),
                "cut {cut}"
            );
        }
        for i in FRAME_LEN..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x40;
            assert!(
                matches!(decode(&b), Next::Error(DecodeError::Checksum)),
                "flip {i}"
            );
        }
    }
}
