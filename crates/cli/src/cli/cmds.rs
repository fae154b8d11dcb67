//! The one-shot subcommands: stats, peek, put, kick, delete, pause, flush. (sproutd's own
//! commands: `flush` uses `flush-tube` where the server has it, `put --unique` is
//! `put-unique`; the others are in [`super::ext`].)

use std::io::{IsTerminal, Read};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::client::{Client, Error, Reply, Result};
use super::text::{self, Align};
use super::yaml::{Stats, ToJson};
use crate::conn::Target;

/// Job states a job can be peeked or flushed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum State {
    Ready,
    Delayed,
    Buried,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Delayed => "delayed",
            State::Buried => "buried",
        }
    }

    fn peek_cmd(self) -> &'static str {
        match self {
            State::Ready => "peek-ready",
            State::Delayed => "peek-delayed",
            State::Buried => "peek-buried",
        }
    }

    fn stats_key(self) -> &'static str {
        match self {
            State::Ready => "current-jobs-ready",
            State::Delayed => "current-jobs-delayed",
            State::Buried => "current-jobs-buried",
        }
    }
}

/// `flush --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlushState {
    Ready,
    Delayed,
    Buried,
    All,
}

impl FlushState {
    fn states(self) -> Vec<State> {
        match self {
            FlushState::Ready => vec![State::Ready],
            FlushState::Delayed => vec![State::Delayed],
            FlushState::Buried => vec![State::Buried],
            FlushState::All => vec![State::Buried, State::Delayed, State::Ready],
        }
    }
}

/// What `stats` shows.
pub enum StatsOf {
    Server,
    Tube(String),
    Job(u64),
}

fn stats_table(s: &Stats) -> String {
    stats_table_without(s, &[])
}

/// The stats as `key  value` lines, leaving out `skip` keys.
fn stats_table_without(s: &Stats, skip: &[&str]) -> String {
    let rows: Vec<Vec<String>> = s
        .iter()
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| vec![k.to_string(), text::escape(v.as_bytes())])
        .collect();
    text::table(&["key", "value"], &[Align::Left, Align::Left], &rows)
        .split_once('\n')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default()
}

pub fn stats(t: &Target, of: StatsOf, json: bool) -> Result<()> {
    let mut c = Client::connect(t)?;
    let (line, extra_strings): (String, &[&str]) = match &of {
        // The server's `id` is a random hex string; a job's is a number.
        StatsOf::Server => ("stats".into(), &["id"]),
        StatsOf::Tube(t) => (format!("stats-tube {t}"), &[]),
        StatsOf::Job(id) => (format!("stats-job {id}"), &[]),
    };
    let s = c.stats(&line)?;
    if json {
        text::emit_json(&s.to_json(extra_strings))
    } else {
        text::emit_str(&stats_table(&s))
    }
}

/// Reads a `FOUND <id> <bytes>` reply.
fn found(line: &str, r: Reply) -> Result<Option<(u64, Vec<u8>)>> {
    if r.head == "NOT_FOUND" {
        return Ok(None);
    }
    match (r.number_after("FOUND"), r.body) {
        (Some(id), Some(body)) => Ok(Some((id, body))),
        _ => Err(Error::server(line, &r.head)),
    }
}

/// Where `peek` looks.
pub enum PeekAt {
    Id(u64),
    Tube(String, State),
}

pub fn peek(t: &Target, at: PeekAt, raw: bool) -> Result<()> {
    let mut c = Client::connect(t)?;
    let line = match &at {
        PeekAt::Id(id) => format!("peek {id}"),
        PeekAt::Tube(t, st) => {
            c.use_tube(t)?;
            st.peek_cmd().to_string()
        }
    };
    let r = c.call(&line)?;
    let (id, body) = match found(&line, r)? {
        Some(j) => j,
        None => {
            let what = match &at {
                PeekAt::Id(_) => line.clone(),
                PeekAt::Tube(t, st) => format!("{line} (tube {t}, no {} job)", st.name()),
            };
            return Err(Error::server(&what, "NOT_FOUND"));
        }
    };
    // The job can be deleted between the peek and its stats: show what we have.
    let sline = format!("stats-job {id}");
    let stats = match c.stats(&sline) {
        Ok(s) => stats_table_without(&s, &["id"]),
        Err(Error::Server { reply, .. }) => format!("({sline}: {reply})\n"),
        Err(e) => return Err(e),
    };
    let head = format!("id: {id}\n{stats}body: {} bytes\n", body.len());
    if raw {
        eprint!("{head}");
        text::emit(&body)
    } else {
        let mut out = head;
        out.push_str(&text::escape(&body));
        out.push('\n');
        text::emit_str(&out)
    }
}

/// Where `put` takes the body from.
pub enum Body {
    Arg(String),
    File(String),
    Stdin,
}

