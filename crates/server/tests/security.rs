//! TLS, authentication and per-tube permissions against the real sproutd: every auth mode
//! (none, token, mtls, peercred), mTLS with a wrong CA and without a certificate, tokens
//! wrong/right/missing, each command class allowed and denied for each command, the
//! invisibility of other users' tubes, SIGHUP reload, a stalled TLS handshake, the
//! configuration file, and /metrics over TLS with a bearer token.
//!
//! Certificates are made with rcgen (`pki/mod.rs`, shared with the CLI's and client's tests). The peercred test needs root (to run clients
//! as two other uids) and fails, not skips, without it.

mod common;
mod pki;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pki::{ca, leaf, sha256_hex};
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

// ---------------------------------------------------------------------------------------
// Certificates

/// Files of a test PKI: CA (ca.pem), server cert for localhost/127.0.0.1, client certs
/// `mailer`, `billing`, `nobody` from the CA, `mailer` from a second CA (`rogue-*`), and
/// a second server cert from the second CA (`server2-*`, for the reload test).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ca1 = ca("sprout test CA");
        let ca2 = ca("rogue CA");
        let w = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        w("ca.pem", &ca1.cert.pem());
        w("ca2.pem", &ca2.cert.pem());
        let sans = ["localhost", "127.0.0.1"];
        let (c, k) = leaf(&ca1, "sproutd", &sans, ExtendedKeyUsagePurpose::ServerAuth);
        w("server.pem", &c);
        w("server.key", &k);
        let (c, k) = leaf(&ca2, "sproutd", &sans, ExtendedKeyUsagePurpose::ServerAuth);
        w("server2.pem", &c);
        w("server2.key", &k);
        for (file, issuer, cn) in [
            ("mailer", &ca1, "mailer"),
            ("billing", &ca1, "billing"),
            ("nobody", &ca1, "nobody"),
            ("rogue", &ca2, "mailer"),
        ] {
            let (c, k) = leaf(issuer, cn, &[], ExtendedKeyUsagePurpose::ClientAuth);
            w(&format!("{file}.pem"), &c);
            w(&format!("{file}.key"), &k);
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

// ---------------------------------------------------------------------------------------
// Clients

fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A line-oriented client over any stream.
struct Line<S: Read + Write> {
    rd: BufReader<S>,
}

impl<S: Read + Write> Line<S> {
    fn new(s: S) -> Self {
        Line {
            rd: BufReader::new(s),
        }
    }

    fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.rd.get_mut().write_all(b)?;
        self.rd.get_mut().flush()
    }

    fn try_line(&mut self) -> io::Result<String> {
        let mut v = Vec::new();
        self.rd.read_until(b'\n', &mut v)?;
        if v.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        assert!(
            v.ends_with(b"\r\n"),
            "reply not CRLF-terminated: {}",
            show(&v)
        );
        v.truncate(v.len() - 2);
        Ok(String::from_utf8(v).unwrap())
    }

    fn cmd(&mut self, c: &str) -> String {
        self.send(format!("{c}\r\n").as_bytes()).expect("send");
        self.try_line().unwrap_or_else(|e| panic!("{c}: {e}"))
    }

    /// Sends `c`, reads the `OK <n>` reply's YAML body.
    fn yaml(&mut self, c: &str) -> String {
        let head = self.cmd(c);
        let n: usize = head
            .strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{c}: {head}"));
        let mut v = vec![0; n + 2];
        self.rd.read_exact(&mut v).unwrap();
        String::from_utf8(v[..n].to_vec()).unwrap()
    }

    fn list(&mut self, c: &str) -> Vec<String> {
        self.yaml(c)
            .lines()
            .filter_map(|l| l.strip_prefix("- "))
            .map(str::to_string)
            .collect()
    }

    /// True once the server has closed the connection (EOF or an error), false if a
    /// line arrives.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        !matches!(self.rd.read(&mut b), Ok(n) if n > 0)
    }
}

fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn plain(port: u16) -> Line<TcpStream> {
    Line::new(tcp(port))
}

/// A TLS connection whose handshake has completed (from the client's side).
fn tls(port: u16, cfg: &Arc<rustls::ClientConfig>) -> io::Result<Line<Tls>> {
    let mut sock = tcp(port);
    let mut conn =
        rustls::ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(Line::new(rustls::StreamOwned::new(conn, sock)))
}

fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `[[user]]` with a token.
fn token_user(name: &str, token: &str, tubes: &str, may: &str) -> String {
    format!(
        "[[user]]\nname = \"{name}\"\ntoken-sha256 = \"{}\"\ntubes = {tubes}\nmay = {may}\n\n",
        sha256_hex(token)
    )
}

