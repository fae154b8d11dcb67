//! Output helpers: terminal-safe rendering of job bodies, plain-text tables, number
//! formatting, and writing to stdout without dying on a closed pipe.

use std::io::{self, Write};

use super::client::{Error, Result};

/// Renders a job body so it is safe to print on a terminal: printable characters
/// (including valid UTF-8), newlines and tabs as they are; a backslash as `\\`; every
/// other byte (control characters, escape sequences, invalid UTF-8) as `\xHH`.
pub(crate) fn escape(body: &[u8]) -> String {
    let mut out = String::with_capacity(body.len());
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' | '\t' => out.push(c),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Column alignment for [`table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A plain-text table: a header row and the rows, columns separated by two spaces, the
/// last column not padded on the right.
pub(crate) fn table(header: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate().take(n) {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(c.chars().count());
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => {
                    s.push_str(c);
                    s.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    s.extend(std::iter::repeat_n(' ', pad));
                    s.push_str(c);
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// Writes to stdout. A closed pipe (`sprout tubes | head -1`) is not an error.
pub(crate) fn emit(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::Local(format!("cannot write output: {e}")))
        }
        _ => Ok(()),
    }
}

/// [`emit`] for text.
pub(crate) fn emit_str(s: &str) -> Result<()> {
    emit(s.as_bytes())
}

/// Pretty JSON plus a newline, to stdout.
pub(crate) fn emit_json(v: &serde_json::Value) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Error::Local(format!("cannot encode JSON: {e}")))?;
    emit_str(&format!("{s}\n"))
}

/// `1 job`, `2 jobs`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A count in at most 6 characters: 999999, 1.23M, 45.6G.
pub(crate) fn compact(n: f64) -> String {
    if n < 1_000_000.0 {
        format!("{n:.0}")
    } else if n < 1e9 {
        trim_num(n / 1e6, "M")
    } else if n < 1e12 {
        trim_num(n / 1e9, "G")
    } else {
        trim_num(n / 1e12, "T")
    }
}

fn trim_num(v: f64, suffix: &str) -> String {
    if v < 10.0 {
        format!("{v:.2}{suffix}")
    } else if v < 100.0 {
        format!("{v:.1}{suffix}")
    } else {
        format!("{v:.0}{suffix}")
    }
}

/// A rate: one decimal below 10/s, whole numbers above.
pub(crate) fn rate(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.1}")
    } else {
        compact(r)
    }
}

/// Seconds as `3d04h`, `2h05m`, `4m07s` or `12s`.
pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_unsafe_bytes() {
        assert_eq!(escape(b"hello world"), "hello world");
        assert_eq!(escape(b"a\nb\tc"), "a\nb\tc");
        assert_eq!(escape(b"\x1b[2J\x00\r"), "\\x1b[2J\\x00\\x0d");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape("héllo".as_bytes()), "héllo");
        assert_eq!(escape(b"\xff\xfe ok"), "\\xff\\xfe ok");
        // U+009B (a C1 control, CSI on some terminals) is escaped byte by byte.
        assert_eq!(escape("\u{9b}".as_bytes()), "\\xc2\\x9b");
        assert_eq!(escape(b"\x7f"), "\\x7f");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["name", "ready"],
            &[Align::Left, Align::Right],
            &[
                vec!["default".into(), "3".into()],
                vec!["x".into(), "12345".into()],
            ],
        );
        assert_eq!(t, "name     ready\ndefault      3\nx        12345\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(compact(999_999.0), "999999");
        assert_eq!(compact(1_234_567.0), "1.23M");
        assert_eq!(compact(45_600_000_000.0), "45.6G");
        assert_eq!(rate(0.24), "0.2");
        assert_eq!(rate(12.6), "13");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(3725), "1h02m");
        assert_eq!(duration(90061), "1d01h");
    }
}
