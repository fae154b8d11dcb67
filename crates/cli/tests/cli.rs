//! End-to-end tests of the `sprout` admin CLI: a real sproutd per test (free port or unix
//! socket), the real sprout binary, known workloads set up over plain sockets, and
//! `--json` output parsed and checked. `top` runs in a pseudo-terminal whose output goes
//! through a terminal emulator (vt100) so the test reads the screen a person would see.
//!
//! Every wait is a bounded poll of a condition; every child process has a deadline.

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use common::*;

const SPROUT: &str = env!("CARGO_BIN_EXE_sprout");
/// Deadline for one sprout run.
const RUN_TIMEOUT: Duration = Duration::from_secs(15);

fn addr_of(s: &Server) -> String {
    match &s.addr {
        Addr::Tcp(p) => format!("127.0.0.1:{p}"),
        Addr::Unix(p) => format!("unix:{}", p.display()),
    }
}

struct Out {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.text()))
    }

    /// Asserts exit 0 and returns stdout as text.
    fn ok(&self) -> String {
        assert_eq!(
            self.code,
            0,
            "expected success; stdout {:?} stderr {:?}",
            self.text(),
            self.stderr
        );
        self.text()
    }

    /// Asserts the exit code and that stderr contains `msg`.
    fn fails(&self, code: i32, msg: &str) {
        assert_eq!(
            (self.code, self.stderr.contains(msg)),
            (code, true),
            "expected exit {code} with {msg:?}; stdout {:?} stderr {:?}",
            self.text(),
            self.stderr
        );
    }
}