fn start_with_config(path: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--config", path];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn metrics(port: u16) -> String {
    let mut s = tcp(port);
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

// ---------------------------------------------------------------------------------------
// Auth modes

#[test]
fn token_listener_auth_wrong_right_missing() {
    let dir = TempDir::new("tok");
    let port = free_port();
    let mport = free_port();
    let cfg = write_config(
        dir.path(),
        "sproutd.toml",
        &format!(
            "metrics = \"127.0.0.1:{mport}\"\n\n[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n{}",
            token_user("mailer", "s3cret", "[\"emails\"]", "[\"produce\", \"consume\"]")
        ),
    );
    let s = start_with_config(&cfg, &[]);

    // Right token; then the user's commands work (a bare `auth` again, same token: ok).
    let mut c = plain(port);
    assert_eq!(c.cmd("auth s3cret"), "AUTHENTICATED");
    assert_eq!(c.cmd("use emails"), "USING emails");
    assert_eq!(c.cmd("put 0 0 60 2\r\nhi"), "INSERTED 1");
    assert_eq!(c.cmd("auth s3cret"), "AUTHENTICATED");

    // Wrong token: UNAUTHORIZED, then the connection is closed.
    let mut w = plain(port);
    assert_eq!(w.cmd("auth nope"), "UNAUTHORIZED");
    assert!(w.closed());
    // Missing: a command before auth, or a bare auth.
    let mut m = plain(port);
    assert_eq!(m.cmd("stats"), "UNAUTHORIZED");
    assert!(m.closed());
    let mut m = plain(port);
    assert_eq!(m.cmd("put 0 0 10 5\r\nhello"), "UNAUTHORIZED");
    assert!(m.closed());
    let mut m = plain(port);
    assert_eq!(m.cmd("auth"), "UNAUTHORIZED");
    assert!(m.closed());
    // Another user's token on an authenticated connection ends it.
    assert_eq!(c.cmd("auth other"), "UNAUTHORIZED");
    assert!(c.closed());

    // `auth` is not a command on the plain listener: byte-identical to beanstalkd.
    let mut p = s.conn();
    assert_eq!(p.cmd("auth s3cret"), "UNKNOWN_COMMAND");
    assert_eq!(p.cmd("use anything"), "USING anything");

    // An unauthenticated connection is not in current-connections, is counted apart,
    // and is closed after 10 s.
    let before: u64 = p.stat("stats", "current-connections").parse().unwrap();
    let mut idle = plain(port);
    idle.rd
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    wait_until("the idle connection counted unauthenticated", || {
        metric(&metrics(mport), "sprout_unauthenticated_connections") == Some(1.0)
    });
    assert_eq!(
        p.stat("stats", "current-connections")
            .parse::<u64>()
            .unwrap(),
        before
    );
    let t0 = Instant::now();
    assert!(idle.closed(), "the idle connection is closed");
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "closed after {waited:?}, expected about 10 s"
    );
    let m = metrics(mport);
    assert_eq!(metric(&m, "sprout_unauthenticated_connections"), Some(0.0));
    assert!(metric(&m, "sprout_unauthenticated_timeouts_total") >= Some(1.0));
    assert!(metric(&m, "sprout_auth_failures_total") >= Some(5.0), "{m}");
}

#[test]
fn tls_listeners_token_none_and_mtls() {
    let pki = Pki::new();
    let (tport, mport, nport) = (free_port(), free_port(), free_port());
    let tls_table = |ca: bool| {
        format!(
            "tls = {{ cert = \"{}\", key = \"{}\"{} }}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            if ca {
                format!(", client-ca = \"{}\"", pki.path("ca.pem"))
            } else {
                String::new()
            }
        )
    };
    let cfg = write_config(
        pki.dir.path(),
        "sproutd.toml",
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:{tport}\"\nauth = \"token\"\n{}\n\
             [[listener]]\naddr = \"127.0.0.1:{mport}\"\nauth = \"mtls\"\n{}\n\
             [[listener]]\naddr = \"127.0.0.1:{nport}\"\n{}\n\
             [anonymous]\ntubes = [\"public\"]\nmay = [\"produce\"]\n\n\
             [[user]]\nname = \"mailer\"\ncert-subject = \"CN=mailer\"\ntubes = [\"emails\"]\nmay = [\"produce\", \"consume\"]\n\n\
             [[user]]\nname = \"billing\"\ncert-subject = \"CN=billing\"\ntubes = [\"invoices\"]\nmay = [\"produce\"]\n\n{}",
            tls_table(false),
            tls_table(true),
            tls_table(false),
            token_user("ops", "ops-token", "[\"*\"]", "[\"produce\", \"consume\", \"inspect\", \"admin\"]"),
        ),
    );
    let s = start_with_config(&cfg, &[]);
    let anon = client_config(&pki.path("ca.pem"), None);

    // TLS + token.
    let mut t = tls(tport, &anon).expect("TLS handshake");
    assert_eq!(t.cmd("stats"), "UNAUTHORIZED");
    assert!(t.closed());
    let mut t = tls(tport, &anon).unwrap();
    assert_eq!(t.cmd("auth ops-token"), "AUTHENTICATED");
    assert_eq!(t.cmd("use emails"), "USING emails");
    // A body larger than one TLS record, both ways.
    let big = vec![b'z'; 40_000];
    let mut m = b"put 0 0 60 40000\r\n".to_vec();
    m.extend_from_slice(&big);
    m.extend_from_slice(b"\r\n");
    t.send(&m).unwrap();
    let id = t.try_line().unwrap();
    let id = id.strip_prefix("INSERTED ").expect("inserted");
    assert_eq!(t.cmd(&format!("peek {id}")), format!("FOUND {id} 40000"));
    let mut body = vec![0; 40_002];
    t.rd.read_exact(&mut body).unwrap();
    assert_eq!(&body[..40_000], &big[..]);

    // TLS, auth none: the [anonymous] rights.
    let mut n = tls(nport, &anon).unwrap();
    assert_eq!(n.cmd("use public"), "USING public");
    assert_eq!(n.cmd("put 0 0 60 1\r\nx"), "INSERTED 2");
    assert_eq!(n.cmd("use emails"), "PERMISSION_DENIED");
    assert_eq!(n.cmd("auth ops-token"), "UNKNOWN_COMMAND");

    // mTLS: the certificate's subject picks the user.
    let mailer = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("mailer.pem"), &pki.path("mailer.key"))),
    );
    let mut c = tls(mport, &mailer).expect("mTLS handshake");
    assert_eq!(c.cmd("use emails"), "USING emails");
    assert_eq!(c.cmd("watch emails"), "WATCHING 1");
    assert_eq!(c.cmd("use invoices"), "PERMISSION_DENIED");
    let billing = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("billing.pem"), &pki.path("billing.key"))),
    );
    let mut b = tls(mport, &billing).unwrap();
    assert_eq!(b.cmd("use invoices"), "USING invoices");
    assert_eq!(b.cmd("watch invoices"), "PERMISSION_DENIED");

    // Rejected in the handshake: a certificate from another CA, or none. (With TLS 1.3
    // the client may finish its side first; then its first read fails.)
    for (what, cfg) in [
        (
            "a certificate from another CA",
            client_config(
                &pki.path("ca.pem"),
                Some((&pki.path("rogue.pem"), &pki.path("rogue.key"))),
            ),
        ),
        ("no certificate", anon.clone()),
    ] {
        match tls(mport, &cfg) {
            Err(_) => {}
            Ok(mut c) => {
                let _ = c.send(b"stats\r\n");
                assert!(c.try_line().is_err(), "{what}: served");
            }
        }
    }
    // A certificate from the CA whose subject no user has: closed at once.
    let nobody = client_config(
        &pki.path("ca.pem"),
        Some((&pki.path("nobody.pem"), &pki.path("nobody.key"))),
    );
    if let Ok(mut c) = tls(mport, &nobody) {
        let _ = c.send(b"stats\r\n");
        assert!(c.try_line().is_err(), "an unknown subject was served");
    }
    // The default listener is an `auth = "none"` listener too: [anonymous] holds there.
    let mut p = s.conn();
    assert_eq!(p.cmd("use emails"), "PERMISSION_DENIED");
    assert_eq!(p.cmd("use public"), "USING public");
}

