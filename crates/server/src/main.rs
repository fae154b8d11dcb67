//! sproutd: the sprout server. Takes beanstalkd's flags.

use std::sync::Arc;

use sprout_engine::Engine;
use sproutd::config::{parse_args, usage, LogFormat, Parsed};
use sproutd::secure::Security;
use sproutd::{listen, persist, run_all, start_maintenance, sys, Clock, Shared, VERSION};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--man") {
        // Hidden: the sproutd(8) manual page, made from the usage text below.
        print!("{}", sproutd::man::page(&usage("sproutd")));
        return;
    }
    let prog = std::env::args().next().unwrap_or_else(|| "sproutd".into());
    let args: Vec<String> = std::env::args().collect();
    let cfg = match parse_args(args.clone()) {
        Parsed::Run(c) if c.print_config => {
            print!("{}", sproutd::conffile::print(&c));
            return;
        }
        Parsed::Run(c) => *c,
        Parsed::Version => {
            println!("sproutd {VERSION} (beanstalkd 1.13 protocol)");
            return;
        }
        Parsed::Help => {
            eprint!("{}", usage(&prog));
            return;
        }
        Parsed::Error(msg, code) => {
            eprintln!("{prog}: {msg}");
            eprint!("{}", usage(&prog));
            std::process::exit(code);
        }
        Parsed::Fatal(msg, code) => {
            eprintln!("{prog}: {msg}");
            std::process::exit(code);
        }
    };
    let security = match Security::new(&cfg, args) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::exit(5);
        }
    };
    let level = match cfg.verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("sprout={level},sproutd={level}"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cfg.log_format {
        // One JSON object a line: timestamp, level, fields (message included).
        LogFormat::Json => logs.json().with_current_span(false).init(),
        // Colour codes only for a person at a terminal, not in files or the journal.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    // One event-loop thread per CPU we may run on; with a single CPU, a plain
    // single-threaded loop (no work-stealing machinery).
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let built = if cpus == 1 || std::env::var("SPROUT_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{prog}: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        let listener = match listen::open(&cfg) {
            Ok(l) => l,
            Err((msg, code)) => {
                eprintln!("{prog}: {msg}");
                return code;
            }
        };
        let extras = match listen::open_extra(&cfg, &security) {
            Ok(x) => x,
            Err((msg, code)) => {
                eprintln!("{prog}: {msg}");
                return code;
            }
        };
        for x in &extras {
            tracing::info!("also listening on {}", x.describe());
        }
        tracing::info!(
            "sproutd {VERSION} pid {} listening on {}; max job size {}; binlog {}; metrics {}",
            std::process::id(),
            listener.describe(),
            cfg.max_job_size,
            match &cfg.binlog_dir {
                // The Raft log: every append is synced before it counts (-f does not apply).
                Some(d) if !cfg.cluster.is_empty() => format!(
                    "{} (cluster mode: the Raft log, fsync before every acknowledgement)",
                    d.join("raft").display()
                ),
                Some(d) => format!(
                    "{} (fsync {}, segment {} bytes)",
                    d.display(),
                    match cfg.fsync_ms {
                        Some(0) => "before every acknowledgement".to_string(),
                        Some(ms) => format!("every {ms} ms"),
                        None => "never".to_string(),
                    },
                    cfg.binlog_size
                ),
                None => "off (jobs live in memory only)".to_string(),
            },
            cfg.metrics.as_deref().unwrap_or("off"),
        );
        if let Some(user) = &cfg.user {
            if let Err((msg, code)) = sys::drop_privileges(user) {
                eprintln!("{prog}: {msg}");
                return code;
            }
        }
        let clock = Clock::new();
        let cluster = !cfg.cluster.is_empty();
        // In cluster mode -b holds the Raft log (under raft/), not a binlog.
        let (engine, binlog) = if cfg.binlog_dir.is_some() && !cluster {
            match persist::open(&cfg, clock.now()) {
                Ok((e, b)) => (e, Some(b)),
                Err(e) => {
                    eprintln!("{prog}: {e}");
                    return e.exit_code();
                }
            }
        } else {
            (Engine::new(), None)
        };
        let flag = if cfg.http { "--http" } else { "--metrics" };
        let metrics = match &cfg.metrics {
            Some(addr) => match tokio::net::TcpListener::bind(addr.as_str()).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("{prog}: {flag} {addr}: {e}");
                    return 111;
                }
            },
            None => None,
        };
        if let (true, Some(l)) = (cfg.http, &metrics) {
            // --http promises a dashboard: refuse an address where it would be exposed.
            let addr = l.local_addr().map_err(|e| e.to_string());
            let tls = security.metrics_over_tls();
            let logins = security.has_logins();
            if let Ok(sproutd::http::Dashboard::Off(why)) =
                addr.map(|a| sproutd::http::dashboard_for(&a, tls, logins))
            {
                eprintln!("{prog}: --http: {why}; bind to loopback (127.0.0.1:PORT) or add them");
                return 5;
            }
        }
        let tube_cap = cfg.metrics_tube_cap;
        let mut engine = engine;
        if cluster {
            // Every node must apply the log alike: no node-local admission.
            for (set, what) in [
                (
                    cfg.max_jobs.is_some() || cfg.max_memory.is_some(),
                    "--max-jobs/--max-memory",
                ),
                (cfg.policy_file.is_some(), "--policy-file"),
                (!extras.is_empty(), "extra listeners (TLS, [[listener]])"),
            ] {
                if set {
                    tracing::warn!("{what}: not supported in cluster mode yet; ignored");
                }
            }
        } else {
            engine.set_limits(cfg.max_jobs, cfg.max_memory);
        }
        let shared = Arc::new(
            Shared::with_engine_and_log(cfg, engine, binlog, clock).with_security(security),
        );
        start_maintenance(shared.clone());
        if let Some(path) = shared.config.policy_file.clone().filter(|_| !cluster) {
            match sproutd::apply_policy_file(&shared, &path) {
                Ok(n) => tracing::info!("{n} tube policies set from {}", path.display()),
                Err(e) => {
                    eprintln!("{prog}: --policy-file {e}");
                    return 5;
                }
            }
        }
        if let Some(l) = metrics {
            tracing::info!(
                "dashboard, /metrics and /healthz on {}://{}/",
                if shared.security.metrics_over_tls() {
                    "https"
                } else {
                    "http"
                },
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            );
            tokio::spawn(sproutd::http::serve(l, shared.clone(), tube_cap));
        }
        if cluster {
            return sproutd::cluster::run(listener, shared).await;
        }
        run_all(listener, extras, shared).await
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
