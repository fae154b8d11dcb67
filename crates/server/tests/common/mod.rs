//! Helpers for the sproutd integration tests: start the real binary on a free port (or a
//! unix socket), talk to it with plain blocking sockets that have timeouts, and make sure
//! the child process never outlives its test.
//!
//! Nothing here sleeps for a fixed time to "let things settle": every wait is a bounded
//! poll of a condition.

#![allow(dead_code)]

pub mod cluster;
pub mod relay;
pub mod web;

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The sproutd binary: cargo's path for it in the sproutd package's own tests; in other
/// packages' tests (the CLI's), the one in the same target directory as the running test
/// (`cargo test` at the workspace root builds it).
pub static BIN: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    if let Some(p) = option_env!("CARGO_BIN_EXE_sproutd") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/sproutd
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .join("sproutd");
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build --bins)",
        p.display()
    );
    p
});
/// Read/write timeout on every client socket: a test that waits longer than this for a
/// reply fails instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server gets to come up (connect + `stats` answered).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `f` every 2 ms until it returns true; panics after 5 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Fails the calling test because something it needs is missing on this machine. Tests
/// never skip themselves: one that cannot run fails, and `what` says what is missing and
/// how to provide it.
#[track_caller]
pub fn cannot_run(what: &str) -> ! {
    panic!("cannot run: {what}");
}

/// `cannot_run(what)` unless `ok`.
#[track_caller]
pub fn require(what: &str, ok: bool) {
    if !ok {
        cannot_run(what);
    }
}

/// A scratch directory under /tmp (short paths: unix socket paths are limited to 107
/// bytes), removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = PathBuf::from(format!("/tmp/sproutd-it-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago and that no other test in this process has been
/// given. (Another process could still take it; `Server::start` retries on exit 111.)
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = l.local_addr().unwrap().port();
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.contains(&p) {
            taken.push(p);
            return p;
        }
    }
}

