//! sprout: the admin CLI. Talks the beanstalkd protocol to any server (sproutd or
//! beanstalkd). The subcommands live in `sprout::cli`; `bench` in `sprout::bench`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sprout::bench::{self, cluster as bench_cluster, compare, tls as bench_tls, Params, Workload};
use sprout::cli::client::{check_key, check_tube_name};
use sprout::cli::cmds::{self, Body, FlushState, KickWhat, PeekAt, PutArgs, State, StatsOf};
use sprout::cli::ext::{self, JobsArgs, ListState, PolicyKey};
use sprout::cli::tubes::SortKey;
use sprout::cli::{top, tubes};
use sprout::conn::{ConnArgs, Target};

mod docs;

const AFTER_HELP: &str = "\
Environment:
  SPROUT_ADDR   server address when -a/--addr is not given (default 127.0.0.1:11300)
  SPROUT_TOKEN  token when --token is not given (keeps it out of the process list)
  SPROUT_CA, SPROUT_CERT, SPROUT_KEY  files when --ca, --cert, --key are not given

TLS: --tls, or any of --ca, --cert/--key, --tls-server-name, connects with TLS 1.2/1.3.
The server's certificate must chain to --ca (only to it) or, without --ca, to one of the
Mozilla roots built in; and carry the host of the address (a DNS name, or an IP address
in its IP SANs), or --tls-server-name. With a token, `auth TOKEN` is sent right after
connecting.

`jobs`, `policy`, `move` and `put --unique` use sproutd's own commands: against beanstalkd
or `sproutd --strict` they fail (exit 1) saying the server does not support them. `flush`
works on both: sproutd's flush-tube where the server has it, job by job otherwise.

Exit status: 0 success; 1 the server answered with an error (its reply is printed) or a
local problem; 2 the server cannot be reached or the connection failed (TLS handshake
included); 3 the server refused the token, or wants one (UNAUTHORIZED).";

