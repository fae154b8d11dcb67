//! The tiny YAML subset beanstalkd uses for `stats*` (a flat `key: value` map) and
//! `list-tubes*` (a list of names), and its conversion to typed JSON.

use serde_json::{Map, Number, Value};

/// Keys whose values are strings even when they look like numbers (tube names, the
/// server's random id, host names, versions, job states).
pub(crate) const STRING_KEYS: &[&str] = &[
    "name",
    "tube",
    "state",
    "version",
    "hostname",
    "os",
    "platform",
    "origin-tube",
    "on-exhaust",
    "retry-backoff",
];

/// A parsed stats reply: `(key, raw value)` pairs in the server's order. Raw values keep
/// their double quotes, if the server sent any, so strings can be told from numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stats(pub Vec<(String, String)>);

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

impl Stats {
    /// Parses `---\nkey: value\n...`. Lines that are not `key: value` are skipped.
    pub(crate) fn parse(data: &[u8]) -> Stats {
        let text = String::from_utf8_lossy(data);
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line == "---" {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Stats(out)
    }

    /// The value of `key`, without quotes.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| unquote(v))
    }

    /// The value of `key` as an unsigned number; 0 if missing or not a number.
    pub(crate) fn num(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Iterates over `(key, unquoted value)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), unquote(v)))
    }

    /// A JSON object: quoted values and [`STRING_KEYS`] (plus `extra_strings`) are
    /// strings, `true`/`false` are booleans, integers and decimals are numbers, anything
    /// else is a string.
    pub(crate) fn to_json(&self, extra_strings: &[&str]) -> Value {
        let mut m = Map::new();
        for (k, raw) in &self.0 {
            let quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
            let v = if quoted
                || STRING_KEYS.contains(&k.as_str())
                || extra_strings.contains(&k.as_str())
            {
                Value::String(unquote(raw).to_string())
            } else {
                scalar(raw)
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    }
}

/// An unquoted YAML scalar as JSON.
pub(crate) fn scalar(s: &str) -> Value {
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = s.parse::<u64>() {
        return Value::Number(n.into());
    }
    if let Ok(n) = s.parse::<i64>() {
        return Value::Number(n.into());
    }
    // Plain decimals only ("0.012000"), not "inf", "NaN" or "1e5".
    let digits = s.strip_prefix('-').unwrap_or(s);
    if let Some((a, b)) = digits.split_once('.') {
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
        if all_digits(a) && all_digits(b) {
            if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
                return Value::Number(n);
            }
        }
    }
    Value::String(s.to_string())
}

/// Parses `---\n- a\n- b\n` into its items (quotes removed).
pub(crate) fn parse_list(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("- "))
        .map(|v| unquote(v.trim()).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stats_to_json_types() {
        let s = Stats::parse(
            b"---\ncurrent-jobs-ready: 3\nrusage-utime: 0.012000\ndraining: false\n\
              version: \"1.13\"\nid: 1234567890123456\nname: 42\nhostname: vm\npause: 0\n",
        );
        assert_eq!(s.get("version"), Some("1.13"));
        assert_eq!(s.num("current-jobs-ready"), 3);
        assert_eq!(
            s.to_json(&["id"]),
            json!({
                "current-jobs-ready": 3,
                "rusage-utime": 0.012,
                "draining": false,
                "version": "1.13",
                "id": "1234567890123456",
                "name": "42",
                "hostname": "vm",
                "pause": 0,
            })
        );
        // A job's id is a number.
        assert_eq!(Stats::parse(b"---\nid: 7\n").to_json(&[]), json!({"id": 7}));
    }

    #[test]
    fn scalars() {
        assert_eq!(scalar("-3"), json!(-3));
        assert_eq!(scalar("1e5"), json!("1e5"));
        assert_eq!(scalar("inf"), json!("inf"));
        assert_eq!(scalar(".5"), json!(".5"));
        assert_eq!(scalar("1.5"), json!(1.5));
        assert_eq!(scalar(""), json!(""));
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list(b"---\n- default\n- a.b\n- \"q\"\n"),
            vec!["default", "a.b", "q"]
        );
        assert!(parse_list(b"---\n").is_empty());
    }
}