/// `sproutd` with stdin/stdout/stderr sent to /dev/null (a pipe nobody reads could fill
/// up and stall the server).
pub fn sproutd() -> Command {
    let mut c = Command::new(&*BIN);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs sproutd with `args` to completion (bounded: killed and failed after 10 s), and
/// returns its status, stdout and stderr.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String, String) {
    let dir = TempDir::new("out");
    let out = fs::File::create(dir.join("stdout")).unwrap();
    let err = fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Command::new(&*BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn sproutd");
    let status = wait_exit(&mut child, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("sproutd {args:?} did not exit within 10 s"));
    (
        status,
        fs::read_to_string(dir.join("stdout")).unwrap(),
        fs::read_to_string(dir.join("stderr")).unwrap(),
    )
}

/// Waits up to `timeout` for `child` to exit. On timeout the child is killed and None is
/// returned.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, Clone)]
pub enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

/// A running sproutd. Killed (SIGKILL) and reaped on drop if still running.
pub struct Server {
    pub child: Child,
    pub addr: Addr,
    /// Time from spawn to the first `stats` reply on a fresh connection.
    pub startup: Duration,
}

impl Server {
    /// sproutd on 127.0.0.1 and a free port, with `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with(extra, |_| {})
    }

    /// Like `start`, with a hook to adjust the command (e.g. redirect stderr).
    pub fn start_with(extra: &[&str], mut adjust: impl FnMut(&mut Command)) -> Server {
        let mut last = None;
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = sproutd();
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string()])
                .args(extra);
            adjust(&mut cmd);
            match Server::launch(cmd, Addr::Tcp(port)) {
                Ok(s) => return s,
                // Someone took the port between free_port() and the bind: try another.
                Err(st) if st.code() == Some(111) => last = Some(st),
                Err(st) => panic!("sproutd {extra:?} exited during startup: {st}"),
            }
        }
        panic!("sproutd could not bind a free port 5 times: {last:?}");
    }

    /// sproutd on a unix socket at `path`.
    pub fn start_unix(path: &Path, extra: &[&str]) -> Server {
        let mut cmd = sproutd();
        cmd.arg("-l")
            .arg(format!("unix:{}", path.display()))
            .args(extra);
        Server::launch(cmd, Addr::Unix(path.to_owned()))
            .unwrap_or_else(|st| panic!("sproutd on {} exited: {st}", path.display()))
    }

    /// Spawns `cmd` and waits until a connection to `addr` answers `stats` with the
    /// child's pid. Err(status) if the child exits first.
    pub fn launch(mut cmd: Command, addr: Addr) -> Result<Server, ExitStatus> {
        let t0 = Instant::now();
        let child = cmd.spawn().expect("spawn sproutd");
        let mut s = Server {
            child,
            addr,
            startup: Duration::ZERO,
        };
        let pid = s.pid().to_string();
        let deadline = t0 + READY_TIMEOUT;
        loop {
            if let Some(st) = s.child.try_wait().expect("try_wait") {
                return Err(st);
            }
            if let Ok(mut c) = Conn::try_connect(&s.addr) {
                // A short timeout so a wedged attempt is retried rather than waited out.
                c.set_timeout(Duration::from_millis(500));
                if let Ok(stats) = c.try_yaml("stats") {
                    s.startup = t0.elapsed();
                    // Guard against talking to some other server that holds the port.
                    if stats.get("pid") == Some(&pid) {
                        return Ok(s);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "sproutd not ready after {READY_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        match self.addr {
            Addr::Tcp(p) => p,
            Addr::Unix(_) => panic!("unix server has no port"),
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::try_connect(&self.addr).expect("connect to sproutd")
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits (bounded) for the server to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_exit(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("sproutd did not exit within {timeout:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One client connection speaking the beanstalk protocol, with timeouts.
pub struct Conn {
    rd: BufReader<Stream>,
}

impl Conn {
    pub fn try_connect(addr: &Addr) -> io::Result<Conn> {
        let s = match addr {
            Addr::Tcp(p) => {
                let s = TcpStream::connect(("127.0.0.1", *p))?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Addr::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
        };
        let mut c = Conn {
            rd: BufReader::with_capacity(64 * 1024, s),
        };
        c.set_timeout(IO_TIMEOUT);
        Ok(c)
    }

    pub fn set_timeout(&mut self, t: Duration) {
        match self.rd.get_ref() {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t)).unwrap();
                s.set_write_timeout(Some(t)).unwrap();
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(t)).unwrap();
                s.set_write_timeout(Some(t)).unwrap();
            }
        }
    }

    pub fn shutdown_write(&mut self) {
        match self.rd.get_ref() {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write).unwrap(),
            Stream::Unix(s) => s.shutdown(Shutdown::Write).unwrap(),
        }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.rd.get_mut().write_all(b).expect("send to sproutd");
    }

    /// `send` that reports failure instead of panicking (for servers that may be killed).
    pub fn try_send(&mut self, b: &[u8]) -> io::Result<()> {
        self.rd.get_mut().write_all(b)
    }

    /// One reply line without its CRLF.
    pub fn try_line(&mut self) -> io::Result<String> {
        let mut v = Vec::new();
        self.rd.read_until(b'\n', &mut v)?;
        if v.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !v.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply line not CRLF-terminated: {:?}", show(&v)),
            ));
        }
        v.truncate(v.len() - 2);
        String::from_utf8(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn line(&mut self) -> String {
        self.try_line().expect("read reply line")
    }

    pub fn exact(&mut self, n: usize) -> Vec<u8> {
        self.try_exact(n).expect("read reply data")
    }

    /// `exact` that reports failure instead of panicking.
    pub fn try_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0; n];
        self.rd.read_exact(&mut v)?;
        Ok(v)
    }

    /// Sends `c` + CRLF and returns the reply line.
    pub fn cmd(&mut self, c: &str) -> String {
        self.send(format!("{c}\r\n").as_bytes());
        self.line()
    }

    pub fn put_raw(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> String {
        let mut m = format!("put {pri} {delay} {ttr} {}\r\n", body.len()).into_bytes();
        m.extend_from_slice(body);
        m.extend_from_slice(b"\r\n");
        self.send(&m);
        self.line()
    }

    /// `put`, expecting INSERTED; returns the id.
    pub fn put(&mut self, pri: u32, delay: u32, ttr: u32, body: &[u8]) -> u64 {
        let r = self.put_raw(pri, delay, ttr, body);
        r.strip_prefix("INSERTED ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("put: expected INSERTED <id>, got {r:?}"))
    }

    /// Reads a `<word> <id> <bytes>` reply's data block after `head` was read.
    pub fn job_data(&mut self, head: &str, word: &str) -> (u64, Vec<u8>) {
        let f: Vec<&str> = head.split(' ').collect();
        assert!(
            f.len() == 3 && f[0] == word,
            "expected {word} <id> <bytes>, got {head:?}"
        );
        let id = f[1].parse().unwrap();
        let n: usize = f[2].parse().unwrap();
        let mut data = self.exact(n + 2);
        assert!(data.ends_with(b"\r\n"), "job data not CRLF-terminated");
        data.truncate(n);
        (id, data)
    }

    /// Sends a reserve-family command, expecting RESERVED.
    pub fn reserve_cmd(&mut self, c: &str) -> (u64, Vec<u8>) {
        let head = self.cmd(c);
        self.job_data(&head, "RESERVED")
    }

    pub fn reserve(&mut self) -> (u64, Vec<u8>) {
        self.reserve_cmd("reserve-with-timeout 5")
    }

    /// Sends a peek-family command, expecting FOUND.
    pub fn peek(&mut self, c: &str) -> (u64, Vec<u8>) {
        let head = self.cmd(c);
        self.job_data(&head, "FOUND")
    }

    fn ok_body(&mut self, c: &str) -> io::Result<String> {
        // try_send: during startup the port may briefly belong to another (dying) server,
        // whose reset must mean "retry", not a panic.
        self.try_send(format!("{c}\r\n").as_bytes())?;
        let head = self.try_line()?;
        let n: usize = head
            .strip_prefix("OK ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{c}: got {head:?}"))
            })?;
        let mut v = vec![0; n + 2];
        self.rd.read_exact(&mut v)?;
        assert!(v.ends_with(b"\r\n"), "{c}: body not CRLF-terminated");
        v.truncate(n);
        let s = String::from_utf8(v).expect("YAML is UTF-8");
        assert!(s.starts_with("---\n"), "{c}: YAML without ---: {s:?}");
        Ok(s[4..].to_string())
    }

    pub fn try_yaml(&mut self, c: &str) -> io::Result<HashMap<String, String>> {
        let body = self.ok_body(c)?;
        Ok(body
            .lines()
            .map(|l| {
                let (k, v) = l
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{c}: bad line {l:?}"));
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect())
    }

    /// A stats/stats-job/stats-tube reply as a map (quotes stripped).
    pub fn yaml(&mut self, c: &str) -> HashMap<String, String> {
        self.try_yaml(c).expect("YAML reply")
    }

    /// One stats value.
    pub fn stat(&mut self, c: &str, key: &str) -> String {
        self.yaml(c)
            .remove(key)
            .unwrap_or_else(|| panic!("{c}: no key {key}"))
    }

    /// A list-tubes / list-tubes-watched reply.
    pub fn list(&mut self, c: &str) -> Vec<String> {
        self.ok_body(c)
            .expect("list reply")
            .lines()
            .map(|l| {
                l.strip_prefix("- ")
                    .unwrap_or_else(|| panic!("{c}: bad line {l:?}"))
                    .to_string()
            })
            .collect()
    }

    /// Reads until EOF (bounded by the read timeout); returns what came before it.
    pub fn read_to_eof(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.rd
            .read_to_end(&mut v)
            .expect("expected EOF from sproutd");
        v
    }
}

/// Bytes shown as text with escapes, for assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Resident set size of process `pid` in bytes (VmRSS in /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

/// CPU time (user + system) process `pid` has used so far (/proc/<pid>/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')').expect("comm in /proc/pid/stat") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no side effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Bytes as mebibytes, for messages.
pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Copies the files of `src` (not the lock) into the empty dir `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    for e in fs::read_dir(src).unwrap().flatten() {
        if e.file_name() != "lock" {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// xorshift64*: the tests have no rand dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
