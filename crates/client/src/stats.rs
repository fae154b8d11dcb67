//! The tiny YAML subset of `stats*` (a flat `key: value` map) and `list-*` (a list).

/// A parsed `stats`, `stats-tube`, `stats-job` or `tube-policy` reply: `key: value` pairs
/// in the server's order.
///
/// ```
/// let s = sprout_client::Stats::parse(b"---\nname: \"emails\"\ncurrent-jobs-ready: 3\n");
/// assert_eq!(s.get("name"), Some("emails"));
/// assert_eq!(s.num("current-jobs-ready"), 3);
/// assert_eq!(s.num("missing"), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(Vec<(String, String)>);

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

impl Stats {
    /// Parses `---\nkey: value\n...`. Lines that are not `key: value` are skipped.
    pub fn parse(data: &[u8]) -> Stats {
        let text = String::from_utf8_lossy(data);
        let mut out = Vec::new();
        for line in text.lines() {
            if line == "---" {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Stats(out)
    }

    /// The value of `key`, without the double quotes the server may put around it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| unquote(v))
    }

    /// The value of `key` as an unsigned number; 0 if it is missing or not a number.
    pub fn num(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// `(key, value)` pairs in the server's order, values without quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), unquote(v)))
    }

    /// `(key, value)` pairs with values as sent: a quoted value keeps its quotes, so a
    /// string can be told from a number.
    pub fn iter_raw(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Adds a pair at the end (a value in double quotes stays a string in
    /// [`Stats::iter_raw`]).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Pairs as they would be parsed: values raw, quotes kept.
impl From<Vec<(String, String)>> for Stats {
    fn from(pairs: Vec<(String, String)>) -> Stats {
        Stats(pairs)
    }
}

/// Parses a YAML list (`---\n- a\n- b\n`) into its items, quotes removed.
///
/// ```
/// assert_eq!(sprout_client::parse_list(b"---\n- default\n- \"q\"\n"), ["default", "q"]);
/// ```
pub fn parse_list(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(|v| unquote(v.trim()).to_string())
        .collect()
}

/// Parses the YAML list of ids of `list-jobs`; items that are not numbers are skipped.
pub(crate) fn parse_ids(data: &[u8]) -> Vec<u64> {
    parse_list(data)
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_pairs() {
        let s = Stats::parse(b"---\nversion: \"1.13\"\nid: 12\ndraining: false\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s.get("version"), Some("1.13"));
        assert_eq!(s.iter_raw().next(), Some(("version", "\"1.13\"")));
        assert_eq!(s.iter().next(), Some(("version", "1.13")));
        assert_eq!(s.num("id"), 12);
        assert!(Stats::parse(b"---\n").is_empty());
    }

    #[test]
    fn lists_and_ids() {
        assert!(parse_list(b"---\n").is_empty());
        assert_eq!(parse_ids(b"---\n- 1\n- 20\n"), [1, 20]);
    }
}
