//! Replies and their exact wire encoding, including the YAML bodies of `stats*` and `list*`.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

/// One reply to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Inserted(u64),
    /// `BURIED <id>` (put) — never produced while memory lasts, kept for completeness.
    BuriedId(u64),
    Buried,
    Deleted,
    Released,
    Touched,
    Kicked(u64),
    KickedJob,
    Using(Arc<str>),
    Watching(usize),
    NotIgnored,
    Paused,
    NotFound,
    TimedOut,
    DeadlineSoon,
    Draining,
    ExpectedCrlf,
    JobTooBig,
    BadFormat,
    UnknownCommand,
    OutOfMemory,
    InternalError,
    Reserved {
        id: u64,
        body: Bytes,
    },
    Found {
        id: u64,
        body: Bytes,
    },
    StatsJob(Box<JobStats>),
    StatsTube(Box<TubeStats>),
    Stats(Box<ServerStats>),
    /// `list-tubes` / `list-tubes-watched`.
    List(Vec<Arc<str>>),
    // Replies to sprout's own commands.
    /// `FLUSHED <count>`
    Flushed(u64),
    /// `RESERVED_BATCH <k>`, then k `RESERVED` replies.
    ReservedBatch(Vec<(u64, Bytes)>),
    /// `list-jobs`: `OK <bytes>` and a YAML list of ids.
    Ids(Vec<u64>),
    /// `EXISTS <id>` (put-unique of a key in use).
    Exists(u64),
    Reprioritized,
    Moved,
    /// `OK` (a tube policy set).
    Ok,
    /// `OK <bytes>` and a YAML document (a tube policy).
    Yaml(String),
    /// `ADDED` (`cluster-add`).
    Added,
    /// `REMOVED` (`cluster-remove`).
    Removed,
    /// `TRANSFERRED` (`cluster-transfer-leader`).
    Transferred,
    /// `CLUSTER_ERROR <reason>`: a membership command not carried out (not a cluster node,
    /// no leader, a change in progress, ...).
    ClusterError(String),
    // Replies of sproutd's access control (token listeners and restricted users only).
    /// `AUTHENTICATED` (`auth` with a known token).
    Authenticated,
    /// `UNAUTHORIZED`: `auth` with an unknown token, or any command before `auth`; the
    /// connection is closed after it.
    Unauthorized,
    /// `PERMISSION_DENIED`: the user may not run this command on a tube it can see.
    PermissionDenied,
}

/// The engine's part of `stats-job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStats {
    pub id: u64,
    pub tube: Arc<str>,
    pub state: &'static str,
    pub pri: u32,
    pub age: i64,
    pub delay: u64,
    pub ttr: u64,
    pub time_left: i64,
    pub file: u64,
    pub reserves: u32,
    pub timeouts: u32,
    pub releases: u32,
    pub buries: u32,
    pub kicks: u32,
    /// For a job dead-lettered by a tube policy: the tube it came from (`origin-tube`,
    /// shown only then).
    pub origin: Option<Arc<str>>,
}

/// A tube's policy and its counters, shown in `stats-tube` only for tubes with a policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TubePolicyStats {
    pub max_reserves: u32,
    /// `bury`, `delete` or `tube:<name>`.
    pub on_exhaust: String,
    /// `none`, `fixed:<s>` or `exp:<base>,<cap>`.
    pub retry_backoff: String,
    pub max_ready: u64,
    /// Jobs this tube sent to its dead-letter tube.
    pub dead_lettered: u64,
    /// Returns to ready that the retry backoff delayed instead.
    pub retries_delayed: u64,
}

/// `stats-tube`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TubeStats {
    pub name: Arc<str>,
    pub urgent: u64,
    pub ready: u64,
    pub reserved: u64,
    pub delayed: u64,
    pub buried: u64,
    pub total_jobs: u64,
    pub using: u64,
    pub watching: u64,
    pub waiting: u64,
    pub cmd_delete: u64,
    pub cmd_pause_tube: u64,
    pub pause: u64,
    pub pause_time_left: i64,
    /// Shown only for a tube with a policy (sprout's own fields).
    pub policy: Option<Box<TubePolicyStats>>,
}

/// Cumulative per-command counters, in `stats` order. `reserve-job` and `kick-job` are
/// counted but, as in beanstalkd, not printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdCounts {
    pub put: u64,
    pub peek: u64,
    pub peek_ready: u64,
    pub peek_delayed: u64,
    pub peek_buried: u64,
    pub reserve: u64,
    pub reserve_with_timeout: u64,
    pub delete: u64,
    pub release: u64,
    pub use_: u64,
    pub watch: u64,
    pub ignore: u64,
    pub bury: u64,
    pub kick: u64,
    pub touch: u64,
    pub stats: u64,
    pub stats_job: u64,
    pub stats_tube: u64,
    pub list_tubes: u64,
    pub list_tube_used: u64,
    pub list_tubes_watched: u64,
    pub pause_tube: u64,
    pub reserve_job: u64,
    pub kick_job: u64,
}

