//! Subcommands built on sproutd's own commands: `jobs` (`list-jobs`, then `stats-job` and
//! `peek` per job), `policy` (`tube-policy`) and `move` (`move-job`). On a server without
//! them (beanstalkd, `sproutd --strict`: UNKNOWN_COMMAND or BAD_FORMAT) they fail with
//! [`Error::Unsupported`].

use serde_json::{Map, Value};

use super::client::{Client, Error, Reply, Result};
use super::text::{self, Align};
use super::yaml::{Stats, ToJson};
use crate::conn::Target;

/// The states `jobs` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListState {
    Ready,
    Delayed,
    Buried,
    Reserved,
}

impl ListState {
    fn name(self) -> &'static str {
        match self {
            ListState::Ready => "ready",
            ListState::Delayed => "delayed",
            ListState::Buried => "buried",
            ListState::Reserved => "reserved",
        }
    }
}

/// The most ids one `list-jobs` returns.
pub const PAGE: u64 = 1000;
/// Characters of body shown in the `jobs` table.
const PREVIEW_CHARS: usize = 40;
/// Bytes of body kept per job (shown escaped in `--json`).
const BODY_BYTES: usize = 256;

pub struct JobsArgs {
    pub tube: String,
    pub state: ListState,
    /// List ids greater than this.
    pub after: u64,
    /// At most this many jobs (0: all).
    pub limit: u64,
    pub json: bool,
}

/// One listed job: its stats, body length and the body's first [`BODY_BYTES`].
struct JobRow {
    stats: Stats,
    bytes: usize,
    head: Vec<u8>,
}

/// One page of `list-jobs`: up to `limit` (1..=1000) ids after `after`.
fn list_page(
    c: &mut Client,
    tube: &str,
    state: ListState,
    after: u64,
    limit: u64,
) -> Result<Vec<u64>> {
    let line = format!("list-jobs {tube} {} {after} {limit}", state.name());
    let r = c.call(&line)?;
    if r.unsupported() {
        return Err(c.unsupported("list-jobs", &r));
    }
    let data = match r.body {
        Some(d) if r.head.starts_with("OK ") => d,
        _ => return Err(Error::server(&line, &r.head)),
    };
    sprout_client::parse_list(&data)
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Error::server(&line, &format!("a list with {s:?} for an id")))
        })
        .collect()
}

/// `stats-job` and `peek` for every id, pipelined. Jobs gone in the meantime (NOT_FOUND)
/// are left out; the second value counts them.
fn details(c: &mut Client, ids: &[u64]) -> Result<(Vec<JobRow>, u64)> {
    let lines: Vec<String> = ids
        .iter()
        .flat_map(|id| [format!("stats-job {id}"), format!("peek {id}")])
        .collect();
    let replies = c.batch(&lines)?;
    let mut rows = Vec::with_capacity(ids.len());
    let mut gone = 0;
    for (pair, r) in lines.chunks(2).zip(replies.chunks(2)) {
        let (sr, pr): (&Reply, &Reply) = (&r[0], &r[1]);
        if sr.head == "NOT_FOUND" || pr.head == "NOT_FOUND" {
            gone += 1;
            continue;
        }
        let stats = match &sr.body {
            Some(d) if sr.head.starts_with("OK ") => Stats::parse(d),
            _ => return Err(Error::server(&pair[0], &sr.head)),
        };
        let body = match &pr.body {
            Some(b) if pr.head.starts_with("FOUND ") => b,
            _ => return Err(Error::server(&pair[1], &pr.head)),
        };
        rows.push(JobRow {
            stats,
            bytes: body.len(),
            head: body[..body.len().min(BODY_BYTES)].to_vec(),
        });
    }
    Ok((rows, gone))
}

/// The body's start on one line: escaped, newlines and tabs as `\n` and `\t`, at most
/// [`PREVIEW_CHARS`] characters, `…` when there is more.
fn preview(row: &JobRow) -> String {
    let esc = text::escape(&row.head)
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    let mut out: String = esc.chars().take(PREVIEW_CHARS).collect();
    if esc.chars().count() > PREVIEW_CHARS || row.bytes > row.head.len() {
        out.push('…');
    }
    out
}

fn jobs_table(rows: &[JobRow]) -> String {
    let header = ["id", "state", "pri", "age", "reserves", "bytes", "body"];
    let align = [
        Align::Right,
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Left,
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = &r.stats;
            vec![
                s.get("id").unwrap_or("?").to_string(),
                s.get("state").unwrap_or("?").to_string(),
                s.get("pri").unwrap_or("?").to_string(),
                text::duration(s.num("age")),
                s.num("reserves").to_string(),
                r.bytes.to_string(),
                preview(r),
            ]
        })
        .collect();
    text::table(&header, &align, &cells)
}

