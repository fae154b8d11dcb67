//! `sprout bench --compare`: the same workloads against beanstalkd and sproutd, alternated
//! round by round, with medians and ratios.

use std::io;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{proc, run, Measurement, Params, Workload};
use crate::conn::Target;

/// A server process started for one measurement; killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    pub(crate) pid: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `bin -l 127.0.0.1 -p PORT args…`, pinned to `cpu` if given, and waits until it
/// accepts connections.
pub(crate) fn start(bin: &str, args: &[String], cpus: Option<usize>) -> io::Result<Server> {
    let mut a = args.to_vec();
    a.extend(["-p".to_string(), free_port()?.to_string()]);
    start_on(bin, &a, cpus)
}

/// As `start`, with the port given in `args` (`-p N`).
pub(crate) fn start_on(bin: &str, args: &[String], cpus: Option<usize>) -> io::Result<Server> {
    let port = args
        .iter()
        .position(|a| a == "-p")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "11300".into());
    let mut cmd = Command::new(bin);
    cmd.args(["-l", "127.0.0.1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = cpus {
        // SAFETY: sched_setaffinity is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for cpu in 0..n {
                    libc::CPU_SET(cpu, &mut set);
                }
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    let port: u16 = port.parse().map_err(|_| io::Error::other("bad port"))?;
    let pid = child.id();
    let server = Server {
        child,
        addr: format!("127.0.0.1:{port}"),
        pid,
    };
    wait_listening(bin, &server.addr)?;
    Ok(server)
}