#[test]
fn tls_listen_flags() {
    let pki = Pki::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let s = Server::start(&[
        "--tls-listen",
        &addr,
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
    ]);
    let cfg = client_config(&pki.path("ca.pem"), None);
    let mut c = tls(port, &cfg).unwrap();
    assert_eq!(c.cmd("use x"), "USING x");
    assert_eq!(c.cmd("put 0 0 60 1\r\nx"), "INSERTED 1");
    // Pipelined: 300 commands in one write, 300 replies in order.
    let many: String = (0..300).map(|i| format!("use p{i}\r\n")).collect();
    c.send(many.as_bytes()).unwrap();
    for i in 0..300 {
        assert_eq!(c.try_line().unwrap(), format!("USING p{i}"));
    }
    // A reserve blocked over TLS gets the job another connection puts.
    let mut w = tls(port, &cfg).unwrap();
    assert_eq!(w.cmd("watch later"), "WATCHING 2");
    w.send(b"reserve-with-timeout 10\r\n").unwrap();
    let mut p = s.conn();
    p.cmd("use later");
    let id = p.put(0, 0, 60, b"late");
    assert_eq!(w.try_line().unwrap(), format!("RESERVED {id} 4"));
    assert_eq!(w.try_line().unwrap(), "late");
    // A client that hangs up while blocked: its reservation goes back.
    assert_eq!(w.cmd("reserve-with-timeout 0"), "TIMED_OUT");
    w.send(b"reserve\r\n").unwrap();
    drop(w);
    wait_until("the hung-up TLS client's reservation is released", || {
        s.conn().stat(&format!("stats-job {id}"), "state") == "ready"
    });
    // A client that does not trust the server's CA fails its handshake.
    assert!(tls(port, &client_config(&pki.path("ca2.pem"), None)).is_err());
    // TLS 1.2 and 1.3 are both served.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let only = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let mut c = tls(port, &only).expect("handshake");
        assert_eq!(c.cmd("use v"), "USING v");
        let got = c.rd.get_ref().conn.protocol_version();
        assert_eq!(got, Some(version.version));
    }
}

