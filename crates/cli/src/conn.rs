//! How every subcommand reaches a server: the address, TLS, and the token.
//!
//! A [`Target`] is built once from the global options (`--tls`, `--ca`, `--cert`/`--key`,
//! `--tls-server-name`, `--token`/`SPROUT_TOKEN`) and handed to each subcommand. The admin
//! commands connect with the blocking [`connect`]; `bench` and `work` with
//! [`connect_async`]. Both open TCP or a unix socket, run the TLS handshake when TLS is on
//! (rustls, ring provider, TLS 1.2 and 1.3), and send `auth <token>` when there is a token,
//! so every path behaves alike.
//!
//! The connection types are enums ([`Stream`], [`AsyncStream`]): a plain connection is the
//! socket itself, one `match` away, with no boxing and no extra buffer; TLS wraps the same
//! enum.
//!
//! Trust: with `--ca FILE` the server's certificate must chain to a certificate in FILE
//! and nothing else; without it, to one of the Mozilla roots compiled in (webpki-roots).
//! The name checked is the host of the address (a DNS name or an IP address, which then
//! must be in the certificate's IP SANs), or `--tls-server-name`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The port used when an address has none.
pub const DEFAULT_PORT: u16 = 11300;

/// The longest token sent (the rest of the `auth` line is short).
const MAX_TOKEN: usize = 1024;

/// The connection options every subcommand shares (global flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// Connect with TLS (implied by --ca, --cert, --key and --tls-server-name).
    #[arg(long = "tls", id = "conn-tls", global = true)]
    pub tls: bool,
    /// Trust only the CA certificate(s) in this PEM file for the server's certificate
    /// (default: the Mozilla roots built into sprout) [env: SPROUT_CA].
    #[arg(
        long = "ca",
        id = "conn-ca",
        value_name = "FILE",
        global = true,
        env = "SPROUT_CA",
        hide_env = true
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM), for listeners that require one (mTLS); with --key
    /// [env: SPROUT_CERT].
    #[arg(
        long = "cert",
        id = "conn-cert",
        value_name = "FILE",
        global = true,
        env = "SPROUT_CERT",
        hide_env = true
    )]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert [env: SPROUT_KEY].
    #[arg(
        long = "key",
        id = "conn-key",
        value_name = "FILE",
        global = true,
        env = "SPROUT_KEY",
        hide_env = true
    )]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host in the address;
    /// needed for a unix: address).
    #[arg(
        long = "tls-server-name",
        id = "conn-tls-server-name",
        value_name = "NAME",
        global = true
    )]
    pub tls_server_name: Option<String>,
    /// Sent as `auth TOKEN` right after connecting, for token listeners [env:
    /// SPROUT_TOKEN, which keeps it out of the process list].
    #[arg(
        long = "token",
        id = "conn-token",
        value_name = "TOKEN",
        global = true,
        env = "SPROUT_TOKEN",
        hide_env = true
    )]
    pub token: Option<String>,
}

impl ConnArgs {
    /// Whether any option asks for TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls
            || self.ca.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.tls_server_name.is_some()
    }
}

/// TLS settings of a [`Target`].
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// The name to verify: --tls-server-name, else the host of the address.
    name: ServerName<'static>,
}

