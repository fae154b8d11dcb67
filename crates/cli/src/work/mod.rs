//! `sprout work`: a worker that runs a COMMAND for each job of some tubes.
//!
//! Each job's body goes to the COMMAND's stdin and its `stats-job` counters to its
//! environment; the exit status decides what happens to the job (delete, bury, or release
//! with a backoff delay). While a COMMAND runs, its job is `touch`ed so its TTR never runs
//! out. The worker keeps one connection to the server; if it breaks, it reconnects with
//! backoff and carries on.
//!
//! - [`worker`]: the event loop: the connection, the jobs, shutdown and reconnects. Its
//!   module comment explains how reservations are handled across a lost connection.
//! - [`proto`]: the async protocol connection (replies read by a task of their own).
//! - [`child`]: running one COMMAND: stdin, output lines to the log, stop and kill.
//! - [`log`]: the log, as text or JSON lines on stderr.
//! - [`metrics`]: the optional Prometheus endpoint.
//!
//! Exit status (see [`EXIT_CODES`]): 0 stopped by SIGTERM/SIGINT; 1 bad usage or
//! configuration; 2 the server cannot be reached at start.

mod child;
mod log;
mod metrics;
mod proto;
mod worker;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::conn::Target;

/// The worker's exit codes, as documented in `sprout work --help`.
pub const EXIT_CODES: &str = "\
Exit status:
  0  stopped by SIGTERM or SIGINT: running jobs finished or were released, nothing is
     left reserved
  1  bad usage or configuration (an option's value, no --tube, no COMMAND, a COMMAND
     that cannot be found, a --metrics address that cannot be bound), or the server
     refused the worker's setup (watch); a malformed command line the argument parser
     rejects (an unknown option) exits 2, as for every sprout command
  2  the server cannot be reached at start (a connection lost later is retried, never
     fatal)
  3  the server refused the token at start (UNAUTHORIZED); later, on a reconnect, a
     refused token is logged and retried like a lost connection";

/// Exit status: stopped by a signal, cleanly.
pub const EXIT_STOPPED: u8 = 0;
/// Exit status: bad usage or configuration.
pub const EXIT_CONFIG: u8 = 1;
/// Exit status: the server cannot be reached at start.
pub const EXIT_UNREACHABLE: u8 = 2;
/// Exit status: the server refused the token at start.
pub const EXIT_UNAUTHORIZED: u8 = 3;

/// `sprout work`'s options. Values are taken as text and checked by [`Config::new`], so
/// that a bad value exits 1 (configuration) rather than clap's 2 (cannot connect, for
/// sprout).
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct WorkArgs {
    /// Tube to take jobs from (repeat for several).
    #[arg(long = "tube", value_name = "T")]
    pub tubes: Vec<String>,
    /// Jobs run at once (1 to 1000).
    #[arg(long, value_name = "N", default_value = "1")]
    pub concurrency: String,
    /// Tries before a failing job is buried (each reserve of the job counts).
    #[arg(long, value_name = "K", default_value = "5")]
    pub max_attempts: String,
    /// Delay of a failed job's retry, from its reserve count r: `exp:BASE,CAP` waits
    /// BASE*2^(r-1) seconds, at most CAP; `fixed:S` always S seconds.
    #[arg(long, value_name = "exp:BASE,CAP|fixed:S", default_value = "exp:2,300")]
    pub backoff: String,
    /// Exit codes of COMMAND that bury the job at once (no retry).
    #[arg(long, value_name = "CODE", num_args = 1.., value_delimiter = ',')]
    pub bury_on: Vec<String>,
    /// Seconds a COMMAND may run: then SIGTERM, and SIGKILL --grace seconds later; the
    /// job counts as failed.
    #[arg(long, value_name = "S")]
    pub max_runtime: Option<String>,
    /// Seconds running jobs get to finish at shutdown, before SIGTERM (SIGKILL follows
    /// within 5 s) and the release of their jobs; also the time between SIGTERM and
    /// SIGKILL for --max-runtime.
    #[arg(long, value_name = "S", default_value = "30")]
    pub grace: String,
    /// Log lines as `text` or `json` (one object a line), on stderr.
    #[arg(long, value_name = "text|json", default_value = "text")]
    pub log_format: String,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9101).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// The command run for each job (after `--`), with the job's body on stdin.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// How a failed job's retry is delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `base * 2^(reserves-1)` seconds, at most `cap`.
    Exp { base: u32, cap: u32 },
    /// Always this many seconds.
    Fixed(u32),
}

impl Backoff {
    /// The syntax of `tube-policy`'s `retry-backoff` (the protocol's parser), less `none`.
    pub fn parse(s: &str) -> Result<Backoff, String> {
        use sprout_protocol::command::Backoff as Policy;
        match sprout_protocol::parse::parse_backoff(s.as_bytes()) {
            Ok(Policy::Exp { base, cap }) => Ok(Backoff::Exp { base, cap }),
            Ok(Policy::Fixed(s)) => Ok(Backoff::Fixed(s)),
            Ok(Policy::None) | Err(_) => Err(format!(
                "--backoff: expected exp:BASE,CAP (0 < BASE <= CAP) or fixed:S (seconds), got {s:?}"
            )),
        }
    }

