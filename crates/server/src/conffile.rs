//! `--config FILE`: a TOML file whose keys are the long flag names (`listen`, `port`,
//! `max-job-size`, ...), plus `[[listener]]`, `[[user]]` and `[anonymous]` tables; and
//! `--print-config`, which writes the effective configuration back as TOML with secrets
//! masked. Errors name the file, the line and the key.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};

use crate::access::CLASSES;
use crate::config::{apply_long, parse_sha256, AuthMode, Config, ListenerCfg, RightsCfg, UserCfg};
use crate::tls::TlsFiles;

/// Top-level keys whose value is text.
const STRINGS: [&str; 17] = [
    "cluster",
    "cluster-bind",
    "listen",
    "binlog-dir",
    "user",
    "metrics",
    "http",
    "policy-file",
    "tls-listen",
    "tls-cert",
    "tls-key",
    "tls-client-ca",
    "tls-auth",
    "metrics-tls-cert",
    "metrics-tls-key",
    "metrics-token-sha256",
    "log-format",
];
/// Top-level keys whose value is a number.
const NUMBERS: [&str; 10] = [
    "node-id",
    "port",
    "max-job-size",
    "fsync-ms",
    "binlog-size",
    "metrics-tube-cap",
    "max-connections",
    "max-jobs",
    "max-memory",
    "verbose",
];
/// Top-level keys whose value is a boolean.
const BOOLS: [&str; 4] = ["binlog-salvage", "strict", "no-fsync", "verbose"];

