//! The server: tokio I/O around the engine. One task per connection, one timer task that
//! sleeps until the engine's next deadline, and the signal handlers.
//!
//! The engine sits behind one mutex, held only for the duration of one engine call
//! (microseconds, never across I/O). Replies for connections blocked in `reserve` travel
//! through one-shot channels registered in the same critical section that blocked them.

pub(crate) mod access;
pub mod cluster;
pub mod conffile;
pub mod config;
mod conn;
pub mod http;
pub mod listen;
pub mod man;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod secure;
pub mod sys;
pub(crate) mod tls;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, Notify};

use config::Config;
use listen::{Accepted, Extra, Listener};
use sprout_engine::{
    ConnId, Delivery, Effects, Engine, Input, JournalOp, Output, Reveal, LSN_PENDING,
};
use sprout_protocol::reply::ProcessStats;
use sprout_protocol::Reply;
use sprout_storage::{Binlog, Ticket};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Engine time: wall-clock nanoseconds at start, advanced by the monotonic clock (so
/// delays and TTRs do not jump with the system clock).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            base: Instant::now(),
            base_ns,
        }
    }

    pub fn now(&self) -> u64 {
        self.base_ns + self.base.elapsed().as_nanos() as u64
    }

    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns.saturating_sub(self.base_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A reply for a connection blocked in `reserve`, with the log position of what it shows.
pub(crate) type Delivered = (Reply, u64);

/// What the engine lock protects.
pub(crate) struct State {
    pub(crate) engine: Engine,
    waiters: FxHashMap<ConnId, oneshot::Sender<Delivered>>,
    /// When the timer task will next wake; u64::MAX if never.
    timer_at: u64,
    /// The effects of the input being applied.
    fx: Effects,
    /// The effects of inputs applied while delivering (a connection found gone).
    fx2: Effects,
    /// Where the last append ended (the end of the log, if it could not be written):
    /// what a reply showing a change made by the same call waits for.
    last_end: u64,
}

pub struct Shared {
    state: Mutex<State>,
    timer: Notify,
    pub(crate) clock: Clock,
    pub config: Config,
    started: u64,
    id: String,
    uname: (String, String, String),
    pub(crate) binlog: Option<Binlog>,
    /// Shutdown: connections finish what they owe and close.
    stop: Notify,
    stopping: std::sync::atomic::AtomicBool,
    open: std::sync::atomic::AtomicUsize,
    /// Users, TLS configurations, access counters (see `secure`).
    pub security: Arc<secure::Security>,
    /// In cluster mode: the node's place in the cluster, for `stats` and `/metrics`.
    pub(crate) cluster: std::sync::OnceLock<ClusterProbe>,
    /// In cluster mode: serves an in-process connection (the dashboard's) the way a
    /// client's is served there, through the Raft log, never on the local engine alone.
    pub(crate) cluster_conn: std::sync::OnceLock<ClusterConn>,
}

/// Serves one in-process connection in cluster mode.
pub(crate) type ClusterConn = Box<dyn Fn(tokio::net::UnixStream) + Send + Sync>;

/// Reads a cluster node's status.
pub(crate) type ClusterProbe = Box<dyn Fn() -> sprout_protocol::reply::ClusterStats + Send + Sync>;

impl Shared {
    pub fn new(config: Config) -> Self {
        Self::with_engine_and_log(config, Engine::new(), None, Clock::new())
    }

    pub fn with_engine_and_log(
        config: Config,
        engine: Engine,
        binlog: Option<Binlog>,
        clock: Clock,
    ) -> Self {
        Shared {
            state: Mutex::new(State {
                engine,
                waiters: FxHashMap::default(),
                timer_at: u64::MAX,
                fx: Effects::default(),
                fx2: Effects::default(),
                last_end: 0,
            }),
            timer: Notify::new(),
            started: clock.now(),
            clock,
            config,
            id: sys::random_id(),
            uname: sys::uname(),
            binlog,
            stop: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            open: std::sync::atomic::AtomicUsize::new(0),
            security: Arc::new(secure::Security::open()),
            cluster: std::sync::OnceLock::new(),
            cluster_conn: std::sync::OnceLock::new(),
        }
    }

    /// The same, with the users and TLS configurations of `security`.
    pub fn with_security(mut self, security: Arc<secure::Security>) -> Self {
        self.security = security;
        self
    }

    /// Connections open now (counted from accept to close).
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes an input's changes to the log; the ticket is what a reply that acknowledges
    /// them must wait for.
    fn persist(
        &self,
        engine: &mut Engine,
        ops: &[JournalOp],
        last_end: &mut u64,
    ) -> Option<Ticket> {
        let b = self.binlog.as_ref()?;
        let t = b.append(engine, ops);
        if let Some(t) = t {
            // The ticket's position is the end, unless it is already settled (written
            // directly) or failed.
            *last_end = match t.lsn {
                0 | u64::MAX => b.end(),
                lsn => lsn,
            };
        }
        t
    }

    /// Applies one input to the engine (the only way the server changes it): logs the
    /// changes, lets `before` act on the output under the same lock (a connection that
    /// waits registers for its reply), delivers what is owed to other connections, and
    /// reschedules the timer. Returns the output, what the reply shows (a position, or the
    /// latest delete for NOT_FOUND), and the ticket of the changes.
    pub(crate) fn step_with(
        &self,
        st: &mut State,
        input: Input,
        before: impl FnOnce(&mut State, &Output),
    ) -> (Output, Reveal, Option<Ticket>) {
        let now = if input.uses_time() {
            self.clock.now()
        } else {
            st.engine.now()
        };
        self.step_at(st, now, input, before)
    }

    /// [`Shared::step_with`] at a time the caller has read (for a put: the same as its
    /// admission's).
    pub(crate) fn step_at(
        &self,
        st: &mut State,
        now: u64,
        input: Input,
        before: impl FnOnce(&mut State, &Output),
    ) -> (Output, Reveal, Option<Ticket>) {
        let deliver = input.may_deliver();
        st.engine.apply(now, input, &mut st.fx);
        let State {
            engine,
            fx,
            last_end,
            ..
        } = st;
        let t = self.persist(engine, &fx.journal, last_end);
        let output = std::mem::take(&mut st.fx.output);
        let reveal = match st.fx.reveal {
            Reveal::Job(lsn) => Reveal::Job(Self::resolve(st, lsn)),
            r => r,
        };
        before(st, &output);
        if deliver {
            self.finish(st, now);
        }
        (output, reveal, t)
    }

    /// [`Shared::step_with`] under a lock of its own, with nothing to do before delivering.
    pub(crate) fn step(&self, input: Input) -> (Output, Reveal, Option<Ticket>) {
        let mut st = self.lock();
        self.step_with(&mut st, input, |_, _| {})
    }

    /// True when changes must be refused because the log cannot be written.
    pub(crate) fn log_failed(&self) -> bool {
        self.binlog.as_ref().is_some_and(|b| b.failed())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would leave the engine half-updated; there is no
        // safe way on, so a poisoned lock is used as is (panics are bugs, not input).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position a reply showing `lsn` waits for: a change of the current call is at the
    /// end of what was just appended.
    pub(crate) fn resolve(st: &State, lsn: u64) -> u64 {
        if lsn == LSN_PENDING {
            st.last_end
        } else {
            lsn
        }
    }

    /// Sends the deliveries of the input just applied, and wakes the timer if the engine's
    /// next deadline moved earlier.
    fn finish(&self, st: &mut State, now: u64) {
        let mut out = std::mem::take(&mut st.fx.deliveries);
        let mut i = 0;
        while i < out.len() {
            let d = std::mem::replace(
                &mut out[i],
                Delivery {
                    conn: 0,
                    reply: Reply::NotFound,
                    lsn: 0,
                },
            );
            i += 1;
            let to = d.conn;
            match st.waiters.remove(&to) {
                Some(tx) => {
                    let lsn = Self::resolve(st, d.lsn);
                    if let Err((reply, _)) = tx.send((d.reply, lsn)) {
                        // The connection's task is gone: return the job as a disconnect
                        // would (it was never shown to anyone).
                        tracing::warn!("conn {to}: reply undeliverable ({})", reply.head());
                        st.engine.apply(now, Input::Disconnect(to), &mut st.fx2);
                        let State {
                            engine,
                            fx2,
                            last_end,
                            ..
                        } = st;
                        let _ = self.persist(engine, &fx2.journal, last_end);
                        out.append(&mut st.fx2.deliveries);
                    }
                }
                None => tracing::error!("conn {to}: reply with no waiter ({})", d.reply.head()),
            }
        }
        out.clear();
        st.fx.deliveries = out;
        if let Some(at) = st.engine.next_wakeup() {
            if at < st.timer_at {
                st.timer_at = at;
                self.timer.notify_one();
            }
        }
    }

    pub(crate) fn process_stats(&self) -> ProcessStats {
        let (utime, stime) = sys::rusage();
        let b = self.binlog.as_ref().map(|b| b.stats()).unwrap_or_default();
        ProcessStats {
            max_job_size: self.config.max_job_size,
            pid: std::process::id(),
            version: VERSION.to_string(),
            utime,
            stime,
            uptime: self.clock.now().saturating_sub(self.started) / 1_000_000_000,
            binlog_max_size: self.config.binlog_size,
            binlog_oldest_index: b.oldest,
            binlog_current_index: b.current,
            binlog_records_written: b.written,
            binlog_records_migrated: b.migrated,
            id: self.id.clone(),
            hostname: self.uname.0.clone(),
            os: self.uname.1.clone(),
            platform: self.uname.2.clone(),
            cluster: self.cluster.get().map(|probe| probe()),
        }
    }
}

/// Sets the tube policies of `--policy-file`: one `TUBE KEY VALUE` a line (as after
/// `tube-policy`), `#` comments and blank lines ignored. Applied as the command would be,
/// so they are logged like any other change. Errors name the file and line.
pub fn apply_policy_file(shared: &Shared, path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cmds = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        match sprout_protocol::parse_line(format!("tube-policy {line}").as_bytes(), 0) {
            Ok(cmd @ sprout_protocol::Command::TubePolicy { set: Some(_), .. }) => cmds.push(cmd),
            _ => return Err(format!("{}: not TUBE KEY VALUE: {line}", at())),
        }
    }
    let Output::Conn(c) = shared.step(Input::Connect).0 else {
        return Err("cannot open a session for the policies".into());
    };
    let n = cmds.len();
    for cmd in cmds {
        shared.step(Input::Command(c, cmd));
    }
    shared.step(Input::Disconnect(c));
    Ok(n)
}

/// Fires the engine's timers: sleeps until the next deadline or until woken because an
/// earlier one appeared. Never polls.
async fn timer_task(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut st = shared.lock();
            // The timer schedules itself below; keep `finish` from waking it again.
            st.timer_at = 0;
            shared.step_with(&mut st, Input::Tick, |_, _| {});
            st.timer_at = st.engine.next_wakeup().unwrap_or(u64::MAX);
            st.timer_at
        };
        if next == u64::MAX {
            shared.timer.notified().await;
        } else {
            let at = tokio::time::Instant::from_std(shared.clock.instant(next));
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = shared.timer.notified() => {}
            }
        }
    }
}

