//! End-to-end tests of the CLI's TLS and token options against a real sproutd with TLS
//! listeners: `--ca`, `--tls-server-name`, `--cert`/`--key` on an mTLS listener, `--token`
//! and `SPROUT_TOKEN` on a token listener, the failures (wrong CA, wrong name, no client
//! certificate, wrong or missing token) with their exit codes, every subcommand that
//! connects, `bench` and `work` over TLS, and `sprout token new`.
//!
//! Certificates are made per test with rcgen (`pki/mod.rs`, shared with the client
//! crate's tests): a CA, a server certificate for 127.0.0.1 and localhost, a client
//! certificate (CN=tester), and a second, unrelated CA. Every wait is a bounded poll of a
//! condition; every process has a deadline.

#[path = "../../server/tests/common/mod.rs"]
mod common;
#[path = "../../server/tests/pki/mod.rs"]
mod pki;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;
use pki::*;

const SPROUT: &str = env!("CARGO_BIN_EXE_sprout");
/// Deadline for one sprout run.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// A token no user has.
const WRONG_TOKEN: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    fn fails(&self, code: i32, msg: &str) {
        assert!(
            self.code == code && self.stderr.contains(msg),
            "expected exit {code} with {msg:?}; got {}: stdout {:?} stderr {:?}",
            self.code,
            self.stdout,
            self.stderr
        );
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).expect("JSON on stdout")
    }
}

/// Runs `sprout args…` with `env` (SPROUT_* from the caller's environment cleared),
/// bounded by RUN_TIMEOUT.
fn sprout_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let dir = TempDir::new("out");
    let mut cmd = Command::new(SPROUT);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("stdout")).unwrap())
        .stderr(fs::File::create(dir.join("stderr")).unwrap());
    for k in [
        "SPROUT_ADDR",
        "SPROUT_TOKEN",
        "SPROUT_CA",
        "SPROUT_CERT",
        "SPROUT_KEY",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sprout");
    let st = wait_exit(&mut child, RUN_TIMEOUT)
        .unwrap_or_else(|| panic!("sprout {args:?} did not exit within {RUN_TIMEOUT:?}"));
    Out {
        code: st.code().unwrap_or(-1),
        stdout: fs::read_to_string(dir.join("stdout")).unwrap(),
        stderr: fs::read_to_string(dir.join("stderr")).unwrap(),
    }
}

fn sprout(args: &[&str]) -> Out {
    sprout_env(args, &[])
}

fn ready_count(stats: &Value) -> u64 {
    stats["current-jobs-ready"]
        .as_u64()
        .expect("current-jobs-ready")
}

#[test]
fn put_and_stats_over_tls_with_ca() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "none");
    let ca = Pki::s(&pki.ca);
    let a = s.tls_addr.as_str();
    let id = sprout(&["-a", a, "--ca", &ca, "put", "over tls"]);
    let id: u64 = id.ok().trim().parse().expect("an id");
    let st = sprout(&["-a", a, "--ca", &ca, "stats", "--json"]).json();
    assert_eq!(ready_count(&st), 1);
    // The job is the same seen over the plain listener.
    let mut c = s.server.conn();
    assert_eq!(c.peek(&format!("peek {id}")).1, b"over tls");
    // SPROUT_CA works as --ca does (and implies TLS).
    let st = sprout_env(&["-a", a, "stats", "--json"], &[("SPROUT_CA", &ca)]).json();
    assert_eq!(ready_count(&st), 1);
    // By name: the certificate carries localhost too.
    let by_name = format!("localhost:{}", a.rsplit(':').next().unwrap());
    let st = sprout(&["-a", &by_name, "--ca", &ca, "stats", "--json"]).json();
    assert_eq!(ready_count(&st), 1);
}