pub struct PutArgs {
    pub tube: String,
    /// `put-unique` with this key.
    pub unique: Option<String>,
    pub pri: u32,
    pub delay: u32,
    pub ttr: u32,
}

pub fn put(t: &Target, body: Body, a: &PutArgs) -> Result<()> {
    let body = match body {
        Body::Arg(s) => s.into_bytes(),
        Body::File(f) => std::fs::read(Path::new(&f))
            .map_err(|e| Error::Local(format!("cannot read {f}: {e}")))?,
        Body::Stdin => {
            if std::io::stdin().is_terminal() {
                eprintln!("sprout: reading the job body from stdin (end it with Ctrl-D)");
            }
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| Error::Local(format!("cannot read stdin: {e}")))?;
            b
        }
    };
    let mut c = Client::connect(t)?;
    if a.tube != "default" {
        c.use_tube(&a.tube)?;
    }
    let (r, cmd) = match &a.unique {
        None => (
            c.put(a.pri, a.delay, a.ttr, &body)?,
            format!("put {} {} {} {}", a.pri, a.delay, a.ttr, body.len()),
        ),
        Some(key) => {
            // A server without put-unique would answer its line UNKNOWN_COMMAND and then
            // read the body as commands: make sure it has sproutd's commands first, with
            // one that changes nothing.
            let probe = format!("list-jobs {} ready 0 1", a.tube);
            let pr = c.call(&probe)?;
            if pr.unsupported() {
                return Err(Error::Unsupported {
                    addr: t.addr.clone(),
                    cmd: "put-unique".into(),
                    reply: format!("{} to {probe}", pr.head),
                });
            }
            if !pr.head.starts_with("OK ") {
                return Err(Error::server(&probe, &pr.head));
            }
            let r = c.put_unique(key, a.pri, a.delay, a.ttr, &body)?;
            let cmd = format!(
                "put-unique {key} {} {} {} {}",
                a.pri,
                a.delay,
                a.ttr,
                body.len()
            );
            if let Some(id) = r.number_after("EXISTS") {
                // Not an error: the job the key stands for is there. The id goes to
                // stdout either way, so that scripts get it.
                eprintln!(
                    "sprout: exists: {id} (a job with key {key} is already in tube {}; \
                     nothing was put)",
                    a.tube
                );
                return text::emit_str(&format!("{id}\n"));
            }
            (r, cmd)
        }
    };
    if let Some(id) = r.number_after("INSERTED") {
        return text::emit_str(&format!("{id}\n"));
    }
    if let Some(id) = r.number_after("BURIED") {
        // Inserted, but the server could not grow its ready queue and buried the job.
        text::emit_str(&format!("{id}\n"))?;
    }
    Err(Error::server(&cmd, &r.head))
}

pub enum KickWhat {
    Jobs(u64, String),
    Id(u64),
}

pub fn kick(t: &Target, what: KickWhat) -> Result<()> {
    let mut c = Client::connect(t)?;
    match what {
        KickWhat::Id(id) => {
            c.expect(&format!("kick-job {id}"), "KICKED")?;
            text::emit_str(&format!("kicked job {id}\n"))
        }
        KickWhat::Jobs(n, tube) => {
            c.use_tube(&tube)?;
            let line = format!("kick {n}");
            let r = c.call(&line)?;
            let k = r
                .number_after("KICKED")
                .ok_or_else(|| Error::server(&line, &r.head))?;
            text::emit_str(&format!(
                "kicked {} in tube {tube}\n",
                text::count(k, "job")
            ))
        }
    }
}