/// Runs the server until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(listener: Listener, shared: Arc<Shared>) -> i32 {
    run_until(listener, shared, std::future::pending()).await
}

/// [`run`] with more listeners (`[[listener]]`, `--tls-listen`).
pub async fn run_all(listener: Listener, extras: Vec<Extra>, shared: Arc<Shared>) -> i32 {
    run_all_until(listener, extras, shared, std::future::pending()).await
}

/// Counts a connection as unauthenticated (TLS handshake, or waiting for `auth`) while
/// it lives.
pub(crate) struct Unauthenticated(Arc<Shared>);

impl Unauthenticated {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared
            .security
            .unauthenticated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Unauthenticated(shared.clone())
    }
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        self.0
            .security
            .unauthenticated
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a connection may take for its TLS handshake and its `auth`, together.
pub(crate) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` until `deadline`, or until shutdown begins: None then (a connection still
/// in its handshake or authentication is simply dropped at shutdown).
pub(crate) async fn until_deadline_or_stop<F: std::future::Future>(
    shared: &Shared,
    deadline: tokio::time::Instant,
    f: F,
) -> Option<F::Output> {
    let stopped = shared.stop.notified();
    tokio::pin!(stopped);
    stopped.as_mut().enable();
    if shared.stopping() {
        return None;
    }
    tokio::select! {
        r = tokio::time::timeout_at(deadline, f) => r.ok(),
        _ = stopped => None,
    }
}

/// Registers a connection with the engine (it then counts in `current-connections`).
pub(crate) fn register(shared: &Shared) -> ConnId {
    match shared.step(Input::Connect).0 {
        Output::Conn(id) => id,
        o => unreachable!("connect gave {o:?}"),
    }
}

/// Serves one connection of an extra listener: the TLS handshake and the
/// authentication in its own task, under [`AUTH_TIMEOUT`], so that a client that stalls
/// holds up nobody else.
async fn serve_extra(
    sock: Accepted,
    auth: config::AuthMode,
    tls: Option<Arc<tls::TlsSlot>>,
    shared: Arc<Shared>,
) {
    use config::AuthMode;
    let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    let pending = Unauthenticated::new(&shared);
    let sock = match (sock, tls) {
        (Accepted::Tcp(tcp), Some(slot)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(slot.get());
            match until_deadline_or_stop(&shared, deadline, acceptor.accept(tcp)).await {
                Some(Ok(stream)) => {
                    let (tcp, session) = stream.into_inner();
                    conn::Sock::Tls(Box::new(tls::TlsSock::new(tcp, session)))
                }
                Some(Err(e)) => {
                    shared.security.counters.handshake_failed();
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
                None => {
                    shared.security.counters.handshake_failed();
                    tracing::debug!("TLS handshake timed out (or shutdown)");
                    return;
                }
            }
        }
        (Accepted::Tcp(s), None) => conn::Sock::Tcp(s),
        (Accepted::Unix(s), _) => conn::Sock::Unix(s),
    };
    if auth == AuthMode::Token {
        conn::serve_token(sock, shared, deadline, pending).await;
        return;
    }
    let users = shared.security.users();
    let rights = match auth {
        AuthMode::None | AuthMode::Token => users.anonymous(),
        AuthMode::Mtls => {
            let subject = match &sock {
                conn::Sock::Tls(t) => t.peer_subject(),
                _ => None,
            };
            match subject.as_deref().and_then(|s| users.by_subject(s)) {
                Some(r) => access::Access::of(r),
                None => {
                    tracing::info!(
                        "mtls: no user has the certificate subject {subject:?}; closing"
                    );
                    shared.security.counters.auth_failed();
                    return;
                }
            }
        }
        AuthMode::Peercred => {
            let uid = match &sock {
                conn::Sock::Unix(u) => u.peer_cred().ok().map(|c| c.uid()),
                _ => None,
            };
            match uid.and_then(|u| users.by_uid(u)) {
                Some(r) => access::Access::of(r),
                None => {
                    tracing::info!("peercred: no user has uid {uid:?}; closing");
                    shared.security.counters.auth_failed();
                    return;
                }
            }
        }
    };
    drop(users);
    drop(pending);
    let id = register(&shared);
    conn::serve(sock, shared, id, rights).await;
}

/// Accepts on an extra listener until shutdown.
async fn accept_extra(x: Extra, shared: Arc<Shared>, alive: tokio::sync::mpsc::Sender<()>) {
    let mut accept_log = Instant::now() - Duration::from_secs(2);
    loop {
        let stopped = shared.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if shared.stopping() {
            return;
        }
        tokio::select! {
            accepted = x.listener.accept() => match accepted {
                Ok(sock) => {
                    if shared.config.max_connections.is_some_and(|m| shared.open_connections() >= m) {
                        drop(sock);
                        continue;
                    }
                    shared.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let shared = shared.clone();
                    let alive = alive.clone();
                    let tls = x.tls.clone();
                    let auth = x.auth;
                    tokio::spawn(async move {
                        let counted = shared.clone();
                        serve_extra(sock, auth, tls, shared).await;
                        counted.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        drop(alive);
                    });
                }
                Err(e) => {
                    if accept_log.elapsed() >= Duration::from_secs(1) {
                        tracing::warn!("accept on {}: {e}", x.addr);
                        accept_log = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = &mut stopped => return,
        }
    }
}

/// As [`run`], also shutting down (as on SIGTERM) when `stop` completes: for servers run
/// inside another program, such as tests.
pub async fn run_until(
    listener: Listener,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
) -> i32 {
    run_all_until(listener, Vec::new(), shared, stop).await
}

/// [`run_until`] with more listeners.
pub async fn run_all_until(
    listener: Listener,
    extras: Vec<Extra>,
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
) -> i32 {
    tokio::pin!(stop);
    tokio::spawn(timer_task(shared.clone()));
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    for x in extras {
        tokio::spawn(accept_extra(x, shared.clone(), alive_tx.clone()));
    }

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("sigaction: {e}");
            return 111;
        }
    };
    let mut int = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("sigaction: {e}");
            return 111;
        }
    };
    let mut usr1 =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("sigaction: {e}");
                return 111;
            }
        };
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("sigaction: {e}");
            return 111;
        }
    };

    let mut refused_log = Instant::now() - Duration::from_secs(2);
    let mut accept_log = refused_log;
    // Listening, the binlog recovered, signals handled: tell the service manager, if any.
    notify::ready();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                                Ok(sock) => {
                    if shared.config.max_connections.is_some_and(|m| shared.open_connections() >= m) {
                        // Refused: closed before a byte is read, logged at most once a second.
                        if refused_log.elapsed() >= Duration::from_secs(1) {
                            tracing::warn!("--max-connections reached: closing new connections");
                            refused_log = Instant::now();
                        }
                        drop(sock);
                        continue;
                    }
                                                            let shared = shared.clone();
                    let alive = alive_tx.clone();
                    shared.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Registered now, in accept order, so `stats` counts it at once.
                    let id = register(&shared);
                    // `[anonymous]`'s rights (everything, without it), as of now.
                    let rights = shared.security.users().anonymous();
                    tokio::spawn(async move {
                        let counted = shared.clone();
                        match sock {
                            Accepted::Tcp(s) => conn::serve(conn::Sock::Tcp(s), shared, id, rights).await,
                            Accepted::Unix(s) => conn::serve(conn::Sock::Unix(s), shared, id, rights).await,
                        }
                                                counted.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        drop(alive);
                    });
                }
                                Err(e) => {
                    // EMFILE and friends: say so (once a second), and back off instead of
                    // spinning.
                    if accept_log.elapsed() >= Duration::from_secs(1) {
                        tracing::warn!("accept: {e}");
                        accept_log = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = hup.recv() => {
                match shared.security.reload() {
                    Ok(what) => tracing::info!("SIGHUP: configuration reloaded: {what}"),
                    Err(e) => tracing::error!("SIGHUP: reload failed, the old configuration stays: {e}"),
                }
            }
            _ = usr1.recv() => {
                tracing::warn!("SIGUSR1: entering drain mode; puts now answer DRAINING");
                shared.lock().engine.set_draining();
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = &mut stop => { tracing::info!("stop requested: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    drop(listener);
    notify::stopping();
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    shared.stop.notify_waiters();
    drop(alive_tx);
    // Connections finish the replies they owe, then close; don't wait forever on clients
    // that never read.
    let _ = tokio::time::timeout(Duration::from_secs(5), alive_rx.recv()).await;
    if shared.binlog.is_some() {
        // The exact next id, so that a restart continues from it.
        shared.step(Input::CloseIds);
    }
    if let Some(b) = shared.binlog.clone() {
        let _ = tokio::task::spawn_blocking(move || b.shutdown()).await;
    }
    0
}

/// Background log maintenance (compaction, recovery after write errors), on its own
/// thread so that reading old segments never blocks the event loop.
pub fn start_maintenance(shared: Arc<Shared>) {
    let Some(b) = shared.binlog.clone() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("binlog-maint".into())
        .spawn(move || loop {
            let worked = b.maintain(&|f: &mut dyn FnMut(&mut Engine)| {
                let mut st = shared.lock();
                f(&mut st.engine);
            });
            if !worked {
                // Compaction is only ever due after a rotation; failures retry each second.
                b.wait_for_rotation(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start binlog maintenance: {e}");
    }
}