/// Peercred: clients running as two uids get their users' rights. They are this test
/// binary run again as the other uid (see `peercred_client`).
#[test]
fn peercred_two_uids() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    require(
        "the peercred test runs clients as uids 4101 and 4102, which needs root (it runs as root in CI)",
        euid == 0,
    );
    let dir = TempDir::new("peer");
    let sock = dir.join("s.sock");
    let cfg = write_config(
        dir.path(),
        "sproutd.toml",
        &format!(
            "[[listener]]\naddr = \"unix:{}\"\nauth = \"peercred\"\n\n\
             [[user]]\nname = \"alice\"\nunix-uid = 4101\ntubes = [\"a-*\"]\nmay = [\"produce\", \"inspect\"]\n\n\
             [[user]]\nname = \"bob\"\nunix-uid = 4102\ntubes = [\"b-*\"]\nmay = [\"produce\", \"inspect\"]\n",
            sock.display()
        ),
    );
    let s = start_with_config(&cfg, &[]);
    wait_until("the unix listener", || sock.exists());
    // Let other uids connect (connect(2) needs write permission on the socket file).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The test binary, where the other uids can run it.
    let exe = dir.join("client");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run_as = |uid: u32, cmds: &[&str]| -> Vec<String> {
        use std::os::unix::process::CommandExt;
        let out = std::process::Command::new(&exe)
            .args([
                "peercred_client",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SPROUT_PEERCRED_SOCK", &sock)
            .env("SPROUT_PEERCRED_CMDS", cmds.join("|"))
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .output()
            .expect("run the client as another uid");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "client as uid {uid} failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest may print "test peercred_client ... " just before the first line.
        text.lines()
            .filter_map(|l| Some(l[l.find("REPLY: ")? + 7..].to_string()))
            .collect()
    };
    let alice = run_as(
        4101,
        &["use a-1", "put 0 0 60 1\r\nx", "use b-1", "list-tube-used"],
    );
    assert_eq!(
        alice,
        vec!["USING a-1", "INSERTED 1", "PERMISSION_DENIED", "USING a-1"]
    );
    let bob = run_as(4102, &["use b-1", "peek 1", "use a-1", "put 0 0 60 1\r\ny"]);
    assert_eq!(
        bob,
        vec!["USING b-1", "NOT_FOUND", "PERMISSION_DENIED", "INSERTED 2"]
    );
    // Root has no user here: closed at once.
    let mut c = Line::new(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    c.rd.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = c.send(b"stats\r\n");
    assert!(c.closed());
    assert_eq!(s.conn().stat("stats-tube a-1", "current-jobs-ready"), "1");
}

/// Not a test on its own: the client `peercred_two_uids` runs as another uid (it does
/// nothing unless that test set its environment).
#[test]
fn peercred_client() {
    let Ok(sock) = std::env::var("SPROUT_PEERCRED_SOCK") else {
        return;
    };
    let cmds = std::env::var("SPROUT_PEERCRED_CMDS").unwrap();
    let s = std::os::unix::net::UnixStream::connect(sock).expect("connect as another uid");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut c = Line::new(s);
    for cmd in cmds.split('|') {
        println!("REPLY: {}", c.cmd(cmd));
    }
}

// ---------------------------------------------------------------------------------------
// Permissions

/// One command: its class, how to prepare its job (admin side), what the restricted
/// connection does first, the command, and the start of its reply when allowed.
struct Row {
    class: &'static str,
    /// The job the command is about: put by the admin connection in the row's tube, in
    /// this state ("ready", "buried", "delayed"), or none.
    job: Option<&'static str>,
    before: &'static [&'static str],
    cmd: &'static str,
    ok: &'static str,
    /// Who is denied (default: the user with every class but this one).
    deny_as: Option<&'static str>,
}

const fn row(
    class: &'static str,
    job: Option<&'static str>,
    before: &'static [&'static str],
    cmd: &'static str,
    ok: &'static str,
) -> Row {
    Row {
        class,
        job,
        before,
        cmd,
        ok,
        deny_as: None,
    }
}

/// A row whose denied user is `who`: `use` is also open to inspect and admin (it picks
/// the tube of peek-ready and kick); deleting or reprioritizing a job one holds is
/// consume, anyone else's admin.
const fn denied_as(r: Row, who: &'static str) -> Row {
    Row {
        deny_as: Some(who),
        ..r
    }
}

const R: Option<&str> = Some("ready");

/// Every command that touches a tube or a job, with its class ({t}: the row's tube,
/// {id}: its job).
const ROWS: &[Row] = &[
    row(
        "produce",
        None,
        &["use {t}"],
        "put 0 0 60 1\r\nx",
        "INSERTED",
    ),
    row(
        "produce",
        None,
        &["use {t}"],
        "put-unique k 0 0 60 1\r\nx",
        "INSERTED",
    ),
    denied_as(
        row("produce", None, &[], "use {t}", "USING {t}"),
        "only-consume",
    ),
    row("consume", None, &[], "watch {t}", "WATCHING 1"),
    row(
        "consume",
        None,
        &["watch {t}"],
        "ignore default",
        "WATCHING 1",
    ),
    row(
        "consume",
        R,
        &["watch {t}"],
        "reserve-with-timeout 0",
        "RESERVED {id}",
    ),
    row("consume", R, &["watch {t}"], "reserve", "RESERVED {id}"),
    row(
        "consume",
        R,
        &["watch {t}"],
        "reserve-batch 5 0",
        "RESERVED_BATCH 1",
    ),
    row("consume", R, &[], "reserve-job {id}", "RESERVED {id}"),
    row(
        "consume",
        R,
        &["reserve-job {id}"],
        "release {id} 0 0",
        "RELEASED",
    ),
    row("consume", R, &["reserve-job {id}"], "bury {id} 0", "BURIED"),
    row("consume", R, &["reserve-job {id}"], "touch {id}", "TOUCHED"),
    denied_as(
        row(
            "consume",
            R,
            &["reserve-job {id}"],
            "delete {id}",
            "DELETED",
        ),
        "only-inspect",
    ),
    denied_as(
        row(
            "consume",
            R,
            &["reserve-job {id}"],
            "reprioritize {id} 7",
            "REPRIORITIZED",
        ),
        "only-inspect",
    ),
    row("inspect", R, &[], "peek {id}", "FOUND {id}"),
    row("inspect", R, &[], "stats-job {id}", "OK"),
    row("inspect", R, &["use {t}"], "peek-ready", "FOUND {id}"),
    row(
        "inspect",
        Some("delayed"),
        &["use {t}"],
        "peek-delayed",
        "FOUND {id}",
    ),
    row(
        "inspect",
        Some("buried"),
        &["use {t}"],
        "peek-buried",
        "FOUND {id}",
    ),
    row("inspect", R, &[], "stats-tube {t}", "OK"),
    row("inspect", None, &[], "list-tubes", "OK"),
    row("inspect", None, &[], "list-tube-used", "USING"),
    row("inspect", None, &[], "list-tubes-watched", "OK"),
    row("inspect", R, &[], "list-jobs {t} ready 0 10", "OK"),
    row("admin", Some("buried"), &["use {t}"], "kick 5", "KICKED 1"),
    row("admin", Some("buried"), &[], "kick-job {id}", "KICKED"),
    row("admin", R, &[], "delete {id}", "DELETED"),
    row("admin", R, &[], "reprioritize {id} 9", "REPRIORITIZED"),
    row("admin", R, &[], "pause-tube {t} 0", "PAUSED"),
    row("admin", R, &[], "flush-tube {t}", "FLUSHED 1"),
    row("admin", R, &[], "move-job {id} {t}-moved", "MOVED"),
    row("admin", None, &[], "tube-policy {t} max-reserves 3", "OK"),
    row("admin", R, &[], "tube-policy {t}", "OK"),
];