/// Deletes each id; a failure does not stop the others, the first one is returned.
pub fn delete(t: &Target, ids: &[u64]) -> Result<()> {
    let mut c = Client::connect(t)?;
    let mut first_err = None;
    for id in ids {
        match c.expect(&format!("delete {id}"), "DELETED") {
            Ok(()) => text::emit_str(&format!("deleted job {id}\n"))?,
            Err(e @ Error::Server { .. }) => {
                if ids.len() > 1 {
                    eprintln!("sprout: {e}");
                }
                first_err.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match first_err {
        None => Ok(()),
        Some(e) if ids.len() > 1 => Err(Error::Local(format!(
            "not every job was deleted (first failure: {e})"
        ))),
        Some(e) => Err(e),
    }
}

pub fn pause(t: &Target, tube: &str, secs: u32) -> Result<()> {
    let mut c = Client::connect(t)?;
    c.expect(&format!("pause-tube {tube} {secs}"), "PAUSED")?;
    text::emit_str(&format!("paused tube {tube} for {secs} s\n"))
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FlushReport {
    pub(crate) deleted: u64,
    /// Jobs peeked but gone (or reserved by a worker) before our delete reached them.
    pub(crate) raced: u64,
    /// Jobs still reserved by workers at the end (only their holder may delete them).
    pub(crate) reserved: u64,
}

/// Empties `tube` of jobs in `which` states: peek, delete that id, repeat until the
/// peeks find nothing. Concurrent workers are fine: a job they reserve or delete between
/// our peek and our delete answers NOT_FOUND and we go on. Jobs that become ready while
/// we work (delays ending, kicks, releases, new puts) are deleted too.
pub(crate) fn flush_tube(
    c: &mut Client,
    tube: &str,
    which: FlushState,
    bar: &ProgressBar,
) -> Result<FlushReport> {
    let states = which.states();
    c.use_tube(tube)?;
    let st = c.stats(&format!("stats-tube {tube}"))?;
    let total: u64 = states.iter().map(|s| st.num(s.stats_key())).sum();
    bar.set_length(total);
    let mut rep = FlushReport::default();
    loop {
        // One pass over the states; repeat while a pass still found jobs, since a job
        // can move between states (a delay ends, a worker buries or releases it).
        let mut found_any = false;
        for s in &states {
            loop {
                let line = s.peek_cmd();
                let r = c.call(line)?;
                let Some((id, _)) = found(line, r)? else {
                    break;
                };
                found_any = true;
                let dline = format!("delete {id}");
                let r = c.call(&dline)?;
                match r.head.as_str() {
                    "DELETED" => {
                        rep.deleted += 1;
                        if rep.deleted > bar.length().unwrap_or(0) {
                            bar.set_length(rep.deleted);
                        }
                        bar.inc(1);
                    }
                    "NOT_FOUND" => rep.raced += 1,
                    other => return Err(Error::server(&dline, other)),
                }
            }
        }
        if !found_any {
            break;
        }
    }
    rep.reserved = reserved_left(c, tube)?;
    Ok(rep)
}

/// The tube's reserved jobs (0 if the tube is gone).
fn reserved_left(c: &mut Client, tube: &str) -> Result<u64> {
    c.stats(&format!("stats-tube {tube}"))
        .map(|s| s.num("current-jobs-reserved"))
        // The tube disappears when it is empty and nobody uses or watches it.
        .or_else(|e| match e {
            Error::Server { ref reply, .. } if reply == "NOT_FOUND" => Ok(0),
            e => Err(e),
        })
}

/// `flush-tube TUBE`, sproutd's own command: every ready, delayed and buried job of the
/// tube deleted at once. None if the server does not have it.
pub(crate) fn flush_tube_at_once(c: &mut Client, tube: &str) -> Result<Option<FlushReport>> {
    let line = format!("flush-tube {tube}");
    let r = c.call(&line)?;
    if r.unsupported() {
        return Ok(None);
    }
    let deleted = r
        .number_after("FLUSHED")
        .ok_or_else(|| Error::server(&line, &r.head))?;
    Ok(Some(FlushReport {
        deleted,
        raced: 0,
        reserved: reserved_left(c, tube)?,
    }))
}

/// A progress bar on stderr when it is a terminal (hidden otherwise).
fn flush_bar(tube: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("flushing {tube}"));
    bar
}

/// `sprout flush`: with `--state all`, sproutd's `flush-tube` (every ready, delayed and
/// buried job at once); on a server without it (beanstalkd, `sproutd --strict`), and for
/// one state, job by job ([`flush_tube`]).
pub fn flush(t: &Target, tube: &str, which: FlushState, json: bool) -> Result<()> {
    let mut c = Client::connect(t)?;
    let at_once = match which {
        FlushState::All => flush_tube_at_once(&mut c, tube)?,
        _ => None,
    };
    let (rep, method) = match at_once {
        Some(rep) => (rep, "flush-tube"),
        None => {
            let bar = flush_bar(tube);
            let rep = flush_tube(&mut c, tube, which, &bar);
            bar.finish_and_clear();
            (rep?, "job-by-job")
        }
    };
    if json {
        return text::emit_json(&json!({
            "tube": tube,
            "deleted": rep.deleted,
            "taken-by-workers": rep.raced,
            "reserved": rep.reserved,
            "method": method,
        }));
    }
    let mut out = format!(
        "deleted {} from tube {tube}",
        text::count(rep.deleted, "job")
    );
    if rep.raced > 0 {
        out.push_str(&format!(
            " ({} taken by workers first)",
            text::count(rep.raced, "other job")
        ));
    }
    out.push('\n');
    if rep.reserved > 0 {
        let n = if rep.reserved == 1 {
            "1 job remains".to_string()
        } else {
            format!("{} jobs remain", rep.reserved)
        };
        out.push_str(&format!(
            "{n} reserved by workers (only the worker holding a job can delete it)\n"
        ));
    }
    text::emit_str(&out)
}
