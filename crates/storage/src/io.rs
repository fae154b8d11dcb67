//! Segment I/O behind a small trait: the log writes, syncs, cuts, reads back and deletes
//! segment files only through [`SegmentIo`] and [`SegmentFile`], so that tests can make the
//! disk fail ([`FaultIo`]: no space, write or sync errors) or hold an fsync to see what
//! the server shows meanwhile. Recovery at startup reads the directory directly.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::recover::segment_path;

/// The files of one log directory.
pub trait SegmentIo: Send + Sync {
    /// Creates segment `seq` (replacing a file of that name), with `size` bytes reserved
    /// as zeros and synced, so that running out of disk shows here and not mid-record,
    /// and so that later syncs flush data only. The next write goes to its start.
    fn create(&self, seq: u32, size: u64) -> io::Result<Arc<dyn SegmentFile>>;
    /// The whole segment (for compaction).
    fn read(&self, seq: u32) -> io::Result<Vec<u8>>;
    fn remove(&self, seq: u32) -> io::Result<()>;
    fn exists(&self, seq: u32) -> bool;
    /// Makes creations and removals durable.
    fn sync_dir(&self);
    /// For messages.
    fn path(&self, seq: u32) -> PathBuf;
}

/// One open segment. Writes append at the file's position.
pub trait SegmentFile: Send + Sync {
    fn write_all(&self, b: &[u8]) -> io::Result<()>;
    fn sync_data(&self) -> io::Result<()>;
    fn sync_all(&self) -> io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Real files in a directory.
pub struct FileIo {
    dir: PathBuf,
}

impl FileIo {
    pub fn new(dir: &Path) -> FileIo {
        FileIo {
            dir: dir.to_path_buf(),
        }
    }
}

impl SegmentFile for File {
    fn write_all(&self, b: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, b)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn sync_all(&self) -> io::Result<()> {
        File::sync_all(self)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl SegmentIo for FileIo {
    fn create(&self, seq: u32, size: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let path = self.path(seq);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        if let Err(e) = preallocate(&mut f, size) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Arc::new(f))
    }
    fn read(&self, seq: u32) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(seq))
    }
    fn remove(&self, seq: u32) -> io::Result<()> {
        std::fs::remove_file(self.path(seq))
    }
    fn exists(&self, seq: u32) -> bool {
        self.path(seq).exists()
    }
    fn sync_dir(&self) {
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
    fn path(&self, seq: u32) -> PathBuf {
        segment_path(&self.dir, seq)
    }
}

/// Fills a new segment with zeros up to `size`, syncs it, and rewinds.
fn preallocate(f: &mut File, size: u64) -> io::Result<()> {
    let zeros = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    f.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Real files with faults on demand, for tests: a disk of limited size (a segment takes
/// its full size from the moment it is created, as preallocated files do), writes and
/// syncs that fail, and syncs held until released.
pub struct FaultIo {
    files: FileIo,
    state: Mutex<Faults>,
    changed: Condvar,
}

#[derive(Default)]
struct Faults {
    /// Bytes the disk has left for new segments; None: no limit.
    space: Option<u64>,
    /// Sizes of the segments created through this, by seq.
    sizes: std::collections::BTreeMap<u32, u64>,
    fail_writes: bool,
    fail_syncs: bool,
    hold_syncs: bool,
    /// Syncs that have started waiting while held.
    held: u64,
    syncs: u64,
}

impl FaultIo {
    pub fn new(dir: &Path) -> Arc<FaultIo> {
        Arc::new(FaultIo {
            files: FileIo::new(dir),
            state: Mutex::new(Faults::default()),
            changed: Condvar::new(),
        })
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Limits the bytes available to new segments from now on (None: unlimited).
    pub fn set_space(&self, bytes: Option<u64>) {
        self.faults().space = bytes;
    }

    pub fn set_fail_writes(&self, on: bool) {
        self.faults().fail_writes = on;
    }

    pub fn set_fail_syncs(&self, on: bool) {
        self.faults().fail_syncs = on;
    }

    /// From now on every data sync waits until [`FaultIo::release_syncs`].
    pub fn hold_syncs(&self) {
        self.faults().hold_syncs = true;
    }

    pub fn release_syncs(&self) {
        self.faults().hold_syncs = false;
        self.changed.notify_all();
    }

    /// Waits (at most `timeout`) until some sync is held; true if one is.
    pub fn wait_held(&self, timeout: std::time::Duration) -> bool {
        let g = self.faults();
        let (g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |f| f.held == 0)
            .unwrap_or_else(|p| p.into_inner());
        g.held > 0
    }

    /// Data syncs completed so far.
    pub fn syncs(&self) -> u64 {
        self.faults().syncs
    }

    fn no_space() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOSPC)
    }
}

struct FaultFile {
    seq: u32,
    file: Arc<dyn SegmentFile>,
    io: Arc<FaultIo>,
}

impl SegmentFile for FaultFile {
    fn write_all(&self, b: &[u8]) -> io::Result<()> {
        if self.io.faults().fail_writes {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.file.write_all(b)
    }
    fn sync_data(&self) -> io::Result<()> {
        {
            let mut f = self.io.faults();
            if f.hold_syncs {
                f.held += 1;
                self.io.changed.notify_all();
                while f.hold_syncs {
                    f = self.io.changed.wait(f).unwrap_or_else(|p| p.into_inner());
                }
                f.held -= 1;
            }
            if f.fail_syncs {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        self.file.sync_data()?;
        self.io.faults().syncs += 1;
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()?;
        self.file.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        // A cut segment gives back what it no longer holds.
        let mut f = self.io.faults();
        if let Some(size) = f.sizes.get_mut(&self.seq) {
            let freed = size.saturating_sub(len);
            *size -= freed;
            if let Some(space) = f.space.as_mut() {
                *space += freed;
            }
        }
        Ok(())
    }
}

impl SegmentIo for Arc<FaultIo> {
    fn create(&self, seq: u32, size: u64) -> io::Result<Arc<dyn SegmentFile>> {
        {
            let mut f = self.faults();
            if f.fail_writes {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let old = f.sizes.remove(&seq).unwrap_or(0);
            if let Some(space) = f.space.as_mut() {
                *space += old;
                if *space < size {
                    return Err(FaultIo::no_space());
                }
                *space -= size;
            }
            f.sizes.insert(seq, size);
        }
        let file = self.files.create(seq, size)?;
        Ok(Arc::new(FaultFile {
            seq,
            file,
            io: self.clone(),
        }))
    }
    fn read(&self, seq: u32) -> io::Result<Vec<u8>> {
        self.files.read(seq)
    }
    fn remove(&self, seq: u32) -> io::Result<()> {
        self.files.remove(seq)?;
        let mut f = self.faults();
        if let Some(size) = f.sizes.remove(&seq) {
            if let Some(space) = f.space.as_mut() {
                *space += size;
            }
        }
        Ok(())
    }
    fn exists(&self, seq: u32) -> bool {
        self.files.exists(seq)
    }
    fn sync_dir(&self) {
        self.files.sync_dir()
    }
    fn path(&self, seq: u32) -> PathBuf {
        self.files.path(seq)
    }
}
