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
    /// `--log-format text|json`: how log lines are written to stderr.
    pub log_format: LogFormat,
    /// `--binlog-salvage`: load what is readable from a damaged binlog.
    pub(crate) binlog_salvage: bool,
    /// `--strict`: exactly beanstalkd 1.13's commands; sprout's own are unknown.
    pub strict: bool,
    /// `--policy-file FILE`: tube policies set at startup, one `TUBE KEY VALUE` a line.
    pub policy_file: Option<std::path::PathBuf>,
    /// `--metrics ADDR`: serve /metrics and /healthz over HTTP.
    pub metrics: Option<String>,
    /// The address came from `--http` (not its alias `--metrics`): the dashboard must be
    /// served safely there, or the server does not start.
    pub http: bool,
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
    /// `--config FILE`: the TOML file the flags are applied over.
    pub config_file: Option<PathBuf>,
    /// `--print-config`: print the effective configuration as TOML and exit.
    pub print_config: bool,
    /// `--tls-listen ADDR` with `--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-auth`:
    /// one more listener, for the common case (`[[listener]]` in the file for more).
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_auth: Option<AuthMode>,
    /// `[[listener]]` tables.
    pub listeners: Vec<ListenerCfg>,
    /// `[[user]]` tables.
    pub users: Vec<UserCfg>,
    /// `[anonymous]`: the rights of `auth = "none"` listeners (None: everything).
    pub anonymous: Option<RightsCfg>,
    /// `--metrics-tls-cert`/`--metrics-tls-key`: serve /metrics over TLS.
    pub metrics_tls_cert: Option<PathBuf>,
    pub metrics_tls_key: Option<PathBuf>,
    /// `--metrics-token-sha256 HEX`: /metrics wants `Authorization: Bearer <token>`.
    pub metrics_token_sha256: Option<[u8; 32]>,
    /// `--node-id N`: this node's id in `--cluster`.
    pub node_id: Option<u64>,
    /// `--cluster ID=HOST:PORT,...`: the initial voters and their peer addresses (empty:
    /// a single node).
    pub cluster: Vec<(u64, String)>,
    /// `--cluster-bind HOST:PORT`: where the peer listener binds, when not at this node's
    /// address in `--cluster` (behind NAT or a proxy, the listed address is the one peers
    /// reach).
    pub cluster_bind: Option<String>,
}

/// `--log-format`: plain text lines (colour only when stderr is a terminal) or one JSON
/// object a line (for log shippers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// How a listener's clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Nobody: the `[anonymous]` rights (everything, without it).
    None,
    /// `auth <token>` first.
    Token,
    /// The client certificate's subject (`cert-subject`); needs `client-ca`.
    Mtls,
    /// The peer's uid on a unix socket (`unix-uid`).
    Peercred,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<AuthMode> {
        Some(match s {
            "none" => AuthMode::None,
            "token" => AuthMode::Token,
            "mtls" => AuthMode::Mtls,
            "peercred" => AuthMode::Peercred,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Token => "token",
            AuthMode::Mtls => "mtls",
            AuthMode::Peercred => "peercred",
        }
    }
}

/// One more listener (`[[listener]]`, or `--tls-listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerCfg {
    /// `host:port` or `unix:/path`.
    pub addr: String,
    pub tls: Option<crate::tls::TlsFiles>,
    pub auth: AuthMode,
}

/// `[[user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCfg {
    pub name: String,
    pub token_sha256: Option<[u8; 32]>,
    pub cert_subject: Option<String>,
    pub unix_uid: Option<u32>,
    pub tubes: Vec<String>,
    /// Class bits (see `access`).
    pub may: u8,
}

/// `[anonymous]`: tubes and classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsCfg {
    pub tubes: Vec<String>,
    pub may: u8,
}