/// The engine's part of `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub urgent: u64,
    pub ready: u64,
    pub reserved: u64,
    pub delayed: u64,
    pub buried: u64,
    pub cmd: CmdCounts,
    pub job_timeouts: u64,
    pub total_jobs: u64,
    pub tubes: u64,
    pub connections: u64,
    pub producers: u64,
    pub workers: u64,
    pub waiting: u64,
    pub total_connections: u64,
    pub draining: bool,
}

/// The process's part of `stats`, supplied by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStats {
    pub max_job_size: u32,
    pub pid: u32,
    pub version: String,
    /// (seconds, microseconds)
    pub utime: (i64, i64),
    pub stime: (i64, i64),
    pub uptime: u64,
    pub binlog_oldest_index: u64,
    pub binlog_current_index: u64,
    pub binlog_records_migrated: u64,
    pub binlog_records_written: u64,
    pub binlog_max_size: u64,
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub platform: String,
    /// In cluster mode only: the node's place in the cluster, at the end of `stats`.
    pub cluster: Option<ClusterStats>,
}

/// `stats`'s cluster fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub node_id: u64,
    /// leader, follower, candidate or learner.
    pub role: &'static str,
    /// 0: unknown.
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    /// For `/metrics` only (not in `stats`): the last entry applied here, and how many
    /// times this node has seen the leader change.
    pub applied_index: u64,
    pub leader_changes: u64,
    /// For `/metrics` only: proposal-to-commit times of this node's batches.
    pub replication_latency: LatencyHist,
    /// For `/metrics` only, on the leader: per other member, its id and how many entries
    /// of the leader's log it is not known to have.
    pub member_lag: Vec<(u64, u64)>,
}

/// A histogram of durations, for `/metrics`: non-cumulative counts per upper bound (in
/// microseconds); what is above the last bound is only in `count`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHist {
    pub bounds_us: &'static [u64],
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
}