fn job_json(r: &JobRow) -> Value {
    let mut m = match r.stats.to_json(&[]) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.insert("bytes".into(), r.bytes.into());
    m.insert("body".into(), text::escape(&r.head).into());
    m.insert("body-truncated".into(), (r.bytes > r.head.len()).into());
    Value::Object(m)
}

/// `sprout jobs`: the jobs of a tube in a state, pages of `list-jobs` until `limit` jobs
/// (or all of them), each with its stats and the start of its body.
pub fn jobs(t: &Target, a: &JobsArgs) -> Result<()> {
    let mut c = Client::connect(t)?;
    let mut after = a.after;
    let mut listed = 0u64;
    let mut gone = 0u64;
    let mut rows = Vec::new();
    let mut more = false;
    loop {
        let want = if a.limit == 0 {
            PAGE
        } else {
            (a.limit - listed).min(PAGE)
        };
        if want == 0 {
            // The limit is reached: is there more?
            more = !list_page(&mut c, &a.tube, a.state, after, 1)?.is_empty();
            break;
        }
        let ids = list_page(&mut c, &a.tube, a.state, after, want)?;
        let Some(&last) = ids.last() else {
            break;
        };
        after = last;
        listed += ids.len() as u64;
        let (page, g) = details(&mut c, &ids)?;
        rows.extend(page);
        gone += g;
        if (ids.len() as u64) < want {
            break;
        }
    }
    if gone > 0 {
        let (n, verb) = if gone == 1 {
            ("1 listed job".to_string(), "was")
        } else {
            (format!("{gone} listed jobs"), "were")
        };
        eprintln!("sprout: {n} {verb} deleted before their stats were read (not shown)");
    }
    if more {
        eprintln!(
            "sprout: showing the first {}; more follow (--after {after} for the next ones, \
             --limit 0 for all)",
            text::count(listed, "job")
        );
    }
    if a.json {
        return text::emit_json(&Value::Array(rows.iter().map(job_json).collect()));
    }
    if rows.is_empty() {
        return text::emit_str(&format!("no {} jobs in tube {}\n", a.state.name(), a.tube));
    }
    text::emit_str(&jobs_table(&rows))
}

/// The keys of a tube policy (what they mean: `sprout policy --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyKey {
    MaxReserves,
    OnExhaust,
    RetryBackoff,
    MaxReady,
}

impl PolicyKey {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKey::MaxReserves => "max-reserves",
            PolicyKey::OnExhaust => "on-exhaust",
            PolicyKey::RetryBackoff => "retry-backoff",
            PolicyKey::MaxReady => "max-ready",
        }
    }

    fn expects(self) -> &'static str {
        match self {
            PolicyKey::MaxReserves => "a number of reserves, 0 for no limit",
            PolicyKey::OnExhaust => "bury, delete or tube:NAME",
            PolicyKey::RetryBackoff => {
                "none, fixed:SECS or exp:BASE,CAP (seconds, 1 <= BASE <= CAP)"
            }
            PolicyKey::MaxReady => "a number of ready jobs, 0 for no limit",
        }
    }
}

/// The `tube-policy TUBE KEY VALUE` line, checked with the server's own parser (so that
/// a bad value is explained here, and no value can carry a second command).
pub fn policy_line(tube: &str, key: PolicyKey, value: &str) -> Result<String> {
    let line = format!("tube-policy {tube} {} {value}", key.name());
    let ok = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_graphic())
        && matches!(
            sprout_protocol::parse::parse_line(line.as_bytes(), u32::MAX),
            Ok(sprout_protocol::Command::TubePolicy { set: Some(_), .. })
        );
    if ok {
        Ok(line)
    } else {
        Err(Error::Local(format!(
            "invalid value {value:?} for {}: expected {}",
            key.name(),
            key.expects()
        )))
    }
}

/// What `tube-policy TUBE` shows for a tube without a policy.
const DEFAULT_POLICY: &[u8] =
    b"---\nmax-reserves: 0\non-exhaust: bury\nretry-backoff: none\nmax-ready: 0\n";

