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

/// With stderr a pipe (a file, journald), the log has no terminal escape codes, and a
/// shutdown by signal is an INFO line, not a warning.
#[test]
fn logs_plain_and_shutdown_at_info() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let mut s = Server::start_with(&[], |c| {
            c.stderr(Stdio::piped());
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
        let text = String::from_utf8_lossy(&log);
        assert!(!log.contains(&0x1b), "escape codes in the log:\n{text}");
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{name}: shutting down")))
            .unwrap_or_else(|| panic!("no shutdown line for {name}:\n{text}"));
        assert!(line.contains(" INFO "), "not at INFO: {line}");
        assert!(
            !text.contains("WARN"),
            "a warning in a clean start and stop:\n{text}"
        );
    }
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
