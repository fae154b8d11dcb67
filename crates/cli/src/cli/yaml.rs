//! The conversion of `stats*` replies (parsed by `sprout-client` into [`Stats`]) to typed
//! JSON.

use serde_json::{Map, Number, Value};
pub(crate) use sprout_client::Stats;

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

/// A stats reply as typed JSON.
pub(crate) trait ToJson {
    /// A JSON object: quoted values and [`STRING_KEYS`] (plus `extra_strings`) are
    /// strings, `true`/`false` are booleans, integers and decimals are numbers, anything
    /// else is a string.
    fn to_json(&self, extra_strings: &[&str]) -> Value;
}

impl ToJson for Stats {
    fn to_json(&self, extra_strings: &[&str]) -> Value {
        let mut m = Map::new();
        for ((k, raw), (_, plain)) in self.iter_raw().zip(self.iter()) {
            let quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
            let v = if quoted || STRING_KEYS.contains(&k) || extra_strings.contains(&k) {
                Value::String(plain.to_string())
            } else {
                scalar(raw)
            };
            m.insert(k.to_string(), v);
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
}