    /// The delay in seconds after the job's `reserves`-th reserve failed.
    pub fn delay(&self, reserves: u64) -> u32 {
        match *self {
            Backoff::Fixed(s) => s,
            Backoff::Exp { base, cap } => {
                let shift = reserves.saturating_sub(1).min(32) as u32;
                let full = u64::from(base).saturating_mul(1u64 << shift);
                full.min(u64::from(cap)) as u32
            }
        }
    }
}

impl std::fmt::Display for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backoff::Exp { base, cap } => write!(f, "exp:{base},{cap}"),
            Backoff::Fixed(s) => write!(f, "fixed:{s}"),
        }
    }
}

/// The checked configuration of a worker.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub tubes: Vec<String>,
    pub concurrency: usize,
    pub max_attempts: u64,
    pub backoff: Backoff,
    pub bury_on: Vec<i32>,
    pub max_runtime: Option<Duration>,
    pub grace: Duration,
    pub json: bool,
    pub metrics: Option<String>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// A number of seconds, fractions allowed.
fn seconds(flag: &str, s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e9).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{flag}: expected a number of seconds, got {s:?}")),
    }
}

impl Config {
    pub fn new(target: Target, a: WorkArgs) -> Result<Config, String> {
        if a.tubes.is_empty() {
            return Err("at least one --tube is needed".into());
        }
        let mut tubes: Vec<String> = Vec::new();
        for t in a.tubes {
            let t = crate::cli::client::check_tube_name(&t)?;
            if !tubes.contains(&t) {
                tubes.push(t);
            }
        }
        let concurrency = match a.concurrency.trim().parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(format!(
                    "--concurrency: expected 1 to 1000, got {:?}",
                    a.concurrency
                ))
            }
        };
        let max_attempts = match a.max_attempts.trim().parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "--max-attempts: expected a number from 1, got {:?}",
                    a.max_attempts
                ))
            }
        };
        let backoff = Backoff::parse(&a.backoff)?;
        let mut bury_on = Vec::new();
        for c in &a.bury_on {
            match c.trim().parse::<i32>() {
                Ok(n) if (1..=255).contains(&n) => bury_on.push(n),
                _ => {
                    return Err(format!(
                        "--bury-on: expected exit codes 1 to 255, got {c:?}"
                    ))
                }
            }
        }
        let max_runtime = match &a.max_runtime {
            None => None,
            Some(s) => {
                let d = seconds("--max-runtime", s)?;
                if d.is_zero() {
                    return Err("--max-runtime must be more than 0 seconds".into());
                }
                Some(d)
            }
        };
        let grace = seconds("--grace", &a.grace)?;
        let json = match a.log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(format!(
                    "--log-format: expected text or json, got {other:?}"
                ))
            }
        };
        let mut command = a.command.into_iter();
        let program = command
            .next()
            .ok_or("no COMMAND: give it after `--`, e.g. sprout work --tube T -- ./job.sh")?;
        if !runnable(&program) {
            return Err(format!(
                "COMMAND {:?}: not found or not executable",
                program.to_string_lossy()
            ));
        }
        Ok(Config {
            target,
            tubes,
            concurrency,
            max_attempts,
            backoff,
            bury_on,
            max_runtime,
            grace,
            json,
            metrics: a.metrics,
            program,
            args: command.collect(),
        })
    }
}

/// Whether `program` names an executable file: as a path if it has a `/`, else found in
/// PATH, as the exec family looks it up.
fn runnable(program: &OsString) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_bytes().contains(&b'/') {
        return exec(Path::new(program));
    }
    if program.is_empty() {
        return false;
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|dir| exec(&dir.join(program)))
}

/// `sprout work`: checks the options, then runs the worker until it is stopped.
pub fn run(target: Target, args: WorkArgs) -> ExitCode {
    let cfg = match Config::new(target, args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sprout work: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sprout work: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    ExitCode::from(rt.block_on(worker::run(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_parses_and_grows() {
        let b = Backoff::parse("exp:2,60").unwrap();
        assert_eq!(b, Backoff::Exp { base: 2, cap: 60 });
        let d: Vec<u32> = (1..=7).map(|r| b.delay(r)).collect();
        assert_eq!(d, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(1000), 60);
        assert_eq!(Backoff::parse("fixed:7").unwrap().delay(3), 7);
        for bad in ["exp:2", "fixed:", "lin:1", "exp:a,2", "fixed:-1", ""] {
            assert!(Backoff::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Backoff::parse("exp:1,10").unwrap().to_string(), "exp:1,10");
    }
}