impl Config {
    /// Every listener beyond the default one: the file's, then `--tls-listen`'s.
    pub fn extra_listeners(&self) -> Vec<ListenerCfg> {
        let mut v = self.listeners.clone();
        if let Some(addr) = &self.tls_listen {
            v.push(ListenerCfg {
                addr: addr.clone(),
                tls: match (&self.tls_cert, &self.tls_key) {
                    (Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: self.tls_client_ca.clone(),
                    }),
                    _ => None,
                },
                auth: self.tls_auth.unwrap_or(if self.tls_client_ca.is_some() {
                    AuthMode::Mtls
                } else {
                    AuthMode::None
                }),
            });
        }
        v
    }

    /// Checks what flags and file together ask for: listeners that can work, users that
    /// the listeners can find.
    pub fn validate(&self) -> Result<(), String> {
        match (self.node_id, self.cluster.is_empty()) {
            (_, true) if self.cluster_bind.is_some() => {
                return Err("--cluster-bind needs --cluster".into())
            }
            (None, true) => {}
            (Some(_), true) => return Err("--node-id needs --cluster".into()),
            (None, false) => return Err("--cluster needs --node-id".into()),
            (Some(id), false) => {
                if !self.cluster.iter().any(|(i, _)| *i == id) {
                    return Err(format!("--node-id {id} is not in --cluster"));
                }
                if self.binlog_dir.is_none() {
                    return Err("--cluster needs -b (the Raft log lives there)".into());
                }
            }
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err("--tls-listen needs --tls-cert and --tls-key".into());
        }
        if self.tls_listen.is_none()
            && (self.tls_cert.is_some()
                || self.tls_key.is_some()
                || self.tls_client_ca.is_some()
                || self.tls_auth.is_some())
        {
            return Err(
                "--tls-cert, --tls-key, --tls-client-ca and --tls-auth need --tls-listen".into(),
            );
        }
        if self.metrics_tls_cert.is_some() != self.metrics_tls_key.is_some() {
            return Err("--metrics-tls-cert and --metrics-tls-key go together".into());
        }
        for l in self.extra_listeners() {
            let unix = l.addr.starts_with("unix:");
            match l.auth {
                AuthMode::Mtls if l.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none() => {
                    return Err(format!(
                        "listener {}: auth = \"mtls\" needs tls.client-ca",
                        l.addr
                    ));
                }
                AuthMode::Peercred if !unix => {
                    return Err(format!(
                        "listener {}: auth = \"peercred\" needs a unix: address",
                        l.addr
                    ));
                }
                _ => {}
            }
            if unix && l.tls.is_some() {
                return Err(format!(
                    "listener {}: tls on unix sockets is not supported",
                    l.addr
                ));
            }
        }
        Ok(())
    }
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
            log_format: LogFormat::Text,
            binlog_salvage: false,
            strict: false,
            policy_file: None,
            metrics: None,
            http: false,
            metrics_tube_cap: 100,
            max_connections: None,
            max_jobs: None,
            max_memory: None,
            warnings: vec![],
            config_file: None,
            print_config: false,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_auth: None,
            listeners: vec![],
            users: vec![],
            anonymous: None,
            metrics_tls_cert: None,
            metrics_tls_key: None,
            metrics_token_sha256: None,
            node_id: None,
            cluster_bind: None,
            cluster: vec![],
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
    /// Print this (a configuration file's error) to stderr, exit with this code.
    Fatal(String, i32),
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
         --http ADDR       serve the web dashboard at /, with /metrics and /healthz, on ADDR\n \
                  (e.g. 127.0.0.1:8080; elsewhere than loopback it needs TLS or token logins)\n \
         --metrics ADDR    serve Prometheus /metrics and /healthz on ADDR, without the dashboard\n \
                  --metrics-tube-cap N  tubes with their own metric series (default 100)\n \
         --max-connections N   close connections beyond N at once (default: no limit)\n \
         --max-jobs N          put answers OUT_OF_MEMORY once N jobs exist\n \
         --max-memory BYTES    put answers OUT_OF_MEMORY beyond BYTES of job bodies\n \
         --node-id N           this node's id in --cluster\n \
         --cluster ID=HOST:PORT,...   run as a node of a replicated cluster (Raft) with these\n \
                  voters and peer addresses; needs --node-id and -b\n \
         --cluster-bind HOST:PORT   bind the peer listener here rather than at this node's\n \
                  address in --cluster (which peers still connect to: NAT, a proxy)\n \
         --strict  only beanstalkd 1.13's commands (sprout's own answer as beanstalkd would)\n \
         --policy-file FILE    tube policies to set at startup: lines of TUBE KEY VALUE\n \
         --config FILE         settings from a TOML file (keys: the long flag names); flags win\n \
         --print-config        print the effective configuration as TOML (secrets masked), exit\n \
         --tls-listen ADDR     one more listener, with TLS (listeners, users: see --config)\n \
                  --tls-cert FILE --tls-key FILE   its certificate chain and key (PEM)\n \
                  --tls-client-ca FILE   require client certificates from this CA\n \
                  --tls-auth none|token|mtls   how its clients authenticate\n \
         --metrics-tls-cert FILE --metrics-tls-key FILE   serve /metrics over TLS\n \
         --metrics-token-sha256 HEX   /metrics wants Authorization: Bearer TOKEN\n \
         --log-format text|json   log lines as text (colour only on a terminal) or JSON\n \
         long names of the short flags: --listen --port --max-job-size --binlog-dir\n \
                  --fsync-ms --no-fsync --binlog-size --user --verbose\n \
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

