//! sprout: the admin CLI. Talks the beanstalkd protocol to any server (sproutd or
//! beanstalkd).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sprout", version, about = "Admin CLI for sproutd and beanstalkd")]
struct Cli {
    /// Server address: HOST:PORT or unix:/path.
    #[arg(short = 'a', long, env = "SPROUT_ADDR", default_value = "127.0.0.1:11300")]
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
        r.read_exact(&mut body).map_err(|e| format!("{addr}: {e}"))?;
        body.truncate(n);
    }
    Ok((head, body))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let line = match &cli.cmd {
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