#[test]
fn tls_verification_failures_exit_2() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "none");
    let a = s.tls_addr.as_str();
    // A CA that did not sign the server's certificate.
    sprout(&["-a", a, "--ca", &Pki::s(&pki.other_ca), "stats"])
        .fails(2, "TLS handshake failed: invalid peer certificate");
    // The built-in public roots do not know the test CA either.
    sprout(&["-a", a, "--tls", "stats"]).fails(2, "invalid peer certificate");
    // A name the certificate does not carry.
    sprout(&[
        "-a",
        a,
        "--ca",
        &Pki::s(&pki.ca),
        "--tls-server-name",
        "queue.example.com",
        "stats",
    ])
    .fails(2, "invalid peer certificate");
    // The right name given explicitly.
    sprout(&[
        "-a",
        a,
        "--ca",
        &Pki::s(&pki.ca),
        "--tls-server-name",
        "localhost",
        "stats",
    ])
    .ok();
    // Plain to the TLS listener: no reply that is the protocol.
    let out = sprout(&["-a", a, "stats"]);
    assert_eq!(out.code, 2, "{:?}", out.stderr);
    // TLS to the plain listener: sproutd waits for the end of a command line that never
    // comes, and the handshake times out (10 s).
    sprout(&["-a", &s.plain_addr(), "--ca", &Pki::s(&pki.ca), "stats"])
        .fails(2, "TLS handshake failed: the server did not answer");
}

#[test]
fn bad_tls_options_exit_1() {
    let pki = Pki::new();
    sprout(&["-a", "127.0.0.1:1", "--ca", "/nonexistent/ca.pem", "stats"])
        .fails(1, "--ca /nonexistent/ca.pem");
    sprout(&[
        "-a",
        "127.0.0.1:1",
        "--cert",
        &Pki::s(&pki.client_cert),
        "stats",
    ])
    .fails(1, "--cert needs --key");
    // A key file given as the CA: no certificate in it.
    sprout(&[
        "-a",
        "127.0.0.1:1",
        "--ca",
        &Pki::s(&pki.client_key),
        "stats",
    ])
    .fails(1, "--ca");
    sprout(&["-a", "unix:/tmp/x.sock", "--tls", "stats"]).fails(1, "--tls-server-name");
    sprout(&["-a", "127.0.0.1:1", "--token", "two words", "stats"]).fails(1, "--token");
}

#[test]
fn mtls_with_and_without_a_client_certificate() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "mtls");
    let a = s.tls_addr.as_str();
    let ca = Pki::s(&pki.ca);
    let (cert, key) = (Pki::s(&pki.client_cert), Pki::s(&pki.client_key));
    let out = sprout(&[
        "-a", a, "--ca", &ca, "--cert", &cert, "--key", &key, "put", "m",
    ]);
    assert!(out.ok().trim().parse::<u64>().is_ok());
    let st = sprout(&[
        "-a", a, "--ca", &ca, "--cert", &cert, "--key", &key, "stats", "--json",
    ])
    .json();
    assert_eq!(ready_count(&st), 1);
    // SPROUT_CERT/SPROUT_KEY as the flags.
    sprout_env(
        &["-a", a, "stats"],
        &[
            ("SPROUT_CA", &ca),
            ("SPROUT_CERT", &cert),
            ("SPROUT_KEY", &key),
        ],
    )
    .ok();
    // No client certificate, or one from another CA: the server rejects the handshake
    // (with TLS 1.3 the client learns it at its first read).
    let out = sprout(&["-a", a, "--ca", &ca, "stats"]);
    assert_eq!(out.code, 2, "{:?}", out.stderr);
    let out = sprout(&[
        "-a",
        a,
        "--ca",
        &ca,
        "--cert",
        &Pki::s(&pki.other_client_cert),
        "--key",
        &Pki::s(&pki.other_client_key),
        "stats",
    ]);
    assert_eq!(out.code, 2, "{:?}", out.stderr);
}

