//! Opening the binlog at startup: lock, recover (sprout's segments and any beanstalkd
//! binlog files), restore the engine, start the writer.

use std::time::Instant;

use super::config::Config;
use sprout_engine::Engine;
use sprout_storage::{beanstalkd, record, recover, Binlog, FileIo, SegmentIo, Start, SyncPolicy};

/// Why the log could not be opened.
#[derive(Debug)]
pub enum StartError {
    /// No `-b` directory was given.
    NoDirectory,
    /// Locking or recovery failed.
    Storage(sprout_storage::Error),
    /// The rewrite of a beanstalkd binlog in sprout's format could not be synced.
    Takeover(std::path::PathBuf),
}

impl StartError {
    /// beanstalkd's exit status for it: 10 for the directory lock, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Storage(sprout_storage::Error::Lock { .. }) => 10,
            _ => 1,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoDirectory => write!(f, "no binlog directory"),
            StartError::Storage(e @ sprout_storage::Error::Lock { .. }) => {
                write!(f, "failed to lock wal dir: {e}")
            }
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Takeover(dir) => write!(
                f,
                "{}: could not rewrite the beanstalkd binlog in sprout's format; the \
                 beanstalkd files were left in place",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// Returns the restored engine and the running log.
pub fn open(cfg: &Config, now: u64) -> Result<(Engine, Binlog), StartError> {
    let Some(dir) = cfg.binlog_dir.as_deref() else {
        return Err(StartError::NoDirectory);
    };
    open_with_io(cfg, now, Box::new(FileIo::new(dir)))
}

/// As [`open`], writing segments through `io` (tests pass a [`sprout_storage::FaultIo`]).
pub fn open_with_io(
    cfg: &Config,
    now: u64,
    io: Box<dyn SegmentIo>,
) -> Result<(Engine, Binlog), StartError> {
    let Some(dir) = cfg.binlog_dir.as_deref() else {
        return Err(StartError::NoDirectory);
    };
    let lock = sprout_storage::lock_dir(dir).map_err(StartError::Storage)?;
    // Held for the life of the process.
    std::mem::forget(lock);
    let t0 = Instant::now();
    let takeover = !beanstalkd::files(dir).is_empty();
    let (bjobs, bmax, warnings) = if takeover {
        beanstalkd::read(dir)
    } else {
        (Vec::new(), 0, Vec::new())
    };
    for w in &warnings {
        tracing::warn!("binlog take-over: {w}");
    }
    let rec = recover::recover(dir, cfg.binlog_salvage).map_err(StartError::Storage)?;
    for n in &rec.notes {
        tracing::warn!("binlog: {n}");
    }
    let mut engine = Engine::new();
    let (n_sprout, n_bean) = (rec.jobs.len(), bjobs.len());
    let mut live = 0u64;
    // Our own records are newer than beanstalkd's: restore them first (a second restore of
    // the same id is ignored).
    for j in rec.jobs.into_iter().chain(bjobs) {
        live += record::full_len(j.tube.len(), j.body.len()) as u64;
        engine.restore(j, now);
    }
    for (tube, policy) in rec.policies {
        engine.restore_policy(&tube, policy);
    }
    engine.set_next_job_id(rec.next_id.max(bmax.saturating_add(1)));
    engine.enable_journal();
    let policy = SyncPolicy::from_flag(cfg.fsync_ms);
    let binlog = Binlog::start_with_io(
        io,
        Start {
            seg_size: cfg.binlog_size,
            policy,
            segments: &rec.segments,
            live,
            next_id: engine.id_limit(),
        },
    );
    if takeover {
        let t = binlog.checkpoint(&mut engine);
        if !binlog.wait_synced(t) {
            return Err(StartError::Takeover(dir.to_path_buf()));
        }
        tracing::warn!(
            "binlog: took over {n_bean} jobs from beanstalkd's binlog in {}; its files were \
             removed once rewritten",
            dir.display()
        );
    }
    tracing::info!(
        "binlog: recovered {} jobs ({} records) from {} in {} ms",
        n_sprout + n_bean,
        rec.records,
        dir.display(),
        t0.elapsed().as_millis()
    );
    Ok((engine, binlog))
}