const CLASSES: [&str; 4] = ["produce", "consume", "inspect", "admin"];

/// The jobs of a tube in each state, from stats-tube (what a denied command must not
/// change).
fn tube_state(c: &mut Conn, tube: &str) -> Vec<String> {
    let y = c.yaml(&format!("stats-tube {tube}"));
    [
        "current-jobs-ready",
        "current-jobs-reserved",
        "current-jobs-delayed",
        "current-jobs-buried",
        "pause",
    ]
    .iter()
    .map(|k| format!("{k}={}", y.get(*k).cloned().unwrap_or_default()))
    .collect()
}

#[test]
fn each_class_allowed_and_denied_for_each_command() {
    let dir = TempDir::new("perm");
    let port = free_port();
    let mport = free_port();
    let mut text = format!(
        "metrics = \"127.0.0.1:{mport}\"\n[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n"
    );
    for class in CLASSES {
        let others: Vec<String> = CLASSES
            .iter()
            .filter(|c| **c != class)
            .map(|c| format!("\"{c}\""))
            .collect();
        text += &token_user(
            &format!("only-{class}"),
            &format!("only-{class}"),
            "[\"t*\"]",
            &format!("[\"{class}\"]"),
        );
        text += &token_user(
            &format!("not-{class}"),
            &format!("not-{class}"),
            "[\"t*\"]",
            &format!("[{}]", others.join(", ")),
        );
    }
    let cfg = write_config(dir.path(), "sproutd.toml", &text);
    let s = start_with_config(&cfg, &[]);
    let mut admin = s.conn();
    let mut denials = 0;
    for (i, r) in ROWS.iter().enumerate() {
        for allowed in [false, true] {
            let tube = format!("t{i}{}", if allowed { "a" } else { "d" });
            let id = r.job.map(|state| {
                admin.cmd(&format!("use {tube}"));
                let delay = u32::from(state == "delayed") * 3600;
                let id = admin.put(0, delay, 60, b"j");
                if state == "buried" {
                    assert_eq!(admin.reserve_cmd(&format!("reserve-job {id}")).0, id);
                    assert_eq!(admin.cmd(&format!("bury {id} 0")), "BURIED");
                }
                id
            });
            let fill = |s: &str| {
                s.replace("{t}", &tube)
                    .replace("{id}", &id.map(|i| i.to_string()).unwrap_or_default())
            };
            let token = match (allowed, r.deny_as) {
                (true, _) => format!("only-{}", r.class),
                (false, Some(who)) => who.to_string(),
                (false, None) => format!("not-{}", r.class),
            };
            let mut c = plain(port);
            assert_eq!(c.cmd(&format!("auth {token}")), "AUTHENTICATED");
            for b in r.before {
                let reply = c.cmd(&fill(b));
                denials += usize::from(reply == "PERMISSION_DENIED");
                if reply.starts_with("RESERVED ") {
                    c.try_line().expect("the reserved job's body");
                }
            }
            let before = id.map(|_| tube_state(&mut admin, &tube));
            let reply = c.cmd(&fill(r.cmd));
            let what = format!("{} as {token}", fill(r.cmd).replace("\r\n", "\\r\\n"));
            if allowed {
                assert!(reply.starts_with(&fill(r.ok)), "{what}: got {reply:?}");
            } else {
                assert_eq!(reply, "PERMISSION_DENIED", "{what}");
                denials += 1;
                if let Some(before) = before {
                    assert_eq!(
                        tube_state(&mut admin, &tube),
                        before,
                        "{what} changed the tube"
                    );
                }
                // The connection stays usable after a denial.
                assert!(c.cmd("stats").starts_with("OK "), "{what}: stats after");
            }
        }
    }
    let m = metrics(mport);
    let counted: f64 = m
        .lines()
        .filter(|l| l.starts_with("sprout_denied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, denials as f64, "{m}");
    assert!(
        m.contains("sprout_denied_total{user=\"not-admin\",class=\"admin\"}"),
        "{m}"
    );
}

#[test]
fn other_users_tubes_do_not_exist() {
    let dir = TempDir::new("inv");
    let port = free_port();
    let all = "[\"produce\", \"consume\", \"inspect\", \"admin\"]";
    let cfg = write_config(
        dir.path(),
        "sproutd.toml",
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n{}{}",
            token_user("alice", "alice", "[\"a-*\"]", all),
            token_user("bob", "bob", "[\"b-*\", \"shared\"]", all),
        ),
    );
    let s = start_with_config(&cfg, &[]);
    let mut admin = s.conn();
    admin.cmd("use a-1");
    let a_job = admin.put(0, 0, 60, b"a");
    admin.cmd("use b-1");
    let b_job = admin.put(0, 0, 60, b"b");
    let b_buried = admin.put(0, 0, 60, b"b2");
    admin.reserve_cmd(&format!("reserve-job {b_buried}"));
    assert_eq!(admin.cmd(&format!("bury {b_buried} 0")), "BURIED");
    admin.cmd("use default");
    admin.put(0, 0, 60, b"d");

    let mut a = plain(port);
    assert_eq!(a.cmd("auth alice"), "AUTHENTICATED");
    let tubes = a.list("list-tubes");
    assert_eq!(tubes, vec!["a-1"], "alice sees only her tubes");
    assert_eq!(a.list("list-tubes-watched"), Vec::<String>::new());
    for cmd in [
        format!("peek {b_job}"),
        format!("stats-job {b_job}"),
        format!("delete {b_job}"),
        format!("kick-job {b_buried}"),
        format!("reserve-job {b_job}"),
        format!("release {b_job} 0 0"),
        format!("touch {b_job}"),
        format!("bury {b_job} 0"),
        format!("reprioritize {b_job} 1"),
        format!("move-job {b_job} a-1"),
        "stats-tube b-1".into(),
        "stats-tube default".into(),
        "pause-tube b-1 10".into(),
        "tube-policy b-1".into(),
    ] {
        assert_eq!(a.cmd(&cmd), "NOT_FOUND", "{cmd}");
    }
    assert_eq!(a.cmd("flush-tube b-1"), "FLUSHED 0");
    assert_eq!(a.yaml("list-jobs b-1 ready 0 10"), "---\n");
    for cmd in [
        "use b-1",
        "watch b-1",
        "use default",
        "tube-policy b-1 max-ready 1",
    ] {
        assert_eq!(a.cmd(cmd), "PERMISSION_DENIED", "{cmd}");
    }
    // Still watching only `default`, which she cannot see: nothing to reserve from.
    assert_eq!(a.cmd("reserve-with-timeout 0"), "PERMISSION_DENIED");
    assert_eq!(a.cmd("ignore default"), "NOT_IGNORED");
    // Her own tube: `default` goes at the first watch.
    assert_eq!(a.cmd("watch a-1"), "WATCHING 1");
    assert_eq!(a.list("list-tubes-watched"), vec!["a-1"]);
    assert_eq!(
        a.cmd("reserve-with-timeout 0"),
        format!("RESERVED {a_job} 1")
    );
    assert_eq!(a.try_line().unwrap(), "a");
    // `stats` counts her tubes only.
    let st = a.yaml("stats");
    let get = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap()
            .to_string()
    };
    assert_eq!(get("current-jobs-ready"), "0");
    assert_eq!(get("current-jobs-reserved"), "1");
    assert_eq!(get("current-jobs-buried"), "0");
    assert_eq!(get("current-tubes"), "1");
    assert_eq!(get("total-jobs"), "1");
    // Bob sees his; the server's own stats see everything.
    let mut b = plain(port);
    assert_eq!(b.cmd("auth bob"), "AUTHENTICATED");
    assert_eq!(b.list("list-tubes"), vec!["b-1"]);
    assert_eq!(b.cmd(&format!("peek {a_job}")), "NOT_FOUND");
    assert!(b.cmd(&format!("peek {b_job}")).starts_with("FOUND"));
    assert_eq!(admin.stat("stats", "current-jobs-ready"), "2");
    let mut tubes = admin.list("list-tubes");
    tubes.sort();
    assert_eq!(tubes, vec!["a-1", "b-1", "default"]);
}