/// The tube's policy (`tube-policy TUBE`), with its `dead-lettered` and `retries-delayed`
/// counts from `stats-tube` where the server shows them. None: no such tube.
fn read_policy(c: &mut Client, tube: &str) -> Result<Option<Stats>> {
    let line = format!("tube-policy {tube}");
    let r = c.call(&line)?;
    if r.unsupported() {
        return Err(c.unsupported("tube-policy", &r));
    }
    if r.head == "NOT_FOUND" {
        return Ok(None);
    }
    let mut p = match r.body {
        Some(d) if r.head.starts_with("OK ") => Stats::parse(&d),
        _ => return Err(Error::server(&line, &r.head)),
    };
    match c.stats(&format!("stats-tube {tube}")) {
        Ok(st) => {
            for k in ["dead-lettered", "retries-delayed"] {
                if let Some(v) = st.get(k) {
                    p.push(k, v);
                }
            }
        }
        Err(Error::Server { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(Some(p))
}

/// `sprout policy TUBE [KEY VALUE]`: sets one key if given, then shows the tube's policy.
pub fn policy(t: &Target, tube: &str, set: Option<(PolicyKey, String)>, json: bool) -> Result<()> {
    let set_line = match &set {
        Some((k, v)) => Some(policy_line(tube, *k, v)?),
        None => None,
    };
    let mut c = Client::connect(t)?;
    if let Some(line) = &set_line {
        let r = c.call(line)?;
        if r.unsupported() {
            return Err(c.unsupported("tube-policy", &r));
        }
        if r.head != "OK" {
            return Err(Error::server(line, &r.head));
        }
    }
    let p = match read_policy(&mut c, tube)? {
        Some(p) => p,
        // Set back to the defaults, the policy is gone and so may be the tube.
        None if set_line.is_some() => Stats::parse(DEFAULT_POLICY),
        None => return Err(Error::server(&format!("tube-policy {tube}"), "NOT_FOUND")),
    };
    if json {
        return text::emit_json(&p.to_json(&[]));
    }
    let rows: Vec<Vec<String>> = p
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect();
    let t = text::table(&["key", "value"], &[Align::Left, Align::Left], &rows);
    // No header: `key  value` lines, as `stats` prints them.
    text::emit_str(t.split_once('\n').map_or("", |(_, rest)| rest))
}

/// `sprout move ID TUBE`: `move-job`.
pub fn move_job(t: &Target, id: u64, tube: &str) -> Result<()> {
    let mut c = Client::connect(t)?;
    let line = format!("move-job {id} {tube}");
    let r = c.call(&line)?;
    if r.unsupported() {
        return Err(c.unsupported("move-job", &r));
    }
    if r.head != "MOVED" {
        return Err(Error::server(&line, &r.head));
    }
    text::emit_str(&format!("moved job {id} to tube {tube}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_values_are_checked_locally() {
        assert_eq!(
            policy_line("jobs", PolicyKey::MaxReserves, "3").unwrap(),
            "tube-policy jobs max-reserves 3"
        );
        for (k, v) in [
            (PolicyKey::OnExhaust, "tube:jobs-dead"),
            (PolicyKey::OnExhaust, "delete"),
            (PolicyKey::RetryBackoff, "exp:1,4"),
            (PolicyKey::RetryBackoff, "fixed:5"),
            (PolicyKey::RetryBackoff, "none"),
            (PolicyKey::MaxReady, "0"),
        ] {
            assert!(policy_line("t", k, v).is_ok(), "{v}");
        }
        for (k, v) in [
            (PolicyKey::MaxReserves, "x"),
            (PolicyKey::MaxReserves, "-1"),
            (PolicyKey::MaxReserves, "1 2"),
            (PolicyKey::MaxReserves, "1\r\ndelete 5"),
            (PolicyKey::OnExhaust, "burn"),
            (PolicyKey::OnExhaust, "tube:-x"),
            (PolicyKey::RetryBackoff, "exp:5,1"),
            (PolicyKey::RetryBackoff, "fixed:"),
            (PolicyKey::MaxReady, ""),
        ] {
            let e = policy_line("t", k, v).unwrap_err().to_string();
            assert!(e.contains(k.name()) && e.contains("expected"), "{e}");
        }
    }

    #[test]
    fn previews_stay_on_one_line() {
        let row = |body: &[u8]| JobRow {
            stats: Stats::default(),
            bytes: body.len(),
            head: body[..body.len().min(BODY_BYTES)].to_vec(),
        };
        assert_eq!(preview(&row(b"a\nb\tc\x1b")), "a\\nb\\tc\\x1b");
        let long = vec![b'x'; 1000];
        let p = preview(&row(&long));
        assert_eq!(p.chars().count(), PREVIEW_CHARS + 1);
        assert!(p.ends_with('…'));
    }
}