struct Src<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Src<'_> {
    /// `FILE:LINE` of a span (`FILE` alone without one).
    fn at(&self, span: Option<Range<usize>>) -> String {
        match span {
            Some(r) => {
                let line = self.text[..r.start.min(self.text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                format!("{}:{line}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }

    /// The error for key `key` of `t`.
    fn err(&self, t: &dyn TableLike, key: &str, msg: &str) -> String {
        let span = t.get_key_value(key).and_then(|(k, _)| k.span());
        format!("{}: {msg}", self.at(span))
    }

    fn unknown(&self, t: &dyn TableLike, key: &str, within: &str) -> String {
        self.err(t, key, &format!("unknown key `{within}{key}`"))
    }

    fn string(&self, t: &dyn TableLike, key: &str, item: &Item) -> Result<String, String> {
        item.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.err(t, key, &format!("`{key}` must be a string")))
    }

    fn strings(&self, t: &dyn TableLike, key: &str, item: &Item) -> Result<Vec<String>, String> {
        let bad = || self.err(t, key, &format!("`{key}` must be a list of strings"));
        let arr = item.as_array().ok_or_else(bad)?;
        arr.iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect()
    }
}

/// Reads the file into `cfg` (which then gets the flags applied over it).
pub(crate) fn load(path: &Path, cfg: &mut Config) -> Result<(), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let src = Src { path, text: &text };
    let doc = toml_edit::Document::parse(text.as_str())
        .map_err(|e| format!("{}: {}", src.at(e.span()), e.message().trim_end()))?;
    let root: &dyn TableLike = doc.as_table();
    for (key, item) in root.iter() {
        match key {
            "listener" => {
                let tables = item
                    .as_array_of_tables()
                    .ok_or_else(|| src.err(root, key, "`listener` must be [[listener]] tables"))?;
                for t in tables.iter() {
                    cfg.listeners.push(listener(&src, t)?);
                }
            }
            "user" => {
                let tables = item
                    .as_array_of_tables()
                    .ok_or_else(|| src.err(root, key, "`user` must be [[user]] tables"))?;
                for t in tables.iter() {
                    cfg.users.push(user(&src, t)?);
                }
            }
            "anonymous" => {
                let t = item
                    .as_table_like()
                    .ok_or_else(|| src.err(root, key, "`anonymous` must be a table"))?;
                let mut r = RightsCfg {
                    tubes: Vec::new(),
                    may: 0,
                };
                for (k, v) in t.iter() {
                    match k {
                        "tubes" => r.tubes = tubes(&src, t, k, v)?,
                        "may" => r.may = may(&src, t, k, v)?,
                        _ => return Err(src.unknown(t, k, "anonymous.")),
                    }
                }
                cfg.anonymous = Some(r);
            }
            _ => {
                let val = match item.as_value() {
                    Some(Value::String(s)) if STRINGS.contains(&key) => s.value().clone(),
                    Some(Value::Integer(n)) if NUMBERS.contains(&key) => {
                        if *n.value() < 0 {
                            return Err(src.err(
                                root,
                                key,
                                &format!("`{key}` must not be negative"),
                            ));
                        }
                        n.value().to_string()
                    }
                    Some(Value::Boolean(b)) if BOOLS.contains(&key) => b.value().to_string(),
                    _ if STRINGS.contains(&key)
                        || NUMBERS.contains(&key)
                        || BOOLS.contains(&key) =>
                    {
                        let want = if NUMBERS.contains(&key) {
                            "a number"
                        } else if BOOLS.contains(&key) {
                            "true or false"
                        } else {
                            "a string"
                        };
                        return Err(src.err(root, key, &format!("`{key}` must be {want}")));
                    }
                    _ => return Err(src.unknown(root, key, "")),
                };
                apply_long(cfg, key, val)
                    .map_err(|e| src.err(root, key, &format!("`{key}`: {e}")))?;
            }
        }
    }
    Ok(())
}

fn listener(src: &Src, t: &toml_edit::Table) -> Result<ListenerCfg, String> {
    let mut addr = None;
    let mut tls = None;
    let mut auth = AuthMode::None;
    for (k, v) in t.iter() {
        match k {
            "addr" => addr = Some(src.string(t, k, v)?),
            "auth" => {
                let s = src.string(t, k, v)?;
                auth = AuthMode::parse(&s).ok_or_else(|| {
                    src.err(
                        t,
                        k,
                        &format!("`auth` must be none, token, mtls or peercred, not {s}"),
                    )
                })?;
            }
            "tls" => {
                let tt = v.as_table_like().ok_or_else(|| {
                    src.err(t, k, "`tls` must be a table { cert, key, client-ca }")
                })?;
                let (mut cert, mut key, mut ca) = (None, None, None);
                for (kk, vv) in tt.iter() {
                    let p = PathBuf::from(src.string(tt, kk, vv)?);
                    match kk {
                        "cert" => cert = Some(p),
                        "key" => key = Some(p),
                        "client-ca" => ca = Some(p),
                        _ => return Err(src.unknown(tt, kk, "listener.tls.")),
                    }
                }
                let (Some(cert), Some(key)) = (cert, key) else {
                    return Err(src.err(t, k, "`tls` needs cert and key"));
                };
                tls = Some(TlsFiles {
                    cert,
                    key,
                    client_ca: ca,
                });
            }
            _ => return Err(src.unknown(t, k, "listener.")),
        }
    }
    let addr = addr.ok_or_else(|| format!("{}: [[listener]] without addr", src.at(t.span())))?;
    Ok(ListenerCfg { addr, tls, auth })
}

fn user(src: &Src, t: &toml_edit::Table) -> Result<UserCfg, String> {
    let mut u = UserCfg {
        name: String::new(),
        token_sha256: None,
        cert_subject: None,
        unix_uid: None,
        tubes: Vec::new(),
        may: 0,
    };
    for (k, v) in t.iter() {
        match k {
            "name" => u.name = src.string(t, k, v)?,
            "token-sha256" => {
                let s = src.string(t, k, v)?;
                u.token_sha256 =
                    Some(parse_sha256(&s).map_err(|e| src.err(t, k, &format!("`{k}`: {e}")))?);
            }
            "cert-subject" => {
                let s = src.string(t, k, v)?;
                crate::tls::parse_subject(&s).map_err(|e| src.err(t, k, &format!("`{k}`: {e}")))?;
                u.cert_subject = Some(s);
            }
            "unix-uid" => {
                let n = v
                    .as_integer()
                    .filter(|n| (0..=i64::from(u32::MAX)).contains(n))
                    .ok_or_else(|| src.err(t, k, "`unix-uid` must be a uid (a number)"))?;
                u.unix_uid = Some(n as u32);
            }
            "tubes" => u.tubes = tubes(src, t, k, v)?,
            "may" => u.may = may(src, t, k, v)?,
            _ => return Err(src.unknown(t, k, "user.")),
        }
    }
    if u.name.is_empty() {
        return Err(format!("{}: [[user]] without name", src.at(t.span())));
    }
    if u.token_sha256.is_none() && u.cert_subject.is_none() && u.unix_uid.is_none() {
        return Err(format!(
            "{}: user {} has no token-sha256, cert-subject or unix-uid",
            src.at(t.span()),
            u.name
        ));
    }
    Ok(u)
}

fn tubes(src: &Src, t: &dyn TableLike, k: &str, v: &Item) -> Result<Vec<String>, String> {
    let list = src.strings(t, k, v)?;
    for p in &list {
        let name = p.strip_suffix('*').unwrap_or(p);
        let ok = name.len() <= sprout_protocol::MAX_TUBE_NAME
            && !name.contains('*')
            && (p.ends_with('*') || !name.is_empty())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b));
        if !ok {
            return Err(src.err(
                t,
                k,
                &format!("`tubes`: {p:?} is not a tube name or a name prefix ending in *"),
            ));
        }
    }
    Ok(list)
}

fn may(src: &Src, t: &dyn TableLike, k: &str, v: &Item) -> Result<u8, String> {
    let mut bits = 0;
    for c in src.strings(t, k, v)? {
        bits |= CLASSES
            .iter()
            .find(|(n, _)| *n == c)
            .map(|(_, b)| *b)
            .ok_or_else(|| {
                src.err(
                    t,
                    k,
                    &format!("`may`: {c:?} is not produce, consume, inspect or admin"),
                )
            })?;
    }
    Ok(bits)
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
    )
}

