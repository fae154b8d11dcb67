//! `sprout tubes`: every tube's counts, from `list-tubes` + `stats-tube` (also used by
//! `top`).

use serde_json::{json, Value};

use super::client::{Client, Result};
use super::text::{self, Align};
use super::yaml::Stats;
use crate::conn::Target;

/// One tube's `stats-tube`, the fields the CLI shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TubeRow {
    pub name: String,
    pub(crate) ready: u64,
    pub(crate) reserved: u64,
    pub(crate) delayed: u64,
    pub(crate) buried: u64,
    pub(crate) urgent: u64,
    /// Connections waiting in a reserve on this tube.
    pub(crate) waiting: u64,
    pub(crate) watching: u64,
    pub(crate) using: u64,
    /// Jobs ever put into this tube (`total-jobs`).
    pub(crate) total: u64,
    /// `cmd-delete` on this tube.
    pub(crate) deletes: u64,
    /// Pause length in seconds, and seconds left.
    pub pause: u64,
    pub(crate) pause_left: u64,
}

impl TubeRow {
    pub(crate) fn from_stats(name: &str, s: &Stats) -> TubeRow {
        TubeRow {
            name: s.get("name").unwrap_or(name).to_string(),
            ready: s.num("current-jobs-ready"),
            reserved: s.num("current-jobs-reserved"),
            delayed: s.num("current-jobs-delayed"),
            buried: s.num("current-jobs-buried"),
            urgent: s.num("current-jobs-urgent"),
            waiting: s.num("current-waiting"),
            watching: s.num("current-watching"),
            using: s.num("current-using"),
            total: s.num("total-jobs"),
            deletes: s.num("cmd-delete"),
            pause: s.num("pause"),
            pause_left: s.num("pause-time-left"),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "ready": self.ready,
            "reserved": self.reserved,
            "delayed": self.delayed,
            "buried": self.buried,
            "urgent": self.urgent,
            "waiting": self.waiting,
            "watching": self.watching,
            "using": self.using,
            "total": self.total,
            "deletes": self.deletes,
            "pause": self.pause,
            "pause-time-left": self.pause_left,
        })
    }
}

/// Every tube, in the server's order. A tube that disappears between `list-tubes` and
/// its `stats-tube` (NOT_FOUND) is left out.
pub(crate) fn fetch(c: &mut Client) -> Result<Vec<TubeRow>> {
    fetch_counted(c).map(|(rows, _)| rows)
}

/// [`fetch`], also returning how many commands it sent.
pub(crate) fn fetch_counted(c: &mut Client) -> Result<(Vec<TubeRow>, u64)> {
    let names = c.list("list-tubes")?;
    let lines: Vec<String> = names.iter().map(|n| format!("stats-tube {n}")).collect();
    let replies = c.batch(&lines)?;
    let mut rows = Vec::with_capacity(names.len());
    for ((name, line), r) in names.iter().zip(&lines).zip(replies) {
        match r.body {
            Some(data) if r.head.starts_with("OK ") => {
                rows.push(TubeRow::from_stats(name, &Stats::parse(&data)))
            }
            _ if r.head == "NOT_FOUND" => {}
            _ => return Err(super::client::Error::server(line, &r.head)),
        }
    }
    Ok((rows, 1 + lines.len() as u64))
}

/// Columns `tubes` can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortKey {
    #[default]
    Name,
    Ready,
    Reserved,
    Delayed,
    Buried,
    Urgent,
    Waiting,
    Watching,
    Using,
    Total,
}

impl SortKey {
    pub(crate) const ALL: [SortKey; 10] = [
        SortKey::Name,
        SortKey::Ready,
        SortKey::Reserved,
        SortKey::Delayed,
        SortKey::Buried,
        SortKey::Urgent,
        SortKey::Waiting,
        SortKey::Watching,
        SortKey::Using,
        SortKey::Total,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Ready => "ready",
            SortKey::Reserved => "reserved",
            SortKey::Delayed => "delayed",
            SortKey::Buried => "buried",
            SortKey::Urgent => "urgent",
            SortKey::Waiting => "waiting",
            SortKey::Watching => "watching",
            SortKey::Using => "using",
            SortKey::Total => "total",
        }
    }

    fn value(self, t: &TubeRow) -> u64 {
        match self {
            SortKey::Name => 0,
            SortKey::Ready => t.ready,
            SortKey::Reserved => t.reserved,
            SortKey::Delayed => t.delayed,
            SortKey::Buried => t.buried,
            SortKey::Urgent => t.urgent,
            SortKey::Waiting => t.waiting,
            SortKey::Watching => t.watching,
            SortKey::Using => t.using,
            SortKey::Total => t.total,
        }
    }
}

/// Sorts by name (A→Z), or by a count, largest first with ties by name; `reverse` flips
/// the whole order.
pub(crate) fn sort(rows: &mut [TubeRow], key: SortKey, reverse: bool) {
    rows.sort_by(|a, b| {
        key.value(b)
            .cmp(&key.value(a))
            .then_with(|| a.name.cmp(&b.name))
    });
    if reverse {
        rows.reverse();
    }
}

pub(crate) fn table(rows: &[TubeRow]) -> String {
    let header = [
        "name", "ready", "reserved", "delayed", "buried", "urgent", "waiting", "watching",
    ];
    let mut align = vec![Align::Right; header.len()];
    align[0] = Align::Left;
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.ready.to_string(),
                t.reserved.to_string(),
                t.delayed.to_string(),
                t.buried.to_string(),
                t.urgent.to_string(),
                t.waiting.to_string(),
                t.watching.to_string(),
            ]
        })
        .collect();
    text::table(&header, &align, &cells)
}

pub fn run(t: &Target, key: SortKey, reverse: bool, json: bool) -> Result<()> {
    let mut c = Client::connect(t)?;
    let mut rows = fetch(&mut c)?;
    sort(&mut rows, key, reverse);
    if json {
        text::emit_json(&Value::Array(rows.iter().map(TubeRow::to_json).collect()))
    } else {
        text::emit_str(&table(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, ready: u64) -> TubeRow {
        TubeRow {
            name: name.into(),
            ready,
            ..TubeRow::default()
        }
    }

    #[test]
    fn sorting() {
        let mut rows = vec![row("b", 1), row("a", 1), row("c", 5)];
        sort(&mut rows, SortKey::Name, false);
        let names = |r: &[TubeRow]| r.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&rows), ["a", "b", "c"]);
        sort(&mut rows, SortKey::Ready, false);
        assert_eq!(names(&rows), ["c", "a", "b"]);
        sort(&mut rows, SortKey::Ready, true);
        assert_eq!(names(&rows), ["b", "a", "c"]);
    }

    #[test]
    fn from_stats() {
        let s = Stats::parse(
            b"---\nname: \"jobs\"\ncurrent-jobs-ready: 2\ncurrent-waiting: 1\ntotal-jobs: 9\n",
        );
        let t = TubeRow::from_stats("x", &s);
        assert_eq!(
            (t.name.as_str(), t.ready, t.waiting, t.total),
            ("jobs", 2, 1, 9)
        );
    }
}
