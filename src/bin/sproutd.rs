//! sproutd: the sprout server. Takes beanstalkd's flags.

use std::sync::Arc;

use sprout::engine::Engine;
use sprout::server::config::{parse_args, usage, Parsed};
use sprout::server::{listen, persist, run, start_maintenance, sys, Clock, Shared, VERSION};

fn main() {
    let prog = std::env::args().next().unwrap_or_else(|| "sproutd".into());
    let cfg = match parse_args(std::env::args()) {
        Parsed::Run(c) => c,
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
    };
    let level = match cfg.verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "sprout={level},sproutd={level}"
        )))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        tracing::info!("pid {}", std::process::id());
        tracing::info!("bind {}", listener.describe());
        if let Some(user) = &cfg.user {
            if let Err((msg, code)) = sys::drop_privileges(user) {
                eprintln!("{prog}: {msg}");
                return code;
            }
        }
        let clock = Clock::new();
        let (engine, binlog) = if cfg.binlog_dir.is_some() {
            match persist::open(&cfg, clock.now()) {
                Ok((e, b)) => (e, Some(b)),
                Err((msg, code)) => {
                    eprintln!("{prog}: {msg}");
                    return code;
                }
            }
        } else {
            (Engine::new(), None)
        };
        let shared = Arc::new(Shared::with_engine_and_log(cfg, engine, binlog, clock));
        start_maintenance(shared.clone());
        run(listener, shared).await
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
