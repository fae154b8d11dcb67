//! Command-line flags, parsed the way beanstalkd parses them: `-x VALUE` or `-xVALUE`,
//! grouped flags (`-VV`), parsing stops at the first argument that is not a flag.

use std::path::PathBuf;

use sprout_protocol::{DEFAULT_MAX_JOB_SIZE, MAX_JOB_SIZE_LIMIT};

/// Default binlog file size (`-s`), as in beanstalkd.
pub(crate) const DEFAULT_BINLOG_SIZE: u64 = 10_485_760;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `-l`: an address, or `unix:/path`. `None` means all addresses.
    pub listen: Option<String>,
    /// `-p`
    pub(crate) port: u16,
    /// Whether `-l`/`-p` were given (for the socket-activation warning).
    pub(crate) listen_given: Vec<String>,
    /// `-z`
    pub max_job_size: u32,
    /// `-b`
    pub binlog_dir: Option<PathBuf>,
    /// `-f MS` (Some) or `-F` (None); default Some(50).
    pub fsync_ms: Option<u64>,
    /// `-s`
    pub binlog_size: u64,
    /// `-u`
    pub user: Option<String>,
    /// Number of `-V`.
    pub verbosity: u8,
    /// `--binlog-salvage`: load what is readable from a damaged binlog.
    pub(crate) binlog_salvage: bool,
    /// `--strict`: exactly beanstalkd 1.13's commands; sprout's own are unknown.
    pub strict: bool,
    /// `--policy-file FILE`: tube policies set at startup, one `TUBE KEY VALUE` a line.
    pub policy_file: Option<std::path::PathBuf>,
    /// `--metrics ADDR`: serve /metrics and /healthz over HTTP.
    pub metrics: Option<String>,
    /// `--metrics-tube-cap N`: tubes with their own series (the rest are summed).
    pub metrics_tube_cap: usize,
    /// `--max-connections N`: connections beyond this are closed at once.
    pub(crate) max_connections: Option<usize>,
    /// `--max-jobs N`: put answers OUT_OF_MEMORY once this many jobs exist.
    pub max_jobs: Option<u64>,
    /// `--max-memory BYTES`: put answers OUT_OF_MEMORY beyond this many bytes of job bodies.
    pub max_memory: Option<u64>,
    /// Warnings produced while parsing, to log once logging is up.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            port: 11300,
            listen_given: vec![],
            max_job_size: DEFAULT_MAX_JOB_SIZE,
            binlog_dir: None,
            fsync_ms: Some(50),
            binlog_size: DEFAULT_BINLOG_SIZE,
            user: None,
            verbosity: 0,
            binlog_salvage: false,
            strict: false,
            policy_file: None,
            metrics: None,
            metrics_tube_cap: 100,
            max_connections: None,
            max_jobs: None,
            max_memory: None,
            warnings: vec![],
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Box<Config>),
    /// Print this to stdout and exit 0 (`-v`).
    Version,
    /// Print usage to stderr and exit 0 (`-h`).
    Help,
    /// Print this and the usage to stderr, exit with this code.
    Error(String, i32),
}

pub fn usage(prog: &str) -> String {
    format!(
        "Use: {prog} [OPTIONS]\n\
         \n\
         Options:\n \
         -b DIR   write-ahead log directory\n \
         -f MS    fsync at most once every MS milliseconds (use -f0 for \"always fsync\")\n \
         -F       never fsync\n \
         -l ADDR  listen on address (default is 0.0.0.0); unix:PATH for a unix socket\n \
         -p PORT  listen on port (default is 11300)\n \
         -u USER  become user and group\n \
         -z BYTES set the maximum job size in bytes (default is {DEFAULT_MAX_JOB_SIZE})\n \
         -s BYTES set the size of each write-ahead log file (default is {DEFAULT_BINLOG_SIZE})\n \
                  --binlog-salvage  start even if the binlog is damaged, loading what is readable\n \
         --metrics ADDR    serve Prometheus /metrics and /healthz on ADDR (e.g. 127.0.0.1:9100)\n \
                  --metrics-tube-cap N  tubes with their own metric series (default 100)\n \
         --max-connections N   close connections beyond N at once (default: no limit)\n \
         --max-jobs N          put answers OUT_OF_MEMORY once N jobs exist\n \
         --max-memory BYTES    put answers OUT_OF_MEMORY beyond BYTES of job bodies\n \
         --strict  only beanstalkd 1.13's commands (sprout's own answer as beanstalkd would)\n \
         --policy-file FILE    tube policies to set at startup: lines of TUBE KEY VALUE\n \
         -c, -n   accepted for compatibility, no effect\n \
         -v       show version information\n \
         -V       increase verbosity\n \
         -h       show this help\n"
    )
}

fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Parsed {
    let mut cfg = Config::default();
    let mut args = args.into_iter().skip(1).peekable();
    while let Some(arg) = args.next() {
        if arg == "--help" {
            return Parsed::Help;
        }
        if arg == "--version" {
            return Parsed::Version;
        }
        if arg == "--binlog-salvage" {
            cfg.binlog_salvage = true;
            continue;
        }
        if arg == "--strict" {
            cfg.strict = true;
            continue;
        }
        let long = [
            "--metrics",
            "--policy-file",
            "--metrics-tube-cap",
            "--max-connections",
            "--max-jobs",
            "--max-memory",
        ];
        if let Some((name, inline)) = long_opt(&arg, &long) {
            let val = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Parsed::Error(format!("flag requires an argument: {name}"), 5),
            };
            if name == "--metrics" {
                cfg.metrics = Some(val);
                continue;
            }
            if name == "--policy-file" {
                cfg.policy_file = Some(val.into());
                continue;
            }
            let Some(n) = parse_size(&val) else {
                return Parsed::Error(format!("invalid number: {val}"), 5);
            };
            match name {
                "--metrics-tube-cap" => cfg.metrics_tube_cap = n as usize,
                "--max-connections" => cfg.max_connections = Some(n as usize),
                "--max-jobs" => cfg.max_jobs = Some(n),
                _ => cfg.max_memory = Some(n),
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Parsed::Error(format!("unknown argument: {arg}"), 5);
        };
        for (i, f) in flags.char_indices() {
            match f {
                'V' => cfg.verbosity = cfg.verbosity.saturating_add(1),
                'F' => cfg.fsync_ms = None,
                'v' => return Parsed::Version,
                'h' => return Parsed::Help,
                'c' | 'n' => cfg.warnings.push(format!(
                    "-{f} flag was removed. binlog is always compacted."
                )),
                'b' | 'f' | 'l' | 'p' | 's' | 'u' | 'z' => {
                    let rest = &flags[i + f.len_utf8()..];
                    let val = if !rest.is_empty() {
                        rest.to_string()
                    } else if let Some(v) = args.next() {
                        v
                    } else {
                        return Parsed::Error(format!("flag requires an argument: -{f}"), 5);
                    };
                    if let Err(e) = apply(&mut cfg, f, val) {
                        return Parsed::Error(e, 5);
                    }
                    break;
                }
                _ => return Parsed::Error(format!("unknown flag: -{f}"), 5),
            }
        }
    }
    Parsed::Run(Box::new(cfg))
}

/// `--name VALUE` or `--name=VALUE` for one of `names`: (name, inline value).
fn long_opt(arg: &str, names: &[&'static str]) -> Option<(&'static str, Option<String>)> {
    names.iter().find_map(|&n| {
        if arg == n {
            Some((n, None))
        } else {
            arg.strip_prefix(n)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| (n, Some(v.to_string())))
        }
    })
}

fn apply(cfg: &mut Config, f: char, val: String) -> Result<(), String> {
    match f {
        'b' => cfg.binlog_dir = Some(PathBuf::from(val)),
        'f' => {
            let ms = parse_size(&val).ok_or_else(|| format!("invalid size: {val}"))?;
            cfg.fsync_ms = Some(ms);
        }
        'l' => {
            cfg.listen_given.push(format!("-l {val}"));
            cfg.listen = Some(val);
        }
        'p' => {
            cfg.listen_given.push(format!("-p {val}"));
            cfg.port = val.parse().map_err(|_| format!("invalid port: {val}"))?;
        }
        's' => cfg.binlog_size = parse_size(&val).ok_or_else(|| format!("invalid size: {val}"))?,
        'u' => cfg.user = Some(val),
        'z' => {
            let z = parse_size(&val).ok_or_else(|| format!("invalid size: {val}"))?;
            if z > u64::from(MAX_JOB_SIZE_LIMIT) {
                cfg.warnings
                    .push(format!("maximum job size was set to {MAX_JOB_SIZE_LIMIT}"));
                cfg.max_job_size = MAX_JOB_SIZE_LIMIT;
            } else {
                cfg.max_job_size = z as u32;
            }
        }
        _ => return Err(format!("unknown flag: -{f}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Parsed {
        parse_args(
            std::iter::once("sproutd")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    fn cfg(args: &[&str]) -> Config {
        match run(args) {
            Parsed::Run(c) => *c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn flags_like_beanstalkd() {
        let c = cfg(&[
            "-l",
            "127.0.0.1",
            "-p11301",
            "-z",
            "10",
            "-VV",
            "-s",
            "4096",
        ]);
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.port, 11301);
        assert_eq!(c.max_job_size, 10);
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.binlog_size, 4096);
        assert_eq!(cfg(&["-VFV"]).fsync_ms, None);
        assert_eq!(cfg(&["-VFVf0"]).fsync_ms, Some(0));
        assert_eq!(cfg(&["-z", "2000000000"]).max_job_size, MAX_JOB_SIZE_LIMIT);
        assert_eq!(cfg(&[]), Config::default());
        assert_eq!(run(&["-v"]), Parsed::Version);
        assert_eq!(run(&["-h"]), Parsed::Help);
        assert!(matches!(run(&["-x"]), Parsed::Error(ref m, 5) if m == "unknown flag: -x"));
        assert!(
            matches!(run(&["-p"]), Parsed::Error(ref m, 5) if m == "flag requires an argument: -p")
        );
        assert!(matches!(run(&["-s", "1k"]), Parsed::Error(ref m, 5) if m == "invalid size: 1k"));
        assert!(matches!(run(&["foo"]), Parsed::Error(ref m, 5) if m == "unknown argument: foo"));
        assert_eq!(cfg(&["-c", "-n"]).warnings.len(), 2);
    }
}