/// Long options that take a value. Each (but `--config`) is also a key of the
/// configuration file, with the same name.
pub(crate) const LONG_VALUE: [&str; 27] = [
    "--config",
    "--listen",
    "--port",
    "--max-job-size",
    "--binlog-dir",
    "--fsync-ms",
    "--binlog-size",
    "--user",
    "--metrics",
    "--http",
    "--policy-file",
    "--metrics-tube-cap",
    "--max-connections",
    "--max-jobs",
    "--max-memory",
    "--tls-listen",
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--tls-auth",
    "--metrics-tls-cert",
    "--metrics-tls-key",
    "--metrics-token-sha256",
    "--log-format",
    "--node-id",
    "--cluster",
    "--cluster-bind",
];

/// Long options without a value (keys of the file too, as booleans; `verbose` as a count).
pub(crate) const LONG_FLAG: [&str; 5] = [
    "--binlog-salvage",
    "--strict",
    "--no-fsync",
    "--verbose",
    "--print-config",
];

pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Parsed {
    let args: Vec<String> = args.into_iter().skip(1).collect();
    let mut cfg = Config::default();
    // The file first: the flags are then applied over it, so they win.
    match config_path(&args) {
        Err(e) => return Parsed::Error(e, 5),
        Ok(Some(path)) => {
            if let Err(e) = crate::conffile::load(&path, &mut cfg) {
                return Parsed::Fatal(e, 5);
            }
            cfg.config_file = Some(path);
        }
        Ok(None) => {}
    }
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--help" {
            return Parsed::Help;
        }
        if arg == "--version" {
            return Parsed::Version;
        }
        if let Some((name, inline)) = long_opt(&arg, &LONG_FLAG) {
            if inline.is_some() {
                return Parsed::Error(format!("flag takes no argument: {name}"), 5);
            }
            if name == "--print-config" {
                cfg.print_config = true;
                continue;
            }
            if let Err(e) = apply_long(&mut cfg, &name[2..], "true".into()) {
                return Parsed::Error(e, 5);
            }
            continue;
        }
        if let Some((name, inline)) = long_opt(&arg, &LONG_VALUE) {
            let val = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Parsed::Error(format!("flag requires an argument: {name}"), 5),
            };
            if name == "--config" {
                continue;
            }
            if let Err(e) = apply_long(&mut cfg, &name[2..], val) {
                return Parsed::Error(e, 5);
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
    if let Err(e) = cfg.validate() {
        return Parsed::Error(e, 5);
    }
    Parsed::Run(Box::new(cfg))
}

/// The value of the last `--config` (None without one).
fn config_path(args: &[String]) -> Result<Option<PathBuf>, String> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--config" {
            match args.get(i + 1) {
                Some(v) => found = Some(PathBuf::from(v)),
                None => return Err("flag requires an argument: --config".into()),
            }
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
        } else if LONG_VALUE.contains(&a.as_str()) {
            // Its value is not a flag, even if it looks like one.
            i += 1;
        } else if a.starts_with('-') && !a.starts_with("--") {
            // `-l --config` would make `--config` the value of -l: the same rule as below.
            let flags = &a[1..];
            if let Some(pos) = flags.find(['b', 'f', 'l', 'p', 's', 'u', 'z']) {
                if pos == flags.len() - 1 {
                    i += 1;
                }
            }
        } else if !a.starts_with('-') {
            // Parsing stops at the first argument that is not a flag (it is an error).
            break;
        }
        i += 1;
    }
    Ok(found)
}