/// Where and how to connect: the address, TLS or not, and the token.
#[derive(Clone)]
pub struct Target {
    /// As given: `HOST:PORT`, `HOST` (port 11300) or `unix:/path`.
    pub addr: String,
    tls: Option<Tls>,
    token: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token itself.
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|t| &t.name))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Target {
    /// A plain connection to `addr`, no token.
    pub fn plain(addr: &str) -> Target {
        Target {
            addr: addr.to_string(),
            tls: None,
            token: None,
        }
    }

    /// The target the options describe. Errors name the option at fault.
    pub fn new(addr: &str, a: &ConnArgs) -> Result<Target, String> {
        let token = match &a.token {
            None => None,
            Some(t) => Some(check_token(t)?),
        };
        let tls = if a.wants_tls() {
            let config = client_config(a.ca.as_deref(), a.cert.as_deref(), a.key.as_deref())?;
            let name = match &a.tls_server_name {
                Some(n) => ServerName::try_from(n.clone())
                    .map_err(|_| format!("--tls-server-name {n:?}: not a DNS name or IP"))?,
                None => server_name(addr)?,
            };
            Some(Tls {
                config: Arc::new(config),
                name,
            })
        } else {
            None
        };
        Ok(Target {
            addr: addr.to_string(),
            tls,
            token,
        })
    }

    /// This target with TLS on, trusting the CA certificate(s) in `ca` only and verifying
    /// `name` (for the benchmark's own servers).
    pub fn with_tls(&self, ca: &Path, name: &str) -> Result<Target, String> {
        let config = client_config(Some(ca), None, None)?;
        Ok(Target {
            tls: Some(Tls {
                config: Arc::new(config),
                name: ServerName::try_from(name.to_string())
                    .map_err(|_| format!("{name:?}: not a DNS name or IP"))?,
            }),
            ..self.clone()
        })
    }

    /// This target without TLS session resumption, so that every connection makes a
    /// full handshake (the handshake benchmark).
    pub fn without_resumption(&self) -> Target {
        let mut t = self.clone();
        if let Some(tls) = &mut t.tls {
            let mut config = (*tls.config).clone();
            config.resumption = rustls::client::Resumption::disabled();
            tls.config = Arc::new(config);
        }
        t
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// A token is sent on the `auth` line, so it must be one word of visible ASCII.
fn check_token(t: &str) -> Result<String, String> {
    if t.is_empty() || t.len() > MAX_TOKEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "--token/SPROUT_TOKEN: expected 1 to {MAX_TOKEN} visible ASCII characters, no \
             spaces"
        ));
    }
    Ok(t.to_string())
}

/// The host part of an address, as the name the server's certificate must carry.
fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    if addr.starts_with("unix:") {
        return Err(format!(
            "{addr}: TLS over a unix socket needs --tls-server-name (the name in the \
             server's certificate)"
        ));
    }
    let host = host_of(addr);
    ServerName::try_from(host.to_string()).map_err(|_| {
        format!("{addr}: {host:?} is not a DNS name or IP address to verify the server by")
    })
}

/// `[v6]:port` → v6; `host:port` → host; `host` → host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        if let Some((h, _)) = rest.split_once(']') {
            return h;
        }
    }
    match addr.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h,
        _ => addr,
    }
}

fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no CERTIFICATE in it (PEM expected)"));
    }
    Ok(certs)
}

/// The rustls client configuration: ring provider, TLS 1.2 and 1.3, roots from `ca` (or
/// webpki-roots), and a client certificate when `cert` and `key` are given.
fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let (added, _) = roots.add_parsable_certificates(read_certs("--ca", path)?);
            if added == 0 {
                return Err(format!(
                    "--ca {}: no usable CA certificate in it",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = read_certs("--cert", c)?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("--key {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("--cert/--key: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err("--cert needs --key (the certificate's private key)".into()),
        (None, Some(_)) => Err("--key needs --cert (the client certificate)".into()),
    }
}

/// Why `auth` did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// `UNAUTHORIZED`: the token is wrong (or revoked).
    Refused,
    /// Another reply (`UNKNOWN_COMMAND`: this listener takes no tokens).
    NotTaken(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Refused => f.write_str("the server refused the token (UNAUTHORIZED)"),
            AuthError::NotTaken(r) => write!(
                f,
                "the server does not take tokens on this listener (it replied {r} to auth): \
                 leave out --token and SPROUT_TOKEN"
            ),
        }
    }
}

impl std::error::Error for AuthError {}

/// The [`AuthError`] inside an I/O error from [`connect`] or [`connect_async`], if any.
pub fn auth_error(e: &io::Error) -> Option<&AuthError> {
    e.get_ref()?.downcast_ref::<AuthError>()
}

