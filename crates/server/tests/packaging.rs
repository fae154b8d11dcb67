//! What the packaging relies on: readiness notification for systemd's Type=notify
//! (`$NOTIFY_SOCKET`, path and abstract names), logs without colour codes when stderr is
//! not a terminal and a SIGTERM/SIGINT shutdown logged at INFO, the sproutd(8) page made
//! from the usage text (renders without warnings, names every flag), and the systemd
//! units in packaging/systemd (`systemd-analyze verify` finds nothing to say).

mod common;

use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The next datagram on `sock` (bounded by its read timeout), as text.
fn recv(sock: &UnixDatagram, what: &str) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no {what} on NOTIFY_SOCKET: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn has_line(msg: &str, line: &str) -> bool {
    msg.lines().any(|l| l == line)
}

/// READY=1 comes only once the port accepts connections and the binlog is recovered:
/// the jobs of the previous run are there on the first connection made after it, with no
/// retry. STOPPING=1 comes on SIGTERM.
#[test]
fn notify_ready_after_listening_and_recovery() {
    let dir = TempDir::new("notify");
    let binlog = dir.join("binlog");
    std::fs::create_dir(&binlog).unwrap();
    let b = binlog.to_str().unwrap();
    const JOBS: u64 = 3000;
    {
        let mut s = Server::start(&["-b", b]);
        let mut c = s.conn();
        assert_eq!(c.cmd("use kept"), "USING kept");
        for i in 0..JOBS {
            c.put(0, 0, 60, format!("job {i}").as_bytes());
        }
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(Duration::from_secs(10)).success());
    }

    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(READY_TIMEOUT)).unwrap();
    let port = free_port();
    let mut cmd = sproutd();
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-b", b])
        .env("NOTIFY_SOCKET", &path);
    let mut s = Server {
        child: cmd.spawn().expect("spawn sproutd"),
        addr: Addr::Tcp(port),
        startup: Duration::ZERO,
    };
    let msg = recv(&sock, "READY=1");
    assert!(has_line(&msg, "READY=1"), "first notification: {msg:?}");
    let mut c = Conn::try_connect(&s.addr)
        .expect("the port accepts connections as soon as READY=1 has been sent");
    let stats = c.yaml("stats");
    assert_eq!(stats["pid"], s.pid().to_string());
    assert_eq!(
        stats["current-jobs-ready"],
        JOBS.to_string(),
        "recovered jobs"
    );
    let tube = c.yaml("stats-tube kept");
    assert_eq!(tube["current-jobs-ready"], JOBS.to_string());

    s.signal(libc::SIGTERM);
    let msg = recv(&sock, "STOPPING=1");
    assert!(
        has_line(&msg, "STOPPING=1"),
        "notification on SIGTERM: {msg:?}"
    );
    assert!(s.wait_exit(Duration::from_secs(10)).success());
}

/// `@name` is a socket in the abstract namespace, as systemd may give.
#[test]
fn notify_abstract_socket() {
    let name = format!("sproutd-it-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).expect("bind an abstract socket");
    sock.set_read_timeout(Some(READY_TIMEOUT)).unwrap();
    let s = Server::start_with(&[], |c| {
        c.env("NOTIFY_SOCKET", format!("@{name}"));
    });
    let msg = recv(&sock, "READY=1");
    assert!(has_line(&msg, "READY=1"), "{msg:?}");
    s.signal(libc::SIGINT);
    assert!(has_line(&recv(&sock, "STOPPING=1"), "STOPPING=1"));
}

/// Runs sproutd with `flags` and stderr piped; with a client that connects, asks for
/// `stats` and hangs up (the server is stopped once it has counted that connection out),
/// then `sig`. Returns the whole log.
fn log_of_a_session(flags: &[&str], sig: i32) -> String {
    let mut s = Server::start_with(flags, |c| {
        c.stderr(Stdio::piped());
    });
    {
        let mut c = s.conn();
        c.yaml("stats");
    }
    // Server::start's connection and ours are closed once a new one is the only one open
    // (each check is a new connection, closed before the next).
    wait_until("the earlier connections closed", || {
        s.conn().yaml("stats")["current-connections"] == "1"
    });
    s.signal(sig);
    assert!(s.wait_exit(Duration::from_secs(10)).success());
    let mut log = Vec::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut log)
        .unwrap();
    assert!(
        !log.contains(&0x1b),
        "escape codes in the log:\n{}",
        String::from_utf8_lossy(&log)
    );
    String::from_utf8(log).expect("the log is UTF-8")
}