// ---------------------------------------------------------------------------------------
// Reload, stalls, configuration, metrics

#[test]
fn sighup_reloads_users_and_certificates() {
    let pki = Pki::new();
    let port = free_port();
    let tport = free_port();
    let all = "[\"produce\", \"consume\", \"inspect\", \"admin\"]";
    let config = |users: &str, cert: &str| {
        format!(
            "[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n\
             [[listener]]\naddr = \"127.0.0.1:{tport}\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n\n{users}",
            pki.path(&format!("{cert}.pem")),
            pki.path(&format!("{cert}.key")),
        )
    };
    let path = write_config(
        pki.dir.path(),
        "sproutd.toml",
        &config(
            &(token_user("old", "old-token", "[\"*\"]", all)
                + &token_user("kept", "kept-token", "[\"*\"]", all)),
            "server",
        ),
    );
    let log = pki.dir.join("stderr");
    let log_file = std::fs::File::create(&log).unwrap();
    let s = Server::start_with(&["--config", &path], |c| {
        c.stderr(log_file.try_clone().unwrap());
    });
    let mut old = plain(port);
    assert_eq!(old.cmd("auth old-token"), "AUTHENTICATED");
    assert_eq!(old.cmd("use before"), "USING before");
    let ca1 = client_config(&pki.path("ca.pem"), None);
    let ca2 = client_config(&pki.path("ca2.pem"), None);
    assert!(tls(tport, &ca1).is_ok());

    // `old` revoked, `new` added, the certificate replaced by one from the second CA.
    write_config(
        pki.dir.path(),
        "sproutd.toml",
        &config(
            &(token_user("kept", "kept-token", "[\"*\"]", all)
                + &token_user("new", "new-token", "[\"*\"]", all)),
            "server2",
        ),
    );
    s.signal(libc::SIGHUP);
    wait_until("the new token works", || {
        let mut c = plain(port);
        c.cmd("auth new-token") == "AUTHENTICATED"
    });
    let mut c = plain(port);
    assert_eq!(c.cmd("auth old-token"), "UNAUTHORIZED", "a revoked token");
    let mut c = plain(port);
    assert_eq!(c.cmd("auth kept-token"), "AUTHENTICATED");
    // The connection that authenticated before keeps its rights.
    assert_eq!(old.cmd("use after"), "USING after");
    assert_eq!(old.cmd("put 0 0 60 1\r\nx"), "INSERTED 1");
    // New handshakes use the new certificate.
    assert!(tls(tport, &ca2).is_ok(), "the reloaded certificate");
    assert!(tls(tport, &ca1).is_err(), "the old certificate is gone");

    // A broken file: the reload fails, the old configuration stays.
    std::fs::write(&path, "[[user]\nname = \n").unwrap();
    s.signal(libc::SIGHUP);
    wait_until("the failed reload is logged", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reload failed")
    });
    let mut c = plain(port);
    assert_eq!(c.cmd("auth new-token"), "AUTHENTICATED");
    assert!(tls(tport, &ca2).is_ok());
    assert_eq!(old.cmd("list-tube-used"), "USING after");
    // SIGHUP does not stop the server.
    assert!(s.conn().cmd("stats").starts_with("OK "));
}

