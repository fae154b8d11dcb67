//! Reading sprout's own log segments back at startup.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::record::{self, Next, Record, Snapshot};
use crate::Error;
use sprout_engine::journal::{Restored, RestoredExtra};
use sprout_engine::JobState;

/// Segment files are `sprout.<seq>.wal`.
pub fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("sprout.{seq}.wal"))
}

/// Our segment files in `dir`, by seq.
pub fn segments(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let s = name
                .to_str()?
                .strip_prefix("sprout.")?
                .strip_suffix(".wal")?;
            Some((s.parse().ok()?, e.path()))
        })
        .collect();
    v.sort();
    v
}

struct Rec {
    tube: String,
    extra: Option<Box<RestoredExtra>>,
    ttr: u32,
    created: u64,
    body: Bytes,
    snap: Snapshot,
    file: u32,
}

#[derive(Default)]
pub struct Recovered {
    pub jobs: Vec<Restored>,
    /// The next id to hand out: no id at or above it was handed out before.
    pub next_id: u64,
    /// Segments that remain, by seq, with their sizes on disk.
    pub segments: Vec<(u32, u64)>,
    /// Records read.
    pub records: u64,
    /// What was cut off or skipped, for the log.
    pub notes: Vec<String>,
    /// Tube policies, as last recorded.
    pub policies: Vec<(String, sprout_engine::Policy)>,
}

fn state(s: u8) -> JobState {
    match s {
        record::STATE_BURIED => JobState::Buried,
        record::STATE_DELAYED => JobState::Delayed,
        _ => JobState::Ready,
    }
}

/// Reads every segment in order. A damaged record at the end of the newest segment (a
/// write cut short by a crash) is cut off; damage anywhere else is an error naming the
/// file and offset, unless `salvage`, which keeps what precedes the damage in each file.
pub fn recover(dir: &Path, salvage: bool) -> Result<Recovered, Error> {
    let segs = segments(dir);
    let mut out = Recovered::default();
    let mut jobs: FxHashMap<u64, Rec> = FxHashMap::default();
    let last = segs.last().map(|s| s.0);
    // The latest id limit in log order (segment headers and IDS records), and the largest
    // job id seen in any record.
    let mut limit = 0u64;
    let mut max_id = 0u64;
    let mut policies: std::collections::BTreeMap<String, sprout_engine::Policy> =
        Default::default();
    for (seq, path) in &segs {
        let seq = *seq;
        let p = path.display();
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let Some((hseq, next_id)) = record::parse_header(&data) else {
            if Some(seq) == last && data.iter().all(|&b| b == 0) {
                // Created but never written: nothing to read.
                out.notes.push(format!("{p}: empty segment removed"));
                let _ = std::fs::remove_file(path);
                continue;
            }
            let e = Error::NotASegment { path: path.clone() };
            if salvage {
                out.notes.push(e.to_string());
                continue;
            }
            return Err(e);
        };
        if hseq != seq {
            let e = Error::WrongSegment {
                path: path.clone(),
                header: hseq,
            };
            if !salvage {
                return Err(e);
            }
            out.notes.push(e.to_string());
        }
        limit = next_id;
        let mut off = record::HEADER_LEN;
        loop {
            match record::decode(&data[off..]) {
                Next::End => break,
                Next::Record(r, n) => {
                    out.records += 1;
                    match r {
                        Record::IdLimit { limit: l } => limit = l,
                        Record::Policy { tube, policy } => {
                            policies.insert(tube, policy);
                        }
                        r => {
                            max_id = max_id.max(r.job_id().unwrap_or(0));
                            apply(&mut jobs, r, seq);
                        }
                    }
                    off += n;
                }
                Next::Error(e) => {
                    let claimed = if data.len() >= off + 4 {
                        u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                            as usize
                    } else {
                        0
                    };
                    let end = (off + record::FRAME_LEN + claimed).min(data.len());
                    // A write cut short by a crash leaves only zeros after the damaged record
                    // (the file was preallocated). A valid record further on means the damage
                    // is something else, whatever the damaged bytes look like.
                    let torn = Some(seq) == last
                        && data[end..].iter().all(|&b| b == 0)
                        && !valid_record_after(&data, off + 1);
                    let what = format!("{p}: damaged record at offset {off} ({e:?})");
                    if torn {
                        out.notes
                            .push(format!("{what}: a write cut short by a crash; cut off"));
                        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                            let _ = f.set_len(off as u64);
                            let _ = f.sync_all();
                        }
                    } else if salvage {
                        out.notes.push(format!("{what}: rest of the file skipped"));
                    } else {
                        return Err(Error::Damaged {
                            path: path.clone(),
                            offset: off,
                            error: e,
                        });
                    }
                    break;
                }
            }
        }
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        out.segments.push((seq, size));
    }
    out.next_id = limit.max(max_id.saturating_add(1));
    out.policies = policies.into_iter().collect();
    out.jobs = jobs
        .into_iter()
        .map(|(id, r)| Restored {
            id,
            tube: r.tube,
            state: state(r.snap.state),
            pri: r.snap.pri,
            delay: r.snap.delay,
            ttr: r.ttr,
            created: r.created,
            deadline: r.snap.deadline,
            bury_seq: r.snap.bury_seq,
            reserves: r.snap.reserves,
            timeouts: r.snap.timeouts,
            releases: r.snap.releases,
            buries: r.snap.buries,
            kicks: r.snap.kicks,
            file: r.file,
            body: r.body,
            extra: r.extra,
        })
        .collect();
    out.jobs.sort_unstable_by_key(|r| r.id);
    Ok(out)
}

/// Is there a complete, checksummed record starting anywhere at or after `from`?
fn valid_record_after(data: &[u8], from: usize) -> bool {
    (from..data.len().saturating_sub(record::FRAME_LEN)).any(|o| {
        record::plausible(&data[o..]) && matches!(record::decode(&data[o..]), Next::Record(..))
    })
}

fn apply(jobs: &mut FxHashMap<u64, Rec>, r: Record, seq: u32) {
    match r {
        Record::Full {
            id,
            snap,
            ttr,
            created,
            tube,
            body,
        } => {
            jobs.insert(
                id,
                Rec {
                    tube,
                    extra: None,
                    ttr,
                    created,
                    body,
                    snap,
                    file: seq,
                },
            );
        }
        Record::Update { id, snap } => {
            if let Some(j) = jobs.get_mut(&id) {
                j.snap = snap;
            }
        }
        Record::Delete { id } => {
            jobs.remove(&id);
        }
        Record::Flush { tube } => {
            jobs.retain(|_, j| j.tube != tube || j.snap.state == record::STATE_RESERVED);
        }
        Record::Move { id, tube } => {
            if let Some(j) = jobs.get_mut(&id) {
                j.tube = tube;
            }
        }
        Record::Key { id, key } => {
            if let Some(j) = jobs.get_mut(&id) {
                j.extra.get_or_insert_default().key = (!key.is_empty()).then_some(key);
            }
        }
        Record::Origin { id, tube } => {
            if let Some(j) = jobs.get_mut(&id) {
                j.extra.get_or_insert_default().origin = Some(tube);
            }
        }
        Record::Policy { .. } => {}
        Record::IdLimit { .. } => {}
    }
}