/// With stderr a pipe (a file, journald), the log has no terminal escape codes, and a
/// shutdown by signal is an INFO line, not a warning. Without -V, no connection lines.
#[test]
fn logs_plain_and_shutdown_at_info() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let text = log_of_a_session(&[], sig);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{name}: shutting down")))
            .unwrap_or_else(|| panic!("no shutdown line for {name}:\n{text}"));
        assert!(line.contains(" INFO "), "not at INFO: {line}");
        assert!(
            !text.contains("WARN"),
            "a warning in a clean start and stop:\n{text}"
        );
        assert!(
            !text.contains("accepted from"),
            "connection lines without -V:\n{text}"
        );
    }
}

/// `-V`: one line when a connection is accepted (with its peer) and one when it closes.
#[test]
fn verbose_logs_one_line_per_connection_event() {
    let text = log_of_a_session(&["-V"], libc::SIGTERM);
    let accepted: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("accepted from 127.0.0.1:") && l.contains("(plain)"))
        .collect();
    let closed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": closed (127.0.0.1:"))
        .collect();
    // Server::start's readiness probe, ours, and the wait's checks (at least one).
    assert!(accepted.len() >= 3, "accept lines:\n{text}");
    assert!(closed.len() >= 2, "close lines:\n{text}");
    for l in accepted.iter().chain(&closed) {
        assert!(l.contains(" DEBUG "), "connection line not at DEBUG: {l}");
    }
}

/// `--log-format json`: every line one JSON object with a timestamp, a level and the
/// message; connection events and the shutdown line among them.
#[test]
fn json_logs_one_object_a_line() {
    let text = log_of_a_session(&["-V", "--log-format", "json"], libc::SIGTERM);
    let mut messages = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        let level = v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        let msg = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {line}"));
        messages.push((level.to_string(), msg.to_string()));
    }
    assert!(
        messages
            .iter()
            .any(|(l, m)| l == "INFO" && m.starts_with("sproutd ")),
        "no startup line: {messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|(l, m)| l == "DEBUG" && m.contains("accepted from 127.0.0.1:")),
        "no accept line: {messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|(l, m)| l == "INFO" && m == "SIGTERM: shutting down"),
        "no shutdown line: {messages:?}"
    );
    // A bad value is refused like any bad flag (exit 5, naming the flag).
    let (st, _, err) = run_to_exit(&["--log-format", "xml"]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(err.contains("--log-format"), "{err}");
}

fn groff() -> &'static str {
    let ok = Command::new("groff")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        "groff, to render manual pages (apt-get install groff-base)",
        ok,
    );
    "groff"
}

/// Runs `groff -man -ww` on `page` (warnings on): it must say nothing. Returns the page as
/// plain text.
pub fn render_man(page: &[u8]) -> String {
    let dir = TempDir::new("man");
    let file = dir.join("page");
    std::fs::write(&file, page).unwrap();
    let lint = Command::new(groff())
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        lint.status.success() && lint.stderr.is_empty() && lint.stdout.is_empty(),
        "groff: {}\n{}",
        lint.status,
        String::from_utf8_lossy(&lint.stderr)
    );
    let text = Command::new(groff())
        .args(["-man", "-Tascii", "-P-cbu"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(text.status.success());
    String::from_utf8(text.stdout).unwrap()
}

/// The roff source with font changes and escapes taken out, to look for flags in.
fn plain_roff(page: &str) -> String {
    page.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\&", "")
}

#[test]
fn man_page_renders_and_lists_every_flag() {
    let out = Command::new(&*BIN).arg("--man").output().unwrap();
    assert!(out.status.success());
    let text = render_man(&out.stdout);
    assert!(
        text.contains("SPROUTD(8)") && text.contains("OPTIONS"),
        "{text}"
    );
    let page = plain_roff(&String::from_utf8(out.stdout).unwrap());
    let (st, _, help) = run_to_exit(&["-h"]);
    assert!(st.success());
    let names = sproutd::man::option_names(&help);
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let found = page
            .match_indices(&name)
            .any(|(i, _)| !page[i + name.len()..].starts_with(|c: char| c.is_alphanumeric()));
        assert!(found, "{name} (in --help) is not in sproutd(8)");
    }
}

