//! `--metrics ADDR`: the worker's counters in the Prometheus text format (0.0.4), served
//! by a minimal HTTP/1.0-style server: `GET /metrics` answers them, anything else 404,
//! and every connection is closed after its one answer.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds (seconds) of the job duration histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Every outcome a job can end with, so each series exists from the start.
pub(super) const OUTCOMES: [&str; 4] = ["deleted", "buried", "released", "abandoned"];

#[derive(Debug, Default)]
pub(super) struct Metrics {
    outcomes: [u64; OUTCOMES.len()],
    running: u64,
    connected: bool,
    reconnects: u64,
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
}

pub(super) type Shared = Arc<Mutex<Metrics>>;

impl Metrics {
    /// A job ended with `outcome`; `ran` is how long its COMMAND ran, if it did.
    pub(super) fn job(&mut self, outcome: &str, ran: Option<Duration>) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i] += 1;
        }
        if let Some(d) = ran {
            let s = d.as_secs_f64();
            for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
                if s <= le {
                    *b += 1;
                }
            }
            self.duration_sum += s;
            self.duration_count += 1;
        }
    }

    pub(super) fn set_running(&mut self, n: usize) {
        self.running = n as u64;
    }

    pub(super) fn set_connected(&mut self, up: bool, reconnect: bool) {
        self.connected = up;
        if reconnect {
            self.reconnects += 1;
        }
    }

    pub(super) fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP sprout_worker_jobs_total Jobs that ended, by outcome.\n");
        s.push_str("# TYPE sprout_worker_jobs_total counter\n");
        for (o, n) in OUTCOMES.iter().zip(self.outcomes) {
            let _ = writeln!(s, "sprout_worker_jobs_total{{outcome=\"{o}\"}} {n}");
        }
        s.push_str("# HELP sprout_worker_running_jobs COMMANDs running now.\n");
        s.push_str("# TYPE sprout_worker_running_jobs gauge\n");
        let _ = writeln!(s, "sprout_worker_running_jobs {}", self.running);
        s.push_str(
            "# HELP sprout_worker_job_duration_seconds How long COMMANDs ran.\n\
             # TYPE sprout_worker_job_duration_seconds histogram\n",
        );
        for (le, n) in BUCKETS.iter().zip(self.buckets) {
            let _ = writeln!(
                s,
                "sprout_worker_job_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "sprout_worker_job_duration_seconds_bucket{{le=\"+Inf\"}} {}\n\
             sprout_worker_job_duration_seconds_sum {}\n\
             sprout_worker_job_duration_seconds_count {}",
            self.duration_count, self.duration_sum, self.duration_count
        );
        s.push_str("# HELP sprout_worker_connected 1 while connected to the server.\n");
        s.push_str("# TYPE sprout_worker_connected gauge\n");
        let _ = writeln!(s, "sprout_worker_connected {}", u8::from(self.connected));
        s.push_str(
            "# HELP sprout_worker_reconnects_total Connections made again after one was lost.\n",
        );
        s.push_str("# TYPE sprout_worker_reconnects_total counter\n");
        let _ = writeln!(s, "sprout_worker_reconnects_total {}", self.reconnects);
        s
    }
}

/// Serves `m` on `listener` until the worker exits.
pub(super) async fn serve(listener: TcpListener, m: Shared) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            // Out of file descriptors, say: try again a little later.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let m = m.clone();
        tokio::spawn(async move {
            let answer = async {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    let n = sock.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let (status, body) = if req.starts_with(b"GET /metrics ") {
                    let body = m.lock().map(|m| m.render()).unwrap_or_default();
                    ("200 OK", body)
                } else {
                    ("404 Not Found", "not found\n".to_string())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                sock.write_all(head.as_bytes()).await?;
                sock.write_all(body.as_bytes()).await?;
                sock.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), answer).await;
        });
    }
}