#[test]
fn tokens_right_wrong_and_missing() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "token");
    let a = s.tls_addr.as_str();
    let ca = Pki::s(&pki.ca);
    let out = sprout(&["-a", a, "--ca", &ca, "--token", TOKEN, "put", "t"]);
    assert!(out.ok().trim().parse::<u64>().is_ok());
    let st = sprout_env(
        &["-a", a, "--ca", &ca, "stats", "--json"],
        &[("SPROUT_TOKEN", TOKEN)],
    )
    .json();
    assert_eq!(ready_count(&st), 1);
    // --token wins over SPROUT_TOKEN.
    sprout_env(
        &["-a", a, "--ca", &ca, "--token", TOKEN, "stats"],
        &[("SPROUT_TOKEN", WRONG_TOKEN)],
    )
    .ok();
    sprout(&["-a", a, "--ca", &ca, "--token", WRONG_TOKEN, "stats"])
        .fails(3, "the server refused the token (UNAUTHORIZED)");
    sprout_env(
        &["-a", a, "--ca", &ca, "stats"],
        &[("SPROUT_TOKEN", WRONG_TOKEN)],
    )
    .fails(3, "UNAUTHORIZED");
    sprout(&["-a", a, "--ca", &ca, "stats"]).fails(3, "--token or SPROUT_TOKEN");
    // The token is never printed.
    let out = sprout(&["-a", a, "--ca", &ca, "--token", WRONG_TOKEN, "stats"]);
    assert!(!out.stderr.contains(WRONG_TOKEN) && !out.stdout.contains(WRONG_TOKEN));
}

#[test]
fn a_token_for_a_listener_without_tokens_exits_1() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "none");
    sprout(&["-a", &s.plain_addr(), "--token", TOKEN, "stats"]).fails(1, "does not take tokens");
}

/// Every subcommand that talks to the server, over TLS with a token.
#[test]
fn every_subcommand_over_tls_with_a_token() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "token");
    let ca = Pki::s(&pki.ca);
    let base = [
        "-a",
        s.tls_addr.as_str(),
        "--ca",
        ca.as_str(),
        "--token",
        TOKEN,
    ];
    let run = |args: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(args);
        sprout(&v)
    };
    let id: u64 = run(&["put", "-t", "emails", "one"])
        .ok()
        .trim()
        .parse()
        .unwrap();
    let id2: u64 = run(&["put", "-t", "emails", "two"])
        .ok()
        .trim()
        .parse()
        .unwrap();
    assert!(run(&["stats", "--tube", "emails"])
        .ok()
        .contains("current-jobs-ready"));
    assert!(run(&["stats", "--job", &id.to_string()])
        .ok()
        .contains("emails"));
    assert!(run(&["tubes", "--json"]).ok().contains("emails"));
    assert!(run(&["peek", "--id", &id.to_string(), "--raw"])
        .ok()
        .contains("one"));
    assert!(run(&["jobs", "-t", "emails", "--json"])
        .ok()
        .contains("two"));
    run(&["policy", "emails", "max-reserves", "3"]).ok();
    assert!(run(&["policy", "emails", "--json"])
        .ok()
        .contains("max-reserves"));
    run(&["move", &id2.to_string(), "sms"]).ok();
    run(&["pause", "sms", "0"]).ok();
    run(&["kick", "1", "-t", "emails"]).ok();
    run(&["delete", &id.to_string()]).ok();
    let put = run(&["put", "-t", "emails", "--unique", "k1", "three"]);
    assert!(put.ok().trim().parse::<u64>().is_ok());
    assert!(run(&["flush", "-t", "emails", "--json"])
        .ok()
        .contains("deleted"));
    assert!(run(&["flush", "-t", "sms", "--json"])
        .ok()
        .contains("deleted"));
    let st = run(&["stats", "--json"]).json();
    assert_eq!(ready_count(&st), 0);
}

#[test]
fn bench_workloads_over_tls_with_a_token() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "token");
    let ca = Pki::s(&pki.ca);
    for w in ["put", "cycle", "handshake"] {
        let out = sprout(&[
            "-a",
            &s.tls_addr,
            "--ca",
            &ca,
            "--token",
            TOKEN,
            "bench",
            "--workload",
            w,
            "-c",
            "2",
            "--secs",
            "0.3",
            "--json",
        ]);
        let m: Value = out.json();
        assert!(m["ops"].as_u64().unwrap() > 0, "{w}: {m}");
        assert_eq!(m["errors"], 0, "{w}: {m}");
    }
}