/// The outcome of `auth`, from its reply line (without CRLF).
fn auth_reply(head: &[u8]) -> io::Result<()> {
    let err = |a| Err(io::Error::new(io::ErrorKind::PermissionDenied, a));
    match head {
        b"AUTHENTICATED" => Ok(()),
        b"UNAUTHORIZED" => err(AuthError::Refused),
        other => err(AuthError::NotTaken(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

fn auth_line(token: &str) -> Vec<u8> {
    format!("auth {token}\r\n").into_bytes()
}

fn handshake_failed(e: io::Error) -> io::Error {
    match e.kind() {
        // A read timeout on a blocking socket is EAGAIN.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake failed: the server did not answer (is this a TLS listener?)",
        ),
        kind => io::Error::new(kind, format!("TLS handshake failed: {e}")),
    }
}

fn closed_at_auth() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed before the reply to auth",
    )
}

fn long_auth_reply() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "reply to auth too long")
}

// ----- blocking ----------------------------------------------------------------------

/// A blocking connection: the socket, or TLS over it.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Stream>>),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
            Stream::Tls(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
            Stream::Tls(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(_) | Stream::Unix(_) => Ok(()),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Opens the socket, with `io_timeout` on every read and write.
fn open(addr: &str, connect_timeout: Duration, io_timeout: Duration) -> io::Result<Stream> {
    if let Some(path) = addr.strip_prefix("unix:") {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(io_timeout))?;
        s.set_write_timeout(Some(io_timeout))?;
        return Ok(Stream::Unix(s));
    }
    let addrs: Vec<_> = if addr.contains(':') {
        addr.to_socket_addrs()?.collect()
    } else {
        (addr, DEFAULT_PORT).to_socket_addrs()?.collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect_timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(io_timeout))?;
                s.set_write_timeout(Some(io_timeout))?;
                return Ok(Stream::Tcp(s));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to `t`: the socket, the TLS handshake (bounded by `io_timeout` per read),
/// then `auth` when there is a token. An `auth` that fails is an error with an
/// [`AuthError`] inside (see [`auth_error`]).
pub fn connect(t: &Target, connect_timeout: Duration, io_timeout: Duration) -> io::Result<Stream> {
    let mut s = open(&t.addr, connect_timeout, io_timeout)?;
    if let Some(tls) = &t.tls {
        let mut conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut s).map_err(handshake_failed)?;
        }
        s = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, s)));
    }
    if let Some(token) = &t.token {
        s.write_all(&auth_line(token))?;
        s.flush()?;
        // Byte by byte: nothing may be read past the reply (there is nothing more yet,
        // but the caller's buffer starts after it).
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if line.len() > 200 {
                return Err(long_auth_reply());
            }
            if s.read(&mut b)? == 0 {
                return Err(closed_at_auth());
            }
            line.push(b[0]);
        }
        auth_reply(&line[..line.len() - 2])?;
    }
    Ok(s)
}

// ----- async -------------------------------------------------------------------------

/// An async connection: the socket, or TLS over it.
pub enum AsyncStream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<AsyncStream>>),
}

impl AsyncRead for AsyncStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AsyncStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            AsyncStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            AsyncStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AsyncStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            AsyncStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            AsyncStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AsyncStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AsyncStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AsyncStream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            AsyncStream::Tcp(s) => s.is_write_vectored(),
            AsyncStream::Unix(s) => s.is_write_vectored(),
            AsyncStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AsyncStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            AsyncStream::Unix(s) => Pin::new(s).poll_flush(cx),
            AsyncStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AsyncStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            AsyncStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            AsyncStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Opens the socket; each resolved address gets `timeout`.
async fn open_async(addr: &str, timeout: Duration) -> io::Result<AsyncStream> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return Ok(AsyncStream::Unix(
            tokio::net::UnixStream::connect(path).await?,
        ));
    }
    let addrs: Vec<_> = if addr.contains(':') {
        tokio::net::lookup_host(addr).await?.collect()
    } else {
        tokio::net::lookup_host((addr, DEFAULT_PORT))
            .await?
            .collect()
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
    for a in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                return Ok(AsyncStream::Tcp(s));
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }
    }
    Err(last)
}