#[derive(Parser)]
#[command(
    name = "sprout",
    version,
    about = "Admin CLI for sproutd and beanstalkd",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Server address: HOST:PORT, HOST (port 11300) or unix:/path [env: SPROUT_ADDR].
    #[arg(
        short = 'a',
        long,
        env = "SPROUT_ADDR",
        default_value = "127.0.0.1:11300",
        global = true,
        hide_env = true
    )]
    addr: String,
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Server statistics, or a tube's (--tube), or a job's (--job).
    Stats {
        /// Statistics of this tube (stats-tube).
        #[arg(long, value_parser = check_tube_name, conflicts_with = "job")]
        tube: Option<String>,
        /// Statistics of this job (stats-job).
        #[arg(long)]
        job: Option<u64>,
        /// JSON object, numbers as numbers and booleans as booleans.
        #[arg(long)]
        json: bool,
    },
    /// Every tube with its ready/reserved/delayed/buried/urgent/waiting/watching counts.
    Tubes {
        /// Column to sort by: name A-Z, counts largest first.
        #[arg(long, value_enum, default_value_t = SortKey::Name)]
        sort: SortKey,
        /// Reverse the order.
        #[arg(long)]
        reverse: bool,
        /// JSON array of tubes.
        #[arg(long)]
        json: bool,
    },
    /// Live view of the server and its tubes with rates; q, Esc or Ctrl-C quits.
    Top {
        /// Seconds between refreshes (0.1 to 3600).
        #[arg(short = 'i', long, default_value = "1", value_parser = parse_interval)]
        interval: Duration,
    },
    /// Show a job: its id, stats and body (non-printable bytes escaped as \xHH).
    Peek {
        /// Tube to peek into (default: default).
        #[arg(long, value_parser = check_tube_name, conflicts_with = "id")]
        tube: Option<String>,
        /// Which job of the tube: the next ready, the next delayed, or the oldest buried.
        #[arg(long, value_enum, conflicts_with = "id")]
        state: Option<State>,
        /// The job with this id.
        #[arg(long)]
        id: Option<u64>,
        /// Write the body bytes as-is to stdout (id and stats go to stderr).
        #[arg(long)]
        raw: bool,
    },
    /// Put a job (body from BODY, --file, or stdin) and print its id.
    #[command(after_help = PUT_HELP)]
    Put {
        /// The job body.
        #[arg(conflicts_with = "file")]
        body: Option<String>,
        /// Read the body from this file.
        #[arg(short = 'f', long)]
        file: Option<String>,
        #[arg(short = 't', long, default_value = "default", value_parser = check_tube_name)]
        tube: String,
        /// Priority (0 is most urgent).
        #[arg(short = 'p', long, default_value_t = 1024)]
        pri: u32,
        /// Seconds before the job becomes ready.
        #[arg(short = 'd', long, default_value_t = 0)]
        delay: u32,
        /// Seconds a worker may hold the job.
        #[arg(long, default_value_t = 60)]
        ttr: u32,
        /// Put only if no job with this key is in the tube (sproutd's put-unique). If one
        /// is, nothing is put, its id is printed and "exists: ID" goes to stderr; the exit
        /// status is 0 either way.
        #[arg(short = 'u', long, value_name = "KEY", value_parser = check_key)]
        unique: Option<String>,
    },
    /// Kick up to N buried (or else delayed) jobs in a tube, or one job by --id.
    Kick {
        /// How many jobs to kick.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        n: Option<u64>,
        #[arg(short = 't', long, default_value = "default", value_parser = check_tube_name)]
        tube: String,
        /// Kick this job (kick-job).
        #[arg(long)]
        id: Option<u64>,
    },
    /// Delete jobs by id.
    Delete {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Pause a tube: no job is reserved from it for SECONDS.
    Pause {
        #[arg(value_parser = check_tube_name)]
        tube: String,
        seconds: u32,
    },
    /// Delete every job of a tube in the given states, safely alongside running workers.
    ///
    /// With --state all (the default) on sproutd: its flush-tube command, every ready,
    /// delayed and buried job at once. On beanstalkd or sproutd --strict, and for a single
    /// state (flush-tube takes the three together): job by job, peek then delete. Either
    /// way reserved jobs stay with their workers, and the output says how many jobs were
    /// deleted.
    Flush {
        #[arg(short = 't', long, value_parser = check_tube_name)]
        tube: String,
        /// Which jobs: all is ready, delayed and buried.
        #[arg(long, value_enum, default_value = "all")]
        state: FlushState,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the jobs of a tube in a state: id, state, priority, age, reserves, size, body.
    ///
    /// Pages through sproutd's list-jobs (ids in ascending order, 1000 a page) and reads
    /// each job's stats and body (stats-job, peek). A job's state is the one it had when
    /// its stats were read; jobs deleted meanwhile are left out.
    Jobs {
        /// The tube to list.
        #[arg(short = 't', long, default_value = "default", value_parser = check_tube_name)]
        tube: String,
        /// The state of the jobs to list.
        #[arg(long, value_enum, default_value = "ready")]
        state: ListState,
        /// Only jobs with an id greater than this (to go on after a previous listing).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many jobs (0: all of them); when more follow, stderr says so and
        /// gives the --after for the next ones.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// JSON array of jobs: their stats, "bytes", and "body" (its first 256 bytes,
        /// escaped as in peek) with "body-truncated".
        #[arg(long)]
        json: bool,
    },
    /// Show a tube's policy, or set one of its keys (sproutd's tube-policy).
    #[command(after_help = POLICY_HELP)]
    Policy {
        /// The tube.
        #[arg(value_parser = check_tube_name)]
        tube: String,
        /// The key to set.
        #[arg(value_enum, requires = "value")]
        key: Option<PolicyKey>,
        /// Its new value.
        value: Option<String>,
        /// JSON object of the policy.
        #[arg(long)]
        json: bool,
    },
    /// Move a job to another tube, in the state it is in (sproutd's move-job).
    ///
    /// A reserved job can only be moved by the connection holding it, so here it answers
    /// NOT_FOUND, as for a job that does not exist.
    Move {
        /// The job.
        id: u64,
        /// The tube to move it to.
        #[arg(value_parser = check_tube_name)]
        tube: String,
    },
    /// Run a command for each job of some tubes: delete, retry or bury by its exit status.
    Work(sprout::work::WorkArgs),
    /// Load-generate against a server, compare sproutd with beanstalkd, or TLS with plain.
    Bench(BenchArgs),
    /// Read a binlog directory (no server needed).
    #[command(subcommand)]
    Binlog(BinlogCmd),
    /// Tokens for sproutd's token listeners (no server needed).
    #[command(subcommand)]
    Token(TokenCmd),
    /// A sproutd cluster as the node at --addr sees it.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Print the completion script for SHELL.
    ///
    /// For example `sprout completions bash > /usr/share/bash-completion/completions/sprout`
    /// (the Debian package installs the bash, zsh and fish ones).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the sprout(1) manual page (roff), made from this help.
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// The node's role, the leader, term, commit and applied index, and the members
    /// (with each one's replication progress and lag, when asked of the leader).
    Status {
        /// JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Add a node: it becomes a learner, catches up (all the jobs), then a voter. Start it
    /// first, on an empty directory, with --cluster listing the members and itself.
    Add {
        /// The new node's id and peer address (its --cluster entry), e.g. 4=10.0.0.4:7000.
        #[arg(value_name = "ID=HOST:PORT", value_parser = sprout::cli::cluster::parse_member)]
        member: (u64, String),
    },
    /// Remove a node (the leader too: a new one is elected among the others).
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Hand leadership to a voter; done once the new leader is seen.
    TransferLeader {
        /// The node's id.
        id: u64,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a fresh random token (first line) and the [[user]] block for sproutd's
    /// configuration, which holds the token's SHA-256 only.
    New {
        /// The user's name in sproutd's configuration.
        #[arg(value_parser = sprout::token::check_user_name)]
        name: String,
    },
}

fn run_token(cmd: TokenCmd) -> ExitCode {
    match cmd {
        TokenCmd::New { name } => match sprout::token::new_token() {
            Ok(token) => {
                print!("{}", sprout::token::render(&name, &token));
                eprintln!("{}", sprout::token::NOTE);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sprout: {e}");
                ExitCode::from(1)
            }
        },
    }
}

const PUT_HELP: &str = "\
With --unique KEY (sproutd's put-unique): a job is put only if no job with KEY is in the
tube, in any state; the key is free again once that job is deleted. Either way the id is
printed on stdout and the exit status is 0, so that a script gets the id of the job its
key stands for; when the job already existed, stderr says \"exists: ID\". Against a
server without put-unique (beanstalkd, sproutd --strict) it fails without sending the
job.";

const POLICY_HELP: &str = "\
Keys and values:
  max-reserves N        a job reserved N times is not made ready again when it comes
                        back (released, TTR timeout, worker gone): on-exhaust happens
                        instead (0: no limit)
  on-exhaust ACTION     bury | delete | tube:NAME (moved there, ready; stats-job shows
                        its origin-tube)
  retry-backoff B       delay of a job coming back by TTR timeout, worker gone or a
                        release with delay 0: none | fixed:SECS | exp:BASE,CAP (about
                        BASE*2^(reserves-1) seconds, jittered, at most CAP)
  max-ready N           a put is refused (OUT_OF_MEMORY) while the tube has N ready jobs
                        (0: no limit)

Shown with the tube's dead-lettered and retries-delayed counts. A tube that does not
exist has no policy to show (exit 1, NOT_FOUND); setting a key creates it.

Examples:
  sprout policy emails max-reserves 5
  sprout policy emails on-exhaust tube:emails-dead
  sprout policy emails retry-backoff exp:2,300
  sprout policy emails --json";

#[derive(Subcommand)]
enum BinlogCmd {
    /// Files, records, and live/dead bytes per file.
    Inspect {
        dir: std::path::PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Checks every record's checksum and framing; exit 1 if anything is damaged.
    Verify { dir: std::path::PathBuf },
}

fn run_binlog(cmd: BinlogCmd) -> ExitCode {
    let dir = match &cmd {
        BinlogCmd::Inspect { dir, .. } | BinlogCmd::Verify { dir } => dir.clone(),
    };
    let report = match sprout_storage::inspect::inspect(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sprout: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    match cmd {
        BinlogCmd::Inspect { json: true, .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        BinlogCmd::Inspect { .. } => print!("{}", sprout_storage::inspect::table(&report)),
        BinlogCmd::Verify { .. } => {
            let damaged: Vec<_> = report.files.iter().filter(|f| f.damage.is_some()).collect();
            let records: u64 = report.files.iter().map(|f| f.records).sum();
            if damaged.is_empty() {
                println!(
                    "ok: {} files, {records} records, {} live jobs",
                    report.files.len(),
                    report.live_jobs
                );
            } else {
                for f in damaged {
                    println!(
                        "{}: damaged at {}",
                        f.name,
                        f.damage.as_deref().unwrap_or("?")
                    );
                }
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if (0.1..=3600.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err("the interval must be between 0.1 and 3600 seconds".into())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Spin {
    Auto,
    On,
    Off,
}

#[derive(clap::Args)]
#[command(after_help = BENCH_HELP)]
struct BenchArgs {
    /// Workload to run against --addr (default: cycle). Not with --compare; with --tls it
    /// runs over TLS against --addr instead of the TLS suite.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Connections (pubsub: half producers, half consumers; idle: how many to open).
    #[arg(short = 'c', long, default_value_t = 1)]
    conns: usize,
    /// Commands in flight per connection (pipeline).
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Job body size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Tubes the connections spread over.
    #[arg(long, default_value_t = 1)]
    tubes: usize,
    /// Extra tubes, each holding one job, created before the run.
    #[arg(long, default_value_t = 0)]
    extra_tubes: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Jobs (drain backlog, fill).
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// The server's pid, to report its CPU time and RSS (without --compare).
    #[arg(long)]
    pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Start beanstalkd and sproutd and run the standard suite against both.
    #[arg(long, conflicts_with = "workload")]
    compare: bool,
    /// Start beanstalkd, sproutd and a 3-node sproutd cluster and run put, cycle and pubsub
    /// against each (the cluster through its leader and through a follower), then time
    /// failovers (--failovers).
    #[arg(long, conflicts_with_all = ["workload", "compare"])]
    cluster: bool,
    /// --cluster: kills of the leader to time.
    #[arg(long, default_value_t = 20)]
    failovers: usize,
    /// Rounds per server (--compare, --cluster), per listener (--tls).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Smaller fill/idle/tube counts (--compare), for smoke runs.
    #[arg(long)]
    quick: bool,
    /// Which --compare suite: `default` (throughput, latency, memory), `binlog`
    /// (persistence: put+delete with -b -f0 / -b / no -b, recovery time, disk per job), `all`.
    #[arg(long, default_value = "default")]
    suite: String,
    /// CPUs the servers may use (--compare, --tls): the first N; the generator gets the
    /// rest.
    #[arg(long, default_value_t = 1)]
    server_cpus: usize,
    /// pipeline: wait for replies by busy-polling (`on`) or by sleeping (`off`). `auto`: on
    /// in --compare when the generator has CPUs of its own, off otherwise. Sleeping, the
    /// generator's wake-ups, not the server, limit what the pipeline workload measures.
    #[arg(long, value_enum, default_value = "auto")]
    spin: Spin,
    /// Run only the --compare, --tls or --cluster cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
    #[arg(long, default_value = "/usr/bin/beanstalkd")]
    beanstalkd: String,
    /// sproutd binary (default: next to this sprout binary).
    #[arg(long)]
    sproutd: Option<String>,
    /// Extra flags for the servers (--compare, --tls, --cluster), e.g. "-z 1048576".
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,
}

const BENCH_HELP: &str = "\
--tls without --workload: the TLS suite. It starts sproutd (--sproutd) with a plain
listener and a TLS listener (a certificate for 127.0.0.1 from a CA made for the run),
runs put and cycle at 1, 10 and 100 connections and the handshake workload (connect, full
TLS handshake, one command, close) at 1 and 10 connections over each listener, a fresh
server per measurement, and prints the medians with TLS/plain ratios.

--tls (or --ca ...) with --workload: that workload over TLS against --addr.

--cluster: put, cycle and pubsub at 1 (pubsub: 2), 10 and 100 connections against
beanstalkd (no binlog, and -b -f0), sproutd -b -f0 (fsync before every acknowledgement,
as a cluster acknowledges) and a 3-node sproutd cluster on loopback, the clients on its
leader and on a follower; a fresh server or cluster per measurement. Then --failovers
kills (-9) of the leader under put load from clients on the other nodes: the time until
a put sent after the kill is acknowledged, median and max.";

fn sproutd_path(a: &BenchArgs) -> String {
    a.sproutd.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("sproutd")))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "sproutd".into())
    })
}

fn server_args(a: &BenchArgs) -> Vec<String> {
    a.server_args
        .as_deref()
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

fn run_bench_tls(rt: &tokio::runtime::Runtime, a: &BenchArgs) -> ExitCode {
    let mut cases = bench_tls::suite(a.secs);
    if let Some(only) = &a.only {
        cases.retain(|c| c.name.contains(only.as_str()));
    }
    let opts = bench_tls::TlsOpts {
        sproutd: sproutd_path(a),
        server_args: server_args(a),
        rounds: a.rounds.max(1),
        cases,
        server_cpus: a.server_cpus,
    };
    let res = rt.block_on(bench_tls::compare_tls(&opts));
    print_report(res, a.json, |r| {
        format!(
            "pinning: {}; rounds: {}\n{}",
            r.pinning,
            r.rounds,
            bench_tls::table(r)
        )
    })
}

/// A comparison's report as JSON or as its table; an error on stderr and exit 1.
fn print_report<R: serde::Serialize, E: std::fmt::Display>(
    res: Result<R, E>,
    json: bool,
    text: impl FnOnce(&R) -> String,
) -> ExitCode {
    match res {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", text(&report));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sprout bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_bench(addr: &str, conn: &ConnArgs, a: &BenchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sprout: {e}");
            return ExitCode::from(2);
        }
    };
    let params = Params {
        conns: a.conns,
        depth: a.depth,
        size: a.size,
        tubes: a.tubes,
        extra_tubes: a.extra_tubes,
        secs: a.secs,
        jobs: a.jobs,
        spin: a.spin == Spin::On,
    };
    if conn.tls && a.workload.is_none() && !a.compare {
        return run_bench_tls(&rt, a);
    }
    if a.cluster {
        let mut cases = bench_cluster::suite(a.secs);
        if let Some(only) = &a.only {
            cases.retain(|c| c.name.contains(only.as_str()));
        }
        let opts = bench_cluster::ClusterOpts {
            beanstalkd: a.beanstalkd.clone(),
            sproutd: sproutd_path(a),
            server_args: server_args(a),
            rounds: a.rounds.max(1),
            cases,
            failovers: a.failovers,
        };
        let res = rt.block_on(bench_cluster::compare_cluster(&opts));
        return print_report(res, a.json, |r| {
            format!(
                "{}-node cluster on loopback; rounds: {}\n{}",
                r.nodes,
                r.rounds,
                bench_cluster::table(r)
            )
        });
    }
    if a.compare {
        let sproutd = sproutd_path(a);
        let mut cases = match a.suite.as_str() {
            "binlog" => compare::binlog_suite(a.quick, a.secs),
            "all" => {
                let mut v = compare::suite(a.quick, a.secs);
                v.extend(compare::binlog_suite(a.quick, a.secs));
                v
            }
            _ => compare::suite(a.quick, a.secs),
        };
        if let Some(only) = &a.only {
            cases.retain(|c| c.name.contains(only.as_str()));
        }
        let opts = compare::CompareOpts {
            beanstalkd: a.beanstalkd.clone(),
            sproutd,
            server_args: server_args(a),
            rounds: a.rounds.max(1),
            cases,
            server_cpus: a.server_cpus,
            spin: a.spin != Spin::Off,
        };
        let res = rt.block_on(compare::compare(&opts));
        return print_report(res, a.json, |r| {
            format!(
                "pinning: {}; rounds: {}\n{}",
                r.pinning,
                r.rounds,
                compare::table(r)
            )
        });
    }
    let target = match Target::new(addr, conn) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sprout bench: {e}");
            return ExitCode::from(1);
        }
    };
    let workload = a.workload.unwrap_or(Workload::Cycle);
    let bar = compare::progress(a.secs);
    bar.set_prefix(format!("{workload:?} against {addr}"));
    match rt.block_on(bench::run(&target, a.pid, workload, &params, &bar)) {
        Ok(m) => {
            bar.finish_and_clear();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
            } else {
                println!(
                    "ops {} in {:.2}s: {:.0} ops/s, errors {}, latency us p50 {:.1} p99 {:.1} \
                     p999 {:.1} max {:.1}",
                    m.ops, m.secs, m.ops_per_sec, m.errors, m.p50_us, m.p99_us, m.p999_us, m.max_us
                );
                if let Some(c) = m.server_cpu_us_per_op {
                    println!("server cpu {c:.2} us/op");
                }
                if let Some(r) = m.server_rss_kb {
                    println!("server rss {r} KiB");
                }
                if let Some(r) = m.rss_bytes_per_item {
                    println!("rss per item {r:.1} B");
                }
            }
            if m.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("sprout bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let addr = cli.addr.as_str();
    match cli.cmd {
        Cmd::Bench(a) => return run_bench(addr, &cli.conn, &a),
        Cmd::Binlog(b) => return run_binlog(b),
        Cmd::Token(t) => return run_token(t),
        Cmd::Completions { shell } => return docs::completions(shell),
        Cmd::Man => return docs::man(),
        _ => {}
    }
    let t = match Target::new(addr, &cli.conn) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sprout: {e}");
            return ExitCode::from(1);
        }
    };
    let t = &t;
    let res = match cli.cmd {
        Cmd::Bench(_) | Cmd::Binlog(_) | Cmd::Token(_) | Cmd::Completions { .. } | Cmd::Man => {
            unreachable!("handled above")
        }
        Cmd::Work(a) => return sprout::work::run(t.clone(), a),
        Cmd::Cluster(ClusterCmd::Status { json }) => sprout::cli::cluster::status(t, json),
        Cmd::Cluster(ClusterCmd::Add { member: (id, addr) }) => {
            sprout::cli::cluster::add(t, id, &addr)
        }
        Cmd::Cluster(ClusterCmd::Remove { id }) => sprout::cli::cluster::remove(t, id),
        Cmd::Cluster(ClusterCmd::TransferLeader { id }) => {
            sprout::cli::cluster::transfer_leader(t, id)
        }
        Cmd::Stats { tube, job, json } => {
            let of = match (tube, job) {
                (Some(t), _) => StatsOf::Tube(t),
                (None, Some(j)) => StatsOf::Job(j),
                (None, None) => StatsOf::Server,
            };
            cmds::stats(t, of, json)
        }
        Cmd::Tubes {
            sort,
            reverse,
            json,
        } => tubes::run(t, sort, reverse, json),
        Cmd::Top { interval } => top::run(t, interval),
        Cmd::Peek {
            tube,
            state,
            id,
            raw,
        } => {
            let at = match id {
                Some(id) => PeekAt::Id(id),
                None => PeekAt::Tube(
                    tube.unwrap_or_else(|| "default".into()),
                    state.unwrap_or(State::Ready),
                ),
            };
            cmds::peek(t, at, raw)
        }
        Cmd::Put {
            body,
            file,
            tube,
            pri,
            delay,
            ttr,
            unique,
        } => {
            let body = match (body, file) {
                (Some(b), _) => Body::Arg(b),
                (None, Some(f)) => Body::File(f),
                (None, None) => Body::Stdin,
            };
            cmds::put(
                t,
                body,
                &PutArgs {
                    tube,
                    unique,
                    pri,
                    delay,
                    ttr,
                },
            )
        }
        Cmd::Kick { n, tube, id } => {
            let what = match (id, n) {
                (Some(id), _) => KickWhat::Id(id),
                (None, n) => KickWhat::Jobs(n.unwrap_or(1), tube),
            };
            cmds::kick(t, what)
        }
        Cmd::Delete { ids } => cmds::delete(t, &ids),
        Cmd::Pause { tube, seconds } => cmds::pause(t, &tube, seconds),
        Cmd::Flush { tube, state, json } => cmds::flush(t, &tube, state, json),
        Cmd::Jobs {
            tube,
            state,
            after,
            limit,
            json,
        } => ext::jobs(
            t,
            &JobsArgs {
                tube,
                state,
                after,
                limit,
                json,
            },
        ),
        Cmd::Policy {
            tube,
            key,
            value,
            json,
        } => ext::policy(t, &tube, key.zip(value), json),
        Cmd::Move { id, tube } => ext::move_job(t, id, &tube),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sprout: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