#[test]
fn systemd_units_verify() {
    let analyze = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        "systemd-analyze, to check the units (apt-get install systemd)",
        analyze,
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd");
    let dir = TempDir::new("units");
    // The installed path does not exist here: verify the units with the built binary.
    let service = std::fs::read_to_string(src.join("sproutd.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/sproutd "));
    let service = service.replace("/usr/bin/sproutd", BIN.to_str().unwrap());
    std::fs::write(dir.join("sproutd.service"), service).unwrap();
    std::fs::copy(src.join("sproutd.socket"), dir.join("sproutd.socket")).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("sproutd.service"))
        .arg(dir.join("sproutd.socket"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The config file the package installs as /etc/sprout/sproutd.toml loads as it is (the
/// service's listener and binlog directory), and so does every example in it once its
/// line is uncommented (placeholders filled in): the comments do not lie about the keys.
#[test]
fn packaged_config_loads_with_its_examples() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/debian/sproutd.toml");
    let service = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/sproutd.service"),
    )
    .unwrap();
    assert!(
        service.contains("\nExecStart=/usr/bin/sproutd --config /etc/sprout/sproutd.toml\n"),
        "the unit does not start sproutd with the packaged config"
    );
    let (st, out, err) = run_to_exit(&["--config", src.to_str().unwrap(), "--print-config"]);
    assert!(st.success(), "{err}");
    for line in [
        "listen = \"127.0.0.1\"",
        "port = 11300",
        "binlog-dir = \"/var/lib/sprout\"",
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    }
    // Every commented `key = value` and `[table]` line, uncommented.
    let text = std::fs::read_to_string(&src).unwrap();
    let mut examples = String::new();
    let mut uncommented = 0;
    for line in text.lines() {
        let body = line.strip_prefix("# ").unwrap_or("");
        let is_example = body.starts_with('[')
            || body.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if is_example {
            uncommented += 1;
            let body = match body.split_once(" = \"<") {
                Some((k, _)) => format!("{k} = \"{}\"", "0".repeat(64)),
                None => body.to_string(),
            };
            examples.push_str(&body);
        } else {
            examples.push_str(line);
        }
        examples.push('\n');
    }
    assert!(uncommented > 20, "only {uncommented} examples found");
    // `no-fsync` and `fsync-ms` both set is allowed (the later wins); the file loads.
    let dir = TempDir::new("conf-examples");
    let path = dir.join("all.toml");
    std::fs::write(&path, &examples).unwrap();
    let (st, out, err) = run_to_exit(&["--config", path.to_str().unwrap(), "--print-config"]);
    assert!(st.success(), "the examples do not load: {err}\n{examples}");
    assert!(out.contains("[[listener]]"), "{out}");
    assert!(out.contains("[[user]]"), "{out}");
}

/// As under sproutd.socket: systemd-socket-activate listens, starts sproutd on the first
/// connection with the socket as fd 3 (LISTEN_FDS), and sproutd, which was given other
/// -l/-p flags, serves that socket, answers the connection that started it, and sends
/// READY=1.
#[test]
fn socket_activation_with_notify() {
    let ok = Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        "systemd-socket-activate, to hand sproutd a socket (apt-get install systemd)",
        ok,
    );
    let dir = TempDir::new("activate");
    let path = dir.join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(READY_TIMEOUT)).unwrap();
    let port = free_port();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--setenv=NOTIFY_SOCKET={}", path.display()))
        .arg(&*BIN)
        .args(["-l", "127.0.0.1", "-p", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut s = Server {
        child: cmd.spawn().expect("spawn systemd-socket-activate"),
        addr: Addr::Tcp(port),
        startup: Duration::ZERO,
    };
    // The first connection starts sproutd (which then answers it).
    let mut c = None;
    wait_until("systemd-socket-activate listening", || {
        c = Conn::try_connect(&s.addr).ok();
        c.is_some()
    });
    let mut c = c.unwrap();
    let msg = recv(&sock, "READY=1");
    assert!(has_line(&msg, "READY=1"), "{msg:?}");
    let stats = c.yaml("stats");
    // systemd-socket-activate execs sproutd in its own process.
    assert_eq!(stats["pid"], s.pid().to_string());
    s.signal(libc::SIGTERM);
    assert!(has_line(&recv(&sock, "STOPPING=1"), "STOPPING=1"));
    assert!(s.wait_exit(Duration::from_secs(10)).success());
}