/// As [`connect`], async: the socket (each address within `timeout`), then the TLS
/// handshake and `auth`, together within `timeout` too.
pub async fn connect_async(t: &Target, timeout: Duration) -> io::Result<AsyncStream> {
    let s = open_async(&t.addr, timeout).await?;
    if t.tls.is_none() && t.token.is_none() {
        return Ok(s);
    }
    tokio::time::timeout(timeout, secure(t, s))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if t.tls.is_some() {
                    "TLS handshake or auth timed out"
                } else {
                    "no reply to auth"
                },
            ))
        })
}

/// The TLS handshake and `auth` on an open socket.
async fn secure(t: &Target, s: AsyncStream) -> io::Result<AsyncStream> {
    let mut s = match &t.tls {
        None => s,
        Some(tls) => {
            let c = tokio_rustls::TlsConnector::from(tls.config.clone());
            let s = c
                .connect(tls.name.clone(), s)
                .await
                .map_err(handshake_failed)?;
            AsyncStream::Tls(Box::new(s))
        }
    };
    if let Some(token) = &t.token {
        s.write_all(&auth_line(token)).await?;
        s.flush().await?;
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            if line.len() > 200 {
                return Err(long_auth_reply());
            }
            match s.read_u8().await {
                Ok(b) => line.push(b),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(closed_at_auth()),
                Err(e) => return Err(e),
            }
        }
        auth_reply(&line[..line.len() - 2])?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("example.com:11300"), "example.com");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:11300"), "::1");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:11300"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:11300"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("queue.example.com:11400"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("unix:/run/sprout.sock")
            .unwrap_err()
            .contains("--tls-server-name"));
    }

    #[test]
    fn tokens_must_be_one_word() {
        assert!(check_token("abc123-_.~").is_ok());
        for bad in ["", "a b", "a\r\ndelete 1", "é", &"x".repeat(MAX_TOKEN + 1)] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_replies() {
        assert!(auth_reply(b"AUTHENTICATED").is_ok());
        let e = auth_reply(b"UNAUTHORIZED").unwrap_err();
        assert_eq!(auth_error(&e), Some(&AuthError::Refused));
        let e = auth_reply(b"UNKNOWN_COMMAND").unwrap_err();
        assert_eq!(
            auth_error(&e),
            Some(&AuthError::NotTaken("UNKNOWN_COMMAND".into()))
        );
        assert!(auth_error(&io::Error::other("x")).is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let a = ConnArgs {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        let t = Target::new("127.0.0.1:1", &a).unwrap();
        assert!(t.has_token() && !t.is_tls());
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn tls_options() {
        let a = ConnArgs {
            tls: true,
            ..Default::default()
        };
        let t = Target::new("localhost:11400", &a).unwrap();
        assert!(t.is_tls());
        assert!(matches!(
            t.tls.as_ref().map(|t| &t.name),
            Some(ServerName::DnsName(_))
        ));
        let t = Target::new("127.0.0.1:11400", &a).unwrap();
        assert!(matches!(
            t.tls.as_ref().map(|t| &t.name),
            Some(ServerName::IpAddress(_))
        ));
        assert!(Target::new("unix:/x", &a).is_err());
        let named = ConnArgs {
            tls_server_name: Some("queue.internal".into()),
            ..Default::default()
        };
        let t = Target::new("unix:/x", &named).unwrap();
        assert!(t.is_tls());
        let half = ConnArgs {
            cert: Some("/nonexistent.pem".into()),
            ..Default::default()
        };
        assert!(Target::new("h:1", &half).is_err());
        let missing_ca = ConnArgs {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(Target::new("h:1", &missing_ca)
            .unwrap_err()
            .contains("--ca /nonexistent/ca.pem"));
    }
}
