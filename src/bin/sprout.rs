//! sprout: the admin CLI. Talks the beanstalkd protocol to any server (sproutd or
//! beanstalkd).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sprout::bench::{self, compare, Params, Workload};

#[derive(Parser)]
#[command(
    name = "sprout",
    version,
    about = "Admin CLI for sproutd and beanstalkd"
)]
struct Cli {
    /// Server address: HOST:PORT or unix:/path.
    #[arg(
        short = 'a',
        long,
        env = "SPROUT_ADDR",
        default_value = "127.0.0.1:11300"
    )]
    addr: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print server statistics (or a tube's, or a job's) as the server sends them.
    Stats {
        #[arg(long)]
        tube: Option<String>,
        #[arg(long)]
        job: Option<u64>,
    },
    /// List the server's tubes.
    Tubes,
    /// Load-generate against a server, or compare sproutd with beanstalkd.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Workload to run (without --compare).
    #[arg(long, value_enum, default_value = "cycle")]
    workload: Workload,
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
    #[arg(long)]
    compare: bool,
    /// Rounds per server (--compare).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Smaller fill/idle/tube counts (--compare), for smoke runs.
    #[arg(long)]
    quick: bool,
    /// Run only the --compare cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
    #[arg(long, default_value = "/usr/bin/beanstalkd")]
    beanstalkd: String,
    /// sproutd binary (default: next to this sprout binary).
    #[arg(long)]
    sproutd: Option<String>,
    /// Extra flags for both servers, e.g. "-z 1048576".
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(addr: &str) -> std::io::Result<Box<dyn Stream>> {
    let timeout = Some(Duration::from_secs(10));
    if let Some(path) = addr.strip_prefix("unix:") {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(timeout)?;
        Ok(Box::new(s))
    } else {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(timeout)?;
        Ok(Box::new(s))
    }
}

/// Sends one command and returns the reply's first line and its body, if any.
fn request(addr: &str, line: &str) -> Result<(String, Vec<u8>), String> {
    let mut s = connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.write_all(format!("{line}\r\n").as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut r = BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head).map_err(|e| format!("{addr}: {e}"))?;
    let head = head.trim_end().to_string();
    let mut body = Vec::new();
    if let Some(n) = head.strip_prefix("OK ") {
        let n: usize = n.parse().map_err(|_| format!("bad reply: {head}"))?;
        body.resize(n + 2, 0);
        r.read_exact(&mut body)
            .map_err(|e| format!("{addr}: {e}"))?;
        body.truncate(n);
    }
    Ok((head, body))
}

fn run_bench(addr: &str, a: &BenchArgs) -> ExitCode {
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
    };
    if a.compare {
        let sproutd = a.sproutd.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("sproutd")))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "sproutd".into())
        });
        let mut cases = compare::suite(a.quick, a.secs);
        if let Some(only) = &a.only {
            cases.retain(|c| c.name.contains(only.as_str()));
        }
        let opts = compare::CompareOpts {
            beanstalkd: a.beanstalkd.clone(),
            sproutd,
            server_args: a
                .server_args
                .as_deref()
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            rounds: a.rounds.max(1),
            cases,
        };
        return match rt.block_on(compare::compare(&opts)) {
            Ok(report) => {
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).unwrap_or_default()
                    );
                } else {
                    println!("pinning: {}; rounds: {}", report.pinning, report.rounds);
                    print!("{}", compare::table(&report));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sprout bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    let bar = compare::progress(a.secs);
    bar.set_prefix(format!("{:?} against {addr}", a.workload));
    match rt.block_on(bench::run(addr, a.pid, a.workload, &params, &bar)) {
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
    let line = match &cli.cmd {
        Cmd::Bench(a) => return run_bench(&cli.addr, a),
        Cmd::Stats { tube: Some(t), .. } => format!("stats-tube {t}"),
        Cmd::Stats { job: Some(j), .. } => format!("stats-job {j}"),
        Cmd::Stats { .. } => "stats".to_string(),
        Cmd::Tubes => "list-tubes".to_string(),
    };
    match request(&cli.addr, &line) {
        Ok((head, body)) if head.starts_with("OK ") => {
            print!("{}", String::from_utf8_lossy(&body));
            ExitCode::SUCCESS
        }
        Ok((head, _)) => {
            eprintln!("sprout: server answered {head}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("sprout: {e}");
            ExitCode::from(2)
        }
    }
}
