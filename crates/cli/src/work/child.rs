//! Running one COMMAND for one job.
//!
//! The COMMAND gets the job body on stdin (then end of file) and the job's counters in
//! its environment; each line it writes to stdout or stderr goes to the log with the job
//! id. It runs in a process group of its own, so that signals reach whatever it started
//! (a shell's children too), and so that a Ctrl-C typed at the worker's terminal reaches
//! only the worker, which then decides when its jobs stop. It is killed if the worker
//! dies (PR_SET_PDEATHSIG), as its reservation dies with the worker's connection anyway.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::log::Log;

/// Longest output line logged as one line; a longer one is logged in pieces.
const MAX_LINE: u64 = 16 * 1024;
/// Lines of stderr kept for the job's final log line.
const TAIL_LINES: usize = 5;
/// How long output may still be read once the COMMAND has exited (its pipes may be held
/// open by processes it left behind).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// At shutdown, the time between SIGTERM and SIGKILL, at most (`--grace` if shorter).
pub(super) const STOP_KILL_AFTER: Duration = Duration::from_secs(5);

/// What to run, the same for every job.
pub(super) struct Spec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub max_runtime: Option<Duration>,
    pub grace: Duration,
}

/// Orders for a running COMMAND.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ctl {
    /// SIGTERM, then SIGKILL after `STOP_KILL_AFTER` (at most `--grace`).
    Stop,
    /// SIGKILL now.
    Kill,
}

/// How a COMMAND ended.
#[derive(Debug)]
pub(super) struct Finished {
    /// None if it could not be started (`spawn_error` says why).
    pub status: Option<ExitStatus>,
    pub spawn_error: Option<String>,
    /// It ran past `--max-runtime` and was stopped.
    pub timed_out: bool,
    /// Its last lines of stderr.
    pub stderr_tail: Vec<String>,
    pub duration: Duration,
}

impl Finished {
    pub(super) fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub(super) fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects. The group's leader has not been reaped when
    // this is called (see `run`), so the group id cannot belong to anyone else yet.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Runs the COMMAND for job `id` with `env`, feeding it `body`, until it exits; obeys
/// `ctl` meanwhile and enforces `--max-runtime`.
pub(super) async fn run(
    spec: Arc<Spec>,
    id: u64,
    env: Vec<(&'static str, String)>,
    body: Arc<[u8]>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    log: Arc<Log>,
) -> Finished {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid, raise).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            // The worker may have died before the prctl: then nobody would send it.
            if libc::getppid() as u32 != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Finished {
                status: None,
                spawn_error: Some(e.to_string()),
                timed_out: false,
                stderr_tail: Vec::new(),
                duration: started.elapsed(),
            }
        }
    };
    let pgid = child.id().map(|p| p as i32).unwrap_or(0);

    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // The COMMAND may not read its stdin at all: a broken pipe is fine.
            let _ = stdin.write_all(&body).await;
        });
    }
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(pump(o, id, "stdout", log.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(pump(e, id, "stderr", log.clone())));

    let runtime_end = spec.max_runtime.map(|d| started + d);
    let watch_runtime = runtime_end.is_some();
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let mut ctl_open = true;
    // The leader is reaped only inside `child.wait()`, which ends the loop: every signal
    // below is sent while its pid (the group id) is still ours.
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.ok(),
            c = ctl.recv(), if ctl_open => match c {
                Some(Ctl::Stop) => {
                    signal_group(pgid, libc::SIGTERM);
                    let at = Instant::now() + spec.grace.min(STOP_KILL_AFTER);
                    kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                }
                Some(Ctl::Kill) => signal_group(pgid, libc::SIGKILL),
                None => ctl_open = false,
            },
            _ = sleep_until(runtime_end.unwrap_or(started)), if watch_runtime && !timed_out => {
                timed_out = true;
                signal_group(pgid, libc::SIGTERM);
                let at = Instant::now() + spec.grace;
                kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
            }
            _ = sleep_until(kill_at.unwrap_or(started)), if kill_at.is_some() => {
                signal_group(pgid, libc::SIGKILL);
                kill_at = None;
            }
        }
    };
    let duration = started.elapsed();
    if let Some(out) = out {
        drain(out).await;
    }
    let stderr_tail = match err {
        Some(err) => drain(err).await,
        None => Vec::new(),
    };
    Finished {
        status,
        spawn_error: None,
        timed_out,
        stderr_tail,
        duration,
    }
}

/// Waits (bounded) for an output pump to reach end of file; returns its tail.
async fn drain(h: tokio::task::JoinHandle<Vec<String>>) -> Vec<String> {
    let abort = h.abort_handle();
    match tokio::time::timeout(DRAIN_TIMEOUT, h).await {
        Ok(Ok(tail)) => tail,
        _ => {
            abort.abort();
            Vec::new()
        }
    }
}

/// Logs each line of `r` with the job id; returns the last `TAIL_LINES` lines.
async fn pump(
    r: impl AsyncRead + Unpin,
    id: u64,
    stream: &'static str,
    log: Arc<Log>,
) -> Vec<String> {
    let mut r = BufReader::new(r);
    let mut tail = VecDeque::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        log.output(id, stream, &line);
        if stream == "stderr" {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).into_owned());
        }
    }
    tail.into()
}
