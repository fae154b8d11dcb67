//! `/metrics` (Prometheus text format) of the HTTP layer (`crate::http`). Every `stats` and `stats-tube` field is exported under the `sprout_` prefix
//! (counters as `_total` counters, the rest as gauges), plus per-tube histograms of queue
//! wait and reserve-to-delete time, the oldest ready job's age, timeouts and buries, and the
//! binlog's live and dead bytes. The engine lock is held only to copy the numbers.

use super::Shared;
use sprout_engine::metrics::{Hist, TubeMetrics, BUCKETS};
use sprout_engine::SECOND;
use sprout_protocol::reply::{ProcessStats, ServerStats, TubeStats};
use sprout_storage::BinlogStats;
use std::fmt::Write as _;

/// The label of the series that sums the tubes beyond the cap; no tube can be named so.
pub(crate) const OTHER: &str = "*other*";

/// A consistent copy of everything exported.
pub(crate) struct Snapshot {
    pub(crate) server: ServerStats,
    pub(crate) process: ProcessStats,
    pub(crate) tubes: Vec<TubeMetrics>,
    pub(crate) binlog: Option<BinlogStats>,
    pub(crate) access: AccessStats,
}

/// Access control's numbers (see `secure`).
#[derive(Default)]
pub(crate) struct AccessStats {
    pub(crate) unauthenticated: u64,
    pub(crate) auth_failures: u64,
    pub(crate) handshake_failures: u64,
    pub(crate) unauth_timeouts: u64,
    /// (user, class, count), sorted.
    pub(crate) denied: Vec<(String, &'static str, u64)>,
}

fn access_stats(shared: &Shared) -> AccessStats {
    use std::sync::atomic::Ordering::Relaxed;
    let sec = &shared.security;
    let c = &sec.counters;
    let mut denied: Vec<(String, &'static str, u64)> = c
        .denied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((u, class), n)| (u.to_string(), *class, *n))
        .collect();
    denied.sort();
    AccessStats {
        unauthenticated: sec.unauthenticated() as u64,
        auth_failures: c.auth_failures.load(Relaxed),
        handshake_failures: c.handshake_failures.load(Relaxed),
        unauth_timeouts: c.unauth_timeouts.load(Relaxed),
        denied,
    }
}

pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    let process = shared.process_stats();
    let binlog = shared.binlog.as_ref().map(|b| b.stats());
    let access = access_stats(shared);
    let st = shared.lock();
    let now = shared.clock.now();
    Snapshot {
        server: st.engine.stats(),
        process,
        tubes: st.engine.tube_metrics(now),
        binlog,
        access,
    }
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }
}

