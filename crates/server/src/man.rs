//! The sproutd(8) manual page, in roff. Its OPTIONS section is made from the usage text
//! that `sproutd -h` prints, so the two cannot disagree: each usage line `FLAGS  TEXT`
//! (flags, then two or more spaces, then the description) becomes one tagged paragraph.
//! The rest of the page (signals, environment, files, exit status) is written here.

use crate::VERSION;

/// Escapes text for roff: backslashes, a leading control character, and the hyphens of
/// words that are options (so that they render as the ASCII hyphen a shell needs).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut word_start = true;
    // Inside a word that began with a hyphen: an option, whose hyphens are all escaped
    // (an escaped one is also no place to break the line).
    let mut option = false;
    for c in text.chars() {
        if word_start {
            option = c == '-';
        }
        match c {
            '\\' => out.push_str("\\e"),
            '-' if option => out.push_str("\\-"),
            c => out.push(c),
        }
        word_start = c.is_whitespace() || c == '(' || c == '[' || c == '|' || c == ',';
        if word_start {
            option = false;
        }
    }
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// One entry of the usage's option list: the flags (None for a line of prose) and text.
struct Entry {
    flags: Option<String>,
    text: String,
}

/// A word of an option's synopsis: a flag (`-b`, `--tls-cert`, `-c,`) or the placeholder
/// of its value (`DIR`, `none|token|mtls`).
fn is_spec_word(w: &str) -> bool {
    w.starts_with('-')
        || w.contains('|')
        || (w.chars().any(|c| c.is_ascii_uppercase())
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
}

/// Splits a usage line into its flags and its description: the leading words that are
/// flags and placeholders (up to a two-space gap, when there is one).
fn split_spec(line: &str) -> (&str, &str) {
    if let Some(at) = line.find("  ") {
        if line[..at].split_whitespace().all(is_spec_word) {
            return (&line[..at], line[at..].trim());
        }
    }
    let mut end = 0;
    loop {
        let rest = &line[end..];
        let word = rest.trim_start();
        let len = word.find(char::is_whitespace).unwrap_or(word.len());
        if len == 0 || !is_spec_word(&word[..len]) {
            break;
        }
        end += rest.len() - word.len() + len;
    }
    (&line[..end], line[end..].trim())
}

/// The option list of a usage text: the lines after `Options:`.
fn entries(usage: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let lines = usage
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("Options:"))
        .skip(1);
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (flags, text) = if line.starts_with('-') {
            split_spec(line)
        } else {
            ("", line)
        };
        if !flags.is_empty() && !text.is_empty() {
            out.push(Entry {
                flags: Some(flags.to_string()),
                text: text.to_string(),
            });
            continue;
        }
        // A line without a description column: prose, or more of the line before.
        match out.last_mut() {
            Some(last) if last.flags.is_none() || !flags.is_empty() => {
                last.text.push(' ');
                last.text.push_str(line);
            }
            _ => out.push(Entry {
                flags: None,
                text: line.to_string(),
            }),
        }
    }
    out
}