fn hex32(v: &str) -> Option<[u8; 32]> {
    let v = v.trim();
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Hex SHA-256 (64 digits): the form tokens are configured in.
pub(crate) fn parse_sha256(v: &str) -> Result<[u8; 32], String> {
    hex32(v).ok_or_else(|| format!("not a hex SHA-256 (64 hex digits): {v}"))
}

/// Sets the option `name` (a long flag without `--`, or a key of the file) from a
/// value given as text (`true` for flags without a value).
pub(crate) fn apply_long(cfg: &mut Config, name: &str, val: String) -> Result<(), String> {
    let num = |v: &str| parse_size(v).ok_or_else(|| format!("invalid number: {v}"));
    match name {
        "listen" => apply(cfg, 'l', val)?,
        "port" => apply(cfg, 'p', val)?,
        "max-job-size" => apply(cfg, 'z', val)?,
        "binlog-dir" => apply(cfg, 'b', val)?,
        "fsync-ms" => apply(cfg, 'f', val)?,
        "binlog-size" => apply(cfg, 's', val)?,
        "user" => apply(cfg, 'u', val)?,
        "no-fsync" => {
            if val == "true" {
                cfg.fsync_ms = None;
            }
        }
        "verbose" => {
            cfg.verbosity = match val.as_str() {
                "true" => cfg.verbosity.saturating_add(1),
                "false" => 0,
                v => num(v)?.min(u64::from(u8::MAX)) as u8,
            }
        }
        "log-format" => {
            cfg.log_format = LogFormat::parse(&val)
                .ok_or_else(|| format!("--log-format: text or json, not {val}"))?
        }
        "binlog-salvage" => cfg.binlog_salvage = val == "true",
        "strict" => cfg.strict = val == "true",
        "metrics" => cfg.metrics = Some(val),
        "http" => {
            cfg.metrics = Some(val);
            cfg.http = true;
        }
        "policy-file" => cfg.policy_file = Some(val.into()),
        "metrics-tube-cap" => cfg.metrics_tube_cap = num(&val)? as usize,
        "max-connections" => cfg.max_connections = Some(num(&val)? as usize),
        "max-jobs" => cfg.max_jobs = Some(num(&val)?),
        "max-memory" => cfg.max_memory = Some(num(&val)?),
        "tls-listen" => cfg.tls_listen = Some(val),
        "tls-cert" => cfg.tls_cert = Some(val.into()),
        "tls-key" => cfg.tls_key = Some(val.into()),
        "tls-client-ca" => cfg.tls_client_ca = Some(val.into()),
        "tls-auth" => {
            cfg.tls_auth = match AuthMode::parse(&val) {
                Some(AuthMode::Peercred) | None => {
                    return Err(format!("--tls-auth: none, token or mtls, not {val}"))
                }
                a => a,
            }
        }
        "metrics-tls-cert" => cfg.metrics_tls_cert = Some(val.into()),
        "metrics-tls-key" => cfg.metrics_tls_key = Some(val.into()),
        "metrics-token-sha256" => cfg.metrics_token_sha256 = Some(parse_sha256(&val)?),
        "node-id" => cfg.node_id = Some(num(&val)?),
        "cluster" => cfg.cluster = parse_cluster(&val)?,
        "cluster-bind" => {
            if val
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("--cluster-bind: not HOST:PORT: {val}"));
            }
            cfg.cluster_bind = Some(val)
        }
        _ => return Err(format!("unknown option: {name}")),
    }
    Ok(())
}

/// `ID=HOST:PORT,...`: ids above 0, each once.
pub(crate) fn parse_cluster(v: &str) -> Result<Vec<(u64, String)>, String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cluster: not ID=HOST:PORT: {part}");
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let id = parse_size(id).filter(|&i| i > 0).ok_or_else(bad)?;
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(bad());
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("--cluster: node {id} given twice"));
        }
        out.push((id, addr.to_string()));
    }
    if out.is_empty() {
        return Err("--cluster: no nodes".into());
    }
    Ok(out)
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

    #[test]
    fn long_names_of_the_short_flags_and_tls_flags() {
        let c = cfg(&[
            "--listen",
            "127.0.0.1",
            "--port=11302",
            "--max-job-size",
            "10",
            "--no-fsync",
            "--verbose",
            "--binlog-size",
            "4096",
        ]);
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.port, 11302);
        assert_eq!(c.max_job_size, 10);
        assert_eq!(c.fsync_ms, None);
        assert_eq!(c.verbosity, 1);
        assert_eq!(c.binlog_size, 4096);
        let c = cfg(&[
            "--tls-listen",
            "127.0.0.1:11400",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ]);
        let l = c.extra_listeners();
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].auth,
            AuthMode::Mtls,
            "a client CA without --tls-auth means mtls"
        );
        assert!(matches!(
            run(&["--tls-listen", "127.0.0.1:1", "--tls-cert", "c", "--tls-key", "k", "--tls-auth", "peercred"]),
            Parsed::Error(ref m, 5) if m.contains("--tls-auth")
        ));
        assert!(matches!(
            run(&["--tls-cert", "c"]),
            Parsed::Error(ref m, 5) if m.contains("need --tls-listen")
        ));
        assert!(matches!(
            run(&["--metrics-token-sha256", "abc"]),
            Parsed::Error(ref m, 5) if m.contains("hex SHA-256")
        ));
        assert!(matches!(run(&["--strict=yes"]), Parsed::Error(_, 5)));
        assert!(cfg(&["--print-config"]).print_config);
    }
}