#[test]
fn a_stalled_handshake_holds_up_nobody() {
    let pki = Pki::new();
    let port = free_port();
    let mport = free_port();
    let addr = format!("127.0.0.1:{port}");
    let metrics_addr = format!("127.0.0.1:{mport}");
    let s = Server::start(&[
        "--tls-listen",
        &addr,
        "--tls-cert",
        &pki.path("server.pem"),
        "--tls-key",
        &pki.path("server.key"),
        "--metrics",
        &metrics_addr,
    ]);
    // Two stalled clients: one sends nothing, one half a ClientHello.
    let mut silent = tcp(port);
    let mut half = tcp(port);
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    wait_until("both stalled connections counted", || {
        metric(&metrics(mport), "sprout_unauthenticated_connections") == Some(2.0)
    });
    let t0 = Instant::now();
    // Meanwhile others are served, over TLS and plain.
    let cfg = client_config(&pki.path("ca.pem"), None);
    for i in 0..20 {
        let mut c = tls(port, &cfg).expect("handshake while others stall");
        assert_eq!(c.cmd(&format!("use t{i}")), format!("USING t{i}"));
    }
    assert!(s.conn().cmd("stats").starts_with("OK "));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "others waited {:?}",
        t0.elapsed()
    );
    // The stalled ones are closed after the 10 s deadline.
    for (what, s) in [("silent", &mut silent), ("half", &mut half)] {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = [0u8; 64];
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => {} // an alert
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{what} closed after {:?}",
            t0.elapsed()
        );
    }
    let m = metrics(mport);
    assert_eq!(metric(&m, "sprout_unauthenticated_connections"), Some(0.0));
    assert!(metric(&m, "sprout_tls_handshake_failures_total") >= Some(2.0));
}

#[test]
fn config_file_flags_win_unknown_keys_print_config() {
    let dir = TempDir::new("cfg");
    let cfg = write_config(
        dir.path(),
        "sproutd.toml",
        &format!(
            "# the file\nmax-job-size = 10\nport = 1\nmetrics-tube-cap = 7\n\n{}",
            token_user("mailer", "s3cret", "[\"emails\"]", "[\"produce\"]")
        ),
    );
    // `-p` (from Server::start) wins over the file's port; the file's max-job-size holds.
    let s = start_with_config(&cfg, &[]);
    let mut c = s.conn();
    assert_eq!(c.stat("stats", "max-job-size"), "10");
    drop(s);
    let s = start_with_config(&cfg, &["-z", "20"]);
    assert_eq!(s.conn().stat("stats", "max-job-size"), "20");
    drop(s);
    let s = start_with_config(&cfg, &["--max-job-size", "30"]);
    assert_eq!(s.conn().stat("stats", "max-job-size"), "30");
    drop(s);

    let (st, out, err) = run_to_exit(&["--config", &cfg, "-z", "20", "--print-config"]);
    assert!(st.success(), "{err}");
    assert!(out.contains("max-job-size = 20\n"), "{out}");
    assert!(out.contains("port = 1\n"), "{out}");
    assert!(out.contains("metrics-tube-cap = 7\n"), "{out}");
    assert!(out.contains("token-sha256 = \"********\""), "{out}");
    assert!(
        !out.contains(&sha256_hex("s3cret")),
        "the hash is masked: {out}"
    );
    // What it prints is a configuration file (secrets aside).
    let again = write_config(
        dir.path(),
        "printed.toml",
        &out.replace("\"********\"", &format!("\"{}\"", sha256_hex("x"))),
    );
    let (st, out2, err) = run_to_exit(&["--config", &again, "--print-config"]);
    assert!(st.success(), "{err}");
    assert_eq!(
        out2.lines().skip(1).collect::<Vec<_>>(),
        out.lines().skip(1).collect::<Vec<_>>()
    );

    let bad = write_config(
        dir.path(),
        "bad.toml",
        "port = 11300\n\n[[user]]\nname = \"a\"\nunix-uid = 1\ncolour = \"red\"\n",
    );
    let (st, _, err) = run_to_exit(&["--config", &bad]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("{bad}:6: unknown key `user.colour`")),
        "{err}"
    );
    let bad = write_config(
        dir.path(),
        "bad2.toml",
        "listen = \"127.0.0.1\"\nfsync = 5\n",
    );
    let (st, _, err) = run_to_exit(&["--config", &bad]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!("{bad}:2: unknown key `fsync`")),
        "{err}"
    );
    let (st, _, err) = run_to_exit(&["--config", "/nonexistent/sproutd.toml"]);
    assert_eq!(st.code(), Some(5), "{err}");
    let (st, _, err) = run_to_exit(&["--tls-listen", "127.0.0.1:1"]);
    assert_eq!(st.code(), Some(5), "{err}");
    assert!(
        err.contains("--tls-listen needs --tls-cert and --tls-key"),
        "{err}"
    );
}

