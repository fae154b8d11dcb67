//! The worker's log: one line per record on stderr, as text or as JSON objects.
//!
//! Text: `TIME job=ID stdout: LINE` for a COMMAND's output, `TIME job=ID tube=T
//! outcome=O ...` when a job ends, `TIME [warning: |error: ]MESSAGE key=value ...` for
//! everything else. JSON: `{"ts":..,"level":"info","job":ID,"stream":"stdout","line":..}`,
//! `{"ts":..,"level":..,"event":"job","job":ID,...}` (and `"event":"start"`),
//! `{"ts":..,"level":..,"event":..,"msg":..,...}`.
//! Each record is written with one `write` of a whole line, so lines of concurrent jobs
//! never interleave.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

pub(super) struct Log {
    json: bool,
}

/// A record's fields, in order; `Value::Null` ones are left out.
pub(super) type Fields = Vec<(&'static str, Value)>;

impl Log {
    pub(super) fn new(json: bool) -> Log {
        Log { json }
    }

    /// One line of a COMMAND's stdout or stderr (without its line end).
    pub(super) fn output(&self, job: u64, stream: &str, line: &[u8]) {
        if self.json {
            let mut m = Map::new();
            m.insert("ts".into(), now().into());
            m.insert("level".into(), "info".into());
            m.insert("job".into(), job.into());
            m.insert("stream".into(), stream.into());
            m.insert("line".into(), String::from_utf8_lossy(line).into());
            self.write(Value::Object(m).to_string());
        } else {
            let text = crate::cli::text::escape(line);
            self.write(format!("{} job={job} {stream}: {text}", now()));
        }
    }

    /// A job's start (`event` "start") or end ("job"): `fields` start with the job id.
    pub(super) fn job(&self, event: &str, fields: Fields) {
        if self.json {
            let mut m = Map::new();
            m.insert("ts".into(), now().into());
            let abandoned = fields
                .iter()
                .any(|(k, v)| *k == "outcome" && v == "abandoned");
            let level = if abandoned { Level::Warn } else { Level::Info };
            m.insert("level".into(), level.name().into());
            m.insert("event".into(), event.into());
            insert(&mut m, fields);
            self.write(Value::Object(m).to_string());
        } else if event == "job" {
            self.write(format!("{}{}", now(), text_fields(&fields)));
        } else {
            // `TIME job=ID started tube=...`
            let (first, rest) = fields.split_at(fields.len().min(1));
            let word = if event == "start" { "started" } else { event };
            self.write(format!(
                "{}{} {word}{}",
                now(),
                text_fields(first),
                text_fields(rest)
            ));
        }
    }

    /// Anything else: `event` names it for JSON consumers, `msg` says it for people.
    pub(super) fn event(&self, level: Level, event: &str, msg: &str, fields: Fields) {
        if self.json {
            let mut m = Map::new();
            m.insert("ts".into(), now().into());
            m.insert("level".into(), level.name().into());
            m.insert("event".into(), event.into());
            m.insert("msg".into(), msg.into());
            insert(&mut m, fields);
            self.write(Value::Object(m).to_string());
        } else {
            let prefix = match level {
                Level::Info => "",
                Level::Warn => "warning: ",
                Level::Error => "error: ",
            };
            self.write(format!("{} {prefix}{msg}{}", now(), text_fields(&fields)));
        }
    }

    pub(super) fn info(&self, event: &str, msg: &str, fields: Fields) {
        self.event(Level::Info, event, msg, fields);
    }

    pub(super) fn warn(&self, event: &str, msg: &str, fields: Fields) {
        self.event(Level::Warn, event, msg, fields);
    }

    fn write(&self, mut line: String) {
        line.push('\n');
        // A log that cannot be written (stderr closed) must not stop the worker.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn insert(m: &mut Map<String, Value>, fields: Fields) {
    for (k, v) in fields {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    }
}

/// ` key=value` for each field: numbers and plain words as they are, other strings
/// quoted as JSON strings (so spaces, quotes and control characters stay readable).
fn text_fields(fields: &[(&'static str, Value)]) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        let v = match v {
            Value::Null => continue,
            Value::Array(a) if a.is_empty() => continue,
            Value::String(s) if plain(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    x => x.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            v => v.to_string(),
        };
        out.push(' ');
        out.push_str(k);
        out.push('=');
        out.push_str(&v);
    }
    out
}

fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\')
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2025-06-01T12:00:00.123Z`.
pub(super) fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_date((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// The Gregorian (year, month, day) of a count of days since 1970-01-01: the days are
/// counted in 400-year eras of 146097 days, whose years start on March 1 so that the
/// leap day ends the year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the (March) year
    let mp = (5 * doy + 2) / 153; // month counted from March
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_089), (2025, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn fields_as_text() {
        let f: Fields = vec![
            ("job", 5.into()),
            ("tube", "emails".into()),
            ("none", Value::Null),
            ("stderr", "two\nlines".into()),
            ("codes", vec![3, 4].into()),
        ];
        assert_eq!(
            text_fields(&f),
            r#" job=5 tube=emails stderr="two\nlines" codes=3,4"#
        );
    }
}
