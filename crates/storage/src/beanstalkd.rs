//! Reading a beanstalkd binlog directory (format version 7, x86-64 layout), for taking it
//! over. See the behaviour reference, "Binlog", for the byte layout and replay rules.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustc_hash::FxHashMap;

use sprout_engine::journal::Restored;
use sprout_engine::JobState;

const JOBREC: usize = 80;

/// `binlog.N` files in `dir`, by N.
pub fn files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("binlog.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn i64_at(b: &[u8], o: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    i64::from_le_bytes(a)
}

struct Rec {
    tube: String,
    body: Bytes,
    jobrec: [u8; JOBREC],
    order: u64,
}

/// The jobs in a beanstalkd binlog directory, the largest id seen, and warnings (damaged
/// files are read up to the damage, as beanstalkd itself does).
pub fn read(dir: &Path) -> (Vec<Restored>, u64, Vec<String>) {
    let mut jobs: FxHashMap<u64, Rec> = FxHashMap::default();
    let mut warnings = Vec::new();
    let mut max_id = 0;
    let mut order = 0;
    for (_, path) in files(dir) {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let p = path.display();
        if data.len() < 4 {
            continue;
        }
        let version = u32_at(&data, 0);
        if version != 7 {
            warnings.push(format!(
                "{p}: unsupported beanstalkd binlog version {version}"
            ));
            continue;
        }
        let mut off = 4;
        loop {
            if data.len() < off + 4 {
                break;
            }
            let namelen = u32_at(&data, off) as i32;
            if !(0..=200).contains(&namelen) {
                warnings.push(format!("{p}: bad name length {namelen} at offset {off}"));
                break;
            }
            let namelen = namelen as usize;
            let rec_start = off;
            off += 4;
            if data.len() < off + namelen + JOBREC {
                if data[rec_start..].iter().any(|&b| b != 0) {
                    warnings.push(format!("{p}: record cut short at offset {rec_start}"));
                }
                break;
            }
            let name = &data[off..off + namelen];
            off += namelen;
            let mut jr = [0u8; JOBREC];
            jr.copy_from_slice(&data[off..off + JOBREC]);
            off += JOBREC;
            let id = u64::from_le_bytes([jr[0], jr[1], jr[2], jr[3], jr[4], jr[5], jr[6], jr[7]]);
            if id == 0 {
                break;
            }
            max_id = max_id.max(id);
            let state = jr[76];
            let mut full = None;
            if namelen > 0 {
                let size = u32_at(&jr, 32) as i32;
                if size < 2 || data.len() < off + size as usize {
                    warnings.push(format!("{p}: job {id}: body cut short at offset {off}"));
                    break;
                }
                let size = size as usize;
                let body = Bytes::copy_from_slice(&data[off..off + size - 2]);
                off += size;
                let tube = match sprout_protocol::parse::tube_name(name) {
                    Ok(t) => t,
                    Err(_) => {
                        warnings.push(format!("{p}: job {id}: bad tube name"));
                        break;
                    }
                };
                full = Some((tube, body));
            }
            match state {
                0 => {
                    jobs.remove(&id);
                }
                1..=4 => match (jobs.get_mut(&id), full) {
                    (Some(r), Some((tube, body))) => {
                        r.tube = tube;
                        r.body = body;
                        r.jobrec = jr;
                    }
                    (Some(r), None) => r.jobrec = jr,
                    (None, Some((tube, body))) => {
                        order += 1;
                        jobs.insert(
                            id,
                            Rec {
                                tube,
                                body,
                                jobrec: jr,
                                order,
                            },
                        );
                    }
                    (None, None) => {}
                },
                s => {
                    warnings.push(format!(
                        "{p}: job {id}: bad state {s} at offset {rec_start}"
                    ));
                    jobs.remove(&id);
                    break;
                }
            }
        }
    }
    let mut out: Vec<Restored> = jobs
        .into_iter()
        .map(|(id, r)| {
            let jr = &r.jobrec;
            let ns = |o| i64_at(jr, o).max(0) as u64;
            let state = match jr[76] {
                3 => JobState::Buried,
                4 => JobState::Delayed,
                _ => JobState::Ready,
            };
            Restored {
                extra: None,
                id,
                tube: r.tube,
                state,
                pri: u32_at(jr, 8),
                delay: (ns(16) / 1_000_000_000) as u32,
                ttr: (ns(24) / 1_000_000_000) as u32,
                created: ns(40),
                deadline: ns(48),
                // beanstalkd rebuilds the buried list in first-appearance order.
                bury_seq: r.order,
                reserves: u32_at(jr, 56),
                timeouts: u32_at(jr, 60),
                releases: u32_at(jr, 64),
                buries: u32_at(jr, 68),
                kicks: u32_at(jr, 72),
                file: 0,
                body: r.body,
            }
        })
        .collect();
    out.sort_by_key(|r| r.id);
    (out, max_id, warnings)
}