fn word(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

fn job(out: &mut BytesMut, kind: &str, id: u64, body: &[u8]) {
    let _ = write!(Fmt(out), "{kind} {id} {}\r\n", body.len());
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn yaml(out: &mut BytesMut, body: &str) {
    let _ = write!(Fmt(out), "OK {}\r\n", body.len());
    out.put_slice(body.as_bytes());
    out.put_slice(b"\r\n");
}

/// `fmt::Write` into a `BytesMut`.
struct Fmt<'a>(&'a mut BytesMut);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

impl Reply {
    /// Appends the reply's bytes. `process` fills the process fields of `stats`.
    pub fn encode(&self, out: &mut BytesMut, process: &ProcessStats) {
        match self {
            Reply::Inserted(id) => {
                let _ = write!(Fmt(out), "INSERTED {id}\r\n");
            }
            Reply::BuriedId(id) => {
                let _ = write!(Fmt(out), "BURIED {id}\r\n");
            }
            Reply::Buried => word(out, "BURIED"),
            Reply::Deleted => word(out, "DELETED"),
            Reply::Released => word(out, "RELEASED"),
            Reply::Touched => word(out, "TOUCHED"),
            Reply::Kicked(n) => {
                let _ = write!(Fmt(out), "KICKED {n}\r\n");
            }
            Reply::KickedJob => word(out, "KICKED"),
            Reply::Using(t) => {
                let _ = write!(Fmt(out), "USING {t}\r\n");
            }
            Reply::Watching(n) => {
                let _ = write!(Fmt(out), "WATCHING {n}\r\n");
            }
            Reply::NotIgnored => word(out, "NOT_IGNORED"),
            Reply::Paused => word(out, "PAUSED"),
            Reply::NotFound => word(out, "NOT_FOUND"),
            Reply::TimedOut => word(out, "TIMED_OUT"),
            Reply::DeadlineSoon => word(out, "DEADLINE_SOON"),
            Reply::Draining => word(out, "DRAINING"),
            Reply::ExpectedCrlf => word(out, "EXPECTED_CRLF"),
            Reply::JobTooBig => word(out, "JOB_TOO_BIG"),
            Reply::BadFormat => word(out, "BAD_FORMAT"),
            Reply::UnknownCommand => word(out, "UNKNOWN_COMMAND"),
            Reply::OutOfMemory => word(out, "OUT_OF_MEMORY"),
            Reply::InternalError => word(out, "INTERNAL_ERROR"),
            Reply::Reserved { id, body } => job(out, "RESERVED", *id, body),
            Reply::Found { id, body } => job(out, "FOUND", *id, body),
            Reply::StatsJob(s) => yaml(out, &job_yaml(s)),
            Reply::StatsTube(s) => yaml(out, &tube_yaml(s)),
            Reply::Stats(s) => yaml(out, &stats_yaml(s, process)),
            Reply::List(names) => {
                let mut s = String::from("---\n");
                for n in names {
                    let _ = writeln!(s, "- {n}");
                }
                yaml(out, &s);
            }
            Reply::Flushed(n) => {
                let _ = write!(Fmt(out), "FLUSHED {n}\r\n");
            }
            Reply::ReservedBatch(jobs) => {
                let _ = write!(Fmt(out), "RESERVED_BATCH {}\r\n", jobs.len());
                for (id, body) in jobs {
                    job(out, "RESERVED", *id, body);
                }
            }
            Reply::Ids(ids) => {
                let mut s = String::from("---\n");
                for id in ids {
                    let _ = writeln!(s, "- {id}");
                }
                yaml(out, &s);
            }
            Reply::Exists(id) => {
                let _ = write!(Fmt(out), "EXISTS {id}\r\n");
            }
            Reply::Reprioritized => word(out, "REPRIORITIZED"),
            Reply::Moved => word(out, "MOVED"),
            Reply::Added => word(out, "ADDED"),
            Reply::Removed => word(out, "REMOVED"),
            Reply::Transferred => word(out, "TRANSFERRED"),
            Reply::ClusterError(why) => {
                let _ = write!(Fmt(out), "CLUSTER_ERROR {why}\r\n");
            }
            Reply::Ok => word(out, "OK"),
            Reply::Yaml(s) => yaml(out, s),
            Reply::Authenticated => word(out, "AUTHENTICATED"),
            Reply::Unauthorized => word(out, "UNAUTHORIZED"),
            Reply::PermissionDenied => word(out, "PERMISSION_DENIED"),
        }
    }

    /// The first line of the reply, for logs.
    pub fn head(&self) -> String {
        let mut b = BytesMut::new();
        self.encode(&mut b, &ProcessStats::default());
        let end = b.iter().position(|&c| c == b'\r').unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    }
}

fn job_yaml(s: &JobStats) -> String {
    let mut y = format!(
        "---\nid: {}\ntube: \"{}\"\nstate: {}\npri: {}\nage: {}\ndelay: {}\nttr: {}\n\
         time-left: {}\nfile: {}\nreserves: {}\ntimeouts: {}\nreleases: {}\nburies: {}\n\
         kicks: {}\n",
        s.id,
        s.tube,
        s.state,
        s.pri,
        s.age,
        s.delay,
        s.ttr,
        s.time_left,
        s.file,
        s.reserves,
        s.timeouts,
        s.releases,
        s.buries,
        s.kicks
    );
    if let Some(o) = &s.origin {
        let _ = writeln!(y, "origin-tube: \"{o}\"");
    }
    y
}

fn tube_yaml(s: &TubeStats) -> String {
    let mut y = format!(
        "---\nname: \"{}\"\ncurrent-jobs-urgent: {}\ncurrent-jobs-ready: {}\n\
         current-jobs-reserved: {}\ncurrent-jobs-delayed: {}\ncurrent-jobs-buried: {}\n\
         total-jobs: {}\ncurrent-using: {}\ncurrent-watching: {}\ncurrent-waiting: {}\n\
         cmd-delete: {}\ncmd-pause-tube: {}\npause: {}\npause-time-left: {}\n",
        s.name,
        s.urgent,
        s.ready,
        s.reserved,
        s.delayed,
        s.buried,
        s.total_jobs,
        s.using,
        s.watching,
        s.waiting,
        s.cmd_delete,
        s.cmd_pause_tube,
        s.pause,
        s.pause_time_left
    );
    if let Some(p) = &s.policy {
        let _ = write!(
            y,
            "max-reserves: {}\non-exhaust: {}\nretry-backoff: {}\nmax-ready: {}\n\
             dead-lettered: {}\nretries-delayed: {}\n",
            p.max_reserves,
            p.on_exhaust,
            p.retry_backoff,
            p.max_ready,
            p.dead_lettered,
            p.retries_delayed
        );
    }
    y
}

fn stats_yaml(s: &ServerStats, p: &ProcessStats) -> String {
    let c = &s.cmd;
    let mut y = String::with_capacity(1100);
    let _ = write!(
        y,
        "---\ncurrent-jobs-urgent: {}\ncurrent-jobs-ready: {}\ncurrent-jobs-reserved: {}\n\
         current-jobs-delayed: {}\ncurrent-jobs-buried: {}\ncmd-put: {}\ncmd-peek: {}\n\
         cmd-peek-ready: {}\ncmd-peek-delayed: {}\ncmd-peek-buried: {}\ncmd-reserve: {}\n\
         cmd-reserve-with-timeout: {}\ncmd-delete: {}\ncmd-release: {}\ncmd-use: {}\n\
         cmd-watch: {}\ncmd-ignore: {}\ncmd-bury: {}\ncmd-kick: {}\ncmd-touch: {}\n\
         cmd-stats: {}\ncmd-stats-job: {}\ncmd-stats-tube: {}\ncmd-list-tubes: {}\n\
         cmd-list-tube-used: {}\ncmd-list-tubes-watched: {}\ncmd-pause-tube: {}\n\
         job-timeouts: {}\ntotal-jobs: {}\nmax-job-size: {}\ncurrent-tubes: {}\n\
         current-connections: {}\ncurrent-producers: {}\ncurrent-workers: {}\n\
         current-waiting: {}\ntotal-connections: {}\n",
        s.urgent,
        s.ready,
        s.reserved,
        s.delayed,
        s.buried,
        c.put,
        c.peek,
        c.peek_ready,
        c.peek_delayed,
        c.peek_buried,
        c.reserve,
        c.reserve_with_timeout,
        c.delete,
        c.release,
        c.use_,
        c.watch,
        c.ignore,
        c.bury,
        c.kick,
        c.touch,
        c.stats,
        c.stats_job,
        c.stats_tube,
        c.list_tubes,
        c.list_tube_used,
        c.list_tubes_watched,
        c.pause_tube,
        s.job_timeouts,
        s.total_jobs,
        p.max_job_size,
        s.tubes,
        s.connections,
        s.producers,
        s.workers,
        s.waiting,
        s.total_connections,
    );
    let _ = write!(
        y,
        "pid: {}\nversion: \"{}\"\nrusage-utime: {}.{:06}\nrusage-stime: {}.{:06}\n\
         uptime: {}\nbinlog-oldest-index: {}\nbinlog-current-index: {}\n\
         binlog-records-migrated: {}\nbinlog-records-written: {}\nbinlog-max-size: {}\n\
         draining: {}\nid: {}\nhostname: \"{}\"\nos: \"{}\"\nplatform: \"{}\"\n",
        p.pid,
        p.version,
        p.utime.0,
        p.utime.1,
        p.stime.0,
        p.stime.1,
        p.uptime,
        p.binlog_oldest_index,
        p.binlog_current_index,
        p.binlog_records_migrated,
        p.binlog_records_written,
        p.binlog_max_size,
        s.draining,
        p.id,
        p.hostname,
        p.os,
        p.platform,
    );
    if let Some(c) = &p.cluster {
        let _ = write!(
            y,
            "cluster-node-id: {}\ncluster-role: {}\ncluster-leader-id: {}\ncluster-term: {}\n\
             cluster-commit-index: {}\n",
            c.node_id, c.role, c.leader_id, c.term, c.commit_index
        );
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: Reply) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b, &ProcessStats::default());
        b.to_vec()
    }

    #[test]
    fn simple_lines() {
        assert_eq!(enc(Reply::Inserted(7)), b"INSERTED 7\r\n");
        assert_eq!(enc(Reply::Kicked(0)), b"KICKED 0\r\n");
        assert_eq!(enc(Reply::KickedJob), b"KICKED\r\n");
        assert_eq!(enc(Reply::Using("a".into())), b"USING a\r\n");
        assert_eq!(
            enc(Reply::Reserved {
                id: 3,
                body: Bytes::from_static(b"a\r\nb")
            }),
            b"RESERVED 3 4\r\na\r\nb\r\n"
        );
    }

    #[test]
    fn list_and_job_yaml_match_beanstalkd_1_13() {
        assert_eq!(
            enc(Reply::List(vec!["default".into(), "foo".into()])),
            b"OK 20\r\n---\n- default\n- foo\n\r\n"
        );
        let s = JobStats {
            id: 1,
            tube: "foo".into(),
            state: "reserved",
            pri: 100,
            age: 0,
            delay: 0,
            ttr: 60,
            time_left: 59,
            file: 0,
            reserves: 1,
            timeouts: 0,
            releases: 0,
            buries: 0,
            kicks: 0,
            origin: None,
        };
        let out = enc(Reply::StatsJob(Box::new(s)));
        assert!(out.starts_with(b"OK 148\r\n---\nid: 1\ntube: \"foo\"\nstate: reserved\n"));
        assert!(out.ends_with(b"kicks: 0\n\r\n"));
    }
}
