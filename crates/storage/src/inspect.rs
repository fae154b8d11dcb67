//! `sprout binlog inspect|verify DIR`: what a binlog directory holds, read without a server.

use std::fmt::Write as _;
use std::path::Path;

use rustc_hash::FxHashMap;

use super::record::{self, Next, Record};
use super::{beanstalkd, recover};

/// One segment's contents.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FileReport {
    pub name: String,
    pub(crate) seq: u32,
    pub(crate) size: u64,
    /// Bytes holding records (header included); the rest is preallocated zeros.
    pub(crate) used: u64,
    pub records: u64,
    pub(crate) full: u64,
    pub(crate) updates: u64,
    pub(crate) deletes: u64,
    /// Bytes of records still needed: the latest full record of each live job and its
    /// latest update.
    pub live_bytes: u64,
    pub(crate) dead_bytes: u64,
    /// The first damage found, as "offset N: what".
    pub damage: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub live_jobs: u64,
    /// The id a server started on this directory would hand out next.
    pub next_id: u64,
    pub(crate) beanstalkd_files: Vec<String>,
}

/// Reads every segment in `dir`.
pub fn inspect(dir: &Path) -> std::io::Result<Report> {
    let mut files = Vec::new();
    // id -> (file index, full record len, update location)
    let mut full: FxHashMap<u64, (usize, u64)> = FxHashMap::default();
    let mut update: FxHashMap<u64, (usize, u64)> = FxHashMap::default();
    // id -> (tube, reserved), for flush records.
    let mut where_: FxHashMap<u64, (String, bool)> = FxHashMap::default();
    // As recovery: the latest id limit in log order, and the largest job id seen.
    let (mut limit, mut max_id) = (0u64, 0u64);
    for (seq, path) in recover::segments(dir) {
        let data = std::fs::read(&path)?;
        let mut f = FileReport {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            seq,
            size: data.len() as u64,
            ..Default::default()
        };
        let idx = files.len();
        if record::parse_header(&data).is_none() {
            f.damage = Some("offset 0: not a sprout segment header".into());
            files.push(f);
            continue;
        }
        if let Some((_, l)) = record::parse_header(&data) {
            limit = l;
        }
        let mut off = record::HEADER_LEN;
        loop {
            match record::decode(&data[off..]) {
                Next::End => break,
                Next::Record(r, n) => {
                    f.records += 1;
                    max_id = max_id.max(r.job_id().unwrap_or(0));
                    match r {
                        Record::Full { id, tube, snap, .. } => {
                            f.full += 1;
                            full.insert(id, (idx, n as u64));
                            update.remove(&id);
                            where_.insert(id, (tube, snap.state == record::STATE_RESERVED));
                        }
                        Record::Update { id, snap } => {
                            f.updates += 1;
                            if full.contains_key(&id) {
                                update.insert(id, (idx, n as u64));
                            }
                            if let Some(w) = where_.get_mut(&id) {
                                w.1 = snap.state == record::STATE_RESERVED;
                            }
                        }
                        Record::Delete { id } => {
                            f.deletes += 1;
                            full.remove(&id);
                            update.remove(&id);
                            where_.remove(&id);
                        }
                        Record::Flush { tube } => {
                            f.deletes += 1;
                            where_.retain(|id, (t, reserved)| {
                                let keep = *t != tube || *reserved;
                                if !keep {
                                    full.remove(id);
                                    update.remove(id);
                                }
                                keep
                            });
                        }
                        Record::Move { id, tube } => {
                            f.updates += 1;
                            if let Some(w) = where_.get_mut(&id) {
                                w.0 = tube;
                            }
                        }
                        Record::Key { .. } | Record::Origin { .. } | Record::Policy { .. } => {
                            f.updates += 1
                        }
                        // Counted among the records only (one every 1024 ids).
                        Record::IdLimit { limit: l } => limit = l,
                    }
                    off += n;
                }
                Next::Error(e) => {
                    f.damage = Some(format!("offset {off}: {e:?}"));
                    break;
                }
            }
        }
        f.used = off as u64;
        files.push(f);
    }
    for (idx, len) in full.values().chain(update.values()) {
        files[*idx].live_bytes += len;
    }
    for f in &mut files {
        f.dead_bytes = f
            .used
            .saturating_sub(record::HEADER_LEN as u64 + f.live_bytes);
    }
    Ok(Report {
        live_jobs: full.len() as u64,
        next_id: limit.max(max_id.saturating_add(1)),
        beanstalkd_files: beanstalkd::files(dir)
            .into_iter()
            .map(|(_, p)| p.display().to_string())
            .collect(),
        files,
    })
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<20} {:>10} {:>10} {:>8} {:>7} {:>8} {:>8} {:>10} {:>10}  damage",
        "file", "size", "used", "records", "full", "updates", "deletes", "live B", "dead B"
    );
    for f in &r.files {
        let _ = writeln!(
            s,
            "{:<20} {:>10} {:>10} {:>8} {:>7} {:>8} {:>8} {:>10} {:>10}  {}",
            f.name,
            f.size,
            f.used,
            f.records,
            f.full,
            f.updates,
            f.deletes,
            f.live_bytes,
            f.dead_bytes,
            f.damage.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(s, "live jobs: {}", r.live_jobs);
    let _ = writeln!(s, "next id: {}", r.next_id);
    if !r.beanstalkd_files.is_empty() {
        let _ = writeln!(
            s,
            "beanstalkd files (taken over at the next sproutd start): {}",
            r.beanstalkd_files.join(", ")
        );
    }
    s
}