#[test]
fn work_over_tls_with_a_token() {
    let pki = Pki::new();
    let s = TlsServer::start(&pki, "token");
    let ca = Pki::s(&pki.ca);
    let mut c = s.server.conn();
    assert_eq!(c.cmd("use jobs"), "USING jobs");
    let id = c.put(0, 0, 60, b"x");
    let dir = TempDir::new("worklog");
    let log = dir.join("log");
    let mut child = Command::new(SPROUT)
        .args([
            "-a",
            &s.tls_addr,
            "--ca",
            &ca,
            "work",
            "--tube",
            "jobs",
            "--log-format",
            "json",
            "--",
            "true",
        ])
        .env("SPROUT_TOKEN", TOKEN)
        .env_remove("SPROUT_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn sprout work");
    // The job is deleted once its COMMAND succeeded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let head = c.cmd(&format!("stats-job {id}"));
        if head == "NOT_FOUND" {
            break;
        }
        let n: usize = head.strip_prefix("OK ").unwrap().parse().unwrap();
        c.exact(n + 2);
        assert!(
            Instant::now() < deadline,
            "job not deleted; log: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("worker stops");
    assert_eq!(st.code(), Some(0));
    // A wrong token: exit 3 at start.
    let mut child = Command::new(SPROUT)
        .args([
            "-a",
            &s.tls_addr,
            "--ca",
            &ca,
            "work",
            "--tube",
            "jobs",
            "--",
            "true",
        ])
        .env("SPROUT_TOKEN", WRONG_TOKEN)
        .env_remove("SPROUT_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sprout work");
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("worker exits");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("UNAUTHORIZED"), "{err}");
}

#[test]
fn token_new_prints_a_fresh_token_and_its_hash() {
    let parse = |out: &Out| -> (String, String) {
        let text = out.ok();
        let token = text.lines().next().unwrap().to_string();
        let hash = text
            .lines()
            .find_map(|l| l.strip_prefix("token-sha256 = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("a token-sha256 line")
            .to_string();
        assert!(text.contains("[[user]]\nname = \"mailer\"\n"), "{text}");
        assert!(text.contains("# tubes = ["), "{text}");
        assert!(text.contains("# may = ["), "{text}");
        (token, hash)
    };
    let a = sprout(&["token", "new", "mailer"]);
    let b = sprout(&["token", "new", "mailer"]);
    let (ta, ha) = parse(&a);
    let (tb, hb) = parse(&b);
    assert_eq!(ta.len(), 64);
    assert!(ta.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(ha, sha256_hex(&ta));
    assert_eq!(hb, sha256_hex(&tb));
    assert_ne!(ta, tb);
    assert!(a.stderr.contains("shown only now"));
    sprout(&["token", "new", "bad name"]).fails(2, "invalid user name");
}

/// The token printed by `sprout token new`, pasted into the configuration, authenticates.
#[test]
fn a_new_token_authenticates() {
    let pki = Pki::new();
    let out = sprout(&["token", "new", "fresh"]);
    let text = out.ok();
    let token = text.lines().next().unwrap();
    let block = &text[text.find("[[user]]").unwrap()..];
    let dir = TempDir::new("tokconf");
    let conf = dir.join("sproutd.toml");
    fs::write(
        &conf,
        format!(
            "{block}tubes = [\"*\"]\nmay = [\"produce\", \"consume\", \"inspect\", \"admin\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let tls_addr = format!("127.0.0.1:{port}");
    let server = Server::start(&[
        "--config",
        &Pki::s(&conf),
        "--tls-listen",
        &tls_addr,
        "--tls-cert",
        &Pki::s(&pki.server_cert),
        "--tls-key",
        &Pki::s(&pki.server_key),
        "--tls-auth",
        "token",
    ]);
    wait_until("the TLS listener accepts", || {
        TcpStream::connect(&tls_addr).is_ok()
    });
    let ca = Pki::s(&pki.ca);
    sprout(&["-a", &tls_addr, "--ca", &ca, "--token", token, "stats"]).ok();
    sprout(&[
        "-a",
        &tls_addr,
        "--ca",
        &ca,
        "--token",
        WRONG_TOKEN,
        "stats",
    ])
    .fails(3, "UNAUTHORIZED");
    drop(server);
}