/// Waits (at most 5 s) until `addr` accepts connections.
pub(crate) fn wait_listening(bin: &str, addr: &str) -> io::Result<()> {
    let t0 = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            return Err(io::Error::other(format!(
                "{bin} did not start listening on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub name: String,
    pub(crate) workload: Workload,
    pub(crate) params: Params,
    /// Extra server flags for this case.
    pub(crate) args: Vec<String>,
    /// Run each server on a fresh binlog directory (`-b`).
    pub(crate) binlog: bool,
}

/// The persistence suite: put+delete with `-b -f 0`, `-b` (fsync every 50 ms) and no
/// binlog, at 1 and 50 connections; put to RESERVED latency with `-b -f 0`; recovery of a
/// large binlog; disk bytes per job.
pub fn binlog_suite(quick: bool, secs: f64) -> Vec<Case> {
    let mut v = Vec::new();
    for (label, binlog, args) in [
        ("-b -f0", true, vec!["-f".to_string(), "0".to_string()]),
        ("-b", true, vec![]),
        ("no -b", false, vec![]),
    ] {
        for conns in [1, 50] {
            v.push(Case {
                name: format!("putdel c={conns} {label}"),
                workload: Workload::PutDelete,
                params: Params {
                    conns,
                    secs,
                    ..Params::default()
                },
                args: args.clone(),
                binlog,
            });
        }
    }
    // Put sent -> RESERVED received while every change waits for its fsync: what the
    // commit watermark costs a worker waiting for new jobs.
    for conns in [2, 10] {
        v.push(Case {
            name: format!("pubsub c={conns} -b -f0"),
            workload: Workload::Pubsub,
            params: Params {
                conns,
                secs,
                ..Params::default()
            },
            args: vec!["-f".to_string(), "0".to_string()],
            binlog: true,
        });
    }
    let jobs = if quick { 50_000 } else { 1_000_000 };
    v.push(Case {
        name: format!("recover {jobs} x 100B"),
        workload: Workload::Recover,
        params: Params {
            jobs,
            secs,
            ..Params::default()
        },
        args: vec![],
        binlog: true,
    });
    v
}

/// A fresh binlog directory for one run; removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    pub(crate) fn new() -> io::Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "sprout-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Puts `jobs` jobs, stops the server with SIGTERM, restarts it on the same directory and
/// times until it answers `stats-tube` with every job back.
async fn recover(
    bin: &str,
    args: &[String],
    cpus: Option<usize>,
    p: &Params,
    bar: &indicatif::ProgressBar,
) -> io::Result<Measurement> {
    let mut server = start(bin, args, cpus)?;
    super::prefill(&Target::plain(&server.addr), p.jobs, p.size, bar).await?;
    let port = server.addr.rsplit(':').next().unwrap_or("0").to_string();
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = server.child.wait();
    bar.set_message("restarting");
    let t0 = Instant::now();
    let mut args2: Vec<String> = args.to_vec();
    args2.extend(["-p".to_string(), port]);
    let restarted = start_on(bin, &args2, cpus)?;
    let target = Target::plain(&restarted.addr);
    loop {
        if let Ok(Some(n)) = super::ready_jobs(&target).await {
            if n == p.jobs {
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(io::Error::other("recovery did not finish in 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(Measurement {
        ops: p.jobs,
        secs,
        ops_per_sec: p.jobs as f64 / secs,
        server_rss_kb: proc::rss_kb(restarted.pid),
        ..Default::default()
    })
}

/// The standard suite: the workloads issue #4 sets targets for.
pub fn suite(quick: bool, secs: f64) -> Vec<Case> {
    let p = |conns, secs| Params {
        conns,
        secs,
        ..Params::default()
    };
    let case = |name: &str, workload, params| Case {
        name: name.into(),
        workload,
        params,
        args: vec![],
        binlog: false,
    };
    let (fill_jobs, idle_conns, extra) = if quick {
        (20_000, 200, 200)
    } else {
        (1_000_000, 10_000, 1_000)
    };
    vec![
        case("cycle c=1", Workload::Cycle, p(1, secs)),
        case("pubsub c=10", Workload::Pubsub, p(10, secs)),
        case("pubsub c=100", Workload::Pubsub, p(100, secs)),
        case(
            "pipeline c=1 d=16",
            Workload::Pipeline,
            Params {
                depth: 16,
                ..p(1, secs)
            },
        ),
        case("put c=50", Workload::Put, p(50, secs)),
        case(
            &format!("cycle c=1 +{extra} tubes"),
            Workload::Cycle,
            Params {
                extra_tubes: extra,
                ..p(1, secs)
            },
        ),
        case(
            &format!("fill {fill_jobs} x 100B"),
            Workload::Fill,
            Params {
                jobs: fill_jobs,
                ..p(1, secs)
            },
        ),
        case(
            &format!("idle {idle_conns} conns"),
            Workload::Idle,
            Params {
                conns: idle_conns,
                ..p(1, secs)
            },
        ),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseResult {
    pub(crate) case: Case,
    pub beanstalkd: Vec<Measurement>,
    pub sproutd: Vec<Measurement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pinning: String,
    pub rounds: usize,
    pub beanstalkd: String,
    pub sproutd: String,
    pub(crate) results: Vec<CaseResult>,
}

pub struct CompareOpts {
    pub beanstalkd: String,
    pub sproutd: String,
    pub server_args: Vec<String>,
    pub rounds: usize,
    pub cases: Vec<Case>,
    /// CPUs the servers may use (the first N); the generator gets the others.
    pub server_cpus: usize,
    /// The pipeline workload busy-polls for replies, if the generator has CPUs of its own.
    pub spin: bool,
}

/// Runs every case `rounds` times against each server, alternating A B A B.
pub async fn compare(o: &CompareOpts) -> io::Result<Report> {
    let total = proc::cpus();
    let n = o.server_cpus.clamp(1, total);
    let pinned = n < total && proc::pin_range(n, total);
    let spin = o.spin && pinned;
    let mut pinning = if pinned {
        format!(
            "servers on CPU 0..{}, load generator on CPU {}..{}",
            n - 1,
            n,
            total - 1
        )
    } else {
        format!("servers on CPU 0..{}, load generator not pinned", n - 1)
    };
    if spin && o.cases.iter().any(|c| c.workload == Workload::Pipeline) {
        pinning.push_str("; pipeline generator busy-polls for replies");
    }
    let server_cpu = Some(n);
    eprintln!("bench: {pinning}");
    let mut results = Vec::new();
    for case in &o.cases {
        let mut r = CaseResult {
            case: case.clone(),
            beanstalkd: vec![],
            sproutd: vec![],
        };
        for round in 0..o.rounds {
            for (name, bin) in [("beanstalkd", &o.beanstalkd), ("sproutd", &o.sproutd)] {
                let dir = if case.binlog {
                    Some(TempDir::new()?)
                } else {
                    None
                };
                let mut args = o.server_args.clone();
                args.extend(case.args.iter().cloned());
                if let Some(d) = &dir {
                    args.extend(["-b".to_string(), d.0.display().to_string()]);
                }
                let bar = progress(case.params.secs);
                bar.set_prefix(format!("{} [{}/{}] {name}", case.name, round + 1, o.rounds));
                let mut m = if case.workload == Workload::Recover {
                    recover(bin, &args, server_cpu, &case.params, &bar).await?
                } else {
                    let server = start(bin, &args, server_cpu)?;
                    let params = Params {
                        spin: spin && case.workload == Workload::Pipeline,
                        ..case.params.clone()
                    };
                    let target = Target::plain(&server.addr);
                    run(&target, Some(server.pid), case.workload, &params, &bar).await?
                };
                if let Some(d) = &dir {
                    if m.ops > 0 && case.workload == Workload::Recover {
                        m.disk_bytes_per_job = Some(dir_bytes(&d.0) as f64 / m.ops as f64);
                    }
                }
                bar.finish_and_clear();
                if m.errors > 0 {
                    return Err(io::Error::other(format!(
                        "{}: {} errors against {name}",
                        case.name, m.errors
                    )));
                }
                if name == "beanstalkd" {
                    r.beanstalkd.push(m);
                } else {
                    r.sproutd.push(m);
                }
            }
        }
        results.push(r);
    }
    Ok(Report {
        pinning,
        rounds: o.rounds,
        beanstalkd: o.beanstalkd.clone(),
        sproutd: o.sproutd.clone(),
        results,
    })
}

pub fn progress(secs: f64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new((secs * 1000.0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:40} {bar:30} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

type Metric = fn(&Measurement) -> Option<f64>;

/// The report as a table of medians: one row per case and metric.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:<16} {:>14} {:>14} {:>8}",
        "case", "metric (median)", "beanstalkd", "sproutd", "ratio"
    );
    for c in &r.results {
        let metrics: Vec<(&str, Metric)> = match c.case.workload {
            Workload::Fill => vec![
                ("RSS B/job", |m| m.rss_bytes_per_item),
                ("cpu us/op", |m| m.server_cpu_us_per_op),
                ("puts/s", |m| Some(m.ops_per_sec)),
            ],
            Workload::Idle => vec![("RSS B/conn", |m| m.rss_bytes_per_item)],
            Workload::Recover => vec![
                ("recovery s", |m| Some(m.secs)),
                ("disk B/job", |m| m.disk_bytes_per_job),
            ],
            _ => vec![
                ("ops/s", |m| Some(m.ops_per_sec)),
                ("p50 us", |m| Some(m.p50_us)),
                ("p99 us", |m| Some(m.p99_us)),
                ("cpu us/op", |m| m.server_cpu_us_per_op),
            ],
        };
        for (i, (name, f)) in metrics.iter().enumerate() {
            let b = median(c.beanstalkd.iter().filter_map(f).collect());
            let sp = median(c.sproutd.iter().filter_map(f).collect());
            let _ = writeln!(
                s,
                "{:<28} {:<16} {:>14.2} {:>14.2} {:>8.2}",
                if i == 0 { c.case.name.as_str() } else { "" },
                name,
                b,
                sp,
                sp / b
            );
        }
    }
    s
}