/// Runs `sprout` with `args` (and `stdin`), bounded by RUN_TIMEOUT. SPROUT_ADDR is
/// cleared unless given in `env`.
fn run(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Out {
    Running::start(args, stdin, env).finish()
}

/// A `sprout` process started by `Running::start`, not yet waited for; killed if dropped
/// unfinished (a test that fails meanwhile leaves nothing behind).
struct Running {
    args: Vec<String>,
    child: std::process::Child,
    io: Option<RunningIo>,
}

struct RunningIo {
    stdin: thread::JoinHandle<()>,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<Vec<u8>>,
}

impl Running {
    /// Starts `sprout` as `run` does, without waiting for it.
    fn start(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(SPROUT);
        cmd.args(args)
            .env_remove("SPROUT_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sprout");
        let mut i = child.stdin.take().expect("stdin");
        let input = stdin.to_vec();
        let w = thread::spawn(move || {
            // The command may not read its stdin at all: a broken pipe is fine.
            let _ = i.write_all(&input);
        });
        let mut o = child.stdout.take().expect("stdout");
        let mut e = child.stderr.take().expect("stderr");
        let ro = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = o.read_to_end(&mut v);
            v
        });
        let re = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = e.read_to_end(&mut v);
            v
        });
        Running {
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            io: Some(RunningIo {
                stdin: w,
                stdout: ro,
                stderr: re,
            }),
        }
    }

    /// Waits (at most RUN_TIMEOUT) for the process to exit and returns what it printed.
    fn finish(mut self) -> Out {
        let args = &self.args;
        let st = wait_exit(&mut self.child, RUN_TIMEOUT)
            .unwrap_or_else(|| panic!("sprout {args:?} did not exit within {RUN_TIMEOUT:?}"));
        let io = self.io.take().expect("finished once");
        let _ = io.stdin.join();
        Out {
            code: st.code().unwrap_or(-1),
            stdout: io.stdout.join().expect("stdout reader"),
            stderr: String::from_utf8_lossy(&io.stderr.join().expect("stderr reader")).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.io.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sprout -a ADDR args...`.
fn sprout(s: &Server, args: &[&str]) -> Out {
    let a = addr_of(s);
    let mut v = vec!["-a", a.as_str()];
    v.extend_from_slice(args);
    run(&v, b"", &[])
}

fn sprout_stdin(s: &Server, args: &[&str], stdin: &[u8]) -> Out {
    let a = addr_of(s);
    let mut v = vec!["-a", a.as_str()];
    v.extend_from_slice(args);
    run(&v, stdin, &[])
}

/// A port nothing listens on.
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Puts a job in `tube` and buries it (via reserve-job). Leaves `c` using `tube`.
fn put_buried(c: &mut Conn, tube: &str, body: &[u8]) -> u64 {
    assert_eq!(c.cmd(&format!("use {tube}")), format!("USING {tube}"));
    let id = c.put(100, 0, 60, body);
    let head = c.cmd(&format!("reserve-job {id}"));
    c.job_data(&head, "RESERVED");
    assert_eq!(c.cmd(&format!("bury {id} 100")), "BURIED");
    id
}

/// Debian's beanstalkd, the reference server (no sproutd commands).
const BEANSTALKD: &str = "/usr/bin/beanstalkd";

/// beanstalkd on 127.0.0.1 and a free port, as a `Server` (the same ready check: `stats`
/// answered with its pid; killed on drop).
fn beanstalkd() -> Server {
    require(
        "/usr/bin/beanstalkd is not installed; these tests run the CLI against Debian's \
         beanstalkd too: install it (`apt-get install beanstalkd`)",
        std::path::Path::new(BEANSTALKD).exists(),
    );
    let mut last = None;
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(BEANSTALKD);
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match Server::launch(cmd, Addr::Tcp(port)) {
            Ok(s) => return s,
            // Most likely someone took the port: try another.
            Err(st) => last = Some(st),
        }
    }
    panic!("beanstalkd did not start on a free port 5 times: {last:?}");
}

/// Servers without sproutd's own commands: beanstalkd, and sproutd --strict.
fn servers_without_extensions() -> Vec<(&'static str, Server)> {
    vec![
        ("beanstalkd", beanstalkd()),
        ("sproutd --strict", Server::start(&["--strict"])),
    ]
}

// ---------------------------------------------------------------------------------------
// help, errors, addresses
// ---------------------------------------------------------------------------------------

#[test]
fn help_documents_address_and_env() {
    let o = run(&["--help"], b"", &[]);
    let h = o.ok();
    for want in [
        "SPROUT_ADDR",
        "127.0.0.1:11300",
        "unix:/path",
        "stats",
        "top",
        "flush",
        "jobs",
        "policy",
        "move",
    ] {
        assert!(h.contains(want), "--help lacks {want:?}:\n{h}");
    }
}

#[test]
fn unreachable_server_exits_2() {
    let a = dead_addr();
    let want = format!("sprout: cannot connect to {a}: ");
    for args in [
        vec!["stats"],
        vec!["stats", "--json"],
        vec!["tubes"],
        vec!["peek"],
        vec!["put", "x"],
        vec!["kick", "1"],
        vec!["delete", "1"],
        vec!["pause", "t", "1"],
        vec!["flush", "--tube", "t"],
        vec!["jobs"],
        vec!["policy", "t"],
        vec!["policy", "t", "max-reserves", "3"],
        vec!["move", "1", "t"],
        vec!["put", "--unique", "k", "x"],
    ] {
        let mut v = vec!["-a", a.as_str()];
        v.extend(args.iter().copied());
        let o = run(&v, b"", &[]);
        o.fails(2, &want);
        assert!(o.stdout.is_empty(), "{args:?}: {}", o.text());
    }
    // Same through the environment and for a unix socket that does not exist.
    run(&["stats"], b"", &[("SPROUT_ADDR", &a)]).fails(2, &want);
    let dir = TempDir::new("cli-nosock");
    let path = format!("unix:{}", dir.join("none.sock").display());
    run(&["-a", &path, "tubes"], b"", &[]).fails(2, &format!("cannot connect to {path}: "));
}

#[test]
fn server_errors_exit_1_with_the_reply() {
    let s = Server::start(&["-z", "100"]);
    sprout(&s, &["stats", "--job", "4242"]).fails(1, "NOT_FOUND");
    sprout(&s, &["stats", "--tube", "nosuch"]).fails(1, "NOT_FOUND");
    sprout(&s, &["delete", "4242"]).fails(1, "delete 4242: server replied NOT_FOUND");
    sprout(&s, &["kick", "--id", "4242"]).fails(1, "NOT_FOUND");
    sprout(&s, &["peek", "--id", "4242"]).fails(1, "NOT_FOUND");
    sprout(&s, &["peek", "--tube", "empty", "--state", "buried"]).fails(1, "NOT_FOUND");
    let big = "x".repeat(101);
    sprout(&s, &["put", &big]).fails(1, "JOB_TOO_BIG");
    // A tube name that could smuggle a second command is refused before sending.
    let o = sprout(&s, &["stats", "--tube", "a\r\nquit"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid tube name"), "{}", o.stderr);
}

#[test]
fn unix_socket_and_env_address() {
    let dir = TempDir::new("cli-unix");
    let sock = dir.join("s.sock");
    let s = Server::start_unix(&sock, &[]);
    let a = addr_of(&s);
    let env = [("SPROUT_ADDR", a.as_str())];
    let id: u64 = run(&["put", "-t", "over-unix", "hi"], b"", &env)
        .ok()
        .trim()
        .parse()
        .expect("put prints an id");
    let tubes = run(&["tubes", "--json"], b"", &env).json();
    let t = tubes
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "over-unix"))
        .unwrap_or_else(|| panic!("no tube over-unix in {tubes}"));
    assert_eq!(t["ready"], json!(1));
    let st = run(
        &["-a", &a, "stats", "--job", &id.to_string(), "--json"],
        b"",
        &[],
    )
    .json();
    assert_eq!(st["tube"], json!("over-unix"));
    // -a wins over the environment.
    let o = run(&["-a", &dead_addr(), "stats"], b"", &env);
    assert_eq!(o.code, 2, "{}", o.stderr);
}

// ---------------------------------------------------------------------------------------
// stats, tubes
// ---------------------------------------------------------------------------------------

#[test]
fn stats_server_table_and_json() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    c.put(0, 0, 60, b"urgent");
    c.put(2000, 0, 60, b"plain");
    c.put(10, 3600, 60, b"later");
    put_buried(&mut c, "default", b"dead");

    let table = sprout(&s, &["stats"]).ok();
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["current-jobs-ready", "2"]),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pid", &s.pid().to_string()]),
        "{table}"
    );

    let j = sprout(&s, &["stats", "--json"]).json();
    let o = j.as_object().expect("object");
    // In the server's order.
    assert_eq!(
        o.keys().next().map(String::as_str),
        Some("current-jobs-urgent")
    );
    assert_eq!(j["current-jobs-urgent"], json!(1));
    assert_eq!(j["current-jobs-ready"], json!(2));
    assert_eq!(j["current-jobs-delayed"], json!(1));
    assert_eq!(j["current-jobs-buried"], json!(1));
    assert_eq!(j["current-jobs-reserved"], json!(0));
    assert_eq!(j["cmd-put"], json!(4));
    assert_eq!(j["cmd-bury"], json!(1));
    assert_eq!(j["total-jobs"], json!(4));
    assert_eq!(j["pid"], json!(s.pid()));
    assert_eq!(j["draining"], json!(false));
    assert!(j["version"].is_string(), "{}", j["version"]);
    assert!(j["id"].is_string(), "server id is a string: {}", j["id"]);
    assert!(j["hostname"].is_string());
    assert!(j["rusage-utime"].is_f64(), "{}", j["rusage-utime"]);
    assert!(j["uptime"].is_u64());
}

#[test]
fn stats_tube_and_job() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use 123"), "USING 123");
    let id = c.put(7, 600, 42, b"body");

    let t = sprout(&s, &["stats", "--tube", "123", "--json"]).json();
    assert_eq!(
        t["name"],
        json!("123"),
        "a numeric tube name stays a string"
    );
    assert_eq!(t["current-jobs-delayed"], json!(1));
    assert_eq!(t["current-jobs-ready"], json!(0));
    assert_eq!(t["total-jobs"], json!(1));
    assert_eq!(t["current-using"], json!(1));
    assert_eq!(t["pause"], json!(0));

    let j = sprout(&s, &["stats", "--job", &id.to_string(), "--json"]).json();
    assert_eq!(j["id"], json!(id), "a job's id is a number");
    assert_eq!(j["tube"], json!("123"));
    assert_eq!(j["state"], json!("delayed"));
    assert_eq!(j["pri"], json!(7));
    assert_eq!(j["delay"], json!(600));
    assert_eq!(j["ttr"], json!(42));

    let table = sprout(&s, &["stats", "--job", &id.to_string()]).ok();
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["state", "delayed"]),
        "{table}"
    );
}

#[test]
fn tubes_columns_sort_and_json() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    // alpha: 3 ready (1 urgent), 1 delayed.
    assert_eq!(c.cmd("use alpha"), "USING alpha");
    c.put(0, 0, 60, b"a1");
    c.put(2000, 0, 60, b"a2");
    c.put(2000, 0, 60, b"a3");
    c.put(2000, 3600, 60, b"a4");
    // beta: 2 buried.
    put_buried(&mut c, "beta", b"b1");
    put_buried(&mut c, "beta", b"b2");
    // gamma: 1 reserved by `holder`, and `waiter` blocked in a reserve on it.
    let mut holder = s.conn();
    assert_eq!(holder.cmd("use gamma"), "USING gamma");
    holder.put(2000, 0, 60, b"g1");
    assert_eq!(holder.cmd("watch gamma"), "WATCHING 2");
    assert_eq!(holder.cmd("ignore default"), "WATCHING 1");
    holder.reserve();
    let mut waiter = s.conn();
    assert_eq!(waiter.cmd("watch gamma"), "WATCHING 2");
    waiter.send(b"reserve-with-timeout 30\r\n");
    let mut probe = s.conn();
    wait_until("waiter blocked on gamma", || {
        probe.stat("stats-tube gamma", "current-waiting") == "1"
    });

    let rows = sprout(&s, &["tubes", "--json"]).json();
    let names: Vec<&str> = rows
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["alpha", "beta", "default", "gamma"],
        "sorted by name"
    );
    let get = |n: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no {n}"))
    };
    let alpha = get("alpha");
    assert_eq!(
        (
            &alpha["ready"],
            &alpha["urgent"],
            &alpha["delayed"],
            &alpha["total"]
        ),
        (&json!(3), &json!(1), &json!(1), &json!(4))
    );
    assert_eq!(get("beta")["buried"], json!(2));
    let gamma = get("gamma");
    assert_eq!(gamma["reserved"], json!(1));
    assert_eq!(gamma["waiting"], json!(1));
    assert_eq!(gamma["watching"], json!(2));
    // default: watched by c, probe, waiter (holder ignored it) and sprout's own
    // connection.
    assert_eq!(get("default")["watching"], json!(4));

    let order = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["tubes", "--json"];
        v.extend_from_slice(args);
        sprout(&s, &v)
            .json()
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(order(&["--sort", "ready"])[0], "alpha");
    assert_eq!(order(&["--sort", "buried"])[0], "beta");
    assert_eq!(order(&["--sort", "reserved"])[0], "gamma");
    assert_eq!(
        get("default")["waiting"],
        json!(1),
        "the waiter watches default too"
    );
    assert_eq!(order(&["--sort", "watching"])[0], "default");
    assert_eq!(order(&["--reverse"]), ["gamma", "default", "beta", "alpha"]);

    let table = sprout(&s, &["tubes", "--sort", "reserved"]).ok();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["name", "ready", "reserved", "delayed", "buried", "urgent", "waiting", "watching"]
    );
    assert_eq!(lines[1], ["gamma", "0", "1", "0", "0", "0", "1", "2"]);
    assert!(
        lines.contains(&vec!["alpha", "3", "0", "1", "0", "1", "0", "0"]),
        "{table}"
    );
    drop(waiter);
}

// ---------------------------------------------------------------------------------------
// put, peek, kick, delete, pause
// ---------------------------------------------------------------------------------------

fn printed_id(o: &Out) -> u64 {
    o.ok()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected an id, got {:?}", o.text()))
}

#[test]
fn put_from_argument_file_and_stdin() {
    let s = Server::start(&[]);
    let mut c = s.conn();

    let a = printed_id(&sprout(&s, &["put", "hello world"]));
    assert_eq!(c.peek(&format!("peek {a}")), (a, b"hello world".to_vec()));
    let j = c.yaml(&format!("stats-job {a}"));
    assert_eq!(
        (j["tube"].as_str(), j["pri"].as_str(), j["ttr"].as_str()),
        ("default", "1024", "60")
    );

    let dir = TempDir::new("cli-put");
    let f = dir.join("body.bin");
    let bin: Vec<u8> = (0..=255u8).collect();
    std::fs::write(&f, &bin).expect("write body file");
    let fs = f.display().to_string();
    let b = printed_id(&sprout(
        &s,
        &[
            "put", "--file", &fs, "--tube", "files", "--pri", "5", "--delay", "120", "--ttr", "30",
        ],
    ));
    assert_eq!(c.peek(&format!("peek {b}")), (b, bin.clone()));
    let j = c.yaml(&format!("stats-job {b}"));
    assert_eq!(
        (
            j["tube"].as_str(),
            j["pri"].as_str(),
            j["delay"].as_str(),
            j["ttr"].as_str(),
            j["state"].as_str()
        ),
        ("files", "5", "120", "30", "delayed")
    );

    let d = printed_id(&sprout_stdin(
        &s,
        &["put", "-t", "piped"],
        b"from\x00stdin\r\n",
    ));
    assert_eq!(
        c.peek(&format!("peek {d}")),
        (d, b"from\x00stdin\r\n".to_vec())
    );
    assert!(a < b && b < d);

    sprout(
        &s,
        &["put", "--file", &dir.join("missing").display().to_string()],
    )
    .fails(1, "cannot read");
}

#[test]
fn peek_escapes_binary_bodies_and_raw_writes_bytes() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use bin"), "USING bin");
    let body = b"\x1b[31mred\x00\xff\\ok\nline2";
    let r = c.put(1, 0, 60, body);
    let d = c.put(1, 900, 60, b"delayed-one");
    let b = put_buried(&mut c, "bin", b"buried-one");

    let o = sprout(&s, &["peek", "--tube", "bin"]);
    let out = o.ok();
    assert!(out.starts_with(&format!("id: {r}\n")), "{out}");
    assert!(
        !o.stdout.contains(&0x1b) && !o.stdout.contains(&0) && !o.stdout.contains(&0xff),
        "unsafe bytes printed: {out:?}"
    );
    assert!(out.contains("\\x1b[31mred\\x00\\xff\\\\ok\nline2"), "{out}");
    assert!(
        out.contains(&format!("body: {} bytes", body.len())),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["state", "ready"]),
        "{out}"
    );

    let raw = sprout(&s, &["peek", "--id", &r.to_string(), "--raw"]);
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    assert_eq!(raw.stdout, body, "--raw writes the exact bytes");
    assert!(raw.stderr.contains(&format!("id: {r}")), "{}", raw.stderr);

    let o = sprout(&s, &["peek", "--tube", "bin", "--state", "delayed"]).ok();
    assert!(
        o.starts_with(&format!("id: {d}\n")) && o.contains("delayed-one"),
        "{o}"
    );
    let o = sprout(&s, &["peek", "--tube", "bin", "--state", "buried"]).ok();
    assert!(
        o.starts_with(&format!("id: {b}\n")) && o.contains("buried-one"),
        "{o}"
    );
    let o = sprout(&s, &["peek", "--id", &b.to_string()]).ok();
    assert!(o.contains("buried-one"), "{o}");
    // The default tube is empty.
    sprout(&s, &["peek"]).fails(1, "NOT_FOUND");
}

#[test]
fn kick_delete_pause() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let ids: Vec<u64> = (0..3)
        .map(|i| put_buried(&mut c, "k", &[b'0' + i]))
        .collect();
    let o = sprout(&s, &["kick", "2", "--tube", "k"]).ok();
    assert_eq!(o.trim(), "kicked 2 jobs in tube k");
    assert_eq!(c.stat("stats-tube k", "current-jobs-buried"), "1");
    assert_eq!(c.stat("stats-tube k", "current-jobs-ready"), "2");
    // The oldest buried jobs are kicked first; ids[2] is still buried.
    assert_eq!(c.stat(&format!("stats-job {}", ids[2]), "state"), "buried");
    let o = sprout(&s, &["kick", "--id", &ids[2].to_string()]).ok();
    assert_eq!(o.trim(), format!("kicked job {}", ids[2]));
    assert_eq!(c.stat(&format!("stats-job {}", ids[2]), "state"), "ready");
    sprout(&s, &["kick", "--id", &ids[2].to_string()]).fails(1, "NOT_FOUND");

    let o = sprout(&s, &["delete", &ids[0].to_string()]).ok();
    assert_eq!(o.trim(), format!("deleted job {}", ids[0]));
    assert_eq!(c.cmd(&format!("peek {}", ids[0])), "NOT_FOUND");
    sprout(&s, &["delete", &ids[0].to_string()]).fails(1, "NOT_FOUND");
    // Several ids: the existing one is deleted, the missing one fails the command.
    let o = sprout(&s, &["delete", &ids[1].to_string(), &ids[0].to_string()]);
    o.fails(1, "NOT_FOUND");
    assert_eq!(o.text().trim(), format!("deleted job {}", ids[1]));

    let o = sprout(&s, &["pause", "k", "60"]).ok();
    assert_eq!(o.trim(), "paused tube k for 60 s");
    let t = sprout(&s, &["stats", "--tube", "k", "--json"]).json();
    assert_eq!(t["pause"], json!(60));
    assert!(t["pause-time-left"]
        .as_u64()
        .is_some_and(|l| l > 0 && l <= 60));
    assert_eq!(t["cmd-pause-tube"], json!(1));
    sprout(&s, &["pause", "nosuch", "1"]).fails(1, "NOT_FOUND");
}

// ---------------------------------------------------------------------------------------
// flush
// ---------------------------------------------------------------------------------------

#[test]
fn flush_by_state_leaves_reserved_jobs_and_other_tubes() {
    flush_by_state_on("sproutd", &Server::start(&[]), "flush-tube");
}

/// The same flushes on servers without flush-tube: `--state all` goes job by job, with
/// the same outcome.
#[test]
fn flush_falls_back_to_job_by_job_without_flush_tube() {
    for (name, s) in servers_without_extensions() {
        flush_by_state_on(name, &s, "job-by-job");
    }
}

/// Flushes by state, then all, on `s`; `all_method` is how `--state all` must go.
fn flush_by_state_on(name: &str, s: &Server, all_method: &str) {
    let mut c = s.conn();
    let keep = c.put(1, 0, 60, b"in default");
    assert_eq!(c.cmd("use f"), "USING f");
    for i in 0..5 {
        c.put(i, 0, 60, b"ready");
    }
    for _ in 0..3 {
        c.put(1, 3600, 60, b"delayed");
    }
    put_buried(&mut c, "f", b"buried");
    put_buried(&mut c, "f", b"buried");
    let mut holder = s.conn();
    assert_eq!(holder.cmd("use f"), "USING f");
    let held = holder.put(1, 0, 60, b"held");
    let head = holder.cmd(&format!("reserve-job {held}"));
    holder.job_data(&head, "RESERVED");

    // One state: job by job everywhere (flush-tube takes the three states together).
    let r = sprout(s, &["flush", "--tube", "f", "--state", "buried", "--json"]).json();
    assert_eq!(r["deleted"], json!(2), "{name}");
    assert_eq!(r["reserved"], json!(1), "{name}");
    assert_eq!(r["method"], json!("job-by-job"), "{name}");
    assert_eq!(c.stat("stats-tube f", "current-jobs-buried"), "0");
    assert_eq!(c.stat("stats-tube f", "current-jobs-ready"), "5");

    let r = sprout(s, &["flush", "--tube", "f", "--state", "delayed", "--json"]).json();
    assert_eq!(r["deleted"], json!(3), "{name}");
    assert_eq!(c.stat("stats", "cmd-delete"), "5", "{name}");

    for _ in 0..2 {
        c.put(1, 3600, 60, b"delayed");
    }
    put_buried(&mut c, "f", b"buried again");
    let out = sprout(s, &["flush", "--tube", "f"]).ok();
    assert!(out.contains("deleted 8 jobs from tube f"), "{name}: {out}");
    assert!(out.contains("1 job remains reserved"), "{name}: {out}");
    let t = c.yaml("stats-tube f");
    assert_eq!(
        [
            &t["current-jobs-ready"],
            &t["current-jobs-delayed"],
            &t["current-jobs-buried"],
            &t["current-jobs-reserved"]
        ],
        ["0", "0", "0", "1"],
        "{name}"
    );
    // flush-tube deletes them all in one command; job by job, one delete each.
    let deletes = if all_method == "flush-tube" { 5 } else { 13 };
    assert_eq!(c.stat("stats", "cmd-delete"), deletes.to_string(), "{name}");
    // The reserved job is untouched; so is the other tube.
    assert_eq!(holder.cmd(&format!("delete {held}")), "DELETED");
    assert_eq!(c.peek(&format!("peek {keep}")).0, keep);

    // Flushing an empty (or unknown) tube deletes nothing.
    let r = sprout(s, &["flush", "--tube", "f", "--json"]).json();
    assert_eq!((&r["deleted"], &r["reserved"]), (&json!(0), &json!(0)));
    assert_eq!(r["method"], json!(all_method), "{name}");
}

/// `sprout flush` job by job (here against sproutd --strict, which has no flush-tube)
/// while two workers reserve and delete from the same tube: every job is deleted exactly
/// once, by one side or the other, and the counts add up. The race must really happen,
/// so the workers are held at a barrier until the flush has deleted its first job, and
/// then run while it goes on; a round in which one side still got nothing is run again (a
/// few times at most, then the test fails).
#[test]
fn flush_races_with_workers() {
    const ROUNDS: usize = 5;
    for round in 1..=ROUNDS {
        let (flushed, by_workers) = flush_race_round();
        println!("round {round}: flush deleted {flushed}, workers {by_workers}");
        if flushed > 0 && by_workers > 0 {
            return;
        }
    }
    panic!("in {ROUNDS} rounds, never did both the flush and the workers delete jobs");
}

const RACE_JOBS: u64 = 5000;

/// A connection through the client crate's blocking front.
fn client(s: &Server) -> sprout_client::blocking::Client {
    sprout_client::blocking::Client::connect(&addr_of(s)).expect("connect")
}

/// Puts `n` jobs in `tube` in one pipelined write, body `job <i>`, priority `i % pris`;
/// returns their ids.
fn put_pipelined(s: &Server, tube: &str, n: usize, pris: usize) -> Vec<u64> {
    client(s)
        .run(async |c| {
            let (tx, rx) = c.parts();
            tx.use_tube(tube)?;
            for i in 0..n {
                tx.put((i % pris) as u32, 0, 60, format!("job {i}").as_bytes())?;
            }
            tx.flush().await?;
            rx.recv_use_tube().await?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                match rx.recv_put().await? {
                    sprout_client::PutOutcome::Inserted(id) => ids.push(id),
                    other => panic!("put: {other:?}"),
                }
            }
            Ok(ids)
        })
        .expect("pipelined puts")
}

/// `s` with RACE_JOBS ready jobs in tube `busy` (pipelined puts); returns a connection
/// using `busy`.
fn fill_busy(s: &Server) -> Conn {
    put_pipelined(s, "busy", RACE_JOBS as usize, 7);
    let mut c = s.conn();
    assert_eq!(c.cmd("use busy"), "USING busy");
    c
}

/// Two workers on tube `busy`: each waits at `go`, then reserves and deletes until no job
/// is ready; they return how many they deleted.
fn busy_workers(s: &Server, go: &Arc<Barrier>) -> Vec<thread::JoinHandle<u64>> {
    use sprout_client::{Error, ServerError};
    (0..2)
        .map(|_| {
            let mut w = client(s);
            let go = go.clone();
            thread::spawn(move || {
                w.run(async |c| {
                    c.watch("busy").await?;
                    c.ignore("default").await
                })
                .expect("watch busy");
                go.wait();
                let mut n = 0u64;
                loop {
                    match w.run(async |c| c.reserve_with_timeout(0).await) {
                        Ok(job) => w.run(async |c| c.delete(job.id).await).expect("delete"),
                        Err(Error::Server(ServerError::TimedOut)) => return n,
                        Err(e) => panic!("reserve: {e}"),
                    }
                    n += 1;
                }
            })
        })
        .collect()
}

/// After a race: every job deleted once, by the flush or by a worker, and none left.
fn check_race_outcome(c: &mut Conn, flushed: u64, by_workers: u64, r: &Value) {
    assert_eq!(flushed + by_workers, RACE_JOBS, "{r} workers {by_workers}");
    let t = c.yaml("stats-tube busy");
    assert_eq!(t["current-jobs-ready"], "0");
    assert_eq!(t["current-jobs-reserved"], "0");
    assert_eq!(t["total-jobs"], RACE_JOBS.to_string());
}

/// One round of `flush_races_with_workers`; returns the jobs deleted by the flush and by
/// the workers.
fn flush_race_round() -> (u64, u64) {
    let s = Server::start(&["--strict"]);
    let mut c = fill_busy(&s);
    // Two workers, ready to go at the barrier, then reserving and deleting until the tube
    // has no ready job left.
    let go = Arc::new(Barrier::new(3));
    let workers = busy_workers(&s, &go);
    let a = addr_of(&s);
    let flush = Running::start(&["-a", &a, "flush", "--tube", "busy", "--json"], b"", &[]);
    // Nobody else deletes yet: the first delete is the flush's.
    wait_until("the flush deleting", || {
        c.stat("stats-tube busy", "cmd-delete") != "0"
    });
    go.wait();
    let r = flush.finish().json();
    assert_eq!(r["method"], json!("job-by-job"), "{r}");
    let by_workers: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let flushed = r["deleted"].as_u64().expect("deleted count");
    check_race_outcome(&mut c, flushed, by_workers, &r);
    (flushed, by_workers)
}

/// `sprout flush` with sproutd's flush-tube while two workers reserve and delete: the
/// flush runs once the workers have deleted some jobs, and takes every job not reserved
/// at that moment; the jobs the workers hold stay theirs. Every job is deleted exactly
/// once and the counts add up (rounds in which the workers got all the jobs before the
/// flush came are run again).
#[test]
fn flush_tube_races_with_workers() {
    const ROUNDS: usize = 5;
    for round in 1..=ROUNDS {
        let s = Server::start(&[]);
        let mut c = fill_busy(&s);
        let go = Arc::new(Barrier::new(3));
        let workers = busy_workers(&s, &go);
        go.wait();
        wait_until("the workers deleting", || {
            c.stat("stats-tube busy", "cmd-delete")
                .parse::<u64>()
                .unwrap()
                >= 50
        });
        let r = sprout(&s, &["flush", "--tube", "busy", "--json"]).json();
        assert_eq!(r["method"], json!("flush-tube"), "{r}");
        let by_workers: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
        let flushed = r["deleted"].as_u64().expect("deleted count");
        check_race_outcome(&mut c, flushed, by_workers, &r);
        // No delete of the flush's: the server's cmd-delete are the workers'.
        assert_eq!(c.stat("stats", "cmd-delete"), by_workers.to_string());
        println!("round {round}: flush-tube deleted {flushed}, workers {by_workers}");
        if flushed > 0 {
            return;
        }
    }
    panic!("in {ROUNDS} rounds, the workers always deleted every job before the flush");
}

// ---------------------------------------------------------------------------------------
// sproutd's own commands: jobs, policy, move, put --unique
// ---------------------------------------------------------------------------------------

/// Puts `n` jobs into `tube` pipelined (body `job <i>`), returns their ids.
fn put_many(s: &Server, tube: &str, n: usize) -> Vec<u64> {
    put_pipelined(s, tube, n, 3)
}

fn json_ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|j| j["id"].as_u64().expect("id"))
        .collect()
}

#[test]
fn jobs_pages_through_every_job() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    // More than two pages of list-jobs, and jobs of other tubes and states in between.
    let mut ready = Vec::new();
    for _ in 0..3 {
        ready.extend(put_many(&s, "big", 800));
        put_many(&s, "other", 10);
        assert_eq!(c.cmd("use big"), "USING big");
        c.put(0, 3600, 60, b"delayed, not listed");
    }
    assert_eq!(ready.len(), 2400);

    let all = sprout(&s, &["jobs", "-t", "big", "--limit", "0", "--json"]);
    assert_eq!(json_ids(&all.json()), ready);
    assert!(all.stderr.is_empty(), "{}", all.stderr);
    let first = &all.json()[0];
    assert_eq!(first["tube"], json!("big"));
    assert_eq!(first["state"], json!("ready"));
    assert_eq!(first["pri"], json!(0));
    assert_eq!(first["body"], json!("job 0"));
    assert_eq!(first["bytes"], json!(5));
    assert_eq!(first["body-truncated"], json!(false));

    // The default limit: 1000, and stderr says where to go on.
    let o = sprout(&s, &["jobs", "-t", "big", "--json"]);
    assert_eq!(json_ids(&o.json()), ready[..1000]);
    let next = format!("--after {}", ready[999]);
    assert!(o.stderr.contains(&next), "{}", o.stderr);
    // --after and --limit walk the rest.
    let after = ready[999].to_string();
    let o = sprout(
        &s,
        &[
            "jobs", "-t", "big", "--after", &after, "--limit", "1400", "--json",
        ],
    );
    assert_eq!(json_ids(&o.json()), ready[1000..]);
    assert!(o.stderr.is_empty(), "nothing follows: {}", o.stderr);
    let o = sprout(
        &s,
        &["jobs", "-t", "big", "--after", &after, "--limit", "3"],
    );
    let lines: Vec<Vec<String>> = o
        .ok()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(
        lines[0],
        ["id", "state", "pri", "age", "reserves", "bytes", "body"]
    );
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (i, l) in lines[1..].iter().enumerate() {
        assert_eq!(l[0], ready[1000 + i].to_string());
        assert_eq!(l[1], "ready");
        assert_eq!(l[2], ((1000 + i) % 800 % 3).to_string());
    }
}

#[test]
fn jobs_in_each_state_with_their_stats_and_bodies() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use st"), "USING st");
    let ready = c.put(7, 0, 60, b"line one\nline two\tand a tab");
    let long: Vec<u8> = (0..1000u32)
        .map(|i| b"0123456789"[i as usize % 10])
        .collect();
    let bin = c.put(8, 0, 60, &long);
    let delayed = c.put(9, 3600, 60, b"\x1b[2Jlater\xff");
    let buried = put_buried(&mut c, "st", b"buried body");
    let mut holder = s.conn();
    assert_eq!(holder.cmd("use st"), "USING st");
    let held = holder.put(3, 0, 60, b"held");
    let head = holder.cmd(&format!("reserve-job {held}"));
    holder.job_data(&head, "RESERVED");

    // Text: one line per job, the body's start escaped onto it.
    let t = sprout(&s, &["jobs", "-t", "st"]).ok();
    let rows: Vec<&str> = t.lines().collect();
    assert_eq!(rows.len(), 3, "{t}");
    // id, state, pri, age, reserves, bytes, body (the age is a few seconds at most).
    let w: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!(
        [w[0], w[1], w[2], w[4], w[5]],
        [ready.to_string().as_str(), "ready", "7", "0", "27"]
    );
    assert!(w[3].ends_with('s'), "{}", rows[1]);
    assert!(
        rows[1].ends_with("line one\\nline two\\tand a tab"),
        "{}",
        rows[1]
    );
    assert_eq!(
        rows[2].split_whitespace().next(),
        Some(bin.to_string().as_str())
    );
    assert!(
        rows[2].ends_with(&format!("{}…", &String::from_utf8_lossy(&long[..40]))),
        "{}",
        rows[2]
    );
    let d = sprout(&s, &["jobs", "-t", "st", "--state", "delayed", "--json"]).json();
    assert_eq!(json_ids(&d), [delayed]);
    assert_eq!(d[0]["state"], json!("delayed"));
    assert_eq!(d[0]["delay"], json!(3600));
    assert_eq!(d[0]["body"], json!("\\x1b[2Jlater\\xff"));
    let b = sprout(&s, &["jobs", "-t", "st", "--state", "buried", "--json"]).json();
    assert_eq!(json_ids(&b), [buried]);
    assert_eq!((&b[0]["buries"], &b[0]["reserves"]), (&json!(1), &json!(1)));
    let r = sprout(&s, &["jobs", "-t", "st", "--state", "reserved"]).ok();
    let w: Vec<&str> = r
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(
        [w[0], w[1], w[2], w[4], w[5], w[6]],
        [held.to_string().as_str(), "reserved", "3", "1", "4", "held"]
    );
    let j = sprout(&s, &["jobs", "-t", "st", "--json"]).json();
    assert_eq!(j[1]["bytes"], json!(1000));
    assert_eq!(j[1]["body-truncated"], json!(true));
    assert_eq!(j[1]["body"].as_str().map(str::len), Some(256));

    // Nothing to list.
    let o = sprout(
        &s,
        &[
            "jobs",
            "-t",
            "st",
            "--state",
            "buried",
            "--after",
            &buried.to_string(),
        ],
    );
    assert_eq!(o.ok(), "no buried jobs in tube st\n");
    assert_eq!(
        sprout(&s, &["jobs", "-t", "nosuch", "--json"]).json(),
        json!([])
    );
    // Listing changes nothing.
    assert_eq!(c.stat(&format!("stats-job {held}"), "state"), "reserved");
    assert_eq!(c.stat("stats-tube st", "current-jobs-ready"), "2");
}

#[test]
fn policy_show_set_and_its_effect() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use work"), "USING work");
    let show = |args: &[&str]| -> Vec<Vec<String>> {
        let mut v = vec!["policy", "work"];
        v.extend_from_slice(args);
        sprout(&s, &v)
            .ok()
            .lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    };
    assert_eq!(
        show(&[]),
        [
            ["max-reserves", "0"],
            ["on-exhaust", "bury"],
            ["retry-backoff", "none"],
            ["max-ready", "0"]
        ]
    );
    show(&["max-reserves", "1"]);
    show(&["retry-backoff", "exp:1,4"]);
    let t = show(&["on-exhaust", "tube:work-dead"]);
    assert_eq!(
        t,
        [
            ["max-reserves", "1"],
            ["on-exhaust", "tube:work-dead"],
            ["retry-backoff", "exp:1,4"],
            ["max-ready", "0"],
            ["dead-lettered", "0"],
            ["retries-delayed", "0"]
        ]
    );
    // The server has it, as set.
    assert_eq!(c.stat("stats-tube work", "on-exhaust"), "tube:work-dead");
    assert_eq!(c.stat("stats-tube work", "retry-backoff"), "exp:1,4");

    // In effect: reserved once and released, the job goes to the dead-letter tube.
    let id = c.put(0, 0, 60, b"flaky");
    assert_eq!(c.cmd("watch work"), "WATCHING 2");
    assert_eq!(c.reserve().0, id);
    assert_eq!(c.cmd(&format!("release {id} 0 0")), "RELEASED");
    let j = c.yaml(&format!("stats-job {id}"));
    assert_eq!(
        (j["tube"].as_str(), j["origin-tube"].as_str()),
        ("work-dead", "work")
    );
    let p = sprout(&s, &["policy", "work", "--json"]).json();
    assert_eq!(
        p,
        json!({
            "max-reserves": 1,
            "on-exhaust": "tube:work-dead",
            "retry-backoff": "exp:1,4",
            "max-ready": 0,
            "dead-lettered": 1,
            "retries-delayed": 0,
        })
    );
    // max-ready: a put beyond it is refused.
    sprout(&s, &["policy", "work", "max-ready", "1"]).ok();
    c.put(0, 0, 60, b"one");
    sprout(&s, &["put", "-t", "work", "two"]).fails(1, "OUT_OF_MEMORY");

    // Bad values are refused before anything is sent; the policy stays as it was.
    for (k, v, hint) in [
        ("max-reserves", "x", "a number"),
        ("on-exhaust", "burn", "bury, delete or tube:NAME"),
        ("on-exhaust", "tube:-x", "tube:NAME"),
        ("retry-backoff", "exp:5,1", "exp:BASE,CAP"),
        ("max-ready", "1 2", "a number"),
    ] {
        let o = sprout(&s, &["policy", "work", k, v]);
        o.fails(1, &format!("invalid value {v:?} for {k}: expected"));
        assert!(o.stderr.contains(hint), "{}", o.stderr);
    }
    let bad_key = sprout(&s, &["policy", "work", "max-tries", "3"]);
    assert_ne!(bad_key.code, 0);
    assert!(bad_key.stderr.contains("max-tries"), "{}", bad_key.stderr);
    assert_eq!(c.stat("stats-tube work", "max-reserves"), "1");
    assert_eq!(c.stat("stats-tube work", "max-ready"), "1");
    // A tube that does not exist has no policy to show; setting a key makes it.
    sprout(&s, &["policy", "nosuch"]).fails(1, "tube-policy nosuch: server replied NOT_FOUND");
    let j = sprout(&s, &["policy", "fresh", "max-ready", "5", "--json"]).json();
    assert_eq!(j["max-ready"], json!(5));
    assert_eq!(c.stat("stats-tube fresh", "max-ready"), "5");
    // Back to the defaults: the policy goes (and the tube with it); shown as defaults.
    let j = sprout(&s, &["policy", "fresh", "max-ready", "0", "--json"]).json();
    assert_eq!(j["max-ready"], json!(0));
    assert!(!c.list("list-tubes").contains(&"fresh".to_string()));
}

#[test]
fn move_job_between_tubes() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let a = c.put(5, 0, 60, b"a");
    let d = c.put(5, 3600, 60, b"d");
    let o = sprout(&s, &["move", &a.to_string(), "elsewhere"]).ok();
    assert_eq!(o, format!("moved job {a} to tube elsewhere\n"));
    let j = c.yaml(&format!("stats-job {a}"));
    assert_eq!(
        (j["tube"].as_str(), j["state"].as_str()),
        ("elsewhere", "ready")
    );
    sprout(&s, &["move", &d.to_string(), "elsewhere"]).ok();
    let j = c.yaml(&format!("stats-job {d}"));
    assert_eq!(
        (j["tube"].as_str(), j["state"].as_str()),
        ("elsewhere", "delayed")
    );
    assert_eq!(c.stat("stats-tube default", "current-jobs-ready"), "0");
    // A reserved job only moves by its holder; a missing job is NOT_FOUND.
    assert_eq!(c.cmd("watch elsewhere"), "WATCHING 2");
    assert_eq!(c.reserve().0, a);
    sprout(&s, &["move", &a.to_string(), "third"])
        .fails(1, &format!("move-job {a} third: server replied NOT_FOUND"));
    sprout(&s, &["move", "999", "third"]).fails(1, "NOT_FOUND");
    assert_eq!(c.stat(&format!("stats-job {a}"), "tube"), "elsewhere");
    let o = sprout(&s, &["move", "1", "bad name"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid tube name"), "{}", o.stderr);
}

#[test]
fn put_unique_prints_the_id_either_way() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let first = sprout(&s, &["put", "-t", "orders", "--unique", "order-7", "hello"]);
    let id = printed_id(&first);
    assert!(first.stderr.is_empty(), "{}", first.stderr);
    assert_eq!(c.peek(&format!("peek {id}")).1, b"hello");
    // The key is in use: nothing is put, the existing id is printed, exit 0.
    let again = sprout(&s, &["put", "-t", "orders", "-u", "order-7", "world"]);
    assert_eq!(printed_id(&again), id);
    assert!(
        again.stderr.contains(&format!("exists: {id}")),
        "{}",
        again.stderr
    );
    assert_eq!(
        c.peek(&format!("peek {id}")).1,
        b"hello",
        "the first body stays"
    );
    assert_eq!(c.stat("stats-tube orders", "total-jobs"), "1");
    // Keys are per tube; and free again once the job is deleted.
    let other = printed_id(&sprout(&s, &["put", "-u", "order-7", "in default"]));
    assert_ne!(other, id);
    assert_eq!(c.cmd(&format!("delete {id}")), "DELETED");
    let new = printed_id(&sprout(
        &s,
        &["put", "-t", "orders", "-u", "order-7", "again"],
    ));
    assert!(new > other);
    let j = c.yaml(&format!("stats-job {new}"));
    assert_eq!((j["tube"].as_str(), j["pri"].as_str()), ("orders", "1024"));
    // From stdin and with the other put options.
    let o = sprout_stdin(
        &s,
        &[
            "put", "-u", "k2", "-t", "orders", "-p", "3", "-d", "60", "--ttr", "9",
        ],
        b"from stdin",
    );
    let k2 = printed_id(&o);
    let j = c.yaml(&format!("stats-job {k2}"));
    assert_eq!(
        (j["pri"].as_str(), j["delay"].as_str(), j["ttr"].as_str()),
        ("3", "60", "9")
    );
    assert_eq!(c.peek(&format!("peek {k2}")).1, b"from stdin");
    let o = sprout(&s, &["put", "-u", "bad key", "x"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid key"), "{}", o.stderr);
}

/// jobs, policy, move and put --unique on servers without sproutd's commands: exit 1 and
/// a message saying so, and nothing changed (put --unique does not send its body, which
/// such a server would read as commands).
#[test]
fn extension_commands_on_servers_without_them() {
    for (name, s) in servers_without_extensions() {
        let mut c = s.conn();
        let id = c.put(0, 0, 60, b"x");
        let ids = id.to_string();
        let deleting = format!("delete {id}");
        for (args, cmd) in [
            (vec!["jobs"], "list-jobs"),
            (vec!["jobs", "--state", "buried", "--json"], "list-jobs"),
            (vec!["policy", "default"], "tube-policy"),
            (
                vec!["policy", "default", "max-reserves", "2"],
                "tube-policy",
            ),
            (vec!["move", &ids, "other"], "move-job"),
            (vec!["put", "--unique", "k", &deleting], "put-unique"),
        ] {
            let o = sprout(&s, &args);
            o.fails(1, &format!("does not support {cmd}"));
            assert!(o.stdout.is_empty(), "{name} {args:?}: {}", o.text());
            assert!(
                o.stderr.contains("UNKNOWN_COMMAND"),
                "{name} {args:?}: {}",
                o.stderr
            );
        }
        assert_eq!(c.peek(&format!("peek {id}")).0, id, "{name}: job {id} kept");
        let st = c.yaml("stats");
        assert_eq!(
            (st["current-jobs-ready"].as_str(), st["cmd-put"].as_str()),
            ("1", "1"),
            "{name}"
        );
        assert_eq!(
            c.stat(&format!("stats-job {id}"), "tube"),
            "default",
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// top, in a pseudo-terminal
// ---------------------------------------------------------------------------------------

/// `sprout top` running on a pty of 80x24, its output fed to a terminal emulator.
struct Pty {
    child: std::process::Child,
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
}

impl Pty {
    fn spawn(args: &[&str]) -> Pty {
        let (mut m, mut sl) = (-1, -1);
        let ws = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers to local ints; null name and termios; a valid winsize.
        let rc =
            unsafe { libc::openpty(&mut m, &mut sl, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors that we now own.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(sl)) };
        for fd in [&master, &slave] {
            // SAFETY: fcntl on a descriptor we own. Keeps them out of other tests' children.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let mut cmd = Command::new(SPROUT);
        cmd.args(args)
            .env_remove("SPROUT_ADDR")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the pty becomes the child's
        // controlling terminal, as in a real terminal session.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn sprout top");
        drop(cmd); // closes our copies of the slave
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(24).expect("rows"),
            std::num::NonZeroU16::new(80).expect("cols"),
            0,
        )));
        let mut rd = master.try_clone().expect("dup master");
        let sc = screen.clone();
        // Reads until the pty closes (EIO once no process holds the slave). Not joined:
        // the test waits on the screen's content instead.
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = rd.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sc.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .process(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            screen,
        }
    }

    fn contents(&self) -> String {
        self.screen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .screen()
            .contents()
    }

    fn alternate(&self) -> bool {
        self.screen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .screen()
            .alternate_screen()
    }

    /// Waits (bounded) until the screen satisfies `f`; panics with the screen if not.
    fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.contents();
            if f(&s) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.master.write_all(b).expect("write to pty");
    }

    fn exit_code(&mut self) -> i32 {
        let st = wait_exit(&mut self.child, Duration::from_secs(5))
            .expect("top did not exit within 5 s");
        st.code().unwrap_or(-1)
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers on the screen row of `tube`.
fn row_of(screen: &str, tube: &str) -> Option<Vec<String>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|w| w.first().map(String::as_str) == Some(tube))
}

#[test]
fn top_renders_refreshes_and_quits_on_q() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    assert_eq!(c.cmd("use emails"), "USING emails");
    c.put(1, 0, 60, b"e");
    assert_eq!(c.cmd("use reports"), "USING reports");
    c.put(1, 0, 60, b"r");
    c.put(1, 0, 60, b"r");
    let a = addr_of(&s);
    let mut p = Pty::spawn(&["-a", &a, "top", "--interval", "0.1"]);

    p.wait_screen("header and tubes", |sc| {
        [
            "sprout top",
            &a,
            "ops/s",
            "TUBE",
            "READY",
            "WATCHING",
            "PUT/s",
            "DEL/s",
            "q quit",
        ]
        .iter()
        .all(|w| sc.contains(w))
            && row_of(sc, "emails").is_some_and(|r| r[1] == "1")
            && row_of(sc, "reports").is_some_and(|r| r[1] == "2")
            && row_of(sc, "default").is_some()
    });
    assert!(p.alternate(), "top draws on the alternate screen");
    // Rates appear once there are two samples.
    p.wait_screen("rates", |sc| {
        row_of(sc, "emails").is_some_and(|r| r.len() == 9 && r[7] != "-")
    });

    // New jobs show up on a later frame.
    assert_eq!(c.cmd("use emails"), "USING emails");
    for _ in 0..3 {
        c.put(1, 0, 60, b"e");
    }
    p.wait_screen("emails with 4 ready", |sc| {
        row_of(sc, "emails").is_some_and(|r| r[1] == "4")
    });
    p.send(b"q");
    assert_eq!(p.exit_code(), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while p.alternate() {
        assert!(
            std::time::Instant::now() < deadline,
            "terminal not restored: still on the alternate screen"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn top_quits_on_ctrl_c_and_needs_a_terminal() {
    let s = Server::start(&[]);
    let a = addr_of(&s);
    let mut p = Pty::spawn(&["-a", &a, "top"]);
    p.wait_screen("first frame", |sc| {
        sc.contains("TUBE") && sc.contains("default")
    });
    p.send(b"\x03");
    assert_eq!(p.exit_code(), 0);

    // Not a terminal: a clear error instead of a garbled screen.
    sprout(&s, &["top"]).fails(1, "top needs a terminal");
    // Unreachable: reported before the screen is taken over.
    let mut p = Pty::spawn(&["-a", &dead_addr(), "top"]);
    assert_eq!(p.exit_code(), 2);
    p.wait_screen("error message", |sc| sc.contains("cannot connect to"));
}

/// `top` over a TLS listener that wants a token: it connects (and reconnects) the way every
/// subcommand does. The certificates: a CA made here with rcgen and a server certificate
/// for 127.0.0.1 signed by it.
#[test]
fn top_over_tls_with_a_token() {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let dir = TempDir::new("toptls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "top test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let token = "top-test-token";
    let hash: String = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
        (
            "sproutd.toml",
            format!(
                "[[user]]\nname = \"ops\"\ntoken-sha256 = \"{hash}\"\ntubes = [\"*\"]\n\
                 may = [\"produce\", \"consume\", \"inspect\", \"admin\"]\n"
            ),
        ),
    ];
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let p = |name: &str| dir.join(name).display().to_string();
    let tls_addr = format!("127.0.0.1:{}", free_port());
    let s = Server::start(&[
        "--config",
        &p("sproutd.toml"),
        "--tls-listen",
        &tls_addr,
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server.key"),
        "--tls-auth",
        "token",
    ]);
    wait_until("the TLS listener accepts connections", || {
        std::net::TcpStream::connect(&tls_addr).is_ok()
    });
    let mut c = s.conn();
    assert_eq!(c.cmd("use secure"), "USING secure");
    c.put(1, 0, 60, b"s");
    let ca_path = p("ca.pem");
    let mut t = Pty::spawn(&[
        "-a",
        &tls_addr,
        "--ca",
        &ca_path,
        "--token",
        token,
        "top",
        "--interval",
        "0.1",
    ]);
    t.wait_screen("the tube over TLS", |sc| {
        sc.contains(&tls_addr) && row_of(sc, "secure").is_some_and(|r| r[1] == "1")
    });
    t.send(b"q");
    assert_eq!(t.exit_code(), 0);
    // Without the token: UNAUTHORIZED, reported before the screen is taken over.
    let mut t = Pty::spawn(&["-a", &tls_addr, "--ca", &ca_path, "top"]);
    assert_eq!(t.exit_code(), 3);
    t.wait_screen("error message", |sc| sc.contains("UNAUTHORIZED"));
}

// ---------------------------------------------------------------------------------------
// bench still works
// ---------------------------------------------------------------------------------------

#[test]
fn bench_runs_briefly() {
    let s = Server::start(&[]);
    let j = sprout(
        &s,
        &["bench", "--workload", "cycle", "--secs", "0.2", "--json"],
    )
    .json();
    assert!(j["ops"].as_u64().is_some_and(|n| n > 0), "{j}");
    assert_eq!(j["errors"], json!(0));
}

/// The pipeline workload both ways of waiting for replies: every reply validated, every
/// command the server saw counted, and only the last window's puts left undeleted.
#[test]
fn bench_pipeline_spinning_and_sleeping() {
    for spin in ["on", "off"] {
        let s = Server::start(&[]);
        let j = sprout(
            &s,
            &[
                "bench",
                "--workload",
                "pipeline",
                "--secs",
                "0.3",
                "--spin",
                spin,
                "--json",
            ],
        )
        .json();
        assert!(j["ops"].as_u64().is_some_and(|n| n > 0), "{spin}: {j}");
        assert_eq!(j["errors"], json!(0), "{spin}");
        let st = s.conn().yaml("stats");
        let n = |k: &str| st[k].parse::<u64>().unwrap();
        assert_eq!(
            n("cmd-put") + n("cmd-delete"),
            j["ops"].as_u64().unwrap(),
            "{spin}"
        );
        assert_eq!(
            n("current-jobs-ready"),
            n("cmd-put") - n("cmd-delete"),
            "{spin}"
        );
        assert!(n("current-jobs-ready") <= 16, "{spin}: {st:?}");
    }
}

#[test]
fn binlog_inspect_and_verify() {
    let dir = TempDir::new("inspect");
    let d = dir.path().to_str().unwrap();
    let mut s = Server::start(&["-b", d]);
    let mut c = s.conn();
    let ids: Vec<u64> = (0..3).map(|_| c.put(0, 0, 60, b"hello")).collect();
    assert_eq!(c.cmd(&format!("delete {}", ids[0])), "DELETED");
    drop(c);
    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(Duration::from_secs(10)).success());

    let j = run(&["binlog", "inspect", "--json", d], b"", &[]);
    let v = j.json();
    assert_eq!(v["live_jobs"], json!(2), "{v}");
    // A clean shutdown logs the exact next id (ids are otherwise reserved in blocks).
    assert_eq!(v["next_id"], json!(ids[2] + 1), "{v}");
    let f = &v["files"][0];
    assert_eq!(f["full"], json!(3));
    assert_eq!(f["deletes"], json!(1));
    assert!(f["live_bytes"].as_u64().unwrap() > 0);
    assert!(
        f["dead_bytes"].as_u64().unwrap() > 0,
        "the deleted job's records are dead"
    );
    assert!(run(&["binlog", "inspect", d], b"", &[])
        .ok()
        .contains("live jobs: 2"));
    assert!(run(&["binlog", "verify", d], b"", &[])
        .ok()
        .starts_with("ok: 1 files, 6 records"));

    // Flip a byte inside the second record's payload: verify names the file and fails.
    let name = f["name"].as_str().unwrap().to_string();
    let path = dir.path().join(&name);
    let mut data = std::fs::read(&path).unwrap();
    let used = f["used"].as_u64().unwrap() as usize;
    data[used - 20] ^= 0x55;
    std::fs::write(&path, &data).unwrap();
    let v = run(&["binlog", "verify", d], b"", &[]);
    assert_eq!(v.code, 1, "{}", v.text());
    assert!(
        v.text().contains(&name) && v.text().contains("damaged"),
        "{}",
        v.text()
    );
}

#[test]
fn cluster_status_of_a_one_node_cluster_and_of_a_single_server() {
    let dir = TempDir::new("cluster-status");
    let peer = format!("1=127.0.0.1:{}", free_port());
    let d = dir.path().to_str().unwrap().to_string();
    let s = Server::start(&["-b", &d, "--node-id", "1", "--cluster", &peer]);
    let out = sprout(&s, &["cluster", "status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node-id"], 1);
    assert_eq!(v["role"], "leader");
    assert_eq!(v["leader-id"], 1);
    assert_eq!(v["members"][0]["id"], 1);
    assert_eq!(v["members"][0]["role"], "leader");
    let out = sprout(&s, &["cluster", "status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("node 1 (leader), leader 1, term "),
        "{text}"
    );
    assert!(text.contains(&peer[2..]), "{text}");
    // A server that is not a cluster node does not know the command.
    let single = Server::start(&[]);
    let out = sprout(&single, &["cluster", "status"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("UNKNOWN_COMMAND"), "{}", out.stderr);
}

#[test]
fn cluster_add_transfer_leader_and_remove() {
    let dir = TempDir::new("cluster-members");
    let (p1, p2) = (free_port(), free_port());
    let d1 = dir.join("n1").to_str().unwrap().to_string();
    let d2 = dir.join("n2").to_str().unwrap().to_string();
    let one = format!("1=127.0.0.1:{p1}");
    let both = format!("{one},2=127.0.0.1:{p2}");
    let s1 = Server::start(&["-b", &d1, "--node-id", "1", "--cluster", &one]);
    s1.conn().put(0, 0, 60, b"before");
    // Node 2 on an empty directory: node 1's cluster exists, so it waits to be added.
    // (Not `Server::start`, whose readiness check wants `stats` within 500 ms: a node
    // without a leader answers it after 2 s.)
    let port = free_port();
    let child = sproutd()
        .args(["-l", "127.0.0.1", "-p", &port.to_string(), "-b", &d2])
        .args(["--node-id", "2", "--cluster", &both])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s2 = Server {
        child,
        addr: Addr::Tcp(port),
        startup: Duration::ZERO,
    };
    wait_until("node 2 listening", || Conn::try_connect(&s2.addr).is_ok());
    // Asked of the new node itself, which knows no leader yet.
    let add = format!("2=127.0.0.1:{p2}");
    let out = sprout(&s2, &["cluster", "add", &add]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("CLUSTER_ERROR this node is not a member"),
        "{}",
        out.stderr
    );
    let out = sprout(&s1, &["cluster", "add", &add]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.text().contains("node 2 (127.0.0.1:"), "{}", out.text());
    let status = |s: &Server| -> Value {
        let out = sprout(s, &["cluster", "status", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = status(&s1);
    assert_eq!(v["members"][1]["id"], 2, "{v}");
    assert_eq!(v["members"][1]["role"], "voter", "{v}");
    wait_until("node 2 has the job", || {
        s2.conn().stat("stats", "current-jobs-ready") == "1"
    });

    let out = sprout(&s1, &["cluster", "transfer-leader", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(status(&s1)["leader-id"], 2);
    assert_eq!(status(&s2)["role"], "leader");

    let out = sprout(&s2, &["cluster", "remove", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = status(&s2);
    assert_eq!(v["members"].as_array().unwrap().len(), 1, "{v}");
    let out = sprout(&s2, &["cluster", "remove", "9"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("NOT_FOUND"), "{}", out.stderr);
    let out = sprout(&s2, &["cluster", "add", "3=nowhere"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("ID=HOST:PORT"), "{}", out.stderr);

    // A server that is not a cluster node.
    let single = Server::start(&[]);
    let out = sprout(&single, &["cluster", "transfer-leader", "2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("CLUSTER_ERROR not a cluster node"),
        "{}",
        out.stderr
    );
}