/// Every option name (`-x`, `--name`) in a usage text, for tests.
pub fn option_names(usage: &str) -> Vec<String> {
    let mut names = Vec::new();
    for word in usage.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
        let name: String = word
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let bare = name.trim_start_matches('-');
        if name.starts_with('-')
            && !bare.is_empty()
            && bare.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// The page, in roff (man macros), with the options of `usage`.
pub fn page(usage: &str) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        ".TH SPROUTD 8 \"\" \"sproutd {VERSION}\" \"System Administration\"\n\
         .nh\n\
         .ad l\n\
         .SH NAME\n\
         sproutd \\- work\\-queue server that speaks the beanstalkd protocol\n\
         .SH SYNOPSIS\n\
         .B sproutd\n\
         [\\fIOPTIONS\\fR]\n\
         .SH DESCRIPTION\n\
         .B sproutd\n\
         serves the beanstalkd 1.13 protocol, byte for byte, to existing beanstalkd clients,\n\
         plus commands of its own (off with \\fB\\-\\-strict\\fR). It takes beanstalkd's command\n\
         line: flags can be grouped and take their value attached or separate\n\
         (\\fB\\-VV\\fR, \\fB\\-p11300\\fR). With \\fB\\-b\\fR it keeps every job in a\n\
         write\\-ahead log and restores them at startup; a directory of beanstalkd's binlog\n\
         files (format 7) is taken over: read, rewritten in sprout's format, and the old\n\
         files deleted once the rewrite is on disk.\n\
         .PP\n\
         The administration tool is \\fBsprout\\fR(1).\n\
         .SH OPTIONS\n"
    ));
    for e in entries(usage) {
        match e.flags {
            Some(flags) => {
                m.push_str(".TP\n");
                m.push_str(&format!("\\fB{}\\fR\n", esc(&flags)));
            }
            None => m.push_str(".PP\n"),
        }
        m.push_str(&esc(&e.text));
        m.push('\n');
    }
    m.push_str(
        ".SH SIGNALS\n\
         .TP\n\
         .BR SIGTERM \", \" SIGINT\n\
         Stop accepting connections, let each connection finish the replies it owes, sync\n\
         the binlog and exit 0 (within 5 seconds even if a client stops reading).\n\
         .TP\n\
         .B SIGUSR1\n\
         Drain mode: every \\fBput\\fR is answered DRAINING from then on, while workers keep\n\
         reserving and deleting.\n\
         .SH ENVIRONMENT\n\
         .TP\n\
         .BR LISTEN_PID \", \" LISTEN_FDS\n\
         Socket activation: when LISTEN_PID is sproutd's pid, the listening socket inherited\n\
         as file descriptor 3 is served and \\fB\\-l\\fR and \\fB\\-p\\fR are ignored.\n\
         .TP\n\
         .B NOTIFY_SOCKET\n\
         Readiness for a service manager (systemd's Type=notify): READY=1 is sent to this\n\
         unix datagram socket once the listener is bound and the binlog recovered, and\n\
         STOPPING=1 when shutdown begins. A name starting with @ is in the abstract namespace.\n\
         .SH FILES\n\
         .TP\n\
         .I /etc/sprout/sproutd.toml\n\
         The packaged service's settings (its \\fB\\-\\-config\\fR): the listener, the binlog\n\
         directory /var/lib/sprout, and every other key commented.\n\
         .TP\n\
         .I /var/lib/sprout\n\
         The packaged service's binlog directory (\\fB\\-b\\fR); \\fIDIR\\fR/lock keeps a\n\
         second server out.\n\
         .TP\n\
         .I /lib/systemd/system/sproutd.service\n\
         .TQ\n\
         .I /lib/systemd/system/sproutd.socket\n\
         The packaged systemd units.\n\
         .SH EXIT STATUS\n\
         0 after SIGTERM or SIGINT; 1 a binlog that cannot be read; 5 a bad flag or\n\
         configuration; 10 a binlog directory locked by another process; 111 an address\n\
         that cannot be bound.\n\
         .SH SEE ALSO\n\
         \\fBsprout\\fR(1), \\fBbeanstalkd\\fR(1), \\fBsystemd.socket\\fR(5)\n",
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_usage() {
        let usage = "Use: x [OPTIONS]\n\nOptions:\n -b DIR   the dir\n --strict  be strict\n \
                     -c, -n   no effect\n prose about --long\n --more --names\n -h       help\n \
                     -z BYTES set the size\n --a FILE --b FILE   two\n --m none|all  Mode\n";
        let e = entries(usage);
        assert_eq!(e.len(), 8);
        assert_eq!(e[5].flags.as_deref(), Some("-z BYTES"));
        assert_eq!(e[5].text, "set the size");
        assert_eq!(e[6].flags.as_deref(), Some("--a FILE --b FILE"));
        assert_eq!(e[7].flags.as_deref(), Some("--m none|all"));
        assert_eq!(e[7].text, "Mode");
        assert_eq!(e[0].flags.as_deref(), Some("-b DIR"));
        assert_eq!(e[0].text, "the dir");
        assert_eq!(e[2].flags.as_deref(), Some("-c, -n"));
        assert_eq!(e[3].flags, None);
        assert_eq!(e[3].text, "prose about --long --more --names");
        let p = page(usage);
        assert!(p.contains(".TP\n\\fB\\-b DIR\\fR\nthe dir\n"), "{p}");
        assert!(p.contains("\\fB\\-c, \\-n\\fR"), "{p}");
        assert!(p.contains("prose about \\-\\-long \\-\\-more"), "{p}");
        assert_eq!(
            option_names(usage),
            [
                "-b", "--strict", "-c", "-n", "--long", "--more", "--names", "-h", "-z", "--a",
                "--b", "--m"
            ]
        );
        assert_eq!(esc(".x a\\b write-ahead"), "\\&.x a\\eb write-ahead");
        assert_eq!(esc("--binlog-dir -f0"), "\\-\\-binlog\\-dir \\-f0");
    }
}