/// A GET over TLS with these header lines, read to the end.
fn https_get(port: u16, cfg: &Arc<rustls::ClientConfig>, path: &str, headers: &[String]) -> String {
    let mut c = tls(port, cfg).expect("TLS to the HTTP port");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        req += &format!("{h}\r\n");
    }
    req += "\r\n";
    c.send(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.rd.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_dashboard_over_tls_on_a_public_address() {
    let pki = Pki::new();
    let hport = free_port();
    // Not loopback: allowed because of TLS.
    let _s = Server::start(&[
        "--http",
        &format!("0.0.0.0:{hport}"),
        "--metrics-tls-cert",
        &pki.path("server.pem"),
        "--metrics-tls-key",
        &pki.path("server.key"),
    ]);
    let cfg = client_config(&pki.path("ca.pem"), None);
    let r = https_get(hport, &cfg, "/", &["Connection: close".into()]);
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    let cookie = r
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session cookie: {r}"));
    for flag in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(r.contains(" · TLS</footer>"), "{r}");
    let r = https_get(hport, &cfg, "/healthz", &[]);
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
}

#[test]
fn metrics_over_tls_with_a_bearer_token() {
    let pki = Pki::new();
    let mport = free_port();
    let addr = format!("127.0.0.1:{mport}");
    let token_hash = sha256_hex("scrape-me");
    let _s = Server::start(&[
        "--metrics",
        &addr,
        "--metrics-tls-cert",
        &pki.path("server.pem"),
        "--metrics-tls-key",
        &pki.path("server.key"),
        "--metrics-token-sha256",
        &token_hash,
    ]);
    let cfg = client_config(&pki.path("ca.pem"), None);
    let get = |path: &str, auth: Option<&str>| -> String {
        let auth = auth.map(|a| format!("Authorization: {a}"));
        https_get(mport, &cfg, path, auth.as_slice())
    };
    let r = get("/metrics", None);
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    assert!(r.contains("WWW-Authenticate: Bearer"), "{r}");
    let r = get("/metrics", Some("Bearer wrong"));
    assert!(r.starts_with("HTTP/1.1 401 "), "{r}");
    let r = get("/metrics", Some("Bearer scrape-me"));
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert!(r.contains("sprout_current_jobs_ready"), "{r}");
    let r = get("/healthz", None);
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    // Plain HTTP is not answered on a TLS port.
    let mut p = tcp(mport);
    p.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = p.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("sprout_"));
}

#[test]
fn shutdown_does_not_wait_for_unauthenticated_connections() {
    let pki = Pki::new();
    let (port, tport) = (free_port(), free_port());
    let cfg = write_config(
        pki.dir.path(),
        "sproutd.toml",
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n\
             [[listener]]\naddr = \"127.0.0.1:{tport}\"\n\
             tls = {{ cert = \"{}\", key = \"{}\" }}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
        ),
    );
    let mut s = start_with_config(&cfg, &[]);
    // One waiting for auth, one in its handshake, one idle on the plain listener: none
    // holds the shutdown up (it would wait up to 5 s for connections that owe replies).
    let mut waiting = plain(port);
    let _handshaking = tcp(tport);
    let mut served = plain(s.port());
    assert_eq!(served.cmd("use x"), "USING x");
    waiting.send(b"auth").unwrap(); // no line end yet
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t0.elapsed()
    );
}

#[test]
fn strict_keeps_auth_on_token_listeners_only() {
    let dir = TempDir::new("strict");
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        "sproutd.toml",
        &format!(
            "strict = true\n[[listener]]\naddr = \"127.0.0.1:{port}\"\nauth = \"token\"\n\n{}",
            token_user("u", "tok", "[\"*\"]", "[\"produce\", \"inspect\"]")
        ),
    );
    let s = start_with_config(&cfg, &[]);
    let mut c = plain(port);
    assert_eq!(c.cmd("auth tok"), "AUTHENTICATED");
    // sprout's own commands are off (beanstalkd's answers), the user's classes hold.
    assert_eq!(c.cmd("flush-tube x"), "UNKNOWN_COMMAND");
    assert_eq!(c.cmd("watch x"), "PERMISSION_DENIED");
    assert_eq!(c.cmd("use x"), "USING x");
    let mut p = s.conn();
    assert_eq!(p.cmd("auth tok"), "UNKNOWN_COMMAND");
    assert_eq!(p.cmd("flush-tube x"), "UNKNOWN_COMMAND");
}