fn classes(may: u8) -> String {
    let names: Vec<String> = CLASSES
        .iter()
        .filter(|(_, b)| may & b != 0)
        .map(|(n, _)| n.to_string())
        .collect();
    list(&names)
}

/// What secrets print as.
pub(crate) const MASK: &str = "********";

/// The effective configuration as TOML, secrets (token hashes) masked.
pub fn print(cfg: &Config) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# sproutd's effective configuration: {}, then the command line",
        cfg.config_file
            .as_ref()
            .map_or("defaults".to_string(), |p| format!(
                "defaults, {}",
                p.display()
            ))
    );
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(o, "{k} = {v}");
    };
    if let Some(l) = &cfg.listen {
        kv("listen", q(l));
    }
    kv("port", cfg.port.to_string());
    kv("max-job-size", cfg.max_job_size.to_string());
    if let Some(d) = &cfg.binlog_dir {
        kv("binlog-dir", qp(d));
    }
    match cfg.fsync_ms {
        Some(ms) => kv("fsync-ms", ms.to_string()),
        None => kv("no-fsync", "true".into()),
    }
    kv("binlog-size", cfg.binlog_size.to_string());
    if let Some(u) = &cfg.user {
        kv("user", q(u));
    }
    kv("verbose", cfg.verbosity.to_string());
    kv("log-format", q(cfg.log_format.name()));
    kv("binlog-salvage", cfg.binlog_salvage.to_string());
    kv("strict", cfg.strict.to_string());
    if let Some(p) = &cfg.policy_file {
        kv("policy-file", qp(p));
    }
    if let Some(m) = &cfg.metrics {
        kv(if cfg.http { "http" } else { "metrics" }, q(m));
    }
    kv("metrics-tube-cap", cfg.metrics_tube_cap.to_string());
    if let Some(p) = &cfg.metrics_tls_cert {
        kv("metrics-tls-cert", qp(p));
    }
    if let Some(p) = &cfg.metrics_tls_key {
        kv("metrics-tls-key", qp(p));
    }
    if cfg.metrics_token_sha256.is_some() {
        kv("metrics-token-sha256", q(MASK));
    }
    if let Some(n) = cfg.max_connections {
        kv("max-connections", n.to_string());
    }
    if let Some(n) = cfg.max_jobs {
        kv("max-jobs", n.to_string());
    }
    if let Some(n) = cfg.max_memory {
        kv("max-memory", n.to_string());
    }
    if let Some(n) = cfg.node_id {
        kv("node-id", n.to_string());
    }
    if !cfg.cluster.is_empty() {
        let list: Vec<String> = cfg
            .cluster
            .iter()
            .map(|(i, a)| format!("{i}={a}"))
            .collect();
        kv("cluster", q(&list.join(",")));
    }
    if let Some(a) = &cfg.cluster_bind {
        kv("cluster-bind", q(a));
    }
    if let Some(a) = &cfg.tls_listen {
        kv("tls-listen", q(a));
    }
    if let Some(p) = &cfg.tls_cert {
        kv("tls-cert", qp(p));
    }
    if let Some(p) = &cfg.tls_key {
        kv("tls-key", qp(p));
    }
    if let Some(p) = &cfg.tls_client_ca {
        kv("tls-client-ca", qp(p));
    }
    if let Some(a) = cfg.tls_auth {
        kv("tls-auth", q(a.name()));
    }
    if let Some(a) = &cfg.anonymous {
        let _ = writeln!(
            o,
            "\n[anonymous]\ntubes = {}\nmay = {}",
            list(&a.tubes),
            classes(a.may)
        );
    }
    for l in &cfg.listeners {
        let _ = writeln!(o, "\n[[listener]]\naddr = {}", q(&l.addr));
        if let Some(t) = &l.tls {
            let _ = write!(o, "tls = {{ cert = {}, key = {}", qp(&t.cert), qp(&t.key));
            if let Some(ca) = &t.client_ca {
                let _ = write!(o, ", client-ca = {}", qp(ca));
            }
            let _ = writeln!(o, " }}");
        }
        let _ = writeln!(o, "auth = {}", q(l.auth.name()));
    }
    for u in &cfg.users {
        let _ = writeln!(o, "\n[[user]]\nname = {}", q(&u.name));
        if u.token_sha256.is_some() {
            let _ = writeln!(o, "token-sha256 = {}", q(MASK));
        }
        if let Some(s) = &u.cert_subject {
            let _ = writeln!(o, "cert-subject = {}", q(s));
        }
        if let Some(uid) = u.unix_uid {
            let _ = writeln!(o, "unix-uid = {uid}");
        }
        let _ = writeln!(o, "tubes = {}\nmay = {}", list(&u.tubes), classes(u.may));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, String> {
        let dir = std::env::temp_dir().join(format!("sproutd-conffile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!(
            "{:x}.toml",
            text.len() * 7919 + text.as_bytes()[0] as usize
        ));
        std::fs::write(&p, text).unwrap();
        let mut cfg = Config::default();
        let r = load(&p, &mut cfg).map(|_| cfg);
        let _ = std::fs::remove_file(&p);
        r.map_err(|e| e.replace(&p.display().to_string(), "FILE"))
    }

    #[test]
    fn keys_tables_and_errors() {
        let c = load_str(
            "port = 11400\nmax-job-size = 100\nstrict = true\nno-fsync = true\n\
             [anonymous]\ntubes = [\"pub-*\"]\nmay = [\"inspect\"]\n\
             [[listener]]\naddr = \"127.0.0.1:11401\"\nauth = \"token\"\n\
             tls = { cert = \"c.pem\", key = \"k.pem\" }\n\
             [[user]]\nname = \"mailer\"\ntubes = [\"emails\", \"emails-*\"]\nmay = [\"produce\", \"consume\"]\n\
             token-sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
        )
        .unwrap();
        assert_eq!(c.port, 11400);
        assert_eq!(c.max_job_size, 100);
        assert!(c.strict);
        assert_eq!(c.fsync_ms, None);
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].auth, AuthMode::Token);
        assert_eq!(
            c.users[0].may,
            crate::access::PRODUCE | crate::access::CONSUME
        );
        assert_eq!(
            c.anonymous.as_ref().unwrap().tubes,
            vec!["pub-*".to_string()]
        );
        let printed = print(&c);
        assert!(printed.contains("token-sha256 = \"********\""), "{printed}");
        assert!(!printed.contains("9f86d0"), "{printed}");
        // What it prints reads back (masked secrets aside).
        let back = load_str(&printed.replace(
            MASK,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ))
        .unwrap();
        assert_eq!(back, c);

        assert_eq!(
            load_str("port = 1\n\nbogus = 2\n").unwrap_err(),
            "FILE:3: unknown key `bogus`"
        );
        assert_eq!(
            load_str("[[user]]\nname = \"a\"\nunix-uid = 5\ncolour = \"red\"\n").unwrap_err(),
            "FILE:4: unknown key `user.colour`"
        );
        assert_eq!(
            load_str("port = \"x\"\n").unwrap_err(),
            "FILE:1: `port` must be a number"
        );
        assert!(
            load_str("[[user]]\nname = \"a\"\nunix-uid = 1\nmay = [\"fly\"]\n")
                .unwrap_err()
                .starts_with("FILE:4: `may`")
        );
        assert!(load_str("port = = 1\n")
            .unwrap_err()
            .starts_with("FILE:1: "));
    }
}
