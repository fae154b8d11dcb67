//! Listening sockets: TCP, unix, or one inherited through socket activation.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::FromRawFd;
use std::path::Path;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};

use super::config::{AuthMode, Config};
use crate::secure::Security;
use crate::tls::TlsSlot;

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub(crate) enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    pub(crate) async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Accepted::Tcp(s))
            }
            Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix".into()),
        }
    }
}

/// Socket activation (sd_listen_fds): fd 3 when LISTEN_PID is us and LISTEN_FDS ≥ 1.
fn inherited() -> Option<i32> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    (pid == std::process::id() && fds >= 1).then_some(3)
}

/// Opens the listener the configuration asks for. Errors carry beanstalkd's exit code.
pub fn open(cfg: &Config) -> Result<Listener, (String, i32)> {
    if let Some(fd) = inherited() {
        if std::env::var("LISTEN_FDS").ok().as_deref() != Some("1") {
            tracing::warn!("inherited more than one listen socket; ignoring all but the first");
        }
        for opt in &cfg.listen_given {
            tracing::warn!("inherited listen fd; ignoring option: {opt}");
        }
        return from_fd(fd);
    }
    match cfg.listen.as_deref() {
        Some(l) if l.starts_with("unix:") => unix(&l["unix:".len()..]),
        addr => tcp(addr.unwrap_or("0.0.0.0"), cfg.port),
    }
}

fn from_fd(fd: i32) -> Result<Listener, (String, i32)> {
    // SAFETY: getsockname writes at most `len` bytes into storage we own.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) };
    if rc != 0 {
        return Err((
            format!("inherited fd {fd}: {}", std::io::Error::last_os_error()),
            111,
        ));
    }
    let fail = |e: std::io::Error| (format!("inherited fd {fd}: {e}"), 111);
    if sockopt(fd, libc::SO_TYPE) != Some(libc::SOCK_STREAM)
        || sockopt(fd, libc::SO_ACCEPTCONN) != Some(1)
    {
        return Err((
            "inherited fd is not a TCP or UNIX listening socket".into(),
            111,
        ));
    }
    if i32::from(ss.ss_family) == libc::AF_UNIX {
        // SAFETY: fd 3 was handed to us by the service manager and is not used elsewhere.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        l.set_nonblocking(true).map_err(fail)?;
        Ok(Listener::Unix(UnixListener::from_std(l).map_err(fail)?))
    } else {
        // SAFETY: as above.
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true).map_err(fail)?;
        Ok(Listener::Tcp(TcpListener::from_std(l).map_err(fail)?))
    }
}

/// An integer SOL_SOCKET option of `fd`.
fn sockopt(fd: i32, opt: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(v)
}

fn unix(path: &str) -> Result<Listener, (String, i32)> {
    let p = Path::new(path);
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            tracing::warn!("removing existing local socket to replace it");
            let _ = std::fs::remove_file(p);
        } else {
            return Err(("another file already exists in the given path".into(), 111));
        }
    }
    UnixListener::bind(p)
        .map(Listener::Unix)
        .map_err(|e| (format!("bind {path}: {e}"), 111))
}

fn tcp(host: &str, port: u16) -> Result<Listener, (String, i32)> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| (format!("getaddrinfo {host}: {e}"), 111))?
        .collect();
    let mut last = format!("no address for {host}");
    for addr in addrs {
        match bind(addr) {
            Ok(l) => return Ok(Listener::Tcp(l)),
            Err(e) => last = format!("bind {addr}: {e}"),
        }
    }
    Err((last, 111))
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    // Accepted sockets inherit these: keepalive notices vanished clients blocked in
    // reserve; no Nagle delay on replies.
    s.set_keepalive(true)?;
    s.set_nodelay(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

/// A listener beyond the default one (`[[listener]]`, `--tls-listen`).
pub struct Extra {
    pub(crate) listener: Listener,
    pub(crate) auth: AuthMode,
    pub(crate) tls: Option<std::sync::Arc<TlsSlot>>,
    pub(crate) addr: String,
}

impl Extra {
    pub fn describe(&self) -> String {
        format!(
            "{}{} (auth {})",
            self.listener.describe(),
            if self.tls.is_some() { " TLS" } else { "" },
            self.auth.name()
        )
    }
}

/// Opens the extra listeners and loads their certificates (registered with `security`
/// for reloads). Errors carry an exit code: 111 for a socket, 5 for a certificate.
pub fn open_extra(cfg: &Config, security: &Security) -> Result<Vec<Extra>, (String, i32)> {
    let mut out = Vec::new();
    for l in cfg.extra_listeners() {
        let tls = match &l.tls {
            Some(files) => {
                let slot = std::sync::Arc::new(
                    TlsSlot::load(files).map_err(|e| (format!("listener {}: {e}", l.addr), 5))?,
                );
                security.add_slot(&l.addr, slot.clone());
                Some(slot)
            }
            None => None,
        };
        let listener = match l.addr.strip_prefix("unix:") {
            Some(path) => unix(path)?,
            None => {
                let addrs: Vec<SocketAddr> = l
                    .addr
                    .to_socket_addrs()
                    .map_err(|e| (format!("listener {}: {e}", l.addr), 111))?
                    .collect();
                let mut last = Err((format!("listener {}: no address", l.addr), 111));
                for a in addrs {
                    match bind(a) {
                        Ok(t) => {
                            last = Ok(Listener::Tcp(t));
                            break;
                        }
                        Err(e) => last = Err((format!("bind {a}: {e}"), 111)),
                    }
                }
                last?
            }
        };
        out.push(Extra {
            listener,
            auth: l.auth,
            tls,
            addr: l.addr,
        });
    }
    Ok(out)
}