/// A cluster node's series (cluster mode only).
fn cluster(o: &mut Out, c: &sprout_protocol::reply::ClusterStats) {
    o.head(
        "sprout_cluster_role",
        "gauge",
        "1 for this node's Raft role.",
    );
    for role in ["leader", "follower", "candidate", "learner"] {
        let v = u8::from(c.role == role);
        let _ = writeln!(o.0, "sprout_cluster_role{{role=\"{role}\"}} {v}");
    }
    let n = |v: u64| v as f64;
    for (name, kind, help, v) in [
        (
            "sprout_cluster_node_id",
            "gauge",
            "This node's id.",
            c.node_id,
        ),
        (
            "sprout_cluster_leader_id",
            "gauge",
            "The leader's id (0: unknown).",
            c.leader_id,
        ),
        ("sprout_cluster_term", "gauge", "The Raft term.", c.term),
        (
            "sprout_cluster_commit_index",
            "gauge",
            "The Raft commit index.",
            c.commit_index,
        ),
        (
            "sprout_cluster_applied_index",
            "gauge",
            "The last entry applied here.",
            c.applied_index,
        ),
        (
            "sprout_cluster_leader_changes_total",
            "counter",
            "New leaders seen.",
            c.leader_changes,
        ),
    ] {
        o.one(name, kind, help, n(v));
    }
    let lag = c.commit_index.saturating_sub(c.applied_index);
    o.one(
        "sprout_cluster_apply_lag_entries",
        "gauge",
        "Committed entries not yet applied here.",
        n(lag),
    );
    if !c.member_lag.is_empty() {
        o.head(
            "sprout_cluster_member_lag_entries",
            "gauge",
            "On the leader: entries of its log each other member is not known to have.",
        );
        for (id, lag) in &c.member_lag {
            let _ = writeln!(
                o.0,
                "sprout_cluster_member_lag_entries{{member=\"{id}\"}} {lag}"
            );
        }
    }
    let h = &c.replication_latency;
    let name = "sprout_cluster_replication_latency_seconds";
    o.head(
        name,
        "histogram",
        "Time from this node proposing a batch of its clients' commands to its commit (a \
         majority has it in its log on disk), retries across a leader change included.",
    );
    let mut cum = 0;
    for (b, c) in h.bounds_us.iter().zip(&h.buckets) {
        cum += c;
        let _ = writeln!(o.0, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
    }
    let _ = writeln!(o.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o.0, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(o.0, "{name}_count {}", h.count);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The tubes that get their own series: the `cap` with the most jobs (ties by name); the
/// rest are summed under `tube="*other*"` (`*` cannot occur in a tube name).
fn capped(mut tubes: Vec<TubeMetrics>, cap: usize) -> Vec<(String, TubeMetrics)> {
    let jobs = |t: &TubeStats| t.ready + t.reserved + t.delayed + t.buried;
    tubes.sort_by(|a, b| {
        jobs(&b.stats)
            .cmp(&jobs(&a.stats))
            .then_with(|| a.stats.name.cmp(&b.stats.name))
    });
    let rest = if tubes.len() > cap {
        tubes.split_off(cap)
    } else {
        Vec::new()
    };
    let mut out: Vec<(String, TubeMetrics)> = tubes
        .into_iter()
        .map(|t| (t.stats.name.to_string(), t))
        .collect();
    if let Some(first) = rest.first() {
        let mut agg = first.clone();
        for t in &rest[1..] {
            let (a, s) = (&mut agg.stats, &t.stats);
            a.urgent += s.urgent;
            a.ready += s.ready;
            a.reserved += s.reserved;
            a.delayed += s.delayed;
            a.buried += s.buried;
            a.total_jobs += s.total_jobs;
            a.using += s.using;
            a.watching += s.watching;
            a.waiting += s.waiting;
            a.cmd_delete += s.cmd_delete;
            a.cmd_pause_tube += s.cmd_pause_tube;
            let (a, c) = (&mut agg.counters, &t.counters);
            add_hist(&mut a.queue_wait, &c.queue_wait);
            add_hist(&mut a.reserve_to_delete, &c.reserve_to_delete);
            a.timeouts += c.timeouts;
            a.buries += c.buries;
            a.dead_lettered += c.dead_lettered;
            a.retries_delayed += c.retries_delayed;
            agg.oldest_ready_age = agg.oldest_ready_age.max(t.oldest_ready_age);
        }
        agg.stats.pause = 0;
        agg.stats.pause_time_left = 0;
        out.push((OTHER.to_string(), agg));
    }
    out
}

fn add_hist(a: &mut Hist, b: &Hist) {
    for (x, y) in a.buckets.iter_mut().zip(b.buckets.iter()) {
        *x += y;
    }
    a.count += b.count;
    a.sum_ns = a.sum_ns.saturating_add(b.sum_ns);
}

/// The command counters of `stats` exported by name.
pub(crate) fn cmd_counts(c: &sprout_protocol::reply::CmdCounts) -> [(&'static str, u64); 22] {
    [
        ("put", c.put),
        ("peek", c.peek),
        ("peek_ready", c.peek_ready),
        ("peek_delayed", c.peek_delayed),
        ("peek_buried", c.peek_buried),
        ("reserve", c.reserve),
        ("reserve_with_timeout", c.reserve_with_timeout),
        ("delete", c.delete),
        ("release", c.release),
        ("use", c.use_),
        ("watch", c.watch),
        ("ignore", c.ignore),
        ("bury", c.bury),
        ("kick", c.kick),
        ("touch", c.touch),
        ("stats", c.stats),
        ("stats_job", c.stats_job),
        ("stats_tube", c.stats_tube),
        ("list_tubes", c.list_tubes),
        ("list_tube_used", c.list_tube_used),
        ("list_tubes_watched", c.list_tubes_watched),
        ("pause_tube", c.pause_tube),
    ]
}

/// Renders a snapshot in the Prometheus text exposition format (version 0.0.4).
pub(crate) fn render(s: &Snapshot, tube_cap: usize) -> String {
    let mut o = Out(String::with_capacity(16 * 1024));
    let v = &s.server;
    let p = &s.process;
    let gauges: [(&str, u64, &str); 11] = [
        (
            "current_jobs_urgent",
            v.urgent,
            "Ready jobs with priority < 1024.",
        ),
        ("current_jobs_ready", v.ready, "Jobs in the ready queues."),
        (
            "current_jobs_reserved",
            v.reserved,
            "Jobs reserved by a worker.",
        ),
        ("current_jobs_delayed", v.delayed, "Delayed jobs."),
        ("current_jobs_buried", v.buried, "Buried jobs."),
        ("current_tubes", v.tubes, "Tubes that exist."),
        ("current_connections", v.connections, "Open connections."),
        (
            "current_producers",
            v.producers,
            "Open connections that have put a job.",
        ),
        (
            "current_workers",
            v.workers,
            "Open connections that have reserved.",
        ),
        (
            "current_waiting",
            v.waiting,
            "Connections blocked in reserve.",
        ),
        (
            "max_job_size",
            u64::from(p.max_job_size),
            "Largest job body accepted (-z), bytes.",
        ),
    ];
    for (n, val, help) in gauges {
        o.one(&format!("sprout_{n}"), "gauge", help, val as f64);
    }
    let cmds = cmd_counts(&v.cmd);
    for (n, val) in cmds {
        let name = format!("sprout_cmd_{n}_total");
        let help = format!("{} commands run.", n.replace('_', "-"));
        o.one(&name, "counter", &help, val as f64);
    }
    o.one(
        "sprout_job_timeouts_total",
        "counter",
        "Reservations that ran out of time.",
        v.job_timeouts as f64,
    );
    o.one(
        "sprout_jobs_total",
        "counter",
        "Jobs created (stats total-jobs).",
        v.total_jobs as f64,
    );
    o.one(
        "sprout_connections_total",
        "counter",
        "Connections accepted.",
        v.total_connections as f64,
    );
    let secs = |(s, us): (i64, i64)| s as f64 + us as f64 / 1e6;
    o.one(
        "sprout_rusage_utime_seconds_total",
        "counter",
        "User CPU time.",
        secs(p.utime),
    );
    o.one(
        "sprout_rusage_stime_seconds_total",
        "counter",
        "System CPU time.",
        secs(p.stime),
    );
    o.one(
        "sprout_uptime_seconds",
        "gauge",
        "Seconds since start.",
        p.uptime as f64,
    );
    o.one("sprout_pid", "gauge", "Process id.", f64::from(p.pid));
    if let Some(c) = &p.cluster {
        cluster(&mut o, c);
    }
    o.one(
        "sprout_draining",
        "gauge",
        "1 in drain mode (SIGUSR1).",
        if v.draining { 1.0 } else { 0.0 },
    );
    o.one(
        "sprout_binlog_oldest_index",
        "gauge",
        "Oldest binlog segment.",
        p.binlog_oldest_index as f64,
    );
    o.one(
        "sprout_binlog_current_index",
        "gauge",
        "Binlog segment being written.",
        p.binlog_current_index as f64,
    );
    o.one(
        "sprout_binlog_max_size",
        "gauge",
        "Binlog segment size (-s), bytes.",
        p.binlog_max_size as f64,
    );
    o.one(
        "sprout_binlog_records_written_total",
        "counter",
        "Binlog records written.",
        p.binlog_records_written as f64,
    );
    o.one(
        "sprout_binlog_records_migrated_total",
        "counter",
        "Records moved by compaction.",
        p.binlog_records_migrated as f64,
    );
    if let Some(b) = &s.binlog {
        o.one(
            "sprout_binlog_live_bytes",
            "gauge",
            "Bytes of binlog records of live jobs.",
            b.live_bytes as f64,
        );
        o.one(
            "sprout_binlog_disk_bytes",
            "gauge",
            "Bytes of binlog files on disk.",
            b.disk_bytes as f64,
        );
        o.one(
            "sprout_binlog_dead_bytes",
            "gauge",
            "Bytes of binlog files not holding live jobs.",
            b.disk_bytes.saturating_sub(b.live_bytes) as f64,
        );
    }
    let a = &s.access;
    o.one(
        "sprout_unauthenticated_connections",
        "gauge",
        "Connections in a TLS handshake or waiting for auth (not in current_connections).",
        a.unauthenticated as f64,
    );
    o.one(
        "sprout_auth_failures_total",
        "counter",
        "Connections refused: unknown token, command before auth, unknown certificate subject or uid.",
        a.auth_failures as f64,
    );
    o.one(
        "sprout_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out.",
        a.handshake_failures as f64,
    );
    o.one(
        "sprout_unauthenticated_timeouts_total",
        "counter",
        "Connections closed for not authenticating in time.",
        a.unauth_timeouts as f64,
    );
    if !a.denied.is_empty() {
        // A family with no samples is not exposed (there is no user without a denial).
        o.head(
            "sprout_denied_total",
            "counter",
            "Commands answered PERMISSION_DENIED, by user and class.",
        );
    }
    for (user, class, n) in &a.denied {
        let _ = writeln!(
            o.0,
            "sprout_denied_total{{user=\"{}\",class=\"{class}\"}} {n}",
            escape(user)
        );
    }
    o.head(
        "sprout_info",
        "gauge",
        "Constant 1, labelled with the server's identity.",
    );
    let _ = writeln!(
        o.0,
        "sprout_info{{version=\"{}\",id=\"{}\",hostname=\"{}\",os=\"{}\",platform=\"{}\"}} 1",
        escape(&p.version),
        escape(&p.id),
        escape(&p.hostname),
        escape(&p.os),
        escape(&p.platform)
    );

    let tubes = capped(s.tubes.clone(), tube_cap);
    type Field = fn(&TubeMetrics) -> f64;
    let tube_series: [(&str, &str, &str, Field); 18] = [
        (
            "current_jobs_urgent",
            "gauge",
            "Ready jobs with priority < 1024.",
            |t| t.stats.urgent as f64,
        ),
        ("current_jobs_ready", "gauge", "Ready jobs.", |t| {
            t.stats.ready as f64
        }),
        ("current_jobs_reserved", "gauge", "Reserved jobs.", |t| {
            t.stats.reserved as f64
        }),
        ("current_jobs_delayed", "gauge", "Delayed jobs.", |t| {
            t.stats.delayed as f64
        }),
        ("current_jobs_buried", "gauge", "Buried jobs.", |t| {
            t.stats.buried as f64
        }),
        ("jobs_total", "counter", "Jobs created in the tube.", |t| {
            t.stats.total_jobs as f64
        }),
        (
            "current_using",
            "gauge",
            "Connections using the tube.",
            |t| t.stats.using as f64,
        ),
        (
            "current_watching",
            "gauge",
            "Connections watching the tube.",
            |t| t.stats.watching as f64,
        ),
        (
            "current_waiting",
            "gauge",
            "Connections blocked in reserve on the tube.",
            |t| t.stats.waiting as f64,
        ),
        (
            "cmd_delete_total",
            "counter",
            "Jobs deleted from the tube.",
            |t| t.stats.cmd_delete as f64,
        ),
        (
            "cmd_pause_tube_total",
            "counter",
            "pause-tube commands on the tube.",
            |t| t.stats.cmd_pause_tube as f64,
        ),
        (
            "pause_seconds",
            "gauge",
            "Requested pause, seconds (0 when not paused).",
            |t| t.stats.pause as f64,
        ),
        (
            "pause_time_left_seconds",
            "gauge",
            "Seconds until the pause ends.",
            |t| t.stats.pause_time_left as f64,
        ),
        (
            "timeouts_total",
            "counter",
            "Reservations in the tube that ran out of time.",
            |t| t.counters.timeouts as f64,
        ),
        ("buries_total", "counter", "Jobs buried in the tube.", |t| {
            t.counters.buries as f64
        }),
        (
            "dead_lettered_total",
            "counter",
            "Jobs the tube's policy moved to its dead-letter tube.",
            |t| t.counters.dead_lettered as f64,
        ),
        (
            "retries_delayed_total",
            "counter",
            "Returns to ready that the tube's retry backoff delayed.",
            |t| t.counters.retries_delayed as f64,
        ),
        (
            "oldest_ready_age_seconds",
            "gauge",
            "How long the oldest ready job has waited.",
            |t| t.oldest_ready_age,
        ),
    ];
    for (n, kind, help, f) in tube_series {
        let name = format!("sprout_tube_{n}");
        o.head(&name, kind, help);
        for (label, t) in &tubes {
            let _ = writeln!(o.0, "{name}{{tube=\"{}\"}} {}", escape(label), f(t));
        }
    }
    type HistOf = fn(&TubeMetrics) -> &Hist;
    let hists: [(&str, &str, HistOf); 2] = [
        (
            "queue_wait_seconds",
            "Time from a job becoming ready (put, release, kick, delay end) to its reserve.",
            |t| &t.counters.queue_wait,
        ),
        (
            "reserve_to_delete_seconds",
            "Time from reserve (or the last touch) to delete.",
            |t| &t.counters.reserve_to_delete,
        ),
    ];
    for (n, help, f) in hists {
        let name = format!("sprout_tube_{n}");
        o.head(&name, "histogram", help);
        for (label, t) in &tubes {
            let h = f(t);
            let l = escape(label);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += h.buckets[i];
                let _ = writeln!(o.0, "{name}_bucket{{tube=\"{l}\",le=\"{b}\"}} {cum}");
            }
            let _ = writeln!(o.0, "{name}_bucket{{tube=\"{l}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(
                o.0,
                "{name}_sum{{tube=\"{l}\"}} {}",
                h.sum_ns as f64 / SECOND as f64
            );
            let _ = writeln!(o.0, "{name}_count{{tube=\"{l}\"}} {}", h.count);
        }
    }
    o.0
}
